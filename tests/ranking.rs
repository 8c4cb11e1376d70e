//! Ranking requests: a model may declare inputs `broadcast`, sent once per request (one
//! user's history) while the others have N rows (the candidates). Every answer equals the
//! model's answer to the request with the context repeated N times; requests of different
//! N share batches, requests over the batch limit are split and merged, and every other
//! row mismatch is a 400 naming the inputs and their counts.

mod common;
#[allow(dead_code)]
#[path = "grpc/support.rs"]
mod support;

use common::{assert_close, expect_error, flatten, header_usize, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
use mlpserve::api::grpc::proto::ModelInferRequest;
use serde_json::{json, Value};

/// The zoo's DIN model (`target_item` INT64 [-1], `hist_items` INT64 [-1, -1], `hist_mask`
/// FP32 [-1, -1] → `click_prob` FP32 [-1, 1]) with the user's history broadcast.
fn din_config(head: &str) -> String {
    format!(
        "{head}
[inputs.hist_items]
pad_axes = [1]
pad_value = 0
broadcast = true
[inputs.hist_mask]
pad_axes = [1]
pad_value = 0
broadcast = true
"
    )
}

/// One ranking request: a user history of `len` items and `n` candidate items.
struct Ranking {
    history: Vec<i64>,
    targets: Vec<i64>,
}

impl Ranking {
    fn new(seed: i64, len: usize, n: usize) -> Ranking {
        Ranking {
            history: (0..len as i64)
                .map(|i| (seed * 131 + i * 17) % 1999 + 1)
                .collect(),
            targets: (0..n as i64)
                .map(|i| (seed * 37 + i * 53) % 1999 + 1)
                .collect(),
        }
    }

    /// V2 JSON inputs, the history once (`repeat` false) or once per candidate.
    fn v2(&self, repeat: bool) -> Value {
        let n = self.targets.len();
        let copies = if repeat { n } else { 1 };
        let len = self.history.len();
        let items: Vec<i64> = (0..copies).flat_map(|_| self.history.clone()).collect();
        let mask: Vec<f32> = vec![1.0; copies * len];
        json!({"inputs": [
            {"name": "target_item", "datatype": "INT64", "shape": [n], "data": self.targets},
            {"name": "hist_items", "datatype": "INT64", "shape": [copies, len], "data": items},
            {"name": "hist_mask", "datatype": "FP32", "shape": [copies, len], "data": mask},
        ]})
    }
}

/// The `click_prob` values of a V2 answer, after checking its shape is [n, 1].
fn scores(status_body: &(u16, Value), n: usize) -> Vec<Value> {
    let (status, body) = status_body;
    assert_eq!(*status, 200, "{body}");
    let out = &body["outputs"][0];
    assert_eq!(out["name"], "click_prob", "{body}");
    assert_eq!(out["shape"], json!([n, 1]), "{body}");
    flatten(&out["data"])
}

#[test]
fn a_broadcast_context_answers_as_the_repeated_request() {
    let repo = ScratchRepo::new("rank-same");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    for (len, n) in [(6, 5), (1, 1), (20, 64), (3, 2)] {
        let r = Ranking::new(len as i64, len, n);
        let once = server.post_json("/v2/models/din/infer", &r.v2(false));
        let repeated = server.post_json("/v2/models/din/infer", &r.v2(true));
        // Alone in the server each runs as one batch of the same N rows: bit-equal.
        assert_eq!(
            scores(&once, n),
            scores(&repeated, n),
            "len {len}, n {n}: the broadcast answer differs from the repeated one"
        );
    }
}

#[test]
fn grpc_takes_a_broadcast_input_with_first_dimension_one() {
    let repo = ScratchRepo::new("rank-grpc");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(3, 7, 9);
    let want = scores(&server.post_json("/v2/models/din/infer", &r.v2(true)), 9);
    let input =
        |name: &str, datatype: &str, shape: Vec<i64>, values: Vec<Value>| InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            contents: Some(support::typed(datatype, &values)),
            ..Default::default()
        };
    let to_json = |v: &[i64]| v.iter().map(|&x| json!(x)).collect::<Vec<_>>();
    let request = ModelInferRequest {
        model_name: "din".into(),
        inputs: vec![
            input("target_item", "INT64", vec![9], to_json(&r.targets)),
            input("hist_items", "INT64", vec![1, 7], to_json(&r.history)),
            input("hist_mask", "FP32", vec![1, 7], vec![json!(1.0); 7]),
        ],
        ..Default::default()
    };
    support::with_client(&server, |mut client| async move {
        let response = client
            .model_infer(request)
            .await
            .expect("infer")
            .into_inner();
        let outputs = support::outputs_json(&response);
        let (_, shape, got) = &outputs["click_prob"];
        assert_eq!(shape, &vec![9, 1]);
        let f32s = |v: &[Value]| -> Vec<f32> {
            v.iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        };
        assert_eq!(
            f32s(got),
            f32s(&want),
            "gRPC broadcast answer differs from the repeated one"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranking_requests_of_different_n_share_one_batch_each_answered_its_own() {
    // 16 requests of N = 1..=16 (136 rows), histories of different lengths, half of
    // them with the context repeated: one batch, as the delay waits for all of them.
    let requests: Vec<(Ranking, bool)> = (1..=16)
        .map(|n| (Ranking::new(n as i64, 3 + n % 5 * 4, n), n % 2 == 0))
        .collect();
    let total: usize = (1..=16).sum();
    let repo = ScratchRepo::new("rank-batch");
    repo.add(
        "din_ctr",
        "din",
        1,
        &din_config(&format!(
            "max_batch_size = {total}\nmax_queue_delay_us = 5000000"
        )),
    );
    repo.add(
        "din_ctr",
        "reference",
        1,
        &din_config("max_batch_size = 64"),
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let mut want = Vec::new();
    for (r, _) in &requests {
        let response = client
            .post(server.url("/v2/models/reference/infer"))
            .json(&r.v2(true))
            .send()
            .await
            .expect("request");
        let answer = (
            response.status().as_u16(),
            response.json().await.expect("json"),
        );
        want.push(scores(&answer, r.targets.len()));
    }
    let calls = requests.iter().map(|(r, repeat)| {
        let (client, url, body) = (
            client.clone(),
            server.url("/v2/models/din/infer"),
            r.v2(*repeat),
        );
        async move {
            let response = client.post(url).json(&body).send().await.expect("request");
            let rows = header_usize(response.headers(), "x-batch-rows");
            let status = response.status().as_u16();
            (
                rows,
                (status, response.json::<Value>().await.expect("json")),
            )
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (((rows, answer), (r, _)), want) in answers.iter().zip(&requests).zip(&want) {
        let n = r.targets.len();
        assert_eq!(*rows, total, "request of {n} rows ran in a batch of {rows}");
        assert_close(&scores(answer, n), want, 1e-5, 1e-6, &format!("n = {n}"));
    }
    let text = server.metrics_text().await;
    let executions = common::series_value(
        &text,
        "mlpserve_executions_total{model=\"din\",version=\"1\"}",
    );
    assert_eq!(executions, Some(1.0), "all 16 requests ran as one batch");
}

#[test]
fn a_request_over_the_batch_limit_is_split_and_merged() {
    let repo = ScratchRepo::new("rank-split");
    repo.add(
        "din_ctr",
        "din",
        1,
        &din_config("max_batch_size = 4\ninline_run_us = 0"),
    );
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(9, 12, 10);
    let once = server.post_json("/v2/models/din/infer", &r.v2(false));
    let repeated = server.post_json("/v2/models/din/infer", &r.v2(true));
    // Both split into chunks of 4, 4 and 2 rows: bit-equal.
    assert_eq!(scores(&once, 10), scores(&repeated, 10));
    let text = reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    let executions = common::series_value(
        &text,
        "mlpserve_executions_total{model=\"din\",version=\"1\"}",
    );
    assert_eq!(
        executions,
        Some(6.0),
        "two requests of 10 rows, 3 chunks each"
    );
}

#[test]
fn row_mismatches_are_refused_naming_the_inputs_and_their_counts() {
    let repo = ScratchRepo::new("rank-bad");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let url = "/v2/models/din/infer";
    // The candidates sent as one row while the history has 3: target_item is not broadcast.
    let mut body = Ranking::new(1, 4, 3).v2(true);
    body["inputs"][0]["shape"] = json!([1]);
    body["inputs"][0]["data"] = json!([5]);
    expect_error(
        server.post_json(url, &body),
        400,
        &["target_item", "not declared broadcast", "hist_items", "3"],
    );
    // A broadcast input with neither 1 row nor N.
    let mut body = Ranking::new(1, 4, 3).v2(false);
    body["inputs"][1]["shape"] = json!([2, 4]);
    body["inputs"][1]["data"] = json!([1, 2, 3, 4, 5, 6, 7, 8]);
    expect_error(
        server.post_json(url, &body),
        400,
        &[
            "hist_items",
            "has 2",
            "target_item",
            "has 3 rows",
            "1 row or",
        ],
    );
}

#[test]
fn an_undeclared_model_refuses_the_broadcast_shape() {
    let repo = ScratchRepo::new("rank-undeclared");
    repo.add(
        "din_ctr",
        "din",
        1,
        "[inputs.hist_items]\npad_axes = [1]\n[inputs.hist_mask]\npad_axes = [1]\n",
    );
    let server = TestServer::start(&repo.path);
    expect_error(
        server.post_json("/v2/models/din/infer", &Ranking::new(1, 4, 3).v2(false)),
        400,
        &["hist_items", "not declared broadcast", "broadcast = true"],
    );
}

/// The zoo's Wide & Deep model (`cat_ids` INT64 [-1, 8], `dense` FP32 [-1, 4]) with its
/// categorical fields sent once per request.
const FIELDS: &str = r#"
max_batch_size = 64
[features]
user = { hash_buckets = 10, broadcast = true }
c1 = { hash_buckets = 100, broadcast = true }
c2 = { hash_buckets = 100, broadcast = true }
c3 = { hash_buckets = 100, broadcast = true }
c4 = { hash_buckets = 100, broadcast = true }
c5 = { hash_buckets = 100, broadcast = true }
c6 = { hash_buckets = 100, broadcast = true }
c7 = { hash_buckets = 100, broadcast = true, default = "none" }
price = { mean = 50.0, std = 10.0 }
d2 = {}
d3 = {}
d4 = { default = 0.5 }
[inputs.cat_ids]
from = ["user", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]
[inputs.dense]
from = ["price", "d2", "d3", "d4"]
"#;

/// V2 JSON inputs of fields: (name, datatype, values), each of shape [len].
fn field_body(fields: &[(&str, &str, Value)]) -> Value {
    let inputs: Vec<Value> = fields
        .iter()
        .map(|(name, datatype, data)| {
            let n = data.as_array().map_or(1, Vec::len);
            json!({"name": name, "datatype": datatype, "shape": [n], "data": data})
        })
        .collect();
    json!({ "inputs": inputs })
}

#[test]
fn broadcast_fields_build_a_broadcast_input() {
    let repo = ScratchRepo::new("rank-fields");
    repo.add("widedeep_ctr", "ctr", 1, FIELDS);
    let server = TestServer::start(&repo.path);
    let user: Vec<(&str, &str, Value)> = ["user", "c1", "c2", "c3", "c4", "c5", "c6"]
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, "BYTES", json!([format!("v{i}")])))
        .collect();
    let items = vec![
        ("price", "FP32", json!([40.0, 55.5, 61.0, 12.0])),
        ("d2", "FP32", json!([0.1, 0.2, 0.3, 0.4])),
        ("d3", "FP32", json!([1.0, 0.0, 1.0, 0.0])),
    ];
    let once: Vec<_> = user.iter().cloned().chain(items.clone()).collect();
    let repeated: Vec<_> = user
        .iter()
        .map(|(name, dt, v)| (*name, *dt, json!(vec![v[0].clone(); 4])))
        .chain(items)
        .collect();
    let url = "/v2/models/ctr/infer";
    let got = server.post_json(url, &field_body(&once));
    let want = server.post_json(url, &field_body(&repeated));
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["outputs"][0]["shape"][0], 4, "{}", got.1);
    assert_eq!(got.1["outputs"], want.1["outputs"]);
    // A broadcast field's values agree in count across the fields of its input.
    let mut uneven = once.clone();
    uneven[1].2 = json!(["a", "b"]);
    expect_error(
        server.post_json(url, &field_body(&uneven)),
        400,
        &["c1", "has 2 values", "user"],
    );
}

#[test]
fn broadcast_config_mistakes_leave_the_model_unavailable_with_the_reason() {
    let repo = ScratchRepo::new("rank-config");
    repo.add(
        "widedeep_ctr",
        "mixed",
        1,
        &FIELDS.replace(
            "c3 = { hash_buckets = 100, broadcast = true }",
            "c3 = { hash_buckets = 100 }",
        ),
    );
    repo.add_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fixed_batch/1/model.onnx"),
        "fixed",
        1,
        "[inputs.x]\nbroadcast = true\n",
    );
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.strict_readiness = false;
    let server = TestServer::start_with(config);
    let (status, index) = server.post_json("/v2/repository/index", &json!({}));
    assert_eq!(status, 200, "{index}");
    for (name, needles) in [
        (
            "mixed",
            &[
                "model 'mixed'",
                "inputs.cat_ids",
                "'user'",
                "'c3'",
                "broadcast",
            ][..],
        ),
        (
            "fixed",
            &["model 'fixed'", "inputs.x", "broadcast", "cannot batch"][..],
        ),
    ] {
        let entry = index
            .as_array()
            .expect("index")
            .iter()
            .find(|e| e["name"] == name && e["state"] == "UNAVAILABLE")
            .unwrap_or_else(|| panic!("{name} is not UNAVAILABLE: {index}"));
        let reason = entry["reason"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(
                reason.contains(needle),
                "{name}: {reason:?} should contain {needle:?}"
            );
        }
    }
}

#[test]
fn metadata_lists_the_broadcast_inputs_and_the_ranked_output() {
    let repo = ScratchRepo::new("rank-meta");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    repo.add("widedeep_ctr", "ctr", 1, FIELDS);
    let server = TestServer::start(&repo.path);
    let (status, meta) = server.get_json("/v2/models/din");
    assert_eq!(status, 200, "{meta}");
    let flags: Vec<(String, bool)> = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| {
            let name = i["name"].as_str().expect("name").to_string();
            (name, i["broadcast"] == json!(true))
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("target_item".to_string(), false),
            ("hist_items".to_string(), true),
            ("hist_mask".to_string(), true)
        ]
    );
    assert_eq!(
        meta["parameters"]["broadcast_inputs"],
        "hist_items,hist_mask"
    );
    assert_eq!(meta["parameters"]["rank_by"], "click_prob");
    let (_, config) = server.get_json("/v2/models/din/config");
    assert_eq!(
        config["parameters"]["broadcast_inputs"]["string_value"],
        "hist_items,hist_mask"
    );
    // Raw fields: the broadcast ones are flagged among the inputs and the features.
    let (_, meta) = server.get_json("/v2/models/ctr");
    let user = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["name"] == "user")
        .expect("user field");
    assert_eq!(user["broadcast"], true, "{meta}");
    assert!(meta["parameters"]["broadcast_inputs"]
        .as_str()
        .is_some_and(|b| b.contains("user") && b.contains("c1") && !b.contains("price")));
    // gRPC clients read the same facts from the model configuration.
    support::with_client(&server, |mut client| async move {
        let request = mlpserve::api::grpc::proto::ModelConfigRequest {
            name: "din".into(),
            version: String::new(),
        };
        let config = client
            .model_config(request)
            .await
            .expect("config")
            .into_inner();
        let parameters = config.config.expect("config").parameters;
        assert_eq!(
            parameters["broadcast_inputs"].string_value,
            "hist_items,hist_mask"
        );
        assert_eq!(parameters["rank_by"].string_value, "click_prob");
    });
}

/// The indices of a stable sort of `scores`, largest first (NaN last).
fn sorted_indices(scores: &[Value]) -> Vec<i64> {
    let values: Vec<f64> = scores
        .iter()
        .map(|v| v.as_f64().unwrap_or(f64::NAN))
        .collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap(),
        }
    });
    order.into_iter().map(|i| i as i64).collect()
}

