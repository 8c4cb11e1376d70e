//! The HTTP API end to end: real server, real ONNX Runtime, real models, real HTTP.

mod common;

use common::{assert_close, expect_error, flatten, samples, zoo, ScratchRepo, TestServer};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn digits_v2_body(sample: &Value) -> Value {
    let pixels = &sample["inputs"]["pixels"];
    json!({"id": "req-1", "inputs": [{"name": "pixels", "shape": pixels["shape"], "datatype": "FP32", "data": pixels["data"]}]})
}

/// A good request that must still work after every error case.
fn assert_still_serving(server: &TestServer) {
    let s = &samples("mlp_digits")["samples"][0];
    let (status, body) = server.post_json("/v2/models/mlp_digits/infer", &digits_v2_body(s));
    assert_eq!(status, 200, "{body}");
    assert_close(
        &flatten(&body["outputs"][0]["data"]),
        &flatten(&s["outputs"]["logits"]["data"]),
        1e-4,
        1e-5,
        "logits",
    );
}

#[test]
fn v2_and_predict_reproduce_the_reference_outputs() {
    let server = TestServer::start(&zoo());
    for s in samples("mlp_digits")["samples"]
        .as_array()
        .expect("samples")
    {
        let want = flatten(&s["outputs"]["logits"]["data"]);
        let (status, body) = server.post_json("/v2/models/mlp_digits/infer", &digits_v2_body(s));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model_name"], "mlp_digits");
        assert_eq!(body["model_version"], "1");
        assert_eq!(body["id"], "req-1");
        assert_eq!(body["outputs"][0]["name"], "logits");
        assert_eq!(body["outputs"][0]["datatype"], "FP32");
        assert_eq!(body["outputs"][0]["shape"], s["outputs"]["logits"]["shape"]);
        assert!(
            body["outputs"][0].get("parameters").is_none(),
            "JSON outputs carry no parameters"
        );
        assert_close(
            &flatten(&body["outputs"][0]["data"]),
            &want,
            1e-4,
            1e-5,
            "v2 logits",
        );

        // /predict: nested rows, shape from nesting, single-input shorthand.
        let rows: Vec<Value> = s["inputs"]["pixels"]["data"]
            .as_array()
            .expect("flat data")
            .chunks(64)
            .map(|c| Value::Array(c.to_vec()))
            .collect();
        for inputs in [json!({"pixels": rows}), json!(rows)] {
            let (status, body) = server.post_json(
                "/predict",
                &json!({"model": "mlp_digits", "inputs": inputs}),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["model"], "mlp_digits");
            assert_eq!(body["version"], "1");
            let logits = &body["outputs"]["logits"];
            assert_eq!(logits.as_array().expect("nested").len(), rows.len());
            assert_close(&flatten(logits), &want, 1e-4, 1e-5, "predict logits");
        }
    }
}

#[test]
fn metadata_matches_the_onnx_graph() {
    let server = TestServer::start(&zoo());
    let (status, meta) = server.get_json("/v2/models/mlp_digits");
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "mlp_digits");
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(
        meta["inputs"],
        json!([{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}])
    );
    assert_eq!(
        meta["outputs"],
        json!([{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}])
    );
    assert!(
        meta["parameters"]["family"]
            .as_str()
            .is_some_and(|f| f.contains("MLP")),
        "card facts: {meta}"
    );
    assert_eq!(server.get_json("/v2/models/mlp_digits/versions/1").0, 200);
    let (status, server_meta) = server.get_json("/v2");
    assert_eq!(status, 200);
    assert_eq!(server_meta["name"], "mlpserve");
    assert!(server_meta["extensions"]
        .as_array()
        .expect("extensions")
        .contains(&json!("binary_tensor_data")));
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/health/live",
        "/health/ready",
        "/v2/models/mlp_digits/ready",
        "/v2/models/mlp_digits/versions/1/ready",
    ] {
        assert_eq!(server.get_json(path).0, 200, "{path}");
    }
}

