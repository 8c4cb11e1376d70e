//! ONNX Runtime's working memory for long padded inputs is measured per padded element at
//! load and bounded everywhere: admission charges a request's estimate to the in-flight
//! budget (413 naming the estimate when even one batch of it can never fit), batches are
//! cut by estimated peak (a long request is split by rows), the inline gate counts padded
//! elements rather than rows, and the arena gives a large run's peak back. DIN's attention
//! over a long history needs ~500 bytes per padded element. Memory is read from the server
//! process from outside (`/proc/PID/status`).

mod common;

use std::io::{BufRead, BufReader};

use common::{memory_mib, serve_command, spawn_http, zoo, Binary, ScratchRepo, TestServer};
use mlpserve::ServerConfig;
use serde_json::{json, Value};

/// A repository with DIN (its committed config: both history inputs pad axis 1).
fn din_repo(tag: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    let config =
        std::fs::read_to_string(zoo().join("din_ctr").join("config.toml")).expect("din config");
    repo.add("din_ctr", "din_ctr", 1, &config);
    repo
}

/// A DIN request of `rows` rows, each with a history of `length` items.
fn din(rows: usize, length: usize) -> Value {
    json!({"inputs": [
        {"name": "target_item", "datatype": "INT64", "shape": [rows], "data": vec![151; rows]},
        {"name": "hist_items", "datatype": "INT64", "shape": [rows, length], "data": vec![265; rows * length]},
        {"name": "hist_mask", "datatype": "FP32", "shape": [rows, length], "data": vec![1.0; rows * length]},
    ]})
}

fn server(repo: &ScratchRepo, inflight: usize) -> TestServer {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.max_inflight_bytes = inflight;
    config.max_body_bytes = 16 << 20;
    TestServer::start_with(config)
}

#[test]
fn a_request_whose_working_memory_can_never_fit_is_413_naming_the_estimate() {
    let repo = din_repo("work-never");
    // 48 MiB: a 1.2 MB body fits easily, but one row of 131,072 history items needs
    // ~262k padded elements x ~500 bytes = ~130 MB inside ONNX Runtime.
    let server = server(&repo, 48 << 20);
    common::expect_error(
        server.post_json("/v2/models/din_ctr/infer", &din(1, 131_072)),
        413,
        &[
            "working memory",
            "262145 padded elements",
            "--max-inflight-bytes",
            "50331648",
        ],
    );
    // A short history fits and is answered.
    let (status, body) = server.post_json("/v2/models/din_ctr/infer", &din(1, 64));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_request_over_a_batch_of_working_memory_is_split_by_rows() {
    let repo = din_repo("work-split");
    // 256 MiB budget: one batch may hold a quarter, 64 MiB of estimated working memory,
    // while 16 rows of 16,384 items need ~16 x 16 MB.
    let server = server(&repo, 256 << 20);
    let r = reqwest::blocking::Client::new()
        .post(server.url("/v2/models/din_ctr/infer"))
        .json(&din(16, 16_384))
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let batch_rows = common::header_usize(r.headers(), "x-batch-rows");
    let body: Value = r.json().expect("json");
    assert_eq!(body["outputs"][0]["shape"][0], 16, "{body}");
    assert!(
        (1..=8).contains(&batch_rows),
        "a batch held {batch_rows} of 16 rows: not cut by its estimated working memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inline_gate_counts_padded_elements_not_rows() {
    let repo = din_repo("work-inline");
    let server = tokio::task::spawn_blocking(move || (server(&repo, 1 << 30), repo))
        .await
        .expect("start");
    let (server, _repo) = server;
    let series = "mlpserve_inline_executions_total{model=\"din_ctr\",version=\"1\"}";
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = server.url("/v2/models/din_ctr/infer");
        async move {
            let r = client.post(url).json(&body).send().await.expect("request");
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    // One short row alone in the server runs inline.
    post(din(1, 8)).await;
    let inline = server.wait_metric(series, |v| v >= 1.0).await;
    // One row of 65,536 history items is one row too, but runs for many milliseconds: it
    // must go to a worker thread, not block an async thread.
    post(din(1, 65_536)).await;
    let text = server.metrics_text().await;
    assert_eq!(
        common::series_value(&text, series),
        Some(inline),
        "the long row ran inline"
    );
}

#[test]
fn a_large_run_gives_its_working_memory_back() {
    let repo = din_repo("work-shrink");
    let (server, http) = spawn_http(
        &repo.path,
        &["--max-inflight-bytes", &(2usize << 30).to_string()],
    );
    let (before, _) = memory_mib(server.0.id());
    // 8 rows of 32,768 items: ~524k padded elements, ~260 MB inside ONNX Runtime.
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{http}/v2/models/din_ctr/infer"))
        .json(&din(8, 32_768))
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let (after, peak) = memory_mib(server.0.id());
    assert!(
        peak >= before + 150,
        "the run should have needed memory: {before} MiB -> peak {peak} MiB"
    );
    assert!(
        after <= before + 100,
        "ONNX Runtime kept the run's peak: {before} MiB before, peak {peak}, {after} MiB after"
    );
}

/// A model with nothing to measure at load (fixed `max_batch_size`, `inline_run_us = 0`,
/// fixed input shapes) builds no throwaway calibration session; one with a dynamic
/// history axis does, to measure its working memory.
#[test]
fn the_throwaway_session_is_built_only_when_something_is_measured() {
    let repo = din_repo("work-skip");
    repo.add(
        "mlp_digits",
        "fixed",
        1,
        "max_batch_size = 64\ninline_run_us = 0\n",
    );
    let mut child = serve_command(&repo.path)
        .args(["--log-level", "mlpserve=debug"])
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let _binary = Binary(child);
    let (mut skipped, mut measured) = (Vec::new(), Vec::new());
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        let message = v["message"].as_str().unwrap_or_default();
        let model = v["model"].as_str().unwrap_or_default().to_string();
        if message.starts_with("no throwaway calibration session") {
            skipped.push(model);
        } else if message.starts_with("measured on a throwaway session") {
            measured.push(model);
        }
        if line.contains("HTTP listening") {
            break;
        }
    }
    assert_eq!(skipped, vec!["fixed".to_string()]);
    assert_eq!(measured, vec!["din_ctr".to_string()]);
}
