//! Context models: a version folder with `model.onnx` (the scorer) and a context graph
//! (`[context] model = "context.onnx"`) that runs once per request on the request's context
//! and feeds the scorer. Every answer equals the joined single graph's on the same rows,
//! for the context sent once and repeated, over V2 JSON, binary, gRPC and `/predict`;
//! requests of different N batched together each get their own answer; every mistake in
//! joining the graphs leaves the model UNAVAILABLE with a reason naming the tensor.
//!
//! The fixture (`tests/fixtures/towers`, built by its `make_towers.py`): context.onnx
//! `user` INT64 [N, 3], `history` INT64 [N, 4] -> `user_vec` FP32 [N, 4]; model.onnx
//! `user_vec`, `item_ids` INT64 [N, 2], `item_dense` FP32 [N, 1] -> `score` FP32 [N, 1];
//! joined.onnx the two in one graph.

mod common;
#[allow(dead_code)]
#[path = "grpc/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use common::{
    assert_close, assert_ready, assert_unavailable, executions, expect_error, flatten,
    post_batched, scores_of, ScratchRepo, TestServer,
};
use mlpserve::api::grpc::proto::ModelInferRequest;
use serde_json::{json, Value};

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/towers")
        .join(file)
}

const TOWERS: &str = "[context]\nmodel = \"context.onnx\"\n";
const JOINED: &str = "[inputs.user]\nbroadcast = true\n[inputs.history]\nbroadcast = true\n";

/// Adds the two-graph model as `name` (its context graph from `context`, a fixture file,
/// or none) with `config`.
fn add_towers(repo: &ScratchRepo, name: &str, context: Option<&str>, config: &str) {
    repo.add_file(&fixture("1/model.onnx"), name, 1, config);
    if let Some(context) = context {
        std::fs::copy(
            fixture(context),
            repo.path.join(name).join("1").join("context.onnx"),
        )
        .expect("copy context graph");
    }
}

/// A repository with `towers` (the two graphs, `config` after `[context]`... before it)
/// and `joined` (the single graph, context inputs broadcast).
fn repo(tag: &str, head: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    add_towers(
        &repo,
        "towers",
        Some("1/context.onnx"),
        &format!("{head}\n{TOWERS}"),
    );
    repo.add_file(
        &fixture("joined.onnx"),
        "joined",
        1,
        &format!("{head}\n{JOINED}"),
    );
    repo
}

/// One ranking request: a user (3 ids, a 4-item history) and `n` candidates.
struct Ranking {
    user: Vec<i64>,
    history: Vec<i64>,
    items: Vec<i64>,
    dense: Vec<f32>,
}

impl Ranking {
    fn new(seed: i64, n: usize) -> Ranking {
        Ranking {
            user: (0..3).map(|i| (seed * 7 + i * 5) % 20).collect(),
            history: (0..4).map(|i| (seed * 11 + i * 3) % 30).collect(),
            items: (0..2 * n as i64)
                .map(|i| (seed * 13 + i * 7) % 30)
                .collect(),
            dense: (0..n)
                .map(|i| ((seed as usize + i) % 9) as f32 / 4.0)
                .collect(),
        }
    }

    fn n(&self) -> usize {
        self.dense.len()
    }

    /// The context's rows: 1 (sent once) or N (repeated).
    fn copies(&self, repeat: bool) -> usize {
        if repeat {
            self.n()
        } else {
            1
        }
    }

    fn user_rows(&self, repeat: bool) -> Vec<i64> {
        (0..self.copies(repeat))
            .flat_map(|_| self.user.clone())
            .collect()
    }

    fn history_rows(&self, repeat: bool) -> Vec<i64> {
        (0..self.copies(repeat))
            .flat_map(|_| self.history.clone())
            .collect()
    }

    fn v2(&self, repeat: bool) -> Value {
        let (n, c) = (self.n(), self.copies(repeat));
        json!({"inputs": [
            {"name": "user", "datatype": "INT64", "shape": [c, 3], "data": self.user_rows(repeat)},
            {"name": "history", "datatype": "INT64", "shape": [c, 4], "data": self.history_rows(repeat)},
            {"name": "item_ids", "datatype": "INT64", "shape": [n, 2], "data": self.items},
            {"name": "item_dense", "datatype": "FP32", "shape": [n, 1], "data": self.dense},
        ]})
    }