/// The output `name` of a V2 JSON answer.
fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {body}"))
}

#[test]
fn top_k_answers_the_best_rows_best_first_beside_every_row() {
    let repo = ScratchRepo::new("rank-topk");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let url = "/v2/models/din/infer";
    let r = Ranking::new(4, 9, 40);
    for k in [1, 5, 40, 100] {
        let mut body = r.v2(false);
        body["parameters"] = json!({"top_k": k});
        let answer = server.post_json(url, &body);
        let all = scores(&answer, 40);
        let body = &answer.1;
        let kept = k.min(40);
        let indices = output(body, "top_k_indices");
        assert_eq!(indices["datatype"], "INT64");
        assert_eq!(indices["shape"], json!([kept]));
        let got: Vec<i64> = flatten(&indices["data"])
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(got, sorted_indices(&all)[..kept], "k = {k}");
        let best = output(body, "top_k_scores");
        assert_eq!(best["datatype"], "FP32");
        let want: Vec<Value> = got.iter().map(|&i| all[i as usize].clone()).collect();
        assert_eq!(flatten(&best["data"]), want, "k = {k}");
    }
    // Listed outputs: only those, in the order listed, each in its own form.
    let mut body = r.v2(false);
    body["parameters"] = json!({"top_k": 3, "rank_by": "click_prob"});
    body["outputs"] = json!([{"name": "top_k_scores"}, {"name": "top_k_indices"}]);
    let (status, answer) = server.post_json(url, &body);
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["top_k_scores", "top_k_indices"]);
    // Without top_k there are no ranking outputs.
    let (_, answer) = server.post_json(url, &r.v2(false));
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1, "{answer}");
}