#[test]
fn every_datatype_round_trips_through_json() {
    let server = TestServer::start(&zoo());
    let cases = [
        (
            "fp32",
            "FP32",
            json!([[1.5, -2.0, 0.25]]),
            json!([2.5, -1.0, 1.25]),
        ),
        (
            "fp64",
            "FP64",
            json!([[1.5, -2.0, 0.25]]),
            json!([2.5, -1.0, 1.25]),
        ),
        (
            "fp16",
            "FP16",
            json!([[1.5, -2.0, 0.25]]),
            json!([2.5, -1.0, 1.25]),
        ),
        (
            "int64",
            "INT64",
            json!([[9007199254740993i64, -5, 0]]),
            json!([9007199254740994i64, -4, 1]),
        ),
        ("int32", "INT32", json!([[1, -5, 7]]), json!([2, -4, 8])),
        ("int8", "INT8", json!([[1, -5, 126]]), json!([2, -4, 127])),
        ("uint8", "UINT8", json!([[0, 5, 254]]), json!([1, 6, 255])),
        (
            "bool",
            "BOOL",
            json!([[true, false, true]]),
            json!([false, true, false]),
        ),
    ];
    let inputs: Vec<Value> = cases
        .iter()
        .map(|(n, dt, data, _)| json!({"name": format!("x_{n}"), "datatype": dt, "shape": [1, 3], "data": data}))
        .collect();
    let (status, body) =
        server.post_json("/v2/models/dtype_echo/infer", &json!({"inputs": inputs}));
    assert_eq!(status, 200, "{body}");
    for (n, dt, _, want) in &cases {
        let out = body["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find(|o| o["name"] == format!("y_{n}"))
            .expect("output");
        assert_eq!(out["datatype"], *dt);
        assert_eq!(out["shape"], json!([1, 3]));
        assert_eq!(out["data"], *want, "y_{n}");
    }
}

#[test]
fn bad_input_gets_a_clear_client_error_and_the_server_keeps_serving() {
    let repo = ScratchRepo::new("bad-input");
    repo.add("mlp_digits", "mlp_digits", 1, "");
    repo.add("finalmlp_ctr", "finalmlp_ctr", 1, "");
    repo.add("dtype_echo", "dtype_echo", 1, "");
    repo.add("din_ctr", "din_ctr", 1, "");
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.max_body_bytes = 64 * 1024;
    let server = TestServer::start_with(config);
    let infer = "/v2/models/mlp_digits/infer";
    let row: Vec<f32> = vec![0.5; 64];
    let v2 = |name: &str, dt: &str, shape: Value, data: Value| json!({"inputs": [{"name": name, "datatype": dt, "shape": shape, "data": data}]});

    expect_error(
        server.post_json(
            "/v2/models/nope/infer",
            &v2("pixels", "FP32", json!([1, 64]), json!(row)),
        ),
        404,
        &["nope"],
    );
    expect_error(
        server.post_json(
            "/v2/models/mlp_digits/versions/7/infer",
            &v2("pixels", "FP32", json!([1, 64]), json!(row)),
        ),
        404,
        &["mlp_digits", "7"],
    );
    expect_error(
        server.post_json("/predict", &json!({"model": "nope", "inputs": [row]})),
        404,
        &["nope"],
    );
    expect_error(server.get_json("/v2/models/nope"), 404, &["nope"]);
    assert_still_serving(&server);

    let malformed = Client::new()
        .post(server.url(infer))
        .body("{\"inputs\": [")
        .send()
        .expect("request");
    assert_eq!(malformed.status().as_u16(), 400);
    assert!(malformed.text().unwrap_or_default().contains("JSON"));
    expect_error(
        server.post_json(infer, &v2("pixel", "FP32", json!([1, 64]), json!(row))),
        400,
        &["mlp_digits", "'pixel'", "pixels"],
    );
    expect_error(
        server.post_json(infer, &json!({"inputs": []})),
        400,
        &["missing input 'pixels'", "FP32"],
    );
    let extra = json!({"inputs": [
        {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": row},
        {"name": "extra", "datatype": "FP32", "shape": [1], "data": [1.0]}]});
    expect_error(server.post_json(infer, &extra), 400, &["'extra'"]);
    expect_error(
        server.post_json(
            infer,
            &v2("pixels", "INT64", json!([1, 64]), json!(vec![1; 64])),
        ),
        400,
        &["'pixels'", "FP32", "INT64"],
    );
    expect_error(
        server.post_json(infer, &v2("pixels", "FP32", json!([64]), json!(row))),
        400,
        &["'pixels'", "[-1, 64]", "[64]"],
    );
    expect_error(
        server.post_json(
            infer,
            &v2("pixels", "FP32", json!([1, 32]), json!(vec![0.5; 32])),
        ),
        400,
        &["[-1, 64]", "[1, 32]"],
    );
    expect_error(
        server.post_json(infer, &v2("pixels", "FP32", json!([2, 64]), json!(row))),
        400,
        &["'pixels'", "128", "64"],
    );
    expect_error(
        server.post_json(infer, &v2("pixels", "FP32", json!([0, 64]), json!([]))),
        400,
        &["empty batch"],
    );
    expect_error(
        server.post_json(infer, &v2("pixels", "BYTES", json!([1, 64]), json!(row))),
        400,
        &["BYTES"],
    );
    expect_error(
        server.post_json(
            infer,
            &v2("pixels", "FP32", json!([1, 64]), json!(vec!["a"; 64])),
        ),
        400,
        &["pixels"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &json!({"model": "mlp_digits", "inputs": {"pixels": [row.clone(), vec![0.5; 63]]}}),
        ),
        400,
        &["ragged"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &json!({"model": "mlp_digits", "inputs": {"pixels": []}}),
        ),
        400,
        &["pixels"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &json!({"model": "finalmlp_ctr", "inputs": [[1, 2, 3, 4, 5, 6, 7, 8]]}),
        ),
        400,
        &["cat_ids", "dense"],
    );
    expect_error(
        server.post_json("/predict",
            &json!({"model": "finalmlp_ctr", "inputs": {"cat_ids": [[1, 2, 3, 4, 5, 6, 7, 8]], "dense": [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]]}}),
        ),
        400,
        &["batch size", "1", "2"],
    );
    expect_error(
        server.post_json("/predict",
            &json!({"model": "finalmlp_ctr", "inputs": {"cat_ids": [[1.5, 2, 3, 4, 5, 6, 7, 8]], "dense": [[0.1, 0.2, 0.3, 0.4]]}}),
        ),
        400,
        &["cat_ids", "1.5", "INT64"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &json!({"model": "mlp_digits", "inputs": [row], "outputs": ["probs"]}),
        ),
        400,
        &["probs", "logits"],
    );
    let uint8_over = json!({"model": "dtype_echo", "inputs": {"x_uint8": [[300, 0, 0]]}});
    expect_error(
        server.post_json("/predict", &uint8_over),
        400,
        &["x_uint8", "300", "UINT8"],
    );

    // Inputs that share a symbolic dim in the graph must agree, or ORT would fail (a 500).
    let din = samples("din_ctr")["samples"][0]["inputs"].clone();
    let mut inputs = serde_json::Map::new();
    for (name, t) in din.as_object().expect("inputs") {
        let nested = if name == "hist_mask" {
            json!([[1.0, 1.0]])
        } else if name == "hist_items" {
            json!([[5, 6, 7]])
        } else {
            let shape = t["shape"].as_array().expect("shape").len();
            if shape == 1 {
                t["data"].clone()
            } else {
                json!([t["data"].clone()])
            }
        };
        inputs.insert(name.clone(), nested);
    }
    expect_error(
        server.post_json("/predict", &json!({"model": "din_ctr", "inputs": inputs})),
        400,
        &["hist_mask", "hist_items", "3", "2"],
    );

    let big = Client::new()
        .post(server.url(infer))
        .body(vec![b' '; 100 * 1024])
        .send()
        .expect("request");
    assert_eq!(big.status().as_u16(), 413);
    assert!(big.text().unwrap_or_default().contains("limit"));

    // Binary extension: sizes that don't add up are 400, never an over-read.
    let header = json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "parameters": {"binary_data_size": 256}}]}).to_string();
    for (tail, declared) in [
        (200usize, header.len()),
        (300, header.len()),
        (256, header.len() + 500),
    ] {
        let mut body = header.clone().into_bytes();
        body.extend(vec![0u8; tail]);
        let r = Client::new()
            .post(server.url(infer))
            .header("Inference-Header-Content-Length", declared.to_string())
            .body(body)
            .send()
            .expect("request");
        assert_eq!(r.status().as_u16(), 400, "tail {tail} declared {declared}");
    }
    assert_still_serving(&server);
}

