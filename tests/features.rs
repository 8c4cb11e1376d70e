//! Raw features in, predictions out: a model whose `config.toml` declares `[features]`
//! takes raw fields on every API, turns them into the graph inputs exactly as the
//! transforms define, and answers as if the client had sent those inputs as tensors;
//! config mistakes leave the model UNAVAILABLE with the reason; bad fields get a 400 that
//! names the field and what came.

mod common;
#[allow(dead_code)]
#[path = "grpc/support.rs"]
mod support;

use common::{assert_close, expect_error, flatten, ScratchRepo, TestServer};
use mlpserve::features::fingerprint64;
use serde_json::{json, Value};

/// The zoo's Wide & Deep model (`cat_ids` INT64 [-1, 8], `dense` FP32 [-1, 4]) with its
/// inputs built from raw fields.
const CONFIG: &str = r#"
max_batch_size = 64
[features]
user = { hash_buckets = 10 }
site = { vocabulary = "site.txt", oov_buckets = 2 }
age = { boundaries = [18, 25, 35, 50] }
f3 = { hash_buckets = 100 }
f4 = { hash_buckets = 200 }
f5 = { hash_buckets = 400 }
f6 = { hash_buckets = 700 }
f7 = { hash_buckets = 1000, default = "none" }
income = { mean = 50.0, std = 10.0 }
clicks = { log1p = true }
x = {}
y = { default = 0.5 }
[inputs.cat_ids]
from = ["user", "site", "age", "f3", "f4", "f5", "f6", "f7"]
[inputs.dense]
from = ["income", "clicks", "x", "y"]
"#;

const SITE_VOCABULARY: &str = "news\nshop\n7\n";

fn repo(tag: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    repo.add("widedeep_ctr", "ctr", 1, CONFIG);
    std::fs::write(repo.path.join("ctr").join("site.txt"), SITE_VOCABULARY).unwrap();
    repo
}

fn hashed(text: &str, buckets: u64) -> i64 {
    (fingerprint64(text.as_bytes()) % buckets) as i64
}

/// V2 JSON inputs: (name, datatype, values), each of shape [N].
fn v2_body(fields: &[(&str, &str, Value)]) -> Value {
    let inputs: Vec<Value> = fields
        .iter()
        .map(|(name, datatype, data)| {
            let n = data.as_array().map_or(1, Vec::len);
            json!({"name": name, "datatype": datatype, "shape": [n], "data": data})
        })
        .collect();
    json!({ "inputs": inputs })
}

/// The click probabilities of a V2 answer.
fn probs(status_body: (u16, Value)) -> Vec<Value> {
    let (status, body) = status_body;
    assert_eq!(status, 200, "{body}");
    flatten(&body["outputs"][0]["data"])
}

/// Three rows of integer and numeric fields, and the `cat_ids`/`dense` tensors the
/// transforms must make of them.
fn numeric_rows() -> (Vec<(&'static str, &'static str, Value)>, Value, Value) {
    let fields = vec![
        ("user", "INT64", json!([12345, -7, 0])),
        ("site", "INT64", json!([7, 8, 7])),
        ("age", "FP32", json!([17.5, 18, 64])),
        ("f3", "INT64", json!([1, 2, 3])),
        ("f4", "INT32", json!([4, 5, 6])),
        ("f5", "INT64", json!([7, 8, 9])),
        ("f6", "INT64", json!([10, 11, 12])),
        ("income", "FP64", json!([50.0, 70.0, 35.0])),
        ("clicks", "INT64", json!([0, 3, 10])),
        ("x", "FP32", json!([0.25, -1.5, 2.0])),
    ];
    // site: "7" is line 2 of the vocabulary, after 2 OOV buckets; "8" is unknown.
    let cat_ids = json!([
        [
            hashed("12345", 10),
            4,
            0,
            hashed("1", 100),
            hashed("4", 200),
            hashed("7", 400),
            hashed("10", 700),
            hashed("none", 1000)
        ],
        [
            hashed("-7", 10),
            hashed("8", 2),
            1,
            hashed("2", 100),
            hashed("5", 200),
            hashed("8", 400),
            hashed("11", 700),
            hashed("none", 1000)
        ],
        [
            hashed("0", 10),
            4,
            4,
            hashed("3", 100),
            hashed("6", 200),
            hashed("9", 400),
            hashed("12", 700),
            hashed("none", 1000)
        ],
    ]);
    let dense = json!([
        [0.0, 0.0, 0.25, 0.5],
        [2.0, 4f64.ln(), -1.5, 0.5],
        [-1.5, 11f64.ln(), 2.0, 0.5],
    ]);
    (fields, cat_ids, dense)
}

