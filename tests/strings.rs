//! BYTES (string) tensors through the real server and ONNX Runtime, with the zoo's
//! `string_echo` (BYTES in, the same BYTES and an INT64 label code out) and
//! `churn_pipeline` (a skl2onnx pipeline with string columns): V2 JSON strings, the binary
//! extension's length-prefixed elements, raw binary bodies, gRPC `bytes_contents` and raw
//! contents, `/predict`, batching of concurrent string requests with "" padding, and the
//! refusals of bad strings (not UTF-8, NUL, over `max_string_bytes`, lengths that do not add
//! up), each naming the input and element.

mod common;

use bytes::Bytes;
use common::{assert_unavailable, expect_error, header_usize, v2_output, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
use mlpserve::api::grpc::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use mlpserve::config::ServerConfig;
use serde_json::{json, Value};
use tonic::Code;

/// Each element as a 4-byte little-endian length and its bytes (Triton's BYTES form).
fn framed(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in items {
        out.extend((s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// Splits length-prefixed elements, asserting they fill `bytes` exactly.
fn unframe(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        out.push(String::from_utf8(rest[..len].to_vec()).expect("UTF-8"));
        bytes = &rest[len..];
    }
    out
}

fn text_request(shape: &[usize], data: Value) -> Value {
    json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape, "data": data}]})
}

#[test]
fn string_models_say_bytes_in_metadata_and_type_string_in_config() {
    let server = TestServer::start(&common::zoo());
    let (status, meta) = server.get_json("/v2/models/string_echo");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES", "{meta}");
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, -1]));
    let (status, config) = server.get_json("/v2/models/string_echo/config");
    assert_eq!(status, 200, "{config}");
    let text = config.to_string();
    assert!(text.contains("TYPE_STRING"), "{config}");
    let (status, meta) = server.get_json("/v2/models/churn_pipeline");
    assert_eq!(status, 200, "{meta}");
    let types: Vec<&str> = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["datatype"].as_str().expect("datatype"))
        .collect();
    assert_eq!(types, ["BYTES", "BYTES", "BYTES", "FP32", "FP32"]);
}

#[test]
fn strings_travel_as_json_binary_raw_bodies_and_predict() {
    let server = TestServer::start(&common::zoo());
    let infer = "/v2/models/string_echo/infer";
    // JSON: nested strings in, strings out; non-ASCII and escapes survive.
    let (status, body) = server.post_json(
        infer,
        &text_request(&[2, 2], json!([["red", "grün ☕"], ["", "a\"b\\n"]])),
    );
    assert_eq!(status, 200, "{body}");
    let echo = v2_output(&body, "echo");
    assert_eq!(echo["datatype"], "BYTES");
    assert_eq!(echo["shape"], json!([2, 2]));
    assert_eq!(echo["data"], json!(["red", "grün ☕", "", "a\"b\\n"]));
    assert_eq!(v2_output(&body, "code")["data"], json!([0, -1, -1, -1]));

    // The binary extension: a length-prefixed input, binary outputs back.
    let items: [&[u8]; 3] = [b"blue", b"", "naïve".as_bytes()];
    let header = json!({
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 3],
                    "parameters": {"binary_data_size": framed(&items).len()}}],
        "outputs": [{"name": "echo", "parameters": {"binary_data": true}},
                    {"name": "code", "parameters": {"binary_data": false}}]
    })
    .to_string();
    let mut request = header.clone().into_bytes();
    request.extend(framed(&items));
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(server.url(infer))
        .header("Inference-Header-Content-Length", header.len())
        .body(request)
        .send()
        .expect("binary request");
    assert_eq!(r.status().as_u16(), 200);
    let json_len = header_usize(r.headers(), "inference-header-content-length");
    let raw = r.bytes().expect("body");
    let (head, tail) = raw.split_at(json_len);
    let head: Value = serde_json::from_slice(head).expect("JSON part");
    let echo = v2_output(&head, "echo");
    assert_eq!(
        echo["parameters"]["binary_data_size"],
        json!(framed(&items).len())
    );
    assert_eq!(unframe(tail), ["blue", "", "naïve"]);
    assert_eq!(v2_output(&head, "code")["data"], json!([2, -1, -1]));

    // A raw binary body: the one input's elements, the shape deduced as [1, n].
    let r = client
        .post(server.url(infer))
        .header("Inference-Header-Content-Length", "0")
        .body(framed(&[b"green", b"red"]))
        .send()
        .expect("raw request");
    assert_eq!(r.status().as_u16(), 200);
    let json_len = header_usize(r.headers(), "inference-header-content-length");
    let raw = r.bytes().expect("body");
    let head: Value = serde_json::from_slice(&raw[..json_len]).expect("JSON part");
    assert_eq!(v2_output(&head, "echo")["shape"], json!([1, 2]));
    assert_eq!(unframe(&raw[json_len..raw.len() - 16]), ["green", "red"]);
    let codes: Vec<i64> = raw[raw.len() - 16..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(codes, [1, 0]);

    // /predict: nested JSON strings in, nested strings out; a pipeline mixes strings and
    // numbers, and an unseen category is ignored rather than refused.
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "string_echo", "inputs": {"text": [["blue", "x"]]}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"]["echo"], json!([["blue", "x"]]));
    assert_eq!(body["outputs"]["code"], json!([[2, -1]]));
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "churn_pipeline", "inputs": {
            "plan": [["basic"], ["enterprise"]], "region": [["north"], ["west"]],
            "device": [["web"], ["tv"]], "tenure_months": [[2.0], [40.0]],
            "monthly_spend": [[45.0], [20.0]]}}),
    );
    assert_eq!(status, 200, "{body}");
    let probs = common::flatten(&body["outputs"]["probabilities"]);
    assert_eq!(probs.len(), 4);
    for pair in probs.chunks(2) {
        let sum: f64 = pair.iter().map(|p| p.as_f64().expect("number")).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{body}");
    }
}