#[test]
fn grpc_answers_top_k_as_two_outputs() {
    use mlpserve::api::grpc::proto::infer_parameter::ParameterChoice;
    use mlpserve::api::grpc::proto::InferParameter;
    let repo = ScratchRepo::new("rank-grpc-topk");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(5, 6, 12);
    let all = scores(&server.post_json("/v2/models/din/infer", &r.v2(true)), 12);
    let want = sorted_indices(&all)[..4].to_vec();
    let to_json = |v: &[i64]| v.iter().map(|&x| json!(x)).collect::<Vec<_>>();
    let input =
        |name: &str, datatype: &str, shape: Vec<i64>, values: Vec<Value>| InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            contents: Some(support::typed(datatype, &values)),
            ..Default::default()
        };
    let request = ModelInferRequest {
        model_name: "din".into(),
        inputs: vec![
            input("target_item", "INT64", vec![12], to_json(&r.targets)),
            input("hist_items", "INT64", vec![1, 6], to_json(&r.history)),
            input("hist_mask", "FP32", vec![1, 6], vec![json!(1.0); 6]),
        ],
        parameters: [(
            "top_k".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(4)),
            },
        )]
        .into(),
        ..Default::default()
    };
    support::with_client(&server, |mut client| async move {
        let response = client
            .model_infer(request)
            .await
            .expect("infer")
            .into_inner();
        let outputs = support::outputs_json(&response);
        let (datatype, shape, got) = &outputs["top_k_indices"];
        assert_eq!((datatype.as_str(), shape), ("INT64", &vec![4]));
        let got: Vec<i64> = got.iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got, want);
        let (datatype, shape, _) = &outputs["top_k_scores"];
        assert_eq!((datatype.as_str(), shape), ("FP32", &vec![4]));
        assert_eq!(outputs["click_prob"].1, vec![12, 1]);
    });
}

