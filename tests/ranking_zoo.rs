//! The zoo's ranking models (`ranking_ctr`, and `ranking_towers`, whose user tower is a
//! context graph run once per request) answer their ranking samples
//! (`models/<model>/ranking_samples.json`: one user's context, N = 1, 20 and 200
//! candidates, unknown tokens on both sides) with the scores ONNX Runtime gave at export for
//! the explicitly repeated request, built by the training pipeline's reference transforms.
//! Each sample goes through the real server as sent with the context once (the user's
//! fields and history declared `broadcast`, first dimension 1) with `top_k`, over `/predict`
//! as written and over V2, and as the same request a client without broadcast inputs sends:
//! every field and the history repeated on every row.

mod common;

use common::{assert_close, flatten, zoo, TestServer};
use serde_json::{json, Map, Value};

const MODELS: [&str; 2] = ["ranking_ctr", "ranking_towers"];

/// Every ranking sample of every ranking model: (model, "model #index", sample).
fn ranking_samples() -> Vec<(&'static str, String, Value)> {
    let mut out = Vec::new();
    for model in MODELS {
        let path = zoo().join(model).join("ranking_samples.json");
        let text = std::fs::read_to_string(&path).expect("ranking_samples.json");
        let all: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(all["model"], model);
        let samples = all["samples"].as_array().expect("samples").clone();
        let sizes: Vec<usize> = samples.iter().map(|s| candidates(s).1).collect();
        assert_eq!(
            sizes,
            [1, 20, 200],
            "{model}: the samples' candidate counts"
        );
        for (i, sample) in samples.into_iter().enumerate() {
            out.push((model, format!("{model} #{i}"), sample));
        }
    }
    out
}

/// A sample's candidates as columns (they come as columns or as rows) and their count.
fn candidates(sample: &Value) -> (Map<String, Value>, usize) {
    let c = &sample["request"]["candidates"];
    let columns: Map<String, Value> = match c {
        Value::Object(columns) => columns.clone(),
        Value::Array(rows) => {
            let mut columns = Map::new();
            for row in rows {
                for (k, v) in row.as_object().expect("a candidate row") {
                    let column = columns.entry(k.clone()).or_insert_with(|| json!([]));
                    column.as_array_mut().expect("column").push(v.clone());
                }
            }
            columns
        }
        other => panic!("candidates are columns or rows, got {other}"),
    };
    let n = columns
        .values()
        .next()
        .and_then(Value::as_array)
        .expect("a candidate column")
        .len();
    (columns, n)
}

fn datatype(values: &[Value]) -> &'static str {
    match &values[0] {
        Value::String(_) => "BYTES",
        Value::Number(n) if n.is_i64() || n.is_u64() => "INT64",
        _ => "FP64",
    }
}

/// The sample as per-row columns: every context value (the history too) repeated N times.
fn repeated_columns(sample: &Value) -> (Map<String, Value>, usize) {
    let (mut columns, n) = candidates(sample);
    for (k, v) in sample["request"]["context"].as_object().expect("context") {
        columns.insert(k.clone(), Value::Array(vec![v.clone(); n]));
    }
    (columns, n)
}

fn expected_score(sample: &Value) -> Vec<Value> {
    sample["expected"]["score"]
        .as_array()
        .expect("expected score")
        .clone()
}

#[test]
fn the_ranking_samples_with_their_context_repeated_reproduce_over_v2_and_predict() {
    let server = TestServer::start(&zoo());
    for (model, i, sample) in &ranking_samples() {
        let (columns, n) = repeated_columns(sample);
        let inputs: Vec<Value> = columns
            .iter()
            .map(|(name, column)| {
                let rows = column.as_array().expect("column");
                let (shape, data) = match &rows[0] {
                    Value::Array(row) => (json!([n, row.len()]), Value::Array(flatten(column))),
                    _ => (json!([n]), column.clone()),
                };
                json!({"name": name, "datatype": datatype(&flatten(column)), "shape": shape, "data": data})
            })
            .collect();
        let (status, v2) = server.post_json(
            &format!("/v2/models/{model}/infer"),
            &json!({"inputs": inputs}),
        );
        assert_eq!(status, 200, "sample {i}: {v2}");
        let score = &v2["outputs"][0];
        assert_eq!(score["name"], "score");
        assert_eq!(score["shape"], json!([n, 1]), "sample {i}");
        assert_close(
            &flatten(&score["data"]),
            &expected_score(sample),
            1e-4,
            1e-5,
            &format!("v2 sample {i}"),
        );

        let (status, predict) = server.post_json(
            "/predict",
            &json!({"model": model, "inputs": Value::Object(columns)}),
        );
        assert_eq!(status, 200, "sample {i}: {predict}");
        assert_close(
            &flatten(&predict["outputs"]["score"]),
            &expected_score(sample),
            1e-4,
            1e-5,
            &format!("predict sample {i}"),
        );
    }
}

