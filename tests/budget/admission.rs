//! What the budget admits and refuses, path by path: HTTP bodies, gRPC messages and
//! streams share it; what can never fit is refused at once as too large, what could fit
//! later as unavailable now, and what is given back serves the next request.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mlpserve::api::grpc::proto::ModelStreamInferResponse;
use tonic::Code;

use super::{budget_server, common, hold, ones_json, support};

#[test]
fn a_content_length_larger_than_the_whole_budget_is_413_at_once() {
    let server = budget_server(1 << 20, 8 << 20);
    let mut s = hold(&server, 2 << 20);
    let (status, text) = common::read_raw_response(&mut s);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--max-inflight-bytes"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("retry-after"),
        "it can never fit: {text}"
    );
}

#[test]
fn grpc_messages_draw_from_the_budget_http_bodies_hold() {
    // 2 MiB budget; HTTP holds 1.5 MiB, so a 640 KB gRPC message must wait.
    let server = budget_server(2 << 20, 8 << 20);
    let holder = hold(&server, 1_500_000);
    support::with_client(&server, |mut client| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        let refused = loop {
            match client.model_infer(support::digits(2500)).await {
                Err(status) if status.code() == Code::Unavailable => break status,
                other => {
                    // The holder's head may not have been read yet.
                    assert!(other.is_ok(), "only OK or UNAVAILABLE expected: {other:?}");
                    assert!(Instant::now() < deadline, "never refused");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        assert!(
            refused.message().contains("--max-inflight-bytes"),
            "{refused:?}"
        );
        // 2.56 MB can never fit a 2 MiB budget, whatever else is in flight.
        support::expect_status(
            client.model_infer(support::digits(10_000)).await,
            Code::ResourceExhausted,
            &["--max-inflight-bytes", "2097152"],
        );
        // Once the HTTP body is gone its bytes are given back to gRPC too: a message of
        // 0.9 MB and its decoded tensors (as many bytes) fit.
        drop(holder);
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(status) = client.model_infer(support::digits(3500)).await {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(Instant::now() < deadline, "budget never given back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[test]
fn a_stream_holds_a_bounded_share_and_is_refused_what_never_fits() {
    // 2 MiB budget: a stream holds at most 1 MiB (plus the message being read) at once, so
    // twelve 512 KB messages (6 MB) are all answered, in order.
    let server = budget_server(2 << 20, 8 << 20);
    support::with_client(&server, |mut client| async move {
        let requests = (0..12).map(|i| {
            let mut r = support::digits(2000);
            r.id = i.to_string();
            r
        });
        let mut answers = client
            .model_stream_infer(futures_util::stream::iter(requests))
            .await
            .expect("stream")
            .into_inner();
        let mut got = Vec::new();
        while let Some(answer) = answers.message().await.expect("no stream error") {
            let ModelStreamInferResponse {
                error_message,
                infer_response,
            } = answer;
            assert_eq!(error_message, "");
            got.push(infer_response.expect("response").id);
        }
        let want: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        // A stream message larger than the whole budget ends the stream with
        // RESOURCE_EXHAUSTED naming the limit.
        let mut answers = client
            .model_stream_infer(futures_util::stream::iter(vec![support::digits(10_000)]))
            .await
            .expect("stream")
            .into_inner();
        let status = match answers.message().await {
            Ok(Some(a)) => panic!("answered: {}", a.error_message),
            Ok(None) => None,
            Err(s) => Some(s),
        };
        support::expect_status::<()>(
            Err(status.expect("the stream ends with a status")),
            Code::ResourceExhausted,
            &["--max-inflight-bytes"],
        );
        // Nothing stayed charged: a message of 0.95 MB and its decoded tensors (1.9 MB
        // together) fit again.
        client
            .model_infer(support::digits(3700))
            .await
            .expect("the whole budget is free");
    });
}

/// A client that writes its whole body before reading (Python's http.client does) gets the
/// refusal, not a connection reset under its writes: the server reads and drops the body
/// of a request it refuses before answering.
#[test]
fn a_refused_body_is_read_so_a_client_writing_it_all_sees_the_answer() {
    let server = budget_server(1 << 20, 1 << 20);
    let mut s = TcpStream::connect(server.http).expect("connect");
    let len = 16 << 20;
    let head = format!("POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("head");
    let written = s.write_all(&vec![b' '; len]);
    assert!(
        written.is_ok(),
        "the server closed the connection under the body: {written:?}"
    );
    let (status, text) = common::read_raw_response(&mut s);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--max-inflight-bytes"), "{text}");
}

/// A body that fits the budget alone but not beside its decoded tensors can never be
/// admitted: 413 over HTTP, RESOURCE_EXHAUSTED over gRPC, naming the limit.
#[test]
fn a_request_whose_decoded_tensors_never_fit_beside_its_body_is_refused_as_too_large() {
    let server = budget_server(1 << 20, 1 << 20);
    // 640 KB of `1,` decode to 1.28 MB of FP32.
    let rows = 5000;
    let body = format!(
        r#"{{"inputs": [{{"name": "pixels", "shape": [{rows}, 64], "datatype": "FP32", "data": {}}}]}}"#,
        ones_json(rows, false)
    );
    assert!(body.len() < 1 << 20);
    let answer = reqwest::blocking::Client::new()
        .post(server.url("/v2/models/mlp_digits/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("answered");
    let status = answer.status().as_u16();
    let text = answer.text().expect("text");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("--max-inflight-bytes"), "{text}");
    support::with_client(&server, |mut client| async move {
        // 640 KB of raw FP32, as many once decoded.
        support::expect_status(
            client.model_infer(support::digits(2500)).await,
            Code::ResourceExhausted,
            &["--max-inflight-bytes", "1048576"],
        );
        // Half of that fits, message and tensors.
        client
            .model_infer(support::digits(1200))
            .await
            .expect("fits");
    });
}