#[test]
fn bad_ranking_parameters_are_refused_naming_them() {
    let repo = ScratchRepo::new("rank-topk-bad");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    repo.add("mlp_digits", "digits", 1, "");
    let server = TestServer::start(&repo.path);
    let body = |params: Value| {
        let mut body = Ranking::new(2, 3, 4).v2(false);
        body["parameters"] = params;
        body
    };
    let url = "/v2/models/din/infer";
    for bad in [json!(0), json!(-3), json!("5"), json!(2.5), json!(true)] {
        expect_error(
            server.post_json(url, &body(json!({ "top_k": bad }))),
            400,
            &["'top_k'", "integer of at least 1"],
        );
    }
    expect_error(
        server.post_json(url, &body(json!({"top_k": 2, "rank_by": "score"}))),
        400,
        &["rank_by", "'score'", "'click_prob'"],
    );
    expect_error(
        server.post_json(url, &body(json!({"rank_by": "click_prob"}))),
        400,
        &["'rank_by' needs 'top_k'"],
    );
    let mut listed = body(json!({}));
    listed["outputs"] = json!([{"name": "top_k_indices"}]);
    expect_error(
        server.post_json(url, &listed),
        400,
        &["'top_k_indices'", "top_k"],
    );
    // A model whose only output has ten values per row has no default to rank by, and
    // naming that output is refused.
    let digits = json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 64]}],
        "parameters": {"top_k": 1}});
    let (_, meta) = server.get_json("/v2/models/digits");
    let input = meta["inputs"][0]["name"].as_str().unwrap().to_string();
    let mut digits = digits;
    digits["inputs"][0]["name"] = json!(input);
    expect_error(
        server.post_json("/v2/models/digits/infer", &digits),
        400,
        &["top_k", "rank_by", "'logits'"],
    );
    digits["parameters"]["rank_by"] = json!("logits");
    expect_error(
        server.post_json("/v2/models/digits/infer", &digits),
        400,
        &["'logits'", "[-1, 10]", "one value per row"],
    );
}