#[test]
fn binary_tensors_in_and_out() {
    let server = TestServer::start(&zoo());
    let s = &samples("mlp_digits")["samples"][0];
    let pixels: Vec<f32> = s["inputs"]["pixels"]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("num") as f32)
        .collect();
    let bytes: Vec<u8> = pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
    let header = json!({
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": s["inputs"]["pixels"]["shape"], "parameters": {"binary_data_size": bytes.len()}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let r = server.post_binary("/v2/models/mlp_digits/infer", &header, &bytes);
    assert_eq!(r.status().as_u16(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let full = r.bytes().expect("body");
    let meta: Value = serde_json::from_slice(&full[..json_len]).expect("json header");
    let size = meta["outputs"][0]["parameters"]["binary_data_size"]
        .as_u64()
        .expect("size") as usize;
    assert_eq!(size, full.len() - json_len);
    let got: Vec<Value> = full[json_len..]
        .chunks_exact(4)
        .map(|c| json!(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert_close(
        &got,
        &flatten(&s["outputs"]["logits"]["data"]),
        1e-4,
        1e-5,
        "binary logits",
    );
}

#[test]
fn versions_request_ids_and_timing_headers() {
    let repo = ScratchRepo::new("versions");
    // Both versions serve only with a policy that says so (the default serves the latest).
    repo.add("mlp_digits", "digits", 1, "version_policy = \"all\"");
    repo.add("mlp_digits", "digits", 3, "version_policy = \"all\"");
    let server = TestServer::start(&repo.path);
    let (_, meta) = server.get_json("/v2/models/digits");
    assert_eq!(meta["versions"], json!(["1", "3"]));
    let s = &samples("mlp_digits")["samples"][0];
    let (status, body) = server.post_json("/v2/models/digits/infer", &digits_v2_body(s));
    assert_eq!(
        (status, body["model_version"].clone()),
        (200, json!("3")),
        "highest version serves by default"
    );
    let (status, body) = server.post_json("/v2/models/digits/versions/1/infer", &digits_v2_body(s));
    assert_eq!((status, body["model_version"].clone()), (200, json!("1")));
    let (status, body) = server.post_json(
        "/predict",
        &json!({"model": "digits", "version": "1", "inputs": [vec![0.0; 64]]}),
    );
    assert_eq!((status, body["version"].clone()), (200, json!("1")));

    let r = Client::new()
        .post(server.url("/v2/models/digits/infer"))
        .header("x-request-id", "trace-me-42")
        .json(&digits_v2_body(s))
        .send()
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    assert!(r.headers().contains_key("x-queue-time-us"));
    assert!(r.headers().contains_key("x-compute-time-us"));
    let generated = Client::new()
        .get(server.url("/v2/health/live"))
        .send()
        .expect("request");
    assert!(
        !generated.headers()["x-request-id"].is_empty(),
        "an id is generated when the client sends none"
    );
}
