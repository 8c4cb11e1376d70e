//! Raw features in, predictions out: a model whose `config.toml` declares `[features]`
//! takes raw fields on every API, turns them into the graph inputs exactly as the
//! transforms define, and answers as if the client had sent those inputs as tensors;
//! config mistakes leave the model UNAVAILABLE with the reason; bad fields get a 400 that
//! names the field and what came. Metadata and gRPC are in `interfaces.rs`; the zoo's
//! raw-feature model on every API in `zoo.rs`.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../grpc/support.rs"]
mod support;

mod interfaces;
mod zoo;

use common::{
    assert_close, assert_unavailable, expect_error, flatten, v2_columns, ScratchRepo, TestServer,
};
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
    let got = probs(server.post_json(url, &v2_columns(&fields)));
    assert_close(&got, &want, 0.0, 1e-6, "raw fields vs tensors");
    // One request may mix both: `cat_ids` as a tensor, `dense` from its fields.
    let mut mixed = v2_columns(&fields[7..]);
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
        v2_columns(&f)
    };
    let without = |name: &str| {
        let f: Vec<_> = fields
            .iter()
            .filter(|(n, ..)| *n != name)
            .cloned()
            .collect();
        v2_columns(&f)
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
    assert_eq!(server.post_json(url, &v2_columns(&fields)).0, 200);
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
    let server = TestServer::start_lenient(&repo.path);
    let index = server.repository_index();
    for (name, _, needles) in &cases {
        assert_unavailable(&index, name, needles);
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