fn grpc_text(
    shape: &[i64],
    contents: Option<Vec<&[u8]>>,
    raw: Option<Vec<u8>>,
) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "string_echo".into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: shape.to_vec(),
            contents: contents.map(|items| InferTensorContents {
                bytes_contents: items.into_iter().map(Bytes::copy_from_slice).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        raw_input_contents: raw.map(Bytes::from).into_iter().collect(),
        ..Default::default()
    }
}

/// (echo strings, codes) of a string_echo answer, read from `raw_output_contents`.
fn grpc_answer(response: &ModelInferResponse) -> (Vec<String>, Vec<i64>) {
    let index = |name: &str| {
        response
            .outputs
            .iter()
            .position(|o| o.name == name)
            .expect("output")
    };
    assert_eq!(response.outputs[index("echo")].datatype, "BYTES");
    let echo = unframe(&response.raw_output_contents[index("echo")]);
    let codes = response.raw_output_contents[index("code")]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (echo, codes)
}

#[test]
fn grpc_takes_bytes_contents_and_raw_contents_and_answers_raw() {
    let server = TestServer::start(&common::zoo());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
            .await
            .expect("connect");
        let typed = grpc_text(&[1, 3], Some(vec![b"red", b"", "é".as_bytes()]), None);
        let response = client.model_infer(typed).await.expect("typed").into_inner();
        assert_eq!(response.outputs[0].shape, vec![1, 3]);
        assert_eq!(
            grpc_answer(&response),
            (vec!["red".into(), "".into(), "é".into()], vec![0, -1, -1])
        );
        let raw = grpc_text(&[2, 1], None, Some(framed(&[b"green", b"blue"])));
        let response = client.model_infer(raw).await.expect("raw").into_inner();
        assert_eq!(
            grpc_answer(&response),
            (vec!["green".into(), "blue".into()], vec![1, 2])
        );

        // Lengths that do not add up are refused, never over-read.
        let mut short = framed(&[b"green", b"blue"]);
        short.pop();
        let long_length = [&[255u8, 255, 255, 255][..], b"ab"].concat();
        for (request, needles) in [
            (
                grpc_text(&[1, 2], None, Some(short)),
                &["'text'", "element 1 has length 4 but only 3"][..],
            ),
            (
                grpc_text(&[1, 1], None, Some(long_length)),
                &["'text'", "4294967295"],
            ),
            (
                grpc_text(&[1, 3], None, Some(framed(&[b"a", b"b"]))),
                &["'text'", "needs 3", "but 2"],
            ),
            (
                grpc_text(&[1, 1], None, Some(vec![1, 0])),
                &["'text'", "4-byte length"],
            ),
            (
                grpc_text(&[1, 1], Some(vec![b"a", b"b"]), None),
                &["'text'", "needs 1 elements", "2"],
            ),
            (
                grpc_text(&[1, 1], Some(vec![&[0xc3, 0x28]]), None),
                &["'text' element 0 is not UTF-8"],
            ),
        ] {
            let status = client.model_infer(request).await.expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            for needle in needles {
                assert!(
                    status.message().contains(needle),
                    "{:?} lacks {needle:?}",
                    status.message()
                );
            }
        }
    });
}