fn tensors_body(cat_ids: &Value, dense: &Value) -> Value {
    json!({"inputs": [
        {"name": "cat_ids", "datatype": "INT64", "shape": [3, 8], "data": flatten(cat_ids)},
        {"name": "dense", "datatype": "FP32", "shape": [3, 4], "data": flatten(dense)},
    ]})
}

#[test]
fn raw_fields_over_v2_json_answer_like_the_tensors_they_build() {
    let repo = repo("fields-v2");
    let server = TestServer::start(&repo.path);
    let (fields, cat_ids, dense) = numeric_rows();
    let url = "/v2/models/ctr/infer";
    let want = probs(server.post_json(url, &tensors_body(&cat_ids, &dense)));
    let got = probs(server.post_json(url, &v2_body(&fields)));
    assert_close(&got, &want, 0.0, 1e-6, "raw fields vs tensors");
    // One request may mix both: `cat_ids` as a tensor, `dense` from its fields.
    let mut mixed = v2_body(&fields[7..]);
    mixed["inputs"].as_array_mut().unwrap().push(
        json!({"name": "cat_ids", "datatype": "INT64", "shape": [3, 8], "data": flatten(&cat_ids)}),
    );
    let got = probs(server.post_json(url, &mixed));
    assert_close(&got, &want, 0.0, 1e-6, "mixed");
}

#[test]
fn bad_fields_are_refused_naming_the_field_and_what_came() {
    let repo = repo("fields-bad");
    let server = TestServer::start(&repo.path);
    let (fields, _, _) = numeric_rows();
    let url = "/v2/models/ctr/infer";
    let with = |name: &str, datatype: &str, data: Value| {
        let mut f = fields.clone();
        let slot = f.iter_mut().find(|(n, ..)| *n == name).unwrap();
        *slot = (
            slot.0,
            Box::leak(datatype.to_string().into_boxed_str()),
            data,
        );
        v2_body(&f)
    };
    let without = |name: &str| {
        let f: Vec<_> = fields
            .iter()
            .filter(|(n, ..)| *n != name)
            .cloned()
            .collect();
        v2_body(&f)
    };
    expect_error(
        server.post_json(url, &without("age")),
        400,
        &["missing field 'age'", "boundaries"],
    );
    expect_error(
        server.post_json(url, &with("user", "FP32", json!([1.5, 2.0, 3.0]))),
        400,
        &["field 'user'", "a string or an integer", "1.5"],
    );
    expect_error(
        server.post_json(url, &with("income", "FP64", json!([1.0, 2.0]))),
        400,
        &["field 'income'", "2 values", "3"],
    );
    expect_error(
        server.post_json(url, &with("clicks", "FP32", json!([0.0, -1.0, 2.0]))),
        400,
        &["field 'clicks'", "-1", "log1p"],
    );
    expect_error(
        server.post_json(url, &with("x", "FP32", json!([0.0, 1e39, 2.0]))),
        400,
        &["'x'", "finite"],
    );
    // The model still serves.
    assert_eq!(server.post_json(url, &v2_body(&fields)).0, 200);
}

#[test]
fn config_mistakes_leave_the_model_unavailable_with_the_reason() {
    let repo = ScratchRepo::new("fields-config");
    let cases = [
        (
            "width",
            CONFIG
                .replace("\"f6\", \"f7\"]", "\"f6\"]")
                .replace("\"x\", \"y\"]", "\"x\", \"y\", \"f7\"]"),
            &[
                "model 'width'",
                "inputs.cat_ids.from lists 7 fields",
                "[-1, 8]",
            ][..],
        ),
        (
            "vocab",
            CONFIG.to_string(),
            &["model 'vocab'", "feature 'site'", "site.txt"][..],
        ),
        (
            "unknown",
            CONFIG.replace("log1p = true", "log2 = true"),
            &["unknown", "log2"][..],
        ),
        (
            "bounds",
            CONFIG.replace("[18, 25, 35, 50]", "[18, 35, 25, 50]"),
            &[
                "model 'bounds'",
                "feature 'age'",
                "increase",
                "35 is followed by 25",
            ][..],
        ),
        (
            "unused",
            CONFIG.replace(
                "[inputs.cat_ids]",
                "spare = { hash_buckets = 3 }\n[inputs.cat_ids]",
            ),
            &["unused", "feature 'spare'", "used by no input"][..],
        ),
    ];
    for (name, config, _) in &cases {
        repo.add("widedeep_ctr", name, 1, config);
        if *name != "vocab" {
            std::fs::write(repo.path.join(name).join("site.txt"), SITE_VOCABULARY).unwrap();
        }
    }
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.strict_readiness = false;
    let server = TestServer::start_with(config);
    let (status, index) = server.post_json("/v2/repository/index", &json!({}));
    assert_eq!(status, 200, "{index}");
    for (name, _, needles) in &cases {
        let entry = index
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == *name && e["state"] == "UNAVAILABLE")
            .unwrap_or_else(|| panic!("{name} is not UNAVAILABLE: {index}"));
        let reason = entry["reason"].as_str().unwrap_or_default();
        for needle in *needles {
            assert!(
                reason.contains(needle),
                "{name}: {reason:?} should contain {needle:?}"
            );
        }
    }
}

