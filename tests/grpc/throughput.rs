//! A quick transport comparison, not a regression test (so `#[ignore]`): requests/s for
//! mlp_digits at 16 closed-loop clients, gRPC with raw contents against HTTP with JSON, on
//! one in-process server. Phases alternate so background load hits both alike. Run with
//! `cargo test --release --test grpc -- --ignored --nocapture throughput`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
use mlpserve::api::grpc::proto::*;
use serde_json::{json, Value};

use crate::common::{flatten, samples, zoo, TestServer};
use crate::support::Client;

const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;

/// Runs `CLIENTS` closed loops of `call` (one task each) for `PHASE`; returns completed
/// requests per second.
async fn closed_loop<F, Fut>(call: Arc<F>) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let end = started + PHASE;
    let clients = (0..CLIENTS).map(|i| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                call(i).await;
                done += 1;
            }
            done
        })
    });
    let total: u64 = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(|d| d.expect("client task"))
        .sum();
    total as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn throughput_grpc_raw_vs_http_json() {
    let server = TestServer::start(&zoo());
    let sample = &samples("mlp_digits")["samples"][0];
    let pixels: Vec<f32> = flatten(&sample["inputs"]["pixels"]["data"])
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let raw: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let grpc_request = ModelInferRequest {
        model_name: "mlp_digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(raw)],
        ..Default::default()
    };
    let http_body = Bytes::from(
        serde_json::to_vec(&json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels}]}))
            .expect("json"),
    );
    let url = server.url("/v2/models/mlp_digits/infer");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // One connection per client on both transports.
        let mut grpc_clients = Vec::new();
        for _ in 0..CLIENTS {
            grpc_clients.push(
                Client::connect(format!("http://{}", server.grpc))
                    .await
                    .expect("connect"),
            );
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .expect("client");
        let grpc_call = Arc::new(move |i: usize| {
            let mut c = grpc_clients[i].clone();
            let r = grpc_request.clone();
            async move {
                let out = c.model_infer(r).await.expect("grpc infer").into_inner();
                assert_eq!(out.raw_output_contents[0].len(), 40);
            }
        });
        let http_call = Arc::new(move |_: usize| {
            let (http, url, body) = (http.clone(), url.clone(), http_body.clone());
            async move {
                let r = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("http infer");
                assert!(r.status().is_success());
                let v: Value = r.json().await.expect("json");
                assert_eq!(v["outputs"][0]["data"].as_array().map(Vec::len), Some(10));
            }
        });
        let (mut grpc, mut http_rps) = (Vec::new(), Vec::new());
        closed_loop(grpc_call.clone()).await; // warm-up
        closed_loop(http_call.clone()).await;
        for _ in 0..ROUNDS {
            grpc.push(closed_loop(grpc_call.clone()).await);
            http_rps.push(closed_loop(http_call.clone()).await);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "mlp_digits, 1 row/request, {CLIENTS} clients, {ROUNDS} x {PHASE:?} alternating phases"
        );
        println!(
            "gRPC raw  : {:>8.0} req/s  (rounds {:?})",
            mean(&grpc),
            grpc.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        println!(
            "HTTP JSON : {:>8.0} req/s  (rounds {:?})",
            mean(&http_rps),
            http_rps.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
    });
}