#[test]
fn bad_strings_are_refused_naming_the_input_and_element() {
    let mut config = ServerConfig::for_tests(&common::zoo());
    config.max_string_bytes = 8;
    let server = TestServer::start_with(config);
    let infer = "/v2/models/string_echo/infer";
    let client = reqwest::blocking::Client::new();
    let binary = |items: &[&[u8]], shape: &[usize]| {
        let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape,
            "parameters": {"binary_data_size": framed(items).len()}}]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(framed(items));
        let r = client
            .post(server.url(infer))
            .header("Inference-Header-Content-Length", header.len())
            .body(body)
            .send()
            .expect("request");
        (r.status().as_u16(), r.json::<Value>().expect("json"))
    };
    expect_error(
        binary(&[b"ok", &[0x66, 0xff]], &[1, 2]),
        400,
        &["'text' element 1 is not UTF-8"],
    );
    expect_error(
        binary(&[b"a\0b"], &[1, 1]),
        400,
        &["'text' element 0 has a NUL byte at offset 1"],
    );
    expect_error(
        server.post_json(
            infer,
            &text_request(&[1, 2], json!(["short", "much too long"])),
        ),
        400,
        &[
            "'text' element 1 is 13 bytes long",
            "8 bytes",
            "max_string_bytes",
        ],
    );
    expect_error(
        server.post_json(infer, &text_request(&[1, 2], json!(["a", 7]))),
        400,
        &["'text'", "element 1 is 7", "BYTES"],
    );
    expect_error(
        server.post_json(infer, &text_request(&[1, 3], json!(["a", "b"]))),
        400,
        &["'text'", "3 elements", "2"],
    );
    // The binary extension with a length past the end, and a raw body with a broken length.
    let header = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1],
        "parameters": {"binary_data_size": 6}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend([9, 0, 0, 0, b'a', b'b']);
    let r = client
        .post(server.url(infer))
        .header("Inference-Header-Content-Length", header.len())
        .body(body)
        .send()
        .expect("request");
    expect_error(
        (r.status().as_u16(), r.json().expect("json")),
        400,
        &["'text'", "element 0 has length 9 but only 2"],
    );
    let r = client
        .post(server.url(infer))
        .header("Inference-Header-Content-Length", "0")
        .body(vec![3, 0, 0])
        .send()
        .expect("request");
    expect_error(
        (r.status().as_u16(), r.json().expect("json")),
        400,
        &["'text'", "4-byte length"],
    );
    // A string for a numeric input is a datatype error, and the server still serves.
    expect_error(
        server.post_json(
            "/v2/models/churn_pipeline/infer",
            &json!({"inputs": [{"name": "tenure_months", "datatype": "BYTES", "shape": [1, 1], "data": ["3"]}]}),
        ),
        400,
        &["tenure_months", "FP32", "BYTES"],
    );
    let (status, body) = server.post_json(infer, &text_request(&[1, 1], json!(["red"])));
    assert_eq!(
        (status, &v2_output(&body, "code")["data"]),
        (200, &json!([0]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_string_requests_batch_padded_with_empty_strings_and_get_their_own_rows() {
    let rows: Vec<Vec<&str>> = vec![
        vec!["red"],
        vec!["green", "blue", "x"],
        vec!["", "blue"],
        vec!["naïve ☕", "red", "red", "green"],
    ];
    let n = rows.len();
    let repo = ScratchRepo::new("strings-batch");
    repo.add(
        "string_echo",
        "echo",
        1,
        &format!(
            "max_batch_size = {n}\nmax_queue_delay_us = 5000000\n[inputs.text]\npad_axes = [1]\n"
        ),
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let calls = rows.iter().map(|row| {
        let c = client.clone();
        let url = server.url("/v2/models/echo/infer");
        let body = text_request(&[1, row.len()], json!(row));
        async move {
            let r = c.post(url).json(&body).send().await.expect("request");
            let batch = header_usize(r.headers(), "x-batch-rows");
            (
                r.status().as_u16(),
                batch,
                r.json::<Value>().await.expect("json"),
            )
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for ((status, batch_rows, body), row) in answers.iter().zip(&rows) {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            *batch_rows, n,
            "rows of different lengths ran as one padded batch"
        );
        // Outputs along a padded axis come back at the batch's length, as for numbers: the
        // row, then the "" it was padded with (which the label encoder maps to -1).
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut padded = row.clone();
        padded.resize(longest, "");
        let echo = v2_output(body, "echo");
        assert_eq!(echo["shape"], json!([1, longest]), "{body}");
        assert_eq!(echo["data"], json!(padded));
        let codes: Vec<i64> = padded
            .iter()
            .map(|w| {
                ["red", "green", "blue"]
                    .iter()
                    .position(|c| c == w)
                    .map_or(-1, |i| i as i64)
            })
            .collect();
        assert_eq!(v2_output(body, "code")["data"], json!(codes));
    }
}

#[test]
fn a_pad_value_for_a_string_input_fails_the_load_with_the_reason() {
    let repo = ScratchRepo::new("strings-pad");
    repo.add(
        "string_echo",
        "echo",
        1,
        "[inputs.text]\npad_axes = [1]\npad_value = 3\n",
    );
    let server = TestServer::start_lenient(&repo.path);
    let index = server.repository_index();
    let needles = ["[inputs.text] pad_value = 3", "BYTES", "empty string"];
    assert_unavailable(&index, "echo", &needles);
}
