//! Triton's HTTP extensions end to end: the model configuration and the statistics, read
//! from a real server after real requests.

mod common;

use common::{samples, zoo, ScratchRepo, TestServer};
use serde_json::{json, Value};
use std::time::Instant;

/// `(name, data_type, dims)` of a config's `input` or `output` array.
fn entries(config: &Value, key: &str) -> Vec<(String, String, Value)> {
    config[key]
        .as_array()
        .unwrap_or_else(|| panic!("config has no {key} array: {config}"))
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_string(),
                e["data_type"].as_str().expect("data_type").to_string(),
                e["dims"].clone(),
            )
        })
        .collect()
}

fn owned(list: &[(&str, &str, Value)]) -> Vec<(String, String, Value)> {
    list.iter()
        .map(|(n, t, d)| (n.to_string(), t.to_string(), d.clone()))
        .collect()
}

#[test]
fn config_describes_the_graph_without_the_batch_dim() {
    let server = TestServer::start(&zoo());
    let (status, config) = server.get_json("/v2/models/mlp_digits/config");
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["name"], "mlp_digits");
    assert_eq!(config["platform"], "onnxruntime_onnx");
    assert_eq!(config["backend"], "onnxruntime");
    assert!(
        config["max_batch_size"].as_u64().expect("max_batch_size") > 0,
        "{config}"
    );
    assert_eq!(
        entries(&config, "input"),
        owned(&[("pixels", "TYPE_FP32", json!([64]))])
    );
    assert_eq!(
        entries(&config, "output"),
        owned(&[("logits", "TYPE_FP32", json!([10]))])
    );
    assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");
    assert!(config["dynamic_batching"].is_object(), "{config}");

    let (status, config) = server.get_json("/v2/models/finalmlp_ctr/versions/1/config");
    assert_eq!(status, 200, "{config}");
    assert_eq!(
        entries(&config, "input"),
        owned(&[
            ("cat_ids", "TYPE_INT64", json!([8])),
            ("dense", "TYPE_FP32", json!([4]))
        ])
    );
    assert_eq!(
        entries(&config, "output"),
        owned(&[("click_prob", "TYPE_FP32", json!([1]))])
    );

    // Per-row dims (the graph's shape less the batch axis), stated independently.
    let (_, digits) = server.get_json("/v2/models/mlp_digits/config");
    assert_eq!(
        entries(&digits, "input"),
        owned(&[("pixels", "TYPE_FP32", json!([64]))])
    );
    assert_eq!(
        entries(&digits, "output"),
        owned(&[("logits", "TYPE_FP32", json!([10]))])
    );
    let (_, echo) = server.get_json("/v2/models/dtype_echo/config");
    for (key, prefix) in [("input", "x"), ("output", "y")] {
        let want: Vec<(String, String, Value)> = [
            ("fp32", "FP32"),
            ("fp64", "FP64"),
            ("fp16", "FP16"),
            ("int64", "INT64"),
            ("int32", "INT32"),
            ("int8", "INT8"),
            ("uint8", "UINT8"),
            ("bool", "BOOL"),
        ]
        .iter()
        .map(|(n, t)| (format!("{prefix}_{n}"), format!("TYPE_{t}"), json!([3])))
        .collect();
        assert_eq!(entries(&echo, key), want, "dtype_echo {key}");
    }

    for path in [
        "/v2/models/nope/config",
        "/v2/models/mlp_digits/versions/9/config",
    ] {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
}

#[test]
fn config_reflects_the_model_config_toml() {
    let repo = ScratchRepo::new("triton-config");
    repo.add(
        "mlp_digits",
        "digits",
        3,
        "max_batch_size = 16\ninstances = 2\nmax_queue_delay_us = 500\npreferred_batch_sizes = [4, 8]\nmax_queue_size = 64\ndefault_timeout_ms = 250\n",
    );
    let server = TestServer::start(&repo.path);
    let (status, config) = server.get_json("/v2/models/digits/config");
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["max_batch_size"], 16);
    assert_eq!(
        config["dynamic_batching"],
        json!({
            "preferred_batch_size": [4, 8],
            "max_queue_delay_microseconds": 500,
            "default_queue_policy": {
                "default_timeout_microseconds": 250_000,
                "allow_timeout_override": true,
                "max_queue_size": 64,
            },
        })
    );
    assert_eq!(config["instance_group"][0]["count"], 2);
    assert_eq!(config["instance_group"][0]["kind"], "KIND_CPU");
}

fn inference_stats(stats: &Value, key: &str) -> (u64, u64) {
    let d = &stats["inference_stats"][key];
    (
        d["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}.count in {stats}")),
        d["ns"]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}.ns in {stats}")),
    )
}

/// The value of mlp_digits' series `name` in /metrics, a number of seconds, in ns
/// (rounded down, so it never exceeds what the stats view derives from the same sum).
fn metric_sum_ns(server: &TestServer, name: &str) -> u64 {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    let prefix = format!("{name}{{model=\"mlp_digits\",version=\"1\"}} ");
    let seconds: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .parse()
        .expect("a number");
    (seconds * 1e9) as u64
}

