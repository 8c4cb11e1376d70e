//! Operator and API edges: metrics that follow live instances and forget retired versions,
//! the admin token's scheme, loads of absent names, load failures answered by their cause
//! on both transports, a load's file override aimed through a symbolic link, poll mode with
//! a model's last version folder deleted, and the Open Inference Protocol's paths as the
//! spec writes them.

mod common;

use std::time::{Duration, Instant};

use common::{ScratchRepo, TestServer};
use mlpserve::config::ControlMode;
use mlpserve::ServerConfig;
use serde_json::{json, Value};

fn metrics(server: &TestServer) -> String {
    reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics")
}

fn index(server: &TestServer) -> Vec<Value> {
    let (status, body) = server.post_json("/v2/repository/index", &json!({}));
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("index array").clone()
}

/// Polls `check` in 10 ms steps until it holds (at most 30 s); panics with `what`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn explicit(repo: &ScratchRepo) -> ServerConfig {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.model_control_mode = ControlMode::Explicit;
    config
}

fn poll(repo: &ScratchRepo) -> ServerConfig {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.model_control_mode = ControlMode::Poll;
    config.repository_poll = Duration::from_secs(1);
    config
}

#[test]
fn the_instances_gauge_follows_loads_and_unloads() {
    let repo = ScratchRepo::digits("instances");
    let server = TestServer::start_with(explicit(&repo));
    let series = "mlpserve_model_instances{model=\"mlp_digits\",provider=\"cpu\",version=\"1\"}";
    // The gauge's value, not a substring of the text: "} 1" would also match 10 or 1.5.
    let instances = || common::series_value(&metrics(&server), series);
    for _ in 0..3 {
        let (status, body) = server.post_json("/v2/repository/models/mlp_digits/load", &json!({}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(instances(), Some(1.0));
        let (status, body) =
            server.post_json("/v2/repository/models/mlp_digits/unload", &json!({}));
        assert_eq!(status, 200, "{body}");
        wait_until("the unloaded instance leaves the gauge", || {
            instances().is_none_or(|n| n == 0.0)
        });
    }
    let (status, _) = server.post_json("/v2/repository/models/mlp_digits/load", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(instances(), Some(1.0));
}

#[test]
fn a_retired_version_leaves_no_metric_series() {
    let repo = ScratchRepo::digits("retire");
    let server = TestServer::start_with(poll(&repo));
    let (status, _) = server.post_json(
        "/predict",
        &json!({"model": "mlp_digits", "inputs": [vec![0.5; 64]]}),
    );
    assert_eq!(status, 200);
    let v1 = "model=\"mlp_digits\",version=\"1\"";
    assert!(metrics(&server).contains(v1));
    repo.add("mlp_digits", "mlp_digits", 2, "");
    wait_until("version 1 is retired and its series are gone", || {
        let text = metrics(&server);
        text.contains("model=\"mlp_digits\",version=\"2\"") && !text.contains(v1)
    });
}

#[test]
fn the_admin_token_scheme_is_case_insensitive() {
    let repo = ScratchRepo::digits("admin");
    let mut config = explicit(&repo);
    config.admin_token = Some("s3cret".to_string());
    let server = TestServer::start_with(config);
    let client = reqwest::blocking::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = client
            .post(server.url("/v2/repository/index"))
            .header("authorization", format!("{scheme} s3cret"))
            .json(&json!({}))
            .send()
            .expect("request");
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = client
        .post(server.url("/v2/repository/index"))
        .header("authorization", "bearer wrong")
        .json(&json!({}))
        .send()
        .expect("request");
    assert_eq!(r.status(), 401);
}

/// A version folder that is a symbolic link to a directory outside the repository: the
/// load API's `file:` override into it is refused (400 naming the link) and nothing is
/// written outside.
#[test]
fn a_file_override_is_never_written_through_a_symbolic_link() {
    use base64::Engine;
    let repo = ScratchRepo::digits("override-link");
    let outside = repo.path.with_extension("outside");
    std::fs::create_dir_all(&outside).expect("outside dir");
    std::os::unix::fs::symlink(&outside, repo.path.join("mlp_digits/2")).expect("symlink");
    let server = TestServer::start_with(explicit(&repo));
    let model = std::fs::read(common::zoo().join("mlp_digits/1/model.onnx")).expect("model");
    let load = json!({"parameters": {
        "config": "{}",
        "file:2/model.onnx": base64::engine::general_purpose::STANDARD.encode(model),
    }});
    let (status, body) = server.post_json("/v2/repository/models/mlp_digits/load", &load);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("symbolic link")),
        "{body}"
    );
    let written = std::fs::read_dir(&outside).expect("outside").count();
    let _ = std::fs::remove_dir_all(&outside);
    assert_eq!(written, 0, "a file was written outside the repository");
}

#[test]
fn loads_of_absent_names_leave_no_index_entries() {
    let repo = ScratchRepo::digits("absent");
    let server = TestServer::start_with(explicit(&repo));
    for i in 0..20 {
        let (status, body) =
            server.post_json(&format!("/v2/repository/models/ghost{i}/load"), &json!({}));
        assert_eq!(status, 404, "{body}");
    }
    let names: Vec<String> = index(&server)
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["mlp_digits"], "{names:?}");
}