/// `/predict` columns: `{"field": [values]}`.
fn predict_columns(fields: &[(&str, &str, Value)]) -> Value {
    let inputs: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, _, data)| (name.to_string(), data.clone()))
        .collect();
    json!({"model": "ctr", "inputs": inputs})
}

/// `/predict` rows: `[{"field": value, ...}, ...]`.
fn predict_rows(fields: &[(&str, &str, Value)]) -> Value {
    let n = fields[0].2.as_array().unwrap().len();
    let rows: Vec<Value> = (0..n)
        .map(|r| {
            Value::Object(
                fields
                    .iter()
                    .map(|(name, _, data)| (name.to_string(), data[r].clone()))
                    .collect(),
            )
        })
        .collect();
    json!({"model": "ctr", "instances": rows})
}

fn predict_probs(status_body: (u16, Value)) -> Vec<Value> {
    let (status, body) = status_body;
    assert_eq!(status, 200, "{body}");
    flatten(&body["outputs"]["click_prob"])
}

#[test]
fn predict_takes_raw_fields_as_columns_and_as_rows() {
    let repo = repo("fields-predict");
    let server = TestServer::start(&repo.path);
    let (fields, cat_ids, dense) = numeric_rows();
    let want = probs(server.post_json("/v2/models/ctr/infer", &tensors_body(&cat_ids, &dense)));
    let got = predict_probs(server.post_json("/predict", &predict_columns(&fields)));
    assert_close(&got, &want, 0.0, 1e-6, "columns");
    let got = predict_probs(server.post_json("/predict", &predict_rows(&fields)));
    assert_close(&got, &want, 0.0, 1e-6, "rows");
    // Rows may mix fields and tensors too.
    let mut rows = predict_rows(&fields[..7]);
    for (r, row) in rows["instances"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        row["dense"] = dense[r].clone();
    }
    let got = predict_probs(server.post_json("/predict", &rows));
    assert_close(&got, &want, 0.0, 1e-6, "rows with a tensor");
    // A row that leaves out a field with a default gets the default, as a column left
    // out does.
    let mut rows = predict_rows(&fields);
    rows["instances"][1]["y"] = json!(0.5);
    let got = predict_probs(server.post_json("/predict", &rows));
    assert_close(&got, &want, 0.0, 1e-6, "rows with a default");
    // Mistakes: a row without a field the others give, both forms at once, a string for a
    // number, a nested value.
    let mut rows = predict_rows(&fields);
    rows["instances"][2].as_object_mut().unwrap().remove("age");
    expect_error(
        server.post_json("/predict", &rows),
        400,
        &["instance 2", "'age'"],
    );
    let mut both = predict_rows(&fields);
    both["inputs"] = json!({});
    expect_error(
        server.post_json("/predict", &both),
        400,
        &["\"inputs\"", "\"instances\""],
    );
    let mut columns = predict_columns(&fields);
    columns["inputs"]["income"] = json!([1.0, [2.0], 3.0]);
    expect_error(
        server.post_json("/predict", &columns),
        400,
        &["field 'income'", "one value per row"],
    );
    columns["inputs"]["income"] = json!([1.0, "2", 3.0]);
    expect_error(
        server.post_json("/predict", &columns),
        400,
        &["field 'income'", "a number", "\"2\""],
    );
}