#[test]
fn a_rank_by_the_model_cannot_rank_by_fails_the_load() {
    let repo = ScratchRepo::new("rank-by-config");
    repo.add("mlp_digits", "wide", 1, "rank_by = \"logits\"\n");
    repo.add("mlp_digits", "unknown", 1, "rank_by = \"score\"\n");
    let mut config = mlpserve::ServerConfig::for_tests(&repo.path);
    config.strict_readiness = false;
    let server = TestServer::start_with(config);
    let (_, index) = server.post_json("/v2/repository/index", &json!({}));
    for (name, needles) in [
        (
            "wide",
            &["model 'wide'", "rank_by", "'logits'", "one value per row"][..],
        ),
        (
            "unknown",
            &["model 'unknown'", "rank_by = \"score\"", "names no output"][..],
        ),
    ] {
        let entry = index
            .as_array()
            .expect("index")
            .iter()
            .find(|e| e["name"] == name && e["state"] == "UNAVAILABLE")
            .unwrap_or_else(|| panic!("{name} is not UNAVAILABLE: {index}"));
        let reason = entry["reason"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(
                reason.contains(needle),
                "{name}: {reason:?} should contain {needle:?}"
            );
        }
    }
}

/// A `/predict` answer's `top_k`: indices and scores.
type TopK = (Vec<i64>, Vec<Value>);

