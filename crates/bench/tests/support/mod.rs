//! What the bench binary's end-to-end tests share: the workspace root and a run of
//! `mlpserve-bench` on the committed zoo's finalmlp_ctr with the fetched ONNX Runtime.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the bench on finalmlp_ctr (100 ms warm-up) with `args` added, logging warnings only.
pub fn bench(args: &[&str]) -> Output {
    let root = root();
    Command::new(env!("CARGO_BIN_EXE_mlpserve-bench"))
        .args(["--model-repository", root.join("models").to_str().unwrap()])
        .args([
            "--ort-lib",
            root.join(".onnxruntime/libonnxruntime.so")
                .to_str()
                .unwrap(),
        ])
        .args(["--model", "finalmlp_ctr", "--warmup", "100ms"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the bench binary runs")
}
