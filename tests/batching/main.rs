//! Dynamic batching through the real server: requests merge into batches and each gets its
//! own rows back, variable-length inputs pad without changing results, large requests split
//! and reassemble, full queues answer 429 at once, deadlines answer 504, abandoned requests
//! never run, requests queued behind a busy instance each get their own rows or expire
//! there (504). Long `max_queue_delay`s make the batch composition deterministic. The
//! inline path of lone requests is in `inline.rs`, requests behind a busy instance in
//! `busy.rs`.

#[path = "../common/mod.rs"]
mod common;

mod busy;
mod inline;

use std::time::{Duration, Instant};

use common::{assert_close, flatten, header_usize, samples, zoo, ScratchRepo, TestServer};
use mlpserve::config::ServerConfig;
use serde_json::{json, Value};

/// Every reference row of mlp_digits as (pixels, logits).
fn digit_rows() -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut rows = Vec::new();
    for s in samples("mlp_digits")["samples"]
        .as_array()
        .expect("samples")
    {
        let px = s["inputs"]["pixels"]["data"]
            .as_array()
            .expect("data")
            .clone();
        let lg = s["outputs"]["logits"]["data"]
            .as_array()
            .expect("data")
            .clone();
        for (p, l) in px.chunks(64).zip(lg.chunks(10)) {
            rows.push((p.to_vec(), l.to_vec()));
        }
    }
    rows
}

