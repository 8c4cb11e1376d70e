//! The zoo's raw-feature model answers its samples on every API, refuses bad raw text naming
//! the field, and charges raw text to the in-flight byte budget.

use super::*;

/// The zoo's CTR model trained on raw columns: its samples hold raw fields and the outputs
/// the training side (reference transforms with pyfarmhash, then ONNX Runtime) gave.
fn zoo_samples() -> Vec<Value> {
    common::samples("features_ctr")["samples"]
        .as_array()
        .unwrap()
        .clone()
}

fn zoo_repo(tag: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    let from = common::zoo().join("features_ctr");
    let to = repo.path.join("features_ctr");
    std::fs::create_dir_all(to.join("1")).unwrap();
    for file in ["config.toml", "country.txt", "device.txt", "1/model.onnx"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    repo
}

/// Triton's binary tensor bytes of a sample input: BYTES as 4-byte little-endian lengths
/// followed by the bytes, numbers little-endian.
fn binary_input(datatype: &str, data: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in data {
        match datatype {
            "BYTES" => {
                let s = v.as_str().unwrap().as_bytes();
                out.extend((s.len() as u32).to_le_bytes());
                out.extend(s);
            }
            "INT64" => out.extend(v.as_i64().unwrap().to_le_bytes()),
            "FP64" => out.extend(v.as_f64().unwrap().to_le_bytes()),
            other => panic!("{other}"),
        }
    }
    out
}

#[test]
fn the_zoo_model_answers_its_raw_samples_on_every_api() {
    let repo = zoo_repo("fields-zoo");
    let server = TestServer::start(&repo.path);
    let client = reqwest::blocking::Client::new();
    for (i, sample) in zoo_samples().iter().enumerate() {
        let want = flatten(&sample["outputs"]["click_prob"]["data"]);
        let inputs = sample["inputs"].as_object().unwrap();
        // /predict rows.
        let n = inputs.values().next().unwrap()["shape"][0]
            .as_u64()
            .unwrap() as usize;
        let rows: Vec<Value> = (0..n)
            .map(|r| {
                Value::Object(
                    inputs
                        .iter()
                        .map(|(name, t)| (name.clone(), t["data"][r].clone()))
                        .collect(),
                )
            })
            .collect();
        let body = json!({"model": "features_ctr", "instances": rows});
        let got = flatten(&server.post_json("/predict", &body).1["outputs"]["click_prob"]);
        assert_close(&got, &want, 1e-4, 1e-5, &format!("rows, sample {i}"));
        // V2 binary: BYTES, INT64 and FP64 fields as Triton's binary tensors.
        let mut json_inputs = Vec::new();
        let mut tail = Vec::new();
        for (name, t) in inputs {
            let datatype = t["datatype"].as_str().unwrap();
            let bytes = binary_input(datatype, t["data"].as_array().unwrap());
            json_inputs.push(
                json!({"name": name, "datatype": datatype, "shape": t["shape"],
                "parameters": {"binary_data_size": bytes.len()}}),
            );
            tail.extend(bytes);
        }
        let mut body = serde_json::to_vec(&json!({"inputs": json_inputs})).unwrap();
        let json_len = body.len();
        body.extend(tail);
        let r = client
            .post(server.url("/v2/models/features_ctr/infer"))
            .header("Inference-Header-Content-Length", json_len.to_string())
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let answer: Value = r.json().unwrap();
        assert_close(
            &flatten(&answer["outputs"][0]["data"]),
            &want,
            1e-4,
            1e-5,
            &format!("binary, sample {i}"),
        );
    }
    // gRPC: text in bytes_contents, numbers typed.
    support::with_client(&server, |mut client| async move {
        for sample in zoo_samples() {
            let inputs: Vec<_> = sample["inputs"]
                .as_object()
                .expect("inputs")
                .iter()
                .map(|(name, t)| {
                    (
                        name.as_str(),
                        t["datatype"].as_str().expect("datatype"),
                        t["data"].clone(),
                    )
                })
                .collect();
            let request = support::columns("features_ctr", &inputs);
            let response = client
                .model_infer(request)
                .await
                .expect("infer")
                .into_inner();
            support::assert_outputs(&response, &sample["outputs"]);
        }
    });
}

#[test]
fn bad_raw_text_is_refused_naming_the_field_and_what_came() {
    let repo = zoo_repo("fields-zoo-bad");
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.max_string_bytes = 16;
    let server = TestServer::start_with(config);
    let columns = |user_ids: Value, age: Value| {
        json!({"model": "features_ctr", "inputs": {"user_id": user_ids, "country": ["DE", "FR"],
            "ad_id": [1, 2], "age": age, "income": [1.0, 2.0]}})
    };
    let ok = columns(json!(["u1", "u2"]), json!([30, 40]));
    assert_eq!(server.post_json("/predict", &ok).0, 200);
    expect_error(
        server.post_json(
            "/predict",
            &columns(json!(["u1", "x".repeat(17)]), json!([30, 40])),
        ),
        400,
        &[
            "field 'user_id'",
            "row 1",
            "17 bytes",
            "16",
            "max_string_bytes",
        ],
    );
    expect_error(
        server.post_json("/predict", &columns(json!(["u1", 7]), json!([30, 40]))),
        400,
        &["field 'user_id'", "mixes strings and numbers", "row 1", "7"],
    );
    expect_error(
        server.post_json(
            "/predict",
            &columns(json!(["u1", "u2"]), json!(["old", "young"])),
        ),
        400,
        &["field 'age'", "a number", "\"old\""],
    );
    // Text that is not UTF-8, over V2 binary.
    let mut json_inputs = Vec::new();
    let mut tail = Vec::new();
    let fields: [(&str, &str, Vec<u8>); 5] = [
        (
            "user_id",
            "BYTES",
            [&2u32.to_le_bytes()[..], &[0xff, 0xfe]].concat(),
        ),
        (
            "country",
            "BYTES",
            [&2u32.to_le_bytes()[..], b"DE"].concat(),
        ),
        ("ad_id", "INT64", 1i64.to_le_bytes().to_vec()),
        ("age", "INT64", 30i64.to_le_bytes().to_vec()),
        ("income", "FP64", 1.0f64.to_le_bytes().to_vec()),
    ];
    for (name, datatype, bytes) in fields {
        json_inputs.push(json!({"name": name, "datatype": datatype, "shape": [1],
            "parameters": {"binary_data_size": bytes.len()}}));
        tail.extend(bytes);
    }
    let mut body = serde_json::to_vec(&json!({"inputs": json_inputs})).unwrap();
    let json_len = body.len();
    body.extend(tail);
    let r = reqwest::blocking::Client::new()
        .post(server.url("/v2/models/features_ctr/infer"))
        .header("Inference-Header-Content-Length", json_len.to_string())
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    expect_error(
        (status, r.json().unwrap()),
        400,
        &["field 'user_id'", "row 0", "UTF-8"],
    );
    assert_eq!(server.post_json("/predict", &ok).0, 200);
}

#[test]
fn raw_text_counts_against_the_in_flight_byte_budget() {
    let repo = zoo_repo("fields-budget");
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.max_inflight_bytes = 64 << 10;
    let server = TestServer::start_with(config);
    // 100 user ids of 1 KB each: the strings alone are more than the whole budget.
    let n = 100;
    let body = json!({"model": "features_ctr", "inputs": {
        "user_id": vec!["u".repeat(1000); n], "country": vec!["DE"; n], "ad_id": vec![1; n],
        "age": vec![30; n], "income": vec![1.0; n]}});
    let (status, answer) = server.post_json("/predict", &body);
    assert_eq!(status, 413, "{answer}");
    let small = json!({"model": "features_ctr", "inputs": {
        "user_id": ["u1"], "country": ["DE"], "ad_id": [1], "age": [30], "income": [1.0]}});
    assert_eq!(server.post_json("/predict", &small).0, 200);
}