#[test]
fn the_expected_top_k_is_the_sort_of_the_expected_scores() {
    for (_, i, sample) in &ranking_samples() {
        let score: Vec<f64> = expected_score(sample)
            .iter()
            .map(|v| v.as_f64().expect("score"))
            .collect();
        let k = sample["request"]["top_k"].as_u64().expect("top_k") as usize;
        let mut order: Vec<usize> = (0..score.len()).collect();
        // best first, ties to the lower index (a stable sort)
        order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
        order.truncate(k);
        let top = &sample["expected"]["top_k"];
        assert_eq!(top["indices"], json!(order), "sample {i}");
        let scores: Vec<f64> = order.iter().map(|&j| score[j]).collect();
        assert_eq!(top["scores"], json!(scores), "sample {i}");
    }
}

fn output<'a>(v2: &'a Value, name: &str) -> &'a Value {
    v2["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {v2}"))
}

#[test]
fn the_ranking_samples_reproduce_over_predict_with_the_context_once() {
    let server = TestServer::start(&zoo());
    for (model, i, sample) in &ranking_samples() {
        let mut body = sample["request"].clone();
        body["model"] = json!(model);
        let (status, got) = server.post_json("/predict", &body);
        assert_eq!(status, 200, "sample {i}: {got}");
        let what = format!("predict ranking sample {i}");
        assert_close(
            &flatten(&got["outputs"]["score"]),
            &expected_score(sample),
            1e-4,
            1e-5,
            &what,
        );
        let want = &sample["expected"]["top_k"];
        assert_eq!(got["top_k"]["indices"], want["indices"], "{what}");
        assert_close(
            &flatten(&got["top_k"]["scores"]),
            &flatten(&want["scores"]),
            1e-4,
            1e-5,
            &format!("{what} top_k scores"),
        );
    }
}

#[test]
fn the_ranking_samples_reproduce_over_v2_with_the_context_sent_once_and_top_k() {
    let server = TestServer::start(&zoo());
    for (model, i, sample) in &ranking_samples() {
        let (columns, n) = candidates(sample);
        let mut inputs: Vec<Value> = columns
            .iter()
            .map(|(name, column)| {
                let data = column.as_array().expect("column");
                json!({"name": name, "datatype": datatype(data), "shape": [n], "data": column})
            })
            .collect();
        for (name, value) in sample["request"]["context"].as_object().expect("context") {
            let (shape, data) = match value {
                Value::Array(row) => (json!([1, row.len()]), value.clone()),
                _ => (json!([1]), json!([value])),
            };
            let dt = datatype(&flatten(&data));
            inputs.push(json!({"name": name, "datatype": dt, "shape": shape, "data": data}));
        }
        let k = sample["request"]["top_k"].clone();
        let (status, v2) = server.post_json(
            &format!("/v2/models/{model}/infer"),
            &json!({"inputs": inputs, "parameters": {"top_k": k}}),
        );
        assert_eq!(status, 200, "sample {i}: {v2}");
        let what = format!("v2 ranking sample {i}");
        let score = output(&v2, "score");
        assert_eq!(score["shape"], json!([n, 1]), "{what}");
        assert_close(
            &flatten(&score["data"]),
            &expected_score(sample),
            1e-4,
            1e-5,
            &what,
        );
        let want = &sample["expected"]["top_k"];
        let indices = output(&v2, "top_k_indices");
        assert_eq!(indices["datatype"], "INT64", "{what}");
        assert_eq!(indices["data"], want["indices"], "{what}");
        assert_close(
            &flatten(&output(&v2, "top_k_scores")["data"]),
            &flatten(&want["scores"]),
            1e-4,
            1e-5,
            &format!("{what} top_k scores"),
        );
    }
}