    /// The V2 binary form: a JSON header and the tensors' little-endian bytes.
    fn binary(&self, repeat: bool) -> (String, Vec<u8>) {
        let (n, c) = (self.n(), self.copies(repeat));
        let i64s = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let tensors = [
            ("user", "INT64", vec![c, 3], i64s(&self.user_rows(repeat))),
            (
                "history",
                "INT64",
                vec![c, 4],
                i64s(&self.history_rows(repeat)),
            ),
            ("item_ids", "INT64", vec![n, 2], i64s(&self.items)),
            (
                "item_dense",
                "FP32",
                vec![n, 1],
                self.dense.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        ];
        let inputs: Vec<Value> = tensors
            .iter()
            .map(|(name, dt, shape, bytes)| {
                json!({"name": name, "datatype": dt, "shape": shape,
                       "parameters": {"binary_data_size": bytes.len()}})
            })
            .collect();
        let header = json!({"inputs": inputs}).to_string();
        let body = tensors.into_iter().flat_map(|t| t.3).collect();
        (header, body)
    }

    fn grpc(&self, model: &str, repeat: bool) -> ModelInferRequest {
        let (n, c) = (self.n() as i64, self.copies(repeat) as i64);
        let ints = |v: &[i64]| v.iter().map(|&x| json!(x)).collect::<Vec<_>>();
        ModelInferRequest {
            model_name: model.into(),
            inputs: vec![
                support::input("user", "INT64", vec![c, 3], &ints(&self.user_rows(repeat))),
                support::input(
                    "history",
                    "INT64",
                    vec![c, 4],
                    &ints(&self.history_rows(repeat)),
                ),
                support::input("item_ids", "INT64", vec![n, 2], &ints(&self.items)),
                support::input(
                    "item_dense",
                    "FP32",
                    vec![n, 1],
                    &self.dense.iter().map(|&x| json!(x)).collect::<Vec<_>>(),
                ),
            ],
            ..Default::default()
        }
    }

    /// `/predict` with the user as the context and the items as candidate rows.
    fn predict(&self, model: &str, top_k: Option<usize>) -> Value {
        let candidates: Vec<Value> = (0..self.n())
            .map(|i| json!({"item_ids": &self.items[2 * i..2 * i + 2], "item_dense": [self.dense[i]]}))
            .collect();
        let mut body = json!({"model": model,
            "context": {"user": self.user, "history": self.history},
            "candidates": candidates});
        if let Some(k) = top_k {
            body["top_k"] = json!(k);
        }
        body
    }
}

/// The `score` values of a V2 answer, after checking its shape is [n, 1].
fn scores(answer: &(u16, Value), n: usize) -> Vec<Value> {
    scores_of(answer, "score", n)
}

/// The joined graph's scores of `r` (its context repeated: an ordinary request).
fn reference(server: &TestServer, r: &Ranking) -> Vec<Value> {
    scores(
        &server.post_json("/v2/models/joined/infer", &r.v2(true)),
        r.n(),
    )
}

const CASES: [(i64, usize); 5] = [(1, 1), (2, 2), (3, 7), (4, 33), (5, 100)];

#[test]
fn v2_json_answers_equal_the_joined_graph_for_the_context_once_and_repeated() {
    let repo = repo("ctx-json", "max_batch_size = 64");
    let server = TestServer::start(&repo.path);
    for (seed, n) in CASES {
        let r = Ranking::new(seed, n);
        let want = reference(&server, &r);
        for repeat in [false, true] {
            let got = scores(
                &server.post_json("/v2/models/towers/infer", &r.v2(repeat)),
                n,
            );
            assert_close(
                &got,
                &want,
                1e-5,
                1e-5,
                &format!("n {n}, repeated {repeat}"),
            );
        }
    }
}

#[test]
fn v2_binary_answers_equal_the_joined_graph() {
    let repo = repo("ctx-binary", "max_batch_size = 64");
    let server = TestServer::start(&repo.path);
    for (seed, n) in CASES {
        let r = Ranking::new(seed, n);
        let want = reference(&server, &r);
        for repeat in [false, true] {
            let (header, bytes) = r.binary(repeat);
            let response = server.post_binary("/v2/models/towers/infer", &header, &bytes);
            let status = response.status().as_u16();
            let answer: Value = response.json().expect("json answer");
            assert_close(
                &scores(&(status, answer), n),
                &want,
                1e-5,
                1e-5,
                &format!("binary, n {n}, repeated {repeat}"),
            );
        }
    }
}

#[test]
fn grpc_answers_equal_the_joined_graph() {
    let repo = repo("ctx-grpc", "max_batch_size = 64");
    let server = TestServer::start(&repo.path);
    let cases: Vec<(Ranking, Vec<Value>)> = CASES
        .iter()
        .map(|&(seed, n)| {
            let r = Ranking::new(seed, n);
            let want = reference(&server, &r);
            (r, want)
        })
        .collect();
    support::with_client(&server, |mut client| async move {
        for (r, want) in &cases {
            for repeat in [false, true] {
                let response = client
                    .model_infer(r.grpc("towers", repeat))
                    .await
                    .expect("infer")
                    .into_inner();
                let outputs = support::outputs_json(&response);
                let (_, shape, got) = &outputs["score"];
                assert_eq!(shape, &vec![r.n() as i64, 1]);
                assert_close(
                    got,
                    want,
                    1e-5,
                    1e-5,
                    &format!("gRPC, n {}, repeated {repeat}", r.n()),
                );
            }
        }
    });
}

#[test]
fn predict_ranks_with_the_context_once_as_the_joined_graph() {
    let repo = repo("ctx-predict", "max_batch_size = 64\nrank_by = \"score\"");
    let server = TestServer::start(&repo.path);
    for (seed, n) in CASES {
        let r = Ranking::new(seed, n);
        let k = 5.min(n);
        let want = server.post_json("/predict", &r.predict("joined", Some(k)));
        let got = server.post_json("/predict", &r.predict("towers", Some(k)));
        assert_eq!(got.0, 200, "{}", got.1);
        assert_eq!(want.0, 200, "{}", want.1);
        assert_close(
            &flatten(&got.1["outputs"]["score"]),
            &flatten(&want.1["outputs"]["score"]),
            1e-5,
            1e-5,
            &format!("/predict, n {n}"),
        );
        assert_close(
            &flatten(&got.1["top_k"]["scores"]),
            &flatten(&want.1["top_k"]["scores"]),
            1e-5,
            1e-5,
            &format!("/predict top_k, n {n}"),
        );
        assert_eq!(flatten(&got.1["top_k"]["indices"]).len(), k);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranking_requests_of_different_n_share_one_batch_each_answered_its_own() {
    // 12 requests of N = 1..=12 (78 rows), every third with its context repeated: one
    // batch, as the delay waits for all of them; its context graph runs on 1 row for
    // each context-once request and N rows for each repeated one.
    let requests: Vec<(Ranking, bool)> = (1..=12)
        .map(|n| (Ranking::new(n as i64 * 3, n), n % 3 == 0))
        .collect();
    let total: usize = (1..=12).sum();
    let repo = repo(
        "ctx-batch",
        &format!("max_batch_size = {total}\nmax_queue_delay_us = 5000000"),
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let post = |model: &str, body: Value| {
        post_batched(
            client.clone(),
            server.url(&format!("/v2/models/{model}/infer")),
            body,
        )
    };
    // The reference batches all of them too (its own delay): the same rows in one run.
    let want =
        futures_util::future::join_all(requests.iter().map(|(r, _)| post("joined", r.v2(true))))
            .await;
    let got = futures_util::future::join_all(
        requests
            .iter()
            .map(|(r, repeat)| post("towers", r.v2(*repeat))),
    )
    .await;
    for (((rows, answer), (_, reference)), (r, repeat)) in got.iter().zip(&want).zip(&requests) {
        let n = r.n();
        assert_eq!(*rows, total, "request of {n} rows ran in a batch of {rows}");
        assert_close(
            &scores(answer, n),
            &scores(reference, n),
            1e-5,
            1e-5,
            &format!("n = {n}, repeated {repeat}"),
        );
    }
    assert_eq!(
        executions(&server.metrics_text().await, "towers"),
        Some(1.0),
        "all 12 requests ran as one batch"
    );
}

#[test]
fn a_request_over_the_batch_limit_is_split_each_part_with_the_context() {
    let repo = repo("ctx-split", "max_batch_size = 4\ninline_run_us = 0");
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(9, 10);
    let want = reference(&server, &r);
    for repeat in [false, true] {
        let got = scores(
            &server.post_json("/v2/models/towers/infer", &r.v2(repeat)),
            10,
        );
        assert_close(&got, &want, 1e-5, 1e-5, &format!("repeated {repeat}"));
    }
    assert_eq!(
        executions(&server.metrics_blocking(), "towers"),
        Some(6.0),
        "two requests of 10 rows, 3 chunks each"
    );
}

#[test]
fn top_k_ranks_the_scorers_output() {
    let repo = repo("ctx-topk", "max_batch_size = 64\nrank_by = \"score\"");
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(4, 20);
    let mut body = r.v2(false);
    body["parameters"] = json!({"top_k": 3});
    let (status, answer) = server.post_json("/v2/models/towers/infer", &body);
    assert_eq!(status, 200, "{answer}");
    let all = scores(&(status, answer.clone()), 20);
    let mut order: Vec<usize> = (0..20).collect();
    order.sort_by(|&a, &b| {
        all[b]
            .as_f64()
            .unwrap()
            .total_cmp(&all[a].as_f64().unwrap())
            .then(a.cmp(&b))
    });
    let outputs = answer["outputs"].as_array().expect("outputs");
    let indices = outputs
        .iter()
        .find(|o| o["name"] == "top_k_indices")
        .expect("top_k_indices");
    let want: Vec<Value> = order[..3].iter().map(|&i| json!(i)).collect();
    assert_eq!(flatten(&indices["data"]), want);
}

#[test]
fn metadata_lists_the_client_inputs_not_the_ones_the_context_graph_feeds() {
    let repo = repo("ctx-meta", "max_batch_size = 64");
    let server = TestServer::start(&repo.path);
    let (status, meta) = server.get_json("/v2/models/towers");
    assert_eq!(status, 200, "{meta}");
    let inputs = meta["inputs"].as_array().expect("inputs");
    let names: Vec<&str> = inputs.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(
        names,
        ["user", "history", "item_ids", "item_dense"],
        "{meta}"
    );
    for i in inputs {
        let context = i["name"] == "user" || i["name"] == "history";
        assert_eq!(i["broadcast"] == json!(true), context, "{i}");
    }
    let (status, config) = server.get_json("/v2/models/towers/config");
    assert_eq!(status, 200, "{config}");
    let text = config.to_string();
    assert!(!text.contains("user_vec"), "{config}");
    assert!(text.contains("broadcast_inputs"), "{config}");
    let (_, joined) = server.get_json("/v2/models/joined");
    assert_eq!(
        meta["inputs"], joined["inputs"],
        "the same contract as one graph"
    );
}

#[test]
fn a_scorer_input_the_context_graph_feeds_cannot_be_sent() {
    let repo = repo("ctx-fed", "max_batch_size = 64");
    let server = TestServer::start(&repo.path);
    let mut body = Ranking::new(1, 3).v2(false);
    body["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "user_vec", "datatype": "FP32", "shape": [1, 4], "data": [0.0, 0.0, 0.0, 0.0]}));
    expect_error(
        server.post_json("/v2/models/towers/infer", &body),
        400,
        &["unexpected input 'user_vec'", "'user'", "'item_ids'"],
    );
}

#[test]
fn joining_mistakes_leave_the_model_unavailable_with_the_reason() {
    let repo = ScratchRepo::new("ctx-errors");
    add_towers(&repo, "good", Some("1/context.onnx"), TOWERS);
    add_towers(&repo, "missing", None, TOWERS);
    add_towers(&repo, "name", Some("bad/wrong_name.onnx"), TOWERS);
    add_towers(&repo, "dtype", Some("bad/wrong_dtype.onnx"), TOWERS);
    add_towers(&repo, "shape", Some("bad/wrong_shape.onnx"), TOWERS);
    add_towers(&repo, "fixed", Some("bad/fixed_batch.onnx"), TOWERS);
    add_towers(
        &repo,
        "fed",
        Some("1/context.onnx"),
        &format!("{TOWERS}[inputs.user_vec]\nbroadcast = true\n"),
    );
    // No [context]: the scorer alone, its user_vec an ordinary client input.
    add_towers(&repo, "alone", Some("1/context.onnx"), "");
    // Not a graph at all.
    add_towers(&repo, "garbage", None, TOWERS);
    std::fs::write(
        repo.path.join("garbage/1/context.onnx"),
        b"not an onnx graph",
    )
    .expect("write");
    add_towers(
        &repo,
        "path",
        Some("1/context.onnx"),
        "[context]\nmodel = \"../1/context.onnx\"\n",
    );
    let server = TestServer::start_lenient(&repo.path);
    let index = server.repository_index();
    for name in ["good", "alone"] {
        assert_ready(&index, name);
    }
    for (name, needles) in [
        (
            "missing",
            &["model 'missing'", "context.onnx", "version folder"][..],
        ),
        (
            "name",
            &[
                "model 'name'",
                "'user_emb'",
                "matches no input",
                "'user_vec'",
            ][..],
        ),
        (
            "dtype",
            &["model 'dtype'", "'user_vec'", "FP64", "FP32", "datatype"][..],
        ),
        (
            "shape",
            &["model 'shape'", "'user_vec'", "[-1, 3]", "[-1, 4]"][..],
        ),
        (
            "fixed",
            &["model 'fixed'", "'user'", "[1, 3]", "must batch"][..],
        ),
        (
            "fed",
            &[
                "model 'fed'",
                "inputs.user_vec",
                "context graph",
                "never send",
            ][..],
        ),
        (
            "garbage",
            &[
                "model 'garbage'",
                "context.onnx",
                "cannot load the context graph",
            ][..],
        ),
        ("path", &["[context]", "../1/context.onnx", "file name"][..]),
    ] {
        assert_unavailable(&index, name, needles);
    }
}
