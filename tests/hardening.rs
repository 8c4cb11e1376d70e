//! Hostile and careless clients: every cost a client can make the server pay is
//! bounded before it is paid, and contract holes answer one documented way on both transports.

mod common;
#[path = "grpc/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{expect_error, header_usize, zoo, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
use mlpserve::api::grpc::proto::{InferTensorContents, ModelInferRequest};
use mlpserve::ServerConfig;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use tonic::Code;

/// Series of `mlpserve_http_requests_total` in the exposition.
fn http_series(server: &TestServer) -> Vec<String> {
    let text = Client::new()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("mlpserve_http_requests_total{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn random_methods_and_paths_do_not_grow_the_metric_series() {
    let server = TestServer::start(&zoo());
    let client = Client::new();
    for i in 0..200u32 {
        let method = Method::from_bytes(format!("M{i:x}X").as_bytes()).expect("method token");
        let path = if i % 2 == 0 {
            format!("/no/such/path/{i}")
        } else {
            "/v2/models/mlp_digits/infer".to_string()
        };
        let _ = client
            .request(method, server.url(&path))
            .send()
            .expect("answered");
    }
    let series = http_series(&server);
    assert!(
        series.len() <= 8,
        "200 random methods made {} series: {series:#?}",
        series.len()
    );
    assert!(
        series.iter().any(|s| s.contains(r#"method="other""#)),
        "{series:#?}"
    );
    assert!(
        series.iter().any(|s| s.contains(r#"route="unmatched""#)),
        "{series:#?}"
    );
    assert!(
        series.iter().all(|s| !s.contains("/no/such/path")),
        "raw paths must never become labels: {series:#?}"
    );
}

/// A DIN request (V2 JSON) with a history of `len` items.
fn din_body(len: usize) -> Value {
    json!({"inputs": [
        {"name": "target_item", "datatype": "INT64", "shape": [1], "data": [151]},
        {"name": "hist_items", "datatype": "INT64", "shape": [1, len], "data": vec![265; len]},
        {"name": "hist_mask", "datatype": "FP32", "shape": [1, len], "data": vec![1.0; len]},
    ]})
}

fn din_repo(tag: &str, extra: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    let padding =
        std::fs::read_to_string(zoo().join("din_ctr").join("config.toml")).expect("din config");
    repo.add("din_ctr", "din", 1, &format!("{extra}\n{padding}"));
    repo
}

/// One 100,000-long history queued with 30 short ones: the long one runs alone, the short
/// ones batch together and are never padded to 100,000 (rows per batch show it; no timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_is_never_batched_with_short_ones() {
    // A 1 s delay and room for all 31 rows: the old queue put them in one 31 x 100,000 batch.
    let repo = din_repo(
        "padlong",
        "max_batch_size = 31\nmax_queue_delay_us = 1000000\ninstances = 2",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let url = server.url("/v2/models/din/infer");
    let send = |body: Value| {
        let (c, url) = (client.clone(), url.clone());
        async move {
            let r = c.post(url).json(&body).send().await.expect("request");
            let rows = header_usize(r.headers(), "x-batch-rows");
            (r.status().as_u16(), rows, r.text().await.expect("body"))
        }
    };
    let long = tokio::spawn(send(din_body(100_000)));
    // The long one is queued before the short ones arrive.
    server
        .wait_metric("mlpserve_queue_depth{model=\"din\",version=\"1\"}", |d| {
            d >= 1.0
        })
        .await;
    let short = futures_util::future::join_all((0..30).map(|_| send(din_body(5)))).await;
    let (status, rows, body) = long.await.expect("long request");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rows, 1,
        "the 100,000-long history ran in a batch of {rows} rows"
    );
    for (status, rows, body) in short {
        assert_eq!(status, 200, "{body}");
        assert!(
            rows <= 30,
            "a short request shared a batch of {rows} rows with the long one"
        );
    }
}

#[test]
fn a_history_over_max_pad_length_is_refused_over_http_and_grpc() {
    let repo = din_repo("padcap", "");
    let server = TestServer::start(&repo.path);
    let (status, body) = server.post_json("/v2/models/din/infer", &din_body(200_000));
    assert_eq!(status, 413, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    for needle in ["hist_items", "axis 1", "200000", "max_pad_length", "131072"] {
        assert!(
            message.contains(needle),
            "{message:?} should name {needle:?}"
        );
    }
    let len = 200_000usize;
    let request = ModelInferRequest {
        model_name: "din".into(),
        inputs: vec![
            InferInputTensor {
                name: "target_item".into(),
                datatype: "INT64".into(),
                shape: vec![1],
                contents: Some(InferTensorContents {
                    int64_contents: vec![151],
                    ..Default::default()
                }),
                ..Default::default()
            },
            InferInputTensor {
                name: "hist_items".into(),
                datatype: "INT64".into(),
                shape: vec![1, len as i64],
                contents: Some(InferTensorContents {
                    int64_contents: vec![265; len],
                    ..Default::default()
                }),
                ..Default::default()
            },
            InferInputTensor {
                name: "hist_mask".into(),
                datatype: "FP32".into(),
                shape: vec![1, len as i64],
                contents: Some(InferTensorContents {
                    fp32_contents: vec![1.0; len],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    support::with_client(&server, |mut client| async move {
        support::expect_status(
            client.model_infer(request).await,
            Code::InvalidArgument,
            &["hist_items", "axis 1", "200000", "max_pad_length"],
        );
    });
}

/// Sends raw HTTP/1.1 `head` + `body` on a new connection and leaves it open.
fn raw_request(server: &TestServer, head: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(body).expect("body");
    s
}

fn budget_server(inflight: usize) -> TestServer {
    let mut config = ServerConfig::for_tests(&zoo());
    config.max_inflight_bytes = inflight;
    config.max_body_bytes = inflight;
    TestServer::start_with(config)
}

#[test]
fn bodies_over_the_in_flight_budget_get_503_before_they_are_read() {
    let server = budget_server(1 << 20);
    // Holds 800 KB of the 1 MiB budget: declared, only partly sent.
    let head = |len: usize| {
        format!("POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
    };
    // The server takes a request's bytes when it has read its head, in whatever order the
    // connections are served: a probe may be admitted first (then it waits for its body,
    // so probes give up after a short read timeout) and the holder refused, in which case
    // the holder is opened again.
    let mut holder = raw_request(&server, &head(800_000), b"{");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let mut probe = raw_request(&server, &head(300_000), b"");
        probe
            .set_read_timeout(Some(Duration::from_millis(1000)))
            .expect("timeout");
        let (status, text) = common::read_raw_response(&mut probe);
        if status == 503 {
            let lower = text.to_ascii_lowercase();
            assert!(lower.contains("retry-after: 1"), "{text}");
            assert!(text.contains("--max-inflight-bytes"), "{text}");
            assert!(lower.contains("application/json"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused: {text}"
        );
        drop(probe);
        holder
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let (held, _) = common::read_raw_response(&mut holder);
        if held != 0 {
            holder = raw_request(&server, &head(800_000), b"{");
        }
    }
    // A chunked body is charged as it streams in.
    let mut chunked = raw_request(
        &server,
        "POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        b"",
    );
    let piece = vec![b' '; 100_000];
    for _ in 0..3 {
        let _ = chunked.write_all(format!("{:x}\r\n", piece.len()).as_bytes());
        let _ = chunked.write_all(&piece);
        let _ = chunked.write_all(b"\r\n");
    }
    let _ = chunked.write_all(b"0\r\n\r\n");
    let (status, text) = common::read_raw_response(&mut chunked);
    assert_eq!(status, 503, "{text}");
    // Once the holder is gone its bytes are given back.
    holder.shutdown(std::net::Shutdown::Both).ok();
    drop(holder.write_all(b""));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]});
    loop {
        let (status, answer) = server.post_json("/v2/models/mlp_digits/infer", &body);
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "budget never given back: {status} {answer}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_gzip_bomb_is_refused_by_its_inflated_size() {
    let server = TestServer::start(&zoo());
    // 67 MiB of spaces gzip to about 65 KB; the limit is 64 MiB after inflation.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    for _ in 0..67 {
        gz.write_all(&block).expect("gzip");
    }
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let r = Client::new()
        .post(server.url("/v2/models/mlp_digits/infer"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .expect("answered");
    expect_error(
        (r.status().as_u16(), r.json().expect("JSON error")),
        413,
        &["max-body-bytes"],
    );
}

#[test]
fn unsupported_content_encodings_get_a_counted_415_with_a_json_error() {
    let server = TestServer::start(&zoo());
    for encoding in ["br", "zstd", "x-made-up"] {
        let r = Client::new()
            .post(server.url("/v2/models/mlp_digits/infer"))
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body("{}")
            .send()
            .expect("answered");
        assert_eq!(r.status().as_u16(), 415, "{encoding}");
        let body: Value = r.json().expect("JSON error");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(encoding),
            "{body}"
        );
    }
    let series = http_series(&server);
    assert!(
        series
            .iter()
            .any(|s| s.contains(r#"status="415""#) && s.ends_with(" 3")),
        "{series:#?}"
    );
}
#[test]
fn grpc_messages_over_the_limit_get_the_documented_code() {
    let mut config = ServerConfig::for_tests(&zoo());
    config.max_body_bytes = 100_000;
    let server = TestServer::start_with(config);
    let api_doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md"),
    )
    .expect("docs/api.md");
    let row = api_doc
        .lines()
        .find(|l| l.starts_with("| gRPC message over"))
        .expect("the error table in docs/api.md has a row for over-size gRPC messages")
        .to_string();
    support::with_client(&server, |mut client| async move {
        let status = client
            .model_infer(support::digits(1000))
            .await
            .expect_err("over the limit");
        let code = format!("{:?}", status.code());
        let documented = row.to_uppercase().replace([' ', '_'], "");
        assert!(
            documented.contains(&code.to_uppercase()),
            "got {code} ({}), docs/api.md says: {row}",
            status.message()
        );
    });
}
