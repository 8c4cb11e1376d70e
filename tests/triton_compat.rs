//! Where Triton's clients expect Triton's exact behaviour, end to end against a real server:
//! only inference answers are compressed, raw binary request bodies, `--overload-status
//! 503`, and load overrides in protobuf's JSON form.

mod common;

use std::time::{Duration, Instant};

use common::{ScratchRepo, TestServer};
use mlpserve::config::{ControlMode, OverloadStatus};
use mlpserve::ServerConfig;
use serde_json::{json, Value};

fn digits_request() -> Value {
    json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5; 64]}]})
}

#[test]
fn only_inference_answers_are_compressed() {
    let repo = ScratchRepo::digits("compress");
    let server = TestServer::start(&repo.path);
    let client = reqwest::blocking::Client::new();
    let gzip = |r: reqwest::blocking::RequestBuilder| {
        r.header("accept-encoding", "gzip, deflate")
            .send()
            .expect("request")
    };
    // Metadata, config, statistics, index, health, errors: never compressed, whatever
    // the client accepts (tritonclient.http.aio reads them as plain text).
    for path in [
        "/v2",
        "/v2/models/mlp_digits",
        "/v2/models/mlp_digits/config",
        "/v2/models/mlp_digits/stats",
        "/v2/models/stats",
        "/v2/models/no_such_model",
    ] {
        let r = gzip(client.get(server.url(path)));
        assert!(
            r.headers().get("content-encoding").is_none(),
            "{path} answered compressed"
        );
        let body: Value = r.json().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(body.is_object(), "{path}: {body}");
    }
    let r = gzip(client.post(server.url("/v2/repository/index")).body("{}"));
    assert!(r.headers().get("content-encoding").is_none());
    // An inference error: plain JSON naming the problem.
    let r = gzip(
        client
            .post(server.url("/v2/models/mlp_digits/infer"))
            .json(&json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]})),
    );
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.headers().get("content-encoding").is_none());
    let body: Value = r.json().expect("plain JSON error");
    assert!(
        body["error"].as_str().unwrap_or("").contains("pixels"),
        "{body}"
    );
    // The inference answer is compressed when asked, and plain when not.
    let r = gzip(
        client
            .post(server.url("/v2/models/mlp_digits/infer"))
            .json(&digits_request()),
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let compressed = r.bytes().expect("body");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut text,
    )
    .expect("gunzip");
    let body: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(body["outputs"][0]["name"], "logits");
    let r = client
        .post(server.url("/v2/models/mlp_digits/infer"))
        .json(&digits_request())
        .send()
        .expect("request");
    assert!(r.headers().get("content-encoding").is_none());
}

fn post_raw(server: &TestServer, model: &str, body: Vec<u8>) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(server.url(&format!("/v2/models/{model}/infer")))
        .header("inference-header-content-length", "0")
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .expect("request")
}