/// The HTTP status and gRPC code of a load of `name`, and both messages.
fn load_outcome(
    server: &TestServer,
    rt: &tokio::runtime::Runtime,
    name: &str,
) -> ((u16, String), (tonic::Code, String)) {
    use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlpserve::api::grpc::proto::RepositoryModelLoadRequest;

    let (status, body) =
        server.post_json(&format!("/v2/repository/models/{name}/load"), &json!({}));
    let http = (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    );
    let grpc = rt.block_on(async {
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .expect("connect");
        let request = RepositoryModelLoadRequest {
            model_name: name.to_string(),
            ..Default::default()
        };
        match client.repository_model_load(request).await {
            Ok(_) => (tonic::Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_string()),
        }
    });
    (http, grpc)
}

#[test]
fn load_failures_answer_by_their_cause_on_both_transports() {
    let repo = ScratchRepo::digits("load-causes");
    // A version folder without its model.onnx.
    std::fs::create_dir_all(repo.path.join("nofile/1")).expect("dir");
    // ONNX Runtime refuses the graph.
    std::fs::create_dir_all(repo.path.join("broken/1")).expect("dir");
    std::fs::write(repo.path.join("broken/1/model.onnx"), b"not an onnx graph").expect("write");
    // A config value out of its range.
    repo.add("mlp_digits", "slow", 1, "max_batch_latency_ms = 120000\n");
    // CUDA with no fallback: this ONNX Runtime build has none, and a GPU build has no
    // GPU 99 either.
    repo.add(
        "mlp_digits",
        "gpu",
        1,
        "execution_provider = \"cuda\"\nfallback = \"error\"\ndevice_ids = [99]\n",
    );
    let server = TestServer::start_with(explicit(&repo));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cases = [
        ("ghost", 404, tonic::Code::NotFound, "ghost"),
        ("nofile", 400, tonic::Code::InvalidArgument, "model.onnx"),
        ("broken", 400, tonic::Code::InvalidArgument, "version 1"),
        (
            "slow",
            400,
            tonic::Code::InvalidArgument,
            "max_batch_latency_ms",
        ),
        ("gpu", 500, tonic::Code::Internal, "CUDA"),
    ];
    for (name, status, code, needle) in cases {
        let ((http_status, http_message), (grpc_code, grpc_message)) =
            load_outcome(&server, &rt, name);
        assert_eq!(http_status, status, "{name}: {http_message}");
        assert_eq!(grpc_code, code, "{name}: {grpc_message}");
        for message in [&http_message, &grpc_message] {
            assert!(
                message.contains(name) && message.contains(needle),
                "{name}: the message names the model and the cause: {message}"
            );
        }
    }
    // The working model still loads; the index says why the others do not serve.
    assert_eq!(load_outcome(&server, &rt, "mlp_digits").0 .0, 200);
}

#[test]
fn poll_mode_keeps_serving_a_model_whose_last_version_folder_is_deleted() {
    let repo = ScratchRepo::digits("lastversion");
    let server = TestServer::start_with(poll(&repo));
    std::fs::remove_dir_all(repo.path.join("mlp_digits/1")).expect("delete version 1");
    wait_until("the index says why", || {
        index(&server).iter().any(|e| {
            e["state"] == "READY"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("keeps serving: no loadable version"))
        })
    });
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "mlp_digits", "inputs": [vec![0.5; 64]]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get_json("/v2/health/ready").0, 200);
    // Removing the model directory is what unloads it.
    std::fs::remove_dir_all(repo.path.join("mlp_digits")).expect("delete the model");
    wait_until("the model is unloaded", || {
        server.get_json("/v2/models/mlp_digits/ready").0 == 404
    });
}

#[test]
fn every_open_inference_protocol_path_answers_as_the_spec_says() {
    let repo = ScratchRepo::digits("oip");
    let server = TestServer::start(&repo.path);
    for path in ["/v2", "/v2/"] {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["name"], "mlpserve", "{path}: {body}");
        assert!(body["extensions"].is_array(), "{path}: {body}");
    }
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/mlp_digits/ready",
        "/v2/models/mlp_digits/versions/1/ready",
    ] {
        assert_eq!(server.get_json(path).0, 200, "{path}");
    }
    for path in ["/v2/models/mlp_digits", "/v2/models/mlp_digits/versions/1"] {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["name"], "mlp_digits", "{path}: {body}");
        assert!(
            body["inputs"].is_array() && body["outputs"].is_array(),
            "{body}"
        );
    }
    let input = |body: &Value| body["inputs"][0]["name"].as_str().unwrap_or("").to_string();
    let name = input(&server.get_json("/v2/models/mlp_digits").1);
    let request = json!({"inputs": [{"name": name, "shape": [1, 64], "datatype": "FP32", "data": vec![0.5; 64]}]});
    for path in [
        "/v2/models/mlp_digits/infer",
        "/v2/models/mlp_digits/versions/1/infer",
    ] {
        let (status, body) = server.post_json(path, &request);
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["model_name"], "mlp_digits", "{body}");
        assert!(body["outputs"].is_array(), "{body}");
    }
}
