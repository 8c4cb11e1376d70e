//! Every model in the zoo: ships its samples and card, loads, and the real server
//! reproduces the reference outputs of the Python onnxruntime through both APIs.

mod common;

use common::{assert_close, flatten, samples, zoo, TestServer};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn model_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(zoo())
        .expect("models/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("1").join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Nests a flat array by `shape` (row-major).
fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] => flat[0].clone(),
        [_] => Value::Array(flat.to_vec()),
        [n, inner @ ..] => {
            let chunk = inner.iter().product::<usize>();
            Value::Array(
                (0..*n)
                    .map(|i| nest(&flat[i * chunk..(i + 1) * chunk], inner))
                    .collect(),
            )
        }
    }
}

fn shape_of(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

#[test]
fn every_model_ships_samples_and_a_model_card() {
    let names = model_names();
    assert!(names.len() >= 9, "the zoo has every family: {names:?}");
    for name in &names {
        let dir = zoo().join(name);
        let card = std::fs::read_to_string(dir.join("README.md"))
            .unwrap_or_else(|_| panic!("{name} has no README.md card"));
        assert!(card.len() > 200, "{name}: card too short");
        let s = samples(name);
        assert!(
            s["samples"].as_array().is_some_and(|a| !a.is_empty()),
            "{name}: samples.json has samples"
        );
    }
}

#[test]
fn the_server_reproduces_every_reference_sample() {
    let server = TestServer::start(&zoo());
    let client = Client::new();
    for name in model_names() {
        let meta: Value = client
            .get(server.url(&format!("/v2/models/{name}")))
            .send()
            .expect("meta")
            .json()
            .expect("json");
        let output_names: Vec<String> = meta["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| o["name"].as_str().expect("name").to_string())
            .collect();
        for (i, sample) in samples(&name)["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .enumerate()
        {
            let inputs = sample["inputs"].as_object().expect("inputs");
            let v2_inputs: Vec<Value> = inputs
                .iter()
                .map(|(n, t)| json!({"name": n, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}))
                .collect();
            let v2: Value = {
                let r = client
                    .post(server.url(&format!("/v2/models/{name}/infer")))
                    .json(&json!({"inputs": v2_inputs}))
                    .send()
                    .expect("infer");
                assert_eq!(r.status().as_u16(), 200, "{name} sample {i}");
                r.json().expect("json")
            };
            let predict_inputs: serde_json::Map<String, Value> = inputs
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        nest(t["data"].as_array().expect("flat data"), &shape_of(t)),
                    )
                })
                .collect();
            let predict: Value = {
                let r = client
                    .post(server.url("/predict"))
                    .json(&json!({"model": name, "inputs": predict_inputs}))
                    .send()
                    .expect("predict");
                assert_eq!(r.status().as_u16(), 200, "{name} sample {i}");
                r.json().expect("json")
            };
            for (out_name, want) in sample["outputs"].as_object().expect("outputs") {
                assert!(
                    output_names.contains(out_name),
                    "{name}: metadata lists output {out_name}"
                );
                let want_data = flatten(&want["data"]);
                let got = v2["outputs"]
                    .as_array()
                    .expect("outputs")
                    .iter()
                    .find(|o| o["name"] == *out_name)
                    .expect("output present");
                assert_eq!(got["shape"], want["shape"], "{name} {out_name} shape");
                assert_eq!(
                    got["datatype"], want["datatype"],
                    "{name} {out_name} datatype"
                );
                let what = format!("{name} sample {i} {out_name}");
                assert_close(
                    &flatten(&got["data"]),
                    &want_data,
                    1e-4,
                    1e-5,
                    &format!("v2 {what}"),
                );
                assert_close(
                    &flatten(&predict["outputs"][out_name]),
                    &want_data,
                    1e-4,
                    1e-5,
                    &format!("predict {what}"),
                );
            }
        }
    }
}

#[test]
fn a_hundred_thousand_coordinates_split_across_instances_and_come_back_in_order() {
    let server = TestServer::start(&zoo());
    let (mut coords, mut rgb) = (Vec::new(), Vec::new());
    for s in samples("field_china")["samples"]
        .as_array()
        .expect("samples")
    {
        coords.extend(
            s["inputs"]["coords"]["data"]
                .as_array()
                .expect("coords")
                .iter()
                .cloned(),
        );
        rgb.extend(
            s["outputs"]["rgb"]["data"]
                .as_array()
                .expect("rgb")
                .iter()
                .cloned(),
        );
    }
    let per_round = coords.len() / 2;
    let rows = (100_000 / per_round + 1) * per_round;
    let tile =
        |v: &[Value], n: usize| -> Vec<Value> { v.iter().cycle().take(n).cloned().collect() };
    let body = json!({"inputs": [{"name": "coords", "datatype": "FP32", "shape": [rows, 2], "data": tile(&coords, rows * 2)}]});
    let r = Client::new()
        .post(server.url("/v2/models/field_china/infer"))
        .json(&body)
        .send()
        .expect("infer");
    assert_eq!(r.status().as_u16(), 200);
    let batch_rows: usize = r.headers()["x-batch-rows"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert!(
        batch_rows <= 4096,
        "chunks respect max_batch_size, got {batch_rows}"
    );
    let out: Value = r.json().expect("json");
    assert_eq!(out["outputs"][0]["shape"], json!([rows, 3]));
    assert_close(
        &flatten(&out["outputs"][0]["data"]),
        &tile(&rgb, rows * 3),
        1e-4,
        1e-5,
        "rgb in request order",
    );
}