/// `/predict`'s `click_prob` rows, flattened, and its `top_k` if any.
fn predicted(answer: &(u16, Value)) -> (Vec<Value>, Option<TopK>) {
    let (status, body) = answer;
    assert_eq!(*status, 200, "{body}");
    let rows = flatten(&body["outputs"]["click_prob"]);
    let top_k = body.get("top_k").map(|t| {
        let indices = flatten(&t["indices"])
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        (indices, flatten(&t["scores"]))
    });
    (rows, top_k)
}

#[test]
fn predict_takes_context_once_and_candidates_as_columns_or_rows() {
    let repo = ScratchRepo::new("rank-predict");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(7, 5, 8);
    let mask = vec![1.0; 5];
    let repeated = json!({"model": "din", "inputs": {
        "target_item": r.targets,
        "hist_items": vec![r.history.clone(); 8],
        "hist_mask": vec![mask.clone(); 8],
    }});
    let (want, none) = predicted(&server.post_json("/predict", &repeated));
    assert!(none.is_none(), "no top_k key without top_k");
    let context = json!({"hist_items": r.history, "hist_mask": mask});
    let columns = json!({"model": "din", "context": context,
        "candidates": {"target_item": r.targets}, "top_k": 3});
    let rows: Vec<Value> = r
        .targets
        .iter()
        .map(|t| json!({"target_item": t}))
        .collect();
    let rows = json!({"model": "din", "context": context, "candidates": rows, "top_k": 3});
    for body in [columns, rows] {
        let (got, top_k) = predicted(&server.post_json("/predict", &body));
        assert_eq!(got, want, "{body}");
        let (indices, scores) = top_k.expect("top_k");
        assert_eq!(indices, sorted_indices(&want)[..3]);
        let best: Vec<Value> = indices.iter().map(|&i| want[i as usize].clone()).collect();
        assert_eq!(scores, best);
    }
    // Without top_k: the outputs alone.
    let plain =
        json!({"model": "din", "context": context, "candidates": {"target_item": r.targets}});
    let (got, top_k) = predicted(&server.post_json("/predict", &plain));
    assert_eq!((got, top_k), (want, None));
}

