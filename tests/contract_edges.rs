//! Contract edges: inputs at the edge of the protocol — out-of-range floats,
//! non-finite outputs, ambiguous tensors, empty path segments, odd request ids, zero
//! timeouts — and operator mistakes (a port in use, shutdown with a delay) answer one
//! documented way on both transports.

mod common;
#[path = "grpc/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::Duration;

use common::{expect_error, zoo, TestServer};
use mlpserve::api::grpc::proto::InferTensorContents;
use mlpserve::ServerConfig;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use tonic::Code;

#[tokio::test]
async fn a_port_in_use_is_named_with_its_address_and_role() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut config = ServerConfig::for_tests(&zoo());
    config.http_port = port;
    let err = mlpserve::Listeners::bind(&config)
        .await
        .err()
        .expect("the port is taken")
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("HTTP port (--http-port)"), "{err}");
    config.http_port = 0;
    config.grpc_port = port;
    let err = mlpserve::Listeners::bind(&config)
        .await
        .err()
        .expect("the port is taken")
        .to_string();
    assert!(
        err.contains("gRPC port (--grpc-port)") && err.contains(&port.to_string()),
        "{err}"
    );
}

/// A `dtype_echo` request with one value per datatype row; `fp32`/`fp16` are JSON numbers.
fn echo_body(fp32: f64, fp16: f64) -> Value {
    let row = |dt: &str, v: Value| json!({"name": format!("x_{}", dt.to_lowercase()), "datatype": dt, "shape": [1, 3], "data": [v.clone(), v.clone(), v]});
    json!({"inputs": [
        row("FP32", json!(fp32)), row("FP64", json!(1.0)), row("FP16", json!(fp16)),
        row("INT64", json!(1)), row("INT32", json!(1)), row("INT8", json!(1)),
        row("UINT8", json!(1)), row("BOOL", json!(true)),
    ]})
}

fn digits_body(value: f64) -> Value {
    json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![value; 64]}]})
}

#[test]
fn floats_out_of_their_datatypes_range_are_refused_naming_the_input() {
    let server = TestServer::start(&zoo());
    expect_error(
        server.post_json("/v2/models/dtype_echo/infer", &echo_body(1e39, 1.0)),
        400,
        &["'x_fp32'"],
    );
    expect_error(
        server.post_json("/v2/models/dtype_echo/infer", &echo_body(1.0, 70000.0)),
        400,
        &["'x_fp16'"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &json!({"model": "mlp_digits", "inputs": [vec![1e39; 64]]}),
        ),
        400,
        &["'pixels'"],
    );
    // gRPC: the same rule for an infinity sent as typed contents.
    let mut request = support::digits(1);
    request.raw_input_contents.clear();
    request.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: vec![f32::INFINITY; 64],
        ..Default::default()
    });
    support::with_client(&server, |mut client| async move {
        support::expect_status(
            client.model_infer(request).await,
            Code::InvalidArgument,
            &["'pixels'", "finite"],
        );
    });
}

#[test]
fn non_finite_outputs_are_an_error_in_json_and_carried_as_is_in_binary_and_grpc() {
    let server = TestServer::start(&zoo());
    // Pixels near FP32's maximum overflow the logits to infinities/NaN.
    expect_error(
        server.post_json("/v2/models/mlp_digits/infer", &digits_body(3.0e38)),
        500,
        &["output 'logits'", "binary"],
    );
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "mlp_digits", "inputs": [vec![3.0e38; 64]]}),
    );
    assert_eq!(status, 500, "{body}");
    // Binary output: 200, the values as they are.
    let mut request = digits_body(3.0e38);
    request["parameters"] = json!({"binary_data_output": true});
    let r = Client::new()
        .post(server.url("/v2/models/mlp_digits/infer"))
        .json(&request)
        .send()
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().expect("body");
    let logits: Vec<f32> = bytes[json_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(logits.len(), 10);
    assert!(logits.iter().any(|x| !x.is_finite()), "{logits:?}");
    let mut grpc = support::digits(1);
    grpc.raw_input_contents = vec![3.0e38f32.to_le_bytes().repeat(64).into()];
    support::with_client(&server, |mut client| async move {
        let response = client
            .model_infer(grpc)
            .await
            .expect("gRPC carries non-finite outputs")
            .into_inner();
        let raw = &response.raw_output_contents[0];
        assert!(raw
            .chunks_exact(4)
            .any(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()));
    });
}

#[test]
fn an_input_with_both_data_and_binary_data_size_is_refused() {
    let server = TestServer::start(&zoo());
    let json_part = serde_json::to_vec(
        &json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
        "data": vec![0.0; 64], "parameters": {"binary_data_size": 256}}]}),
    )
    .unwrap();
    let mut body = json_part.clone();
    body.extend(vec![0u8; 256]);
    let r = Client::new()
        .post(server.url("/v2/models/mlp_digits/infer"))
        .header("inference-header-content-length", json_part.len())
        .body(body)
        .send()
        .expect("answered");
    expect_error(
        (r.status().as_u16(), r.json().expect("JSON")),
        400,
        &["both data and binary_data_size"],
    );
}