#[test]
fn raw_binary_bodies_follow_tritons_rules() {
    let repo = ScratchRepo::digits("raw-binary");
    repo.add("finalmlp_ctr", "ctr", 1, "");
    let server = TestServer::start(&repo.path);
    // The body is the one input's bytes: shape [1, 64] deduced, outputs come back binary.
    let pixels: Vec<u8> = (0..64)
        .flat_map(|i| (i as f32 / 64.0).to_le_bytes())
        .collect();
    let r = post_raw(&server, "mlp_digits", pixels.clone());
    assert_eq!(r.status().as_u16(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("length");
    let body = r.bytes().expect("body");
    let header: Value = serde_json::from_slice(&body[..json_len]).expect("json header");
    assert_eq!(header["outputs"][0]["shape"], json!([1, 10]), "{header}");
    assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 40);
    assert_eq!(body.len() - json_len, 40);
    let raw_logits: Vec<f32> = body[json_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    // The same values as the same input sent as JSON.
    let values: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
    let (status, answer) = server.post_json(
        "/v2/models/mlp_digits/infer",
        &json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": values}]}),
    );
    assert_eq!(status, 200);
    let json_logits: Vec<f32> = answer["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(raw_logits, json_logits);

    // Triton's 400s: a size that is not the input's, a model with several inputs.
    let r = post_raw(&server, "mlp_digits", pixels[..100].to_vec());
    assert_eq!(r.status().as_u16(), 400);
    let error = r.json::<Value>().expect("json")["error"].to_string();
    assert!(
        error.contains("pixels") && error.contains("100 bytes") && error.contains("256"),
        "{error}"
    );
    let r = post_raw(&server, "ctr", vec![0; 64]);
    assert_eq!(r.status().as_u16(), 400);
    let error = r.json::<Value>().expect("json")["error"].to_string();
    assert!(
        error.contains("one input") && error.contains("cat_ids") && error.contains("dense"),
        "{error}"
    );
}

/// Waits (10 ms steps, at most 10 s) until the model has `n` requests admitted.
fn wait_in_flight(server: &TestServer, model: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let needle = format!("mlpserve_inflight_requests{{model=\"{model}\",version=\"1\"}} {n}");
    while Instant::now() < deadline {
        let text = reqwest::blocking::get(server.url("/metrics"))
            .and_then(|r| r.text())
            .unwrap_or_default();
        if text.contains(&needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{model} never had {n} requests in flight");
}

#[test]
fn overload_status_503_answers_a_full_queue_as_triton_does() {
    let repo = ScratchRepo::new("overload-503");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "max_batch_size = 4\nmax_queue_size = 1\nmax_queue_delay_us = 3000000\npreferred_batch_sizes = [4]\n",
    );
    let mut config = ServerConfig::for_tests(&repo.path);
    config.overload_status = OverloadStatus::Unavailable;
    let server = TestServer::start_with(config);
    let url = server.url("/v2/models/digits/infer");
    let waiting = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .json(&digits_request())
            .send()
            .map(|r| r.status().as_u16())
    });
    wait_in_flight(&server, "digits", 1);
    let (status, body) = server.post_json("/v2/models/digits/infer", &digits_request());
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("queue full"),
        "{body}"
    );
    // gRPC: UNAVAILABLE, which Triton's retry policies look for.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let code = rt.block_on(async {
        use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
        use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
        use mlpserve::api::grpc::proto::{InferTensorContents, ModelInferRequest};
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .expect("connect");
        let request = ModelInferRequest {
            model_name: "digits".into(),
            inputs: vec![InferInputTensor {
                name: "pixels".into(),
                datatype: "FP32".into(),
                shape: vec![1, 64],
                contents: Some(InferTensorContents {
                    fp32_contents: vec![0.5; 64],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        client
            .model_infer(request)
            .await
            .expect_err("queue full")
            .code()
    });
    assert_eq!(code, tonic::Code::Unavailable);
    assert_eq!(waiting.join().expect("join").expect("request"), 200);
}

#[test]
fn overload_status_takes_only_429_or_503() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: mlpserve::config::ServerArgs,
    }
    let resolve = |v: &str| {
        ServerConfig::resolve(Cli::parse_from(["mlpserve", "--overload-status", v]).args)
            .map(|c| c.overload_status)
    };
    assert_eq!(resolve("429"), Ok(OverloadStatus::TooManyRequests));
    assert_eq!(resolve("503"), Ok(OverloadStatus::Unavailable));
    let err = resolve("500").unwrap_err().to_string();
    assert!(err.contains("429") && err.contains("503"), "{err}");
    assert_eq!(
        ServerConfig::resolve(Cli::parse_from(["mlpserve"]).args).map(|c| c.overload_status),
        Ok(OverloadStatus::TooManyRequests)
    );
}

#[test]
fn load_overrides_in_protobuf_json_form() {
    let repo = ScratchRepo::digits("pbjson");
    let mut config = ServerConfig::for_tests(&repo.path);
    config.model_control_mode = ControlMode::Explicit;
    let server = TestServer::start_with_unready(config);
    // What Triton's examples send: 64-bit integers as strings, enum names, Triton's keys.
    let override_config = json!({
        "name": "mlp_digits",
        "backend": "onnxruntime",
        "max_batch_size": "16",
        "input": [{"name": "pixels", "data_type": "TYPE_FP32", "dims": ["64"]}],
        "dynamic_batching": {
            "preferred_batch_size": ["8"],
            "max_queue_delay_microseconds": "200",
            "default_queue_policy": {"max_queue_size": "33", "timeout_action": "REJECT"}
        },
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}]
    });
    let (status, body) = server.post_json(
        "/v2/repository/models/mlp_digits/load",
        &json!({"parameters": {"config": override_config.to_string()}}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, config) = server.get_json("/v2/models/mlp_digits/config");
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["max_batch_size"], 16, "{config}");
    let batching = &config["dynamic_batching"];
    assert_eq!(batching["preferred_batch_size"], json!([8]), "{config}");
    assert_eq!(batching["max_queue_delay_microseconds"], 200, "{config}");
    assert_eq!(
        batching["default_queue_policy"]["max_queue_size"], 33,
        "{config}"
    );
    // The config we serve, sent back as an override, loads too.
    let (status, body) = server.post_json(
        "/v2/repository/models/mlp_digits/load",
        &json!({"parameters": {"config": config.to_string()}}),
    );
    assert_eq!(status, 200, "{body}");
    // A wrong enum name is a 400 naming the key.
    let (status, body) = server.post_json(
        "/v2/repository/models/mlp_digits/load",
        &json!({"parameters": {"config": json!({"instance_group": [{"kind": "KIND_TPU"}]}).to_string()}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("instance_group[0].kind"),
        "{body}"
    );
}