/// The single `model_stats` entry of `path`.
fn only_entry(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.get_json(path);
    assert_eq!(status, 200, "{path}: {body}");
    let list = body["model_stats"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {body}"));
    assert_eq!(list.len(), 1, "{path}: {body}");
    list[0].clone()
}

#[test]
fn stats_count_exactly_the_requests_made() {
    let server = TestServer::start(&zoo());
    let before = only_entry(&server, "/v2/models/mlp_digits/stats");
    assert_eq!(before["name"], "mlp_digits");
    assert_eq!(before["version"], "1");
    assert_eq!(inference_stats(&before, "success"), (0, 0));
    assert_eq!(inference_stats(&before, "fail").0, 0);
    assert_eq!(before["inference_count"], 0);
    assert_eq!(before["execution_count"], 0);

    // Three successful requests of 1, 2 and 3 rows, one after the other (so one run each).
    let sample = &samples("mlp_digits")["samples"][0]["inputs"]["pixels"]["data"];
    let row: Vec<Value> = sample.as_array().expect("data")[..64].to_vec();
    // The client's own clock bounds the server's: each request took at most what the
    // client waited for it.
    let mut client_ns = 0u64;
    for rows in 1..=3usize {
        let data: Vec<Value> = row.iter().cycle().take(64 * rows).cloned().collect();
        let body = json!({"inputs": [{"name": "pixels", "shape": [rows, 64], "datatype": "FP32", "data": data}]});
        let sent = Instant::now();
        let (status, answer) = server.post_json("/v2/models/mlp_digits/infer", &body);
        client_ns += sent.elapsed().as_nanos() as u64;
        assert_eq!(status, 200, "{answer}");
    }
    // Two failures: a shape the graph refuses, and a body that is not a request at all.
    let bad_shape = json!({"inputs": [{"name": "pixels", "shape": [1, 63], "datatype": "FP32", "data": vec![0.0; 63]}]});
    assert_eq!(
        server
            .post_json("/v2/models/mlp_digits/infer", &bad_shape)
            .0,
        400
    );
    assert_eq!(
        server
            .post_json("/v2/models/mlp_digits/infer", &json!({"inputs": "nope"}))
            .0,
        400
    );
    // Requests for other models and unknown models do not count here.
    assert_eq!(server.post_json("/v2/models/nope/infer", &bad_shape).0, 404);

    let after = only_entry(&server, "/v2/models/mlp_digits/versions/1/stats");
    let (success, success_ns) = inference_stats(&after, "success");
    assert_eq!(success, 3, "{after}");
    assert!(success_ns > 0, "{after}");
    assert_eq!(inference_stats(&after, "fail").0, 2, "{after}");
    assert_eq!(after["inference_count"], 6, "rows: {after}");
    assert_eq!(
        after["execution_count"], 3,
        "sequential requests run alone: {after}"
    );
    let (queue, queue_ns) = inference_stats(&after, "queue");
    let (compute, compute_ns) = inference_stats(&after, "compute_infer");
    assert_eq!((queue, compute), (3, 3), "{after}");
    // Each figure against an independent measurement: the client's clock, and the
    // worker's own per-execution histogram in /metrics (each request here ran alone, so
    // its compute time covers its whole execution).
    assert!(
        success_ns <= client_ns,
        "server total {success_ns} ns > client total {client_ns} ns: {after}"
    );
    assert!(queue_ns < success_ns, "{after}");
    let executions_ns = metric_sum_ns(&server, "mlpserve_compute_duration_seconds_sum");
    assert!(executions_ns > 0, "no execution time in /metrics");
    assert!(
        compute_ns >= executions_ns,
        "compute_infer {compute_ns} ns < the executions' {executions_ns} ns: {after}"
    );
    assert!(compute_ns <= success_ns, "{after}");
    assert_eq!(after["batch_stats"], json!([]));

    // The server-wide list names every model once, and agrees with the per-model view.
    let (status, all) = server.get_json("/v2/models/stats");
    assert_eq!(status, 200, "{all}");
    let list = all["model_stats"].as_array().expect("model_stats");
    let names: Vec<&str> = list
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    for name in ["mlp_digits", "finalmlp_ctr", "dtype_echo"] {
        assert_eq!(
            names.iter().filter(|&&n| n == name).count(),
            1,
            "{name} in {names:?}"
        );
    }
    let digits = list
        .iter()
        .find(|s| s["name"] == "mlp_digits")
        .expect("mlp_digits");
    assert_eq!(inference_stats(digits, "success").0, 3);
    let ctr = list
        .iter()
        .find(|s| s["name"] == "finalmlp_ctr")
        .expect("finalmlp_ctr");
    assert_eq!(
        inference_stats(ctr, "success"),
        (0, 0),
        "untouched model: {ctr}"
    );

    for path in [
        "/v2/models/nope/stats",
        "/v2/models/mlp_digits/versions/9/stats",
    ] {
        let (status, body) = server.get_json(path);
        assert_eq!(status, 404, "{path}: {body}");
    }
}
