//! The refusal counter: each source (an HTTP body, a gRPC message, a request's ONNX
//! Runtime working memory) and each refusal (never fits, not now) has its own series.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use tonic::Code;

use super::{common, support, Process};

/// `mlpserve_inflight_refusals_total{refusal, source}` now, 0 when absent.
fn refusals(server: &Process, source: &str, refusal: &str) -> f64 {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .expect("metrics")
        .text()
        .expect("text");
    let series =
        format!("mlpserve_inflight_refusals_total{{refusal=\"{refusal}\",source=\"{source}\"}}");
    common::series_value(&text, &series).unwrap_or(0.0)
}

/// A DIN request of one row with a history of `length` items, as JSON.
fn din_row(length: usize) -> serde_json::Value {
    serde_json::json!({"inputs": [
        {"name": "target_item", "datatype": "INT64", "shape": [1], "data": [151]},
        {"name": "hist_items", "datatype": "INT64", "shape": [1, length], "data": vec![265; length]},
        {"name": "hist_mask", "datatype": "FP32", "shape": [1, length], "data": vec![1.0; length]},
    ]})
}

/// Each source (an HTTP body, a gRPC message, a request's ONNX Runtime working memory) and
/// each refusal (never fits, not now) moves its own series of the refusal counter by one,
/// and no other.
#[test]
fn every_refusal_is_counted_by_its_source_and_kind() {
    let repo = common::ScratchRepo::new("refusals");
    // DIN's histories pad to a power of two, here up to 2^20 items.
    let din_config = "[inputs.hist_items]\npad_axes = [1]\nmax_pad_length = 1048576\n\
        [inputs.hist_mask]\npad_axes = [1]\nmax_pad_length = 1048576\n";
    repo.add("din_ctr", "din_ctr", 1, din_config);
    repo.add("mlp_digits", "mlp_digits", 1, "");
    // 96 MiB: DIN needs 500-800 bytes of working memory per padded element here (measured
    // at load; 64 when it cannot be measured), so one row of 2^20 items never fits.
    // Its own process: the bytes per element are measured with no other test's server
    // allocating in the same process.
    let server = Process::start_on(
        &repo.path,
        &[
            "--max-inflight-bytes",
            &(96usize << 20).to_string(),
            "--max-body-bytes",
            &(96usize << 20).to_string(),
        ],
    );
    let series = [
        ("http", "never_fits"),
        ("http", "not_now"),
        ("grpc", "never_fits"),
        ("grpc", "not_now"),
        ("working_memory", "never_fits"),
        ("working_memory", "not_now"),
    ];
    let counts = |server: &Process| series.map(|(s, r)| refusals(server, s, r));
    let expect = |server: &Process, moved: &[(&str, &str)]| {
        let got = counts(server);
        for ((source, refusal), n) in series.iter().zip(got) {
            let want = moved.iter().filter(|m| **m == (*source, *refusal)).count() as f64;
            assert_eq!(n, want, "{source} {refusal}: {got:?} after {moved:?}");
        }
    };
    expect(&server, &[]);
    let mut moved = Vec::new();

    // An HTTP body larger than the whole budget.
    let mut s = TcpStream::connect(server.http).expect("connect");
    let head = format!("POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{", 97 << 20);
    s.write_all(head.as_bytes()).expect("head");
    assert_eq!(common::read_raw_response(&mut s).0, 413);
    moved.push(("http", "never_fits"));
    expect(&server, &moved);

    // A request whose working memory can never fit (its body and tensors do).
    let (status, body) = server.post_json("/v2/models/din_ctr/infer", &din_row(1 << 20));
    assert_eq!(status, 413, "{body}");
    // Its estimate, over its padded elements: the measured bytes per element.
    let message = body["error"].as_str().expect("error");
    let number_before = |marker: &str| -> f64 {
        let head = &message[..message.find(marker).expect(marker)];
        let digits = head.trim_end().rsplit(' ').next().expect("number");
        digits.parse().expect("number")
    };
    let per_element = number_before(" bytes of ONNX Runtime") / number_before(" padded elements");
    moved.push(("working_memory", "never_fits"));
    expect(&server, &moved);

    // A gRPC message declared larger than the whole budget.
    server.grpc_call(|client| async move {
        let status = client
            .max_encoding_message_size(128 << 20)
            .model_infer(support::digits(400_000))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    });
    moved.push(("grpc", "never_fits"));
    expect(&server, &moved);

    // 80 MiB held by an HTTP body that is not sent: 16 MiB are left. The server asks for
    // the body (100 Continue) only once admission took its bytes.
    let mut holder = TcpStream::connect(server.http).expect("connect");
    let head = format!("POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n", 80 << 20);
    holder.write_all(head.as_bytes()).expect("head");
    let mut interim = BufReader::new(holder.try_clone().expect("clone"));
    let mut status = String::new();
    interim.read_line(&mut status).expect("interim answer");
    assert!(status.starts_with("HTTP/1.1 100"), "{status}");

    // 17 MiB of body do not fit now.
    let r = reqwest::blocking::Client::new()
        .post(server.url("/v2/models/mlp_digits/infer"))
        .header("content-type", "application/json")
        .body(vec![b' '; 17 << 20])
        .send()
        .expect("answered");
    assert_eq!(r.status().as_u16(), 503);
    moved.push(("http", "not_now"));
    expect(&server, &moved);

    // A history (padded to a power of two) whose working memory is charged (over 32 MiB)
    // and fits the budget alone: its body and tensors (under 10 MB) fit the 16 MiB left,
    // its working memory does not.
    let estimate = |length: usize| (2 * length + 1) as f64 * per_element;
    let length = (10..=20)
        .map(|p| 1usize << p)
        .find(|&l| estimate(l) > (36 << 20) as f64 && estimate(l) < (90 << 20) as f64)
        .unwrap_or_else(|| panic!("no history fits {per_element} bytes per element"));
    let (status, body) = server.post_json("/v2/models/din_ctr/infer", &din_row(length));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("working memory"),
        "{body}"
    );
    moved.push(("working_memory", "not_now"));
    expect(&server, &moved);

    // 17.9 MB of gRPC message do not fit the 16 MiB left now.
    server.grpc_call(|client| async move {
        let status = client
            .max_encoding_message_size(128 << 20)
            .model_infer(support::digits(70_000))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    });
    moved.push(("grpc", "not_now"));
    expect(&server, &moved);
    drop(holder);
}