#[test]
fn empty_path_segments_never_mean_the_default_version() {
    let server = TestServer::start(&zoo());
    let (status, body) =
        server.post_json("/v2/models/mlp_digits/versions//infer", &digits_body(0.0));
    assert!(status == 400 || status == 404, "{status} {body}");
    let (status, body) = server.get_json("/v2/models/mlp_digits/versions//ready");
    assert!(status == 400 || status == 404, "{status} {body}");
    let (status, body) = server.get_json("/v2/models/mlp_digits/versions/");
    assert!(status == 400 || status == 404, "{status} {body}");
}

#[test]
fn request_ids_are_echoed_only_when_short_and_plain() {
    let server = TestServer::start(&zoo());
    let echo = |id: &[u8]| {
        let r = Client::new()
            .get(server.url("/v2/health/live"))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id).expect("header"),
            )
            .send()
            .expect("answered");
        r.headers()["x-request-id"].as_bytes().to_vec()
    };
    assert_eq!(echo(b"client-42.a:b_c"), b"client-42.a:b_c");
    for bad in [
        vec![b'a'; 60_000],
        "caf\u{e9}".as_bytes().to_vec(),
        b"a b<script>".to_vec(),
    ] {
        let got = echo(&bad);
        assert_ne!(got, bad);
        assert!(
            got.len() <= 128 && got.iter().all(|b| b.is_ascii_graphic()),
            "{got:?}"
        );
    }
}

#[test]
fn timeout_zero_means_no_deadline_over_http_and_grpc() {
    let server = TestServer::start(&zoo());
    let mut body = digits_body(0.0);
    body["parameters"] = json!({"timeout": 0});
    let (status, answer) = server.post_json("/v2/models/mlp_digits/infer", &body);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.post_json(
        "/predict",
        &json!({"model": "mlp_digits", "inputs": [vec![0.0; 64]], "timeout_ms": 0}),
    );
    assert_eq!(status, 200, "{answer}");
    let mut request = support::digits(1);
    request.parameters.insert(
        "timeout".into(),
        mlpserve::api::grpc::proto::InferParameter {
            parameter_choice: Some(
                mlpserve::api::grpc::proto::infer_parameter::ParameterChoice::Int64Param(0),
            ),
        },
    );
    support::with_client(&server, |mut client| async move {
        client
            .model_infer(request)
            .await
            .expect("timeout 0 is no deadline");
    });
}

#[test]
fn shutdown_delay_turns_readiness_503_while_still_serving() {
    let mut config = ServerConfig::for_tests(&zoo());
    config.shutdown_delay = Duration::from_secs(3);
    let mut server = TestServer::start_with(config);
    server.begin_shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.get_json("/v2/health/ready").0 != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "readiness never turned 503"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, body) = server.post_json("/v2/models/mlp_digits/infer", &digits_body(0.0));
    assert_eq!(status, 200, "still serving during the delay: {body}");
    assert!(server.stop().is_ok());
}

#[test]
fn large_predict_arrays_answer_like_the_bare_array_form() {
    // Keyed by input name, an 8 × 64 array is lifted out before serde parses the body; the
    // bare form under `inputs` is not. Both must get the same answer, and the same message
    // when an element is bad.
    let server = TestServer::start(&zoo());
    let rows: Vec<Vec<Value>> = (0..8)
        .map(|r| {
            (0..64)
                .map(|i| json!(((r * 64 + i) % 17) as f64 / 16.0))
                .collect()
        })
        .collect();
    let named = |rows: &Vec<Vec<Value>>| json!({"model": "mlp_digits", "inputs": {"pixels": rows}});
    let bare = |rows: &Vec<Vec<Value>>| json!({"model": "mlp_digits", "inputs": rows});
    let (status, lifted) = server.post_json("/predict", &named(&rows));
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(server.post_json("/predict", &bare(&rows)), (200, lifted));
    for odd in [json!(null), json!(true), json!([1.0]), json!("1")] {
        let mut bad = rows.clone();
        bad[5][7] = odd.clone();
        let (status, lifted) = server.post_json("/predict", &named(&bad));
        assert_eq!(status, 400, "{odd}: {lifted}");
        assert!(
            lifted["error"]
                .as_str()
                .unwrap_or_default()
                .contains("'pixels'"),
            "{odd}: {lifted}"
        );
        assert_eq!(
            server.post_json("/predict", &bare(&bad)),
            (400, lifted),
            "{odd}"
        );
    }
}
