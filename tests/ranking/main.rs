//! Ranking requests: a model may declare inputs `broadcast`, sent once per request (one
//! user's history) while the others have N rows (the candidates). Every answer equals the
//! model's answer to the request with the context repeated N times; requests of different
//! N share batches, requests over the batch limit are split and merged, and every other
//! row mismatch is a 400 naming the inputs and their counts. Configuration mistakes are in
//! `config.rs`, `top_k` and `rank_by` in `top_k.rs`, `/predict`'s ranking form in
//! `predict.rs`.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../grpc/support.rs"]
mod support;

mod config;
mod predict;
mod top_k;

use common::{
    assert_close, assert_unavailable, executions, expect_error, flatten, post_batched, scores_of,
    v2_columns, v2_output, ScratchRepo, TestServer,
};
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

impl Ranking {
    /// The gRPC request, the history once (first dimension 1).
    fn grpc(&self) -> ModelInferRequest {
        let (n, len) = (self.targets.len() as i64, self.history.len());
        let ints = |v: &[i64]| v.iter().map(|&x| json!(x)).collect::<Vec<_>>();
        ModelInferRequest {
            model_name: "din".into(),
            inputs: vec![
                support::input("target_item", "INT64", vec![n], &ints(&self.targets)),
                support::input(
                    "hist_items",
                    "INT64",
                    vec![1, len as i64],
                    &ints(&self.history),
                ),
                support::input(
                    "hist_mask",
                    "FP32",
                    vec![1, len as i64],
                    &vec![json!(1.0); len],
                ),
            ],
            ..Default::default()
        }
    }
}

/// The `click_prob` values of a V2 answer, after checking its shape is [n, 1].
fn scores(answer: &(u16, Value), n: usize) -> Vec<Value> {
    scores_of(answer, "click_prob", n)
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
    let request = r.grpc();
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
        post_batched(
            client.clone(),
            server.url("/v2/models/din/infer"),
            r.v2(*repeat),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    for (((rows, answer), (r, _)), want) in answers.iter().zip(&requests).zip(&want) {
        let n = r.targets.len();
        assert_eq!(*rows, total, "request of {n} rows ran in a batch of {rows}");
        assert_close(&scores(answer, n), want, 1e-5, 1e-6, &format!("n = {n}"));
    }
    assert_eq!(
        executions(&server.metrics_text().await, "din"),
        Some(1.0),
        "all 16 requests ran as one batch"
    );
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
    assert_eq!(
        executions(&server.metrics_blocking(), "din"),
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
    let got = server.post_json(url, &v2_columns(&once));
    let want = server.post_json(url, &v2_columns(&repeated));
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["outputs"][0]["shape"][0], 4, "{}", got.1);
    assert_eq!(got.1["outputs"], want.1["outputs"]);
    // A broadcast field's values agree in count across the fields of its input.
    let mut uneven = once.clone();
    uneven[1].2 = json!(["a", "b"]);
    expect_error(
        server.post_json(url, &v2_columns(&uneven)),
        400,
        &["c1", "has 2 values", "user"],
    );
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
