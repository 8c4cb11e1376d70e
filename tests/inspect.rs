//! `mlpserve inspect`: on every zoo model it reports the inputs and outputs the reference
//! samples use, says the model batches and what `"auto"` picks, and prints example requests
//! that a real server answers; on broken models (a fixed batch axis, external data that is
//! missing, a corrupt file, a bad config) it names the problem, and the exit status says
//! whether the server would serve the model as it is (0), not (1), or the inspection could
//! not run (2). The real binary, real ONNX Runtime, real files.

mod common;

use std::path::{Path, PathBuf};

use common::{samples, zoo, ScratchRepo, TestServer};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `mlpserve inspect` with `args`; (exit code, stdout, stderr).
fn inspect(args: &[&str]) -> (i32, String, String) {
    common::run_subcommand("inspect", args, &[])
}

fn inspect_json(path: &Path) -> (i32, Value) {
    let (code, out, err) = inspect(&["--json", path.to_str().unwrap()]);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, report)
}

/// The JSON body of a `curl ... -d '<body>'` example.
fn curl_body(command: &str) -> Value {
    let start = command.find("-d '").expect("a -d argument") + 4;
    let body = command[start..]
        .trim_end()
        .strip_suffix('\'')
        .expect("quoted body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn zoo_models() -> Vec<String> {
    let mut models: Vec<String> = std::fs::read_dir(zoo())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("1/model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    models.sort();
    models
}

#[test]
fn every_zoo_model_is_described_and_its_example_requests_are_answered() {
    let server = TestServer::start(&zoo());
    let models = zoo_models();
    assert!(models.len() >= 10);
    for model in &models {
        let (code, report) = inspect_json(&zoo().join(model));
        assert_eq!(code, 0, "{model}: {report:#}");
        assert_eq!(report["model"], model.as_str());
        assert_eq!(report["version"], 1);
        // The inputs and outputs are those of the reference samples, with their datatypes
        // and the samples' shapes wherever the graph fixes a dim. A model with `[features]`
        // has samples of raw fields, which build its graph inputs (tests/features.rs).
        let sample = &samples(model)["samples"][0];
        let raw_fields = std::fs::read_to_string(zoo().join(model).join("config.toml"))
            .is_ok_and(|c| c.contains("[features]"));
        for (kind, list) in [
            ("inputs", &report["inputs"]),
            ("outputs", &report["outputs"]),
        ] {
            if raw_fields && kind == "inputs" {
                continue;
            }
            let want = sample[kind].as_object().unwrap();
            let got = list.as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{model} {kind}");
            for t in got {
                let w = &want[t["name"].as_str().unwrap()];
                assert_eq!(t["datatype"], w["datatype"], "{model} {}", t["name"]);
                let shape = t["shape"].as_array().unwrap();
                let sample_shape = w["shape"].as_array().unwrap();
                assert_eq!(shape.len(), sample_shape.len(), "{model} {}", t["name"]);
                for (d, s) in shape.iter().zip(sample_shape) {
                    assert!(d == -1 || d == s, "{model} {}: {shape:?}", t["name"]);
                }
            }
        }
        let batching = &report["batching"];
        assert_eq!(batching["batched"], true, "{model}");
        let auto = batching["auto_max_batch_size"].as_u64().unwrap();
        assert!((1..=4096).contains(&auto), "{model}: {auto}");
        assert_eq!(report["onnx"]["external_data"], serde_json::json!([]));
        assert!(report["onnx"]["opsets"][0]["version"].as_i64().unwrap() >= 13);
        assert!(!report["onnx"]["producer_name"].as_str().unwrap().is_empty());
        // The examples are requests the server answers.
        let examples = &report["examples"];
        for (path, key) in [
            ("/predict".to_string(), "predict_curl"),
            (format!("/v2/models/{model}/infer"), "v2_curl"),
        ] {
            let command = examples[key].as_str().unwrap();
            assert!(
                command.starts_with(&format!("curl -s localhost:8000{path} -d '")),
                "{command}"
            );
            let (status, body) = server.post_json(&path, &curl_body(command));
            assert_eq!(status, 200, "{model} {key}: {body}");
        }
        let py = examples["tritonclient_python"].as_str().unwrap();
        assert!(
            py.contains(&format!("client.infer(\"{model}\", inputs)")),
            "{py}"
        );
    }
}

#[test]
fn the_human_report_names_what_a_newcomer_needs() {
    let (code, out, _) = inspect(&["models/din_ctr"]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "din_ctr version 1: ",
        "config: models/din_ctr/config.toml",
        "onnx: IR 10, opset ai.onnx ",
        "producer pytorch",
        "external data: none",
        "hist_items INT64 [-1, -1] (dims: [batch, hist_len])",
        "batching: yes",
        "max_batch_size \"auto\" here: ",
        "hist_items axis 1 (hist_len): declared in config.toml",
        "curl -s localhost:8000/predict",
        "curl -s localhost:8000/v2/models/din_ctr/infer",
        "import tritonclient.grpc as grpcclient",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    // A version's file gets its model directory's config; --name renames the examples.
    let (code, out, _) = inspect(&["models/din_ctr/1/model.onnx", "--name", "din"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config: models/din_ctr/config.toml"), "{out}");
    assert!(out.contains("/v2/models/din/infer"), "{out}");
    // Without the config, the same graph's dynamic history axis is offered for padding.
    let repo = ScratchRepo::new("inspect-din");
    repo.add("din_ctr", "din", 1, "");
    let (code, out, _) = inspect(&[repo.path.join("din").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "hist_items axis 1 (hist_len): config.toml: [inputs.hist_items] pad_axes = [1]"
        ),
        "{out}"
    );
}

#[test]
fn a_fixed_batch_axis_is_explained() {
    let (code, report) = inspect_json(&fixture("fixed_batch"));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["batching"]["batched"], false);
    let why = report["batching"]["why"].as_str().unwrap();
    assert!(why.contains("input 'x' has a fixed first axis"), "{why}");
    assert_eq!(report["batching"]["auto_max_batch_size"], Value::Null);
    assert_eq!(
        report["examples"]["v2_curl"]
            .as_str()
            .map(curl_body)
            .unwrap()["inputs"][0]["shape"],
        serde_json::json!([1, 4])
    );
    // A config that asks this graph to batch is a problem.
    let repo = ScratchRepo::new("inspect-fixed");
    repo.add_file(
        &fixture("fixed_batch/1/model.onnx"),
        "fixed",
        1,
        "max_batch_size = 8\n",
    );
    let (code, out, _) = inspect(&[repo.path.join("fixed").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("problems:\n  config.toml: max_batch_size asks for batching"),
        "{out}"
    );
}

#[test]
fn external_data_is_listed_and_a_missing_file_is_a_problem() {
    let (code, report) = inspect_json(&fixture("external_data"));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["onnx"]["external_data"],
        serde_json::json!([{"location": "weights.bin", "tensors": 1, "bytes": 32}])
    );
    let repo = ScratchRepo::new("inspect-external");
    repo.add_file(&fixture("external_data/1/model.onnx"), "ext", 1, "");
    let (code, out, _) = inspect(&[repo.path.join("ext").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("weights.bin (1 tensors, MISSING)"), "{out}");
    assert!(
        out.contains("external data file weights.bin is missing"),
        "{out}"
    );
}

#[test]
fn broken_models_and_paths_exit_non_zero_with_the_reason() {
    let repo = ScratchRepo::new("inspect-broken");
    repo.add("mlp_digits", "corrupt", 1, "");
    std::fs::write(repo.path.join("corrupt/1/model.onnx"), b"not an onnx graph").unwrap();
    repo.add("mlp_digits", "typo", 1, "max_batch = 4\n");
    let (code, out, _) = inspect(&[repo.path.join("corrupt").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not an ONNX model"), "{out}");
    let (code, _, err) = inspect(&[repo.path.join("typo").to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("max_batch") && err.contains("mlpserve check"),
        "{err}"
    );
    let (code, _, err) = inspect(&["/nonexistent/model.onnx"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/model.onnx"), "{err}");
    let (code, _, err) = inspect(&[
        "models/mlp_digits",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
    ]);
    assert_eq!(code, 2, "{err}");
}
