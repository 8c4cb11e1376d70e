//! `--dry-run`: the options and the server config file are checked and nothing is started,
//! so a prepared command line can be checked on a machine without its ONNX Runtime build.

use std::path::PathBuf;
use std::process::Command;

fn bench(server_config: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("mlpserve-bench-dry-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("server-{}.toml", server_config.len()));
    std::fs::write(&config, server_config).unwrap();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let out = Command::new(env!("CARGO_BIN_EXE_mlpserve-bench"))
        .args(["--model-repository", models.to_str().unwrap()])
        .args(["--server-config", config.to_str().unwrap()])
        // Never loaded by a dry run.
        .args(["--ort-lib", "/nonexistent/libonnxruntime.so"])
        .args([
            "--model",
            "finalmlp_ctr",
            "--ceiling",
            "--ceiling-batches",
            "1,64",
        ])
        .arg("--dry-run")
        .output()
        .expect("the bench binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn dry_run_accepts_good_options_without_loading_anything() {
    let (ok, text) = bench("strict_readiness = false\nmodel_control_mode = \"explicit\"\nload_model = [\"finalmlp_ctr\"]\n");
    assert!(ok, "{text}");
    assert!(text.contains("options accepted"), "{text}");
}

#[test]
fn dry_run_rejects_a_bad_server_config() {
    let (ok, text) = bench("strict_readyness = false\n");
    assert!(!ok, "{text}");
    assert!(text.contains("strict_readyness"), "{text}");
}