#[test]
fn metadata_and_triton_config_list_the_fields_a_client_sends() {
    let repo = repo("fields-meta");
    let server = TestServer::start(&repo.path);
    let (status, meta) = server.get_json("/v2/models/ctr");
    assert_eq!(status, 200, "{meta}");
    let inputs: Vec<(&str, &str)> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    // The graph inputs built from fields are not sent; every field is, by name.
    assert!(
        !inputs.iter().any(|(n, _)| *n == "cat_ids" || *n == "dense"),
        "{meta}"
    );
    assert!(inputs.contains(&("user", "BYTES")), "{meta}");
    assert!(inputs.contains(&("income", "FP32")), "{meta}");
    assert_eq!(inputs.len(), 12, "{meta}");
    let site = meta["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "site")
        .unwrap();
    assert_eq!(site["feeds"], json!([{"input": "cat_ids", "column": 1}]));
    assert!(
        site["transform"]
            .as_str()
            .unwrap()
            .contains("oov_buckets = 2"),
        "{site}"
    );
    let y = meta["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "y")
        .unwrap();
    assert_eq!(y["default"], json!(0.5));

    let (status, config) = server.get_json("/v2/models/ctr/config");
    assert_eq!(status, 200, "{config}");
    let user = config["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "user")
        .unwrap();
    assert_eq!(user["data_type"], "TYPE_STRING");
    assert_eq!(user["dims"], json!([1]));
    assert_eq!(user["reshape"]["shape"], json!([]));
    assert_eq!(config["features"].as_array().unwrap().len(), 12);
    // A model without [features] shows no trace of them.
    let plain = ScratchRepo::digits("fields-meta-plain");
    let server = TestServer::start(&plain.path);
    let (_, meta) = server.get_json("/v2/models/mlp_digits");
    assert!(meta.get("features").is_none(), "{meta}");
    let (_, config) = server.get_json("/v2/models/mlp_digits/config");
    assert!(config.get("features").is_none(), "{config}");
    assert!(config["input"][0].get("reshape").is_none(), "{config}");
}

#[test]
fn grpc_takes_fields_and_lists_them() {
    use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
    use mlpserve::api::grpc::proto::*;
    let repo = repo("fields-grpc");
    let server = TestServer::start(&repo.path);
    let (fields, cat_ids, dense) = numeric_rows();
    let want = probs(server.post_json("/v2/models/ctr/infer", &tensors_body(&cat_ids, &dense)));
    support::with_client(&server, |mut client| async move {
        let mut request = ModelInferRequest {
            model_name: "ctr".into(),
            ..Default::default()
        };
        for (name, datatype, data) in &fields {
            let values = flatten(data);
            request.inputs.push(InferInputTensor {
                name: name.to_string(),
                datatype: datatype.to_string(),
                shape: vec![values.len() as i64],
                contents: Some(support::typed(datatype, &values)),
                ..Default::default()
            });
        }
        let response = client
            .model_infer(request)
            .await
            .expect("infer")
            .into_inner();
        support::assert_outputs(
            &response,
            &json!({"click_prob": {"datatype": "FP32", "shape": [3, 1], "data": want}}),
        );
        let meta = client
            .model_metadata(ModelMetadataRequest {
                name: "ctr".into(),
                version: String::new(),
            })
            .await
            .expect("metadata")
            .into_inner();
        let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names.len(), 12, "{names:?}");
        assert!(
            names.contains(&"site") && !names.contains(&"cat_ids"),
            "{names:?}"
        );
        let config = client
            .model_config(ModelConfigRequest {
                name: "ctr".into(),
                version: String::new(),
            })
            .await
            .expect("config")
            .into_inner()
            .config
            .expect("config");
        let site = config
            .input
            .iter()
            .find(|i| i.name == "site")
            .expect("site");
        assert_eq!(site.data_type, DataType::TypeString as i32);
        assert_eq!(site.reshape.as_ref().map(|r| r.shape.len()), Some(0));
        let described = &config.parameters["feature:site"].string_value;
        assert!(described.contains("cat_ids"), "{described}");
    });
}

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
        use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
        use mlpserve::api::grpc::proto::*;
        for sample in zoo_samples() {
            let mut request = ModelInferRequest {
                model_name: "features_ctr".into(),
                ..Default::default()
            };
            for (name, t) in sample["inputs"].as_object().unwrap() {
                let datatype = t["datatype"].as_str().unwrap();
                let values = flatten(&t["data"]);
                let contents = if datatype == "BYTES" {
                    InferTensorContents {
                        bytes_contents: values
                            .iter()
                            .map(|v| bytes::Bytes::from(v.as_str().unwrap().as_bytes().to_vec()))
                            .collect(),
                        ..Default::default()
                    }
                } else {
                    support::typed(datatype, &values)
                };
                request.inputs.push(InferInputTensor {
                    name: name.clone(),
                    datatype: datatype.into(),
                    shape: vec![values.len() as i64],
                    contents: Some(contents),
                    ..Default::default()
                });
            }
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
