//! Operator and API edges: metrics that follow live instances and forget retired versions,
//! the admin token's scheme, loads of absent names, poll mode with a model's last version
//! folder deleted, and the Open Inference Protocol's paths as the spec writes them.

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
    for _ in 0..3 {
        let (status, body) = server.post_json("/v2/repository/models/mlp_digits/load", &json!({}));
        assert_eq!(status, 200, "{body}");
        assert!(metrics(&server).contains(&format!("{series} 1")));
        let (status, body) =
            server.post_json("/v2/repository/models/mlp_digits/unload", &json!({}));
        assert_eq!(status, 200, "{body}");
        wait_until("the unloaded instance leaves the gauge", || {
            !metrics(&server).contains(&format!("{series} 1"))
        });
    }
    let (status, _) = server.post_json("/v2/repository/models/mlp_digits/load", &json!({}));
    assert_eq!(status, 200);
    assert!(metrics(&server).contains(&format!("{series} 1")));
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

#[test]
fn loads_of_absent_names_leave_no_index_entries() {
    let repo = ScratchRepo::digits("absent");
    let server = TestServer::start_with(explicit(&repo));
    for i in 0..20 {
        let (status, body) =
            server.post_json(&format!("/v2/repository/models/ghost{i}/load"), &json!({}));
        assert_eq!(status, 400, "{body}");
    }
    let names: Vec<String> = index(&server)
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["mlp_digits"], "{names:?}");
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