#[test]
fn predict_ranks_raw_fields_with_the_user_fields_in_the_context() {
    let repo = ScratchRepo::new("rank-predict-fields");
    repo.add("widedeep_ctr", "ctr", 1, FIELDS);
    let server = TestServer::start(&repo.path);
    let user =
        json!({"user": "u1", "c1": "a", "c2": "b", "c3": 3, "c4": "d", "c5": "e", "c6": "f"});
    let items = [(40.0, 0.1, 1.0), (55.5, 0.2, 0.0), (61.0, 0.3, 1.0)];
    let rows: Vec<Value> = items
        .iter()
        .map(|(p, d2, d3)| json!({"price": p, "d2": d2, "d3": d3}))
        .collect();
    let repeated: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut all = user.as_object().unwrap().clone();
            all.extend(row.as_object().unwrap().clone());
            Value::Object(all)
        })
        .collect();
    let want = server.post_json("/predict", &json!({"model": "ctr", "instances": repeated}));
    let got = server.post_json(
        "/predict",
        &json!({"model": "ctr", "context": user, "candidates": rows, "top_k": 10}),
    );
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["outputs"], want.1["outputs"]);
    assert_eq!(
        got.1["top_k"]["indices"].as_array().unwrap().len(),
        3,
        "k over N gives N"
    );
}

#[test]
fn predict_ranking_mistakes_are_refused_naming_them() {
    let repo = ScratchRepo::new("rank-predict-bad");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let context = json!({"hist_items": [1, 2], "hist_mask": [1.0, 1.0]});
    let candidates = json!({"target_item": [5, 6, 7]});
    for (body, needles) in [
        (
            json!({"model": "din", "context": {"hist_items": [1, 2], "hist_mask": [1.0, 1.0], "target_item": 3}, "candidates": candidates}),
            &["'target_item'", "both"][..],
        ),
        (
            json!({"model": "din", "context": {"target_item": 3}, "candidates": {"hist_items": [[1]], "hist_mask": [[1.0]]}}),
            &[
                "context name 'target_item'",
                "not declared broadcast",
                "'hist_items'",
            ][..],
        ),
        (
            json!({"model": "din", "context": {"user": 3}, "candidates": candidates}),
            &["unknown context name 'user'", "'hist_mask'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": {"item": [5, 6]}}),
            &["'item'"][..],
        ),
        (
            json!({"model": "din", "context": {"hist_items": [1, 2]}, "candidates": candidates}),
            &["missing input 'hist_mask'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": candidates, "top_k": 0}),
            &["'top_k'", "at least 1", "got 0"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": candidates, "top_k": 2, "rank_by": "p"}),
            &["rank_by", "'p'", "'click_prob'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": [{"target_item": 1}, {}]}),
            &["candidate 1", "'target_item'"][..],
        ),
    ] {
        expect_error(server.post_json("/predict", &body), 400, needles);
    }
}