async fn predict(
    client: &reqwest::Client,
    server: &TestServer,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client
        .post(server.url("/predict"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// Sends each of `rows` as its own /predict request, all at once; every answer must be 200,
/// from a run of `batch_rows` rows, with its own row's logits.
async fn predict_each_at_once(
    client: &reqwest::Client,
    server: &TestServer,
    rows: &[&(Vec<Value>, Vec<Value>)],
    batch_rows: usize,
) {
    let calls = rows
        .iter()
        .map(|(px, _)| predict(client, server, json!({"model": "digits", "inputs": [px]})));
    let answers = futures_util::future::join_all(calls).await;
    for ((status, headers, body), (_, want)) in answers.iter().zip(rows) {
        assert_own_row(*status, body, want, "own row");
        assert_eq!(
            header_usize(headers, "x-batch-rows"),
            batch_rows,
            "requests ran in batches of {batch_rows} rows"
        );
    }
}

/// A 200 answer with the logits of the request's own row.
fn assert_own_row(status: u16, body: &Value, want: &[Value], context: &str) {
    assert_eq!(status, 200, "{context}: {body}");
    assert_close(
        &flatten(&body["outputs"]["logits"]),
        want,
        1e-4,
        1e-5,
        context,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_form_one_batch_and_get_their_own_rows() {
    let rows = digit_rows();
    let n = rows.len();
    assert!(n >= 4, "need several reference rows");
    let repo = ScratchRepo::new("merge");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        &format!("max_batch_size = {n}\nmax_queue_delay_us = 5000000\n"),
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let started = Instant::now();
    predict_each_at_once(&client, &server, &rows.iter().collect::<Vec<_>>(), n).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a full batch is sent without waiting out the delay"
    );
    assert_eq!(
        metric(&server, "mlpserve_executions_total").await,
        1.0,
        "all {n} requests ran as one batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_split_into_chunks_and_reassemble_in_order() {
    let rows = digit_rows();
    let repo = ScratchRepo::new("split");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "max_batch_size = 3\ninstances = 2\nmax_request_rows = 12\n",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let take = rows.len().min(11);
    let pixels: Vec<Value> = rows[..take]
        .iter()
        .map(|(p, _)| Value::Array(p.clone()))
        .collect();
    let (status, _, body) = predict(
        &client,
        &server,
        json!({"model": "digits", "inputs": pixels}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let want: Vec<Value> = rows[..take].iter().flat_map(|(_, l)| l.clone()).collect();
    assert_close(
        &flatten(&body["outputs"]["logits"]),
        &want,
        1e-4,
        1e-5,
        "reassembled rows",
    );

    let too_many: Vec<Value> = (0..13).map(|_| json!(vec![0.0; 64])).collect();
    let (status, _, body) = predict(
        &client,
        &server,
        json!({"model": "digits", "inputs": too_many}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("max_request_rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once_and_admitted_requests_complete() {
    let repo = ScratchRepo::new("overload");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "max_queue_size = 2\nmax_queue_delay_us = 1500000\n",
    );
    repo.add("mlp_digits", "other", 1, "");
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let body = json!({"model": "digits", "inputs": [vec![0.0; 64]]});
    let first = tokio::spawn({
        let (c, url, b) = (client.clone(), server.url("/predict"), body.clone());
        async move { futures_util::future::join_all((0..2).map(|_| c.post(&url).json(&b).send())).await }
    });
    server
        .wait_metric(&series("mlpserve_queue_depth"), |d| d >= 2.0)
        .await;
    let started = Instant::now();
    let refused = client
        .post(server.url("/predict"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 429);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused at once, not queued"
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    let message = refused.json::<Value>().await.expect("json")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("digits") && message.contains("queue full"),
        "{message}"
    );
    // Another model is not slowed by the full one.
    let (status, _, _) = predict(
        &client,
        &server,
        json!({"model": "other", "inputs": [vec![0.0; 64]]}),
    )
    .await;
    assert_eq!(status, 200);
    for r in first.await.expect("join") {
        assert_eq!(
            r.expect("request").status().as_u16(),
            200,
            "admitted requests complete"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_that_pass_in_the_queue_answer_504_without_running() {
    let repo = ScratchRepo::new("deadline");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "default_timeout_ms = 100\nmax_queue_delay_us = 3000000\n",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, _, body) = predict(
        &client,
        &server,
        json!({"model": "digits", "inputs": [vec![0.0; 64]]}),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline, not after the delay"
    );
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("timed out"));
    // Per-request override: V2 `timeout` parameter in microseconds.
    let v2 = json!({"parameters": {"timeout": 50000}, "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 64]}]});
    let r = client
        .post(server.url("/v2/models/digits/infer"))
        .json(&v2)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 504);
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains(
            "mlpserve_requests_total{model=\"digits\",outcome=\"timeout\",version=\"1\"} 2"
        ),
        "{metrics}"
    );
    let executions = metrics
        .lines()
        .find(|l| l.starts_with("mlpserve_executions_total{model=\"digits\",version=\"1\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().expect("a number"));
    assert_eq!(
        executions,
        Some(0.0),
        "expired requests never run: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_are_dropped_before_running() {
    let repo = ScratchRepo::new("abandon");
    repo.add("mlp_digits", "digits", 1, "max_queue_delay_us = 1000000\n");
    let server = TestServer::start(&repo.path);
    let body = json!({"model": "digits", "inputs": [vec![0.0; 64]]});
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    assert!(
        impatient
            .post(server.url("/predict"))
            .json(&body)
            .send()
            .await
            .is_err(),
        "client gave up"
    );
    // The server has seen the client leave once it closed that connection: then only the
    // scrape's own connection is open.
    server
        .wait_metric("mlpserve_connections_open", |open| open == 1.0)
        .await;
    let (status, headers, _) = predict(&reqwest::Client::new(), &server, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        header_usize(&headers, "x-batch-rows"),
        1,
        "the abandoned request did not join the batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variable_length_histories_pad_without_changing_results() {
    let din = samples("din_ctr");
    let list = din["samples"].as_array().expect("samples").clone();
    let n = list.len();
    let repo = ScratchRepo::new("pad");
    let padding =
        std::fs::read_to_string(zoo().join("din_ctr").join("config.toml")).expect("din config");
    repo.add(
        "din_ctr",
        "din",
        1,
        &format!("max_batch_size = {n}\nmax_queue_delay_us = 5000000\n{padding}"),
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let calls = list.iter().map(|s| {
        let inputs: Vec<Value> = s["inputs"]
            .as_object()
            .expect("inputs")
            .iter()
            .map(|(k, t)| json!({"name": k, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}))
            .collect();
        let c = client.clone();
        let url = server.url("/v2/models/din/infer");
        async move {
            let r = c.post(url).json(&json!({"inputs": inputs})).send().await.expect("request");
            (r.status().as_u16(), header_usize(r.headers(), "x-batch-rows"), r.json::<Value>().await.expect("json"))
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for ((status, batch_rows, body), s) in answers.iter().zip(&list) {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            *batch_rows, n,
            "histories of different lengths ran as one padded batch"
        );
        for (name, want) in s["outputs"].as_object().expect("outputs") {
            let got = body["outputs"]
                .as_array()
                .expect("outputs")
                .iter()
                .find(|o| o["name"] == *name)
                .expect("output");
            assert_close(
                &flatten(&got["data"]),
                &flatten(&want["data"]),
                1e-4,
                1e-5,
                name,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onnx_runtime_failure_fails_only_its_batch() {
    let repo = ScratchRepo::new("fail");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gather_fail/1/model.onnx");
    repo.add_file(
        &fixture,
        "gather",
        1,
        "max_batch_size = 3\nmax_queue_delay_us = 5000000\n",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let run = |indices: [i64; 3]| {
        futures_util::future::join_all(
            indices.map(|i| predict(&client, &server, json!({"model": "gather", "inputs": [i]}))),
        )
    };
    // Index 99 is out of the table's range: ORT fails the whole batch it is in.
    for (status, headers, body) in run([0, 99, 1]).await {
        assert_eq!(status, 500, "{body}");
        assert_eq!(header_usize(&headers, "x-batch-rows"), 0);
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("failed to run"),
            "{body}"
        );
    }
    // The next batch is unaffected, and every request gets its own row.
    let answers = run([2, 0, 3]).await;
    let got: Vec<Value> = answers
        .iter()
        .map(|(s, _, b)| {
            assert_eq!(*s, 200, "{b}");
            b["outputs"]["y"][0].clone()
        })
        .collect();
    assert_eq!(got, vec![json!(30.0), json!(10.0), json!(40.0)]);
}

/// The value of a model's series `name` in the server's /metrics text.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.metrics_text().await;
    let series = series(name);
    common::series_value(&text, &series).unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// Metric `name`'s series for model `digits` version 1.
fn series(name: &str) -> String {
    format!("{name}{{model=\"digits\",version=\"1\"}}")
}
