//! The execution-provider policy on a machine whose ONNX Runtime has no CUDA (the CPU build
//! CI fetches): `cuda` with `fallback = "error"` refuses the model with a message naming the
//! provider, what the build offers and how to get a GPU build; with `fallback = "cpu"` the
//! model serves on the CPU and every view says so, plus a WARN naming the model.

mod common;

use common::{run_binary, ScratchRepo, TestServer};
use mlpserve::ServerConfig;
use serde_json::json;

#[test]
fn cuda_without_a_gpu_build_fails_the_load_by_default() {
    let repo = ScratchRepo::new("ep-error");
    repo.add("mlp_digits", "digits", 1, "execution_provider = \"cuda\"\n");
    repo.add("mlp_digits", "cpu_digits", 1, "");
    let mut config = ServerConfig::for_tests(&repo.path);
    // Readiness reports the failure below; the server still serves the other model.
    config.strict_readiness = false;
    let server = TestServer::start_with(config);
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "digits", "inputs": [vec![0.5; 64]]}),
    );
    assert_eq!(status, 503, "{body}");
    let (status, _) = server.post_json(
        "/predict",
        &json!({"model": "cpu_digits", "inputs": [vec![0.5; 64]]}),
    );
    assert_eq!(status, 200, "the other model serves");
    let (_, ready) = server.get_json("/v2/models/digits/ready");
    assert_eq!(ready["ready"], false);

    let (status, index) = server.post_json("/v2/repository/index", &json!({}));
    assert_eq!(status, 200, "{index}");
    let entry = index
        .as_array()
        .expect("index")
        .iter()
        .find(|e| e["name"] == "digits")
        .unwrap_or_else(|| panic!("digits in {index}"));
    assert_eq!(entry["state"], "UNAVAILABLE", "{entry}");
    let reason = entry["reason"].as_str().expect("reason");
    for part in [
        "no CUDA execution provider",
        "CPUExecutionProvider",
        "ORT_FLAVOR=gpu scripts/fetch-onnxruntime.sh",
        "fallback = \"cpu\"",
    ] {
        assert!(reason.contains(part), "'{part}' missing from: {reason}");
    }

    // With strict readiness (the default) the server is not ready while it fails.
    let strict = TestServer::start_with_unready(ServerConfig::for_tests(&repo.path));
    let (status, _) = strict.get_json("/v2/health/ready");
    assert_eq!(status, 503);
}

#[test]
fn cuda_with_cpu_fallback_serves_and_reports_the_cpu() {
    let repo = ScratchRepo::new("ep-fallback");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "execution_provider = \"cuda\"\nfallback = \"cpu\"\ninstances = 2\ndevice_ids = [0, 1]\n",
    );
    let server = TestServer::start(&repo.path);
    let (status, answer) = server.post_json(
        "/predict",
        &json!({"model": "digits", "inputs": [vec![0.5; 64]]}),
    );
    assert_eq!(status, 200, "{answer}");

    let (_, config) = server.get_json("/v2/models/digits/config");
    assert_eq!(
        config["instance_group"],
        json!([{"name": "digits", "count": 2, "kind": "KIND_CPU"}])
    );
    let (_, meta) = server.get_json("/v2/models/digits");
    assert_eq!(meta["parameters"]["execution_provider"], "cpu,cpu");
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains(
            "mlpserve_model_instances{model=\"digits\",provider=\"cpu\",version=\"1\"} 2"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("provider=\"cuda"), "{metrics}");
}

#[test]
fn server_wide_cuda_fallback_logs_a_warning_naming_the_model() {
    let repo = ScratchRepo::new("ep-warn");
    repo.add("mlp_digits", "digits", 1, "");
    let (lines, child) = run_binary(
        &repo.path,
        &[
            "--execution-provider",
            "cuda",
            "--execution-provider-fallback",
            "cpu",
        ],
    );
    let mut child = child.expect("serves on the CPU");
    let _ = child.kill();
    let _ = child.wait();
    let warning = lines
        .iter()
        .find(|l| l.contains("\"WARN\"") && l.contains("runs on the CPU instead"))
        .unwrap_or_else(|| panic!("no WARN line in:\n{}", lines.join("\n")));
    assert!(warning.contains("digits"), "{warning}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("model loaded") && l.contains("cpu")),
        "start-up log names the placement:\n{}",
        lines.join("\n")
    );
}
