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
use serde_json::Value;

use crate::common::{flatten, samples, zoo, TestServer};
use crate::support::Client;

const CLIENTS: usize = 16;
const PHASE: Duration = Duration::from_secs(3);
const ROUNDS: usize = 5;
/// Rows per request: transport overhead dominates at 1, payload (de)coding at 32.
const ROWS: [usize; 3] = [1, 8, 32];

/// Name of the load generator's runtime threads, so their CPU time is told apart from the
/// server's (`tokio-rt-worker`) and the ONNX Runtime workers' (`ort-*`).
const CLIENT_THREAD: &str = "grpc-bench";

/// Nanoseconds on CPU so far of this process's threads, by role: (server, client, ort).
fn cpu_ns() -> [u64; 3] {
    let mut total = [0u64; 3];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let role = if name.starts_with("tokio-r") {
            0
        } else if name.starts_with(CLIENT_THREAD) {
            1
        } else if name.starts_with("ort-") {
            2
        } else {
            continue;
        };
        total[role] += ns;
    }
    total
}

/// One phase's result: requests/s and CPU µs per request by role (server, client, ort).
struct Phase {
    rps: f64,
    us_per_request: [f64; 3],
}

/// Runs `CLIENTS` closed loops of `call` (one task each) for `PHASE`; returns completed
/// requests per second.
async fn closed_loop<F, Fut>(call: Arc<F>) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cpu_before = cpu_ns();
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
    let total: u64 = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .map(|d| d.expect("client task"))
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_ns();
    let per_request = |i: usize| (cpu_after[i] - cpu_before[i]) as f64 / 1e3 / total.max(1) as f64;
    Phase {
        rps: total as f64 / elapsed,
        us_per_request: [per_request(0), per_request(1), per_request(2)],
    }
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn throughput_grpc_raw_vs_http_json() {
    let server = TestServer::start(&zoo());
    let sample = &samples("mlp_digits")["samples"][0];
    let row: Vec<f32> = flatten(&sample["inputs"]["pixels"]["data"])
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("runtime");
    for rows in ROWS {
        rt.block_on(compare(&server, rows, row.repeat(rows)));
    }
}

/// A V2 JSON request body, serialized straight from the client's buffer.
#[derive(serde::Serialize)]
struct JsonRequest<'a> {
    inputs: [JsonInput<'a>; 1],
}

#[derive(serde::Serialize)]
struct JsonInput<'a> {
    name: &'a str,
    shape: [usize; 2],
    datatype: &'a str,
    data: &'a [f32],
}

/// Alternating phases of gRPC (raw) and HTTP (JSON) load with `rows`-row requests.
async fn compare(server: &TestServer, rows: usize, pixels: Vec<f32>) {
    let raw: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let grpc_request = ModelInferRequest {
        model_name: "mlp_digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(raw)],
        ..Default::default()
    };
    let url = server.url("/v2/models/mlp_digits/infer");
    // One connection per client on both transports.
    let mut grpc_clients = Vec::new();
    for _ in 0..CLIENTS {
        let client = Client::connect(format!("http://{}", server.grpc))
            .await
            .expect("connect");
        grpc_clients.push(client);
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
            assert_eq!(out.raw_output_contents[0].len(), rows * 40);
        }
    });
    // Both clients encode each request, as real clients do (the gRPC one cannot avoid it).
    let pixels = Arc::new(pixels);
    let http_call = Arc::new(move |_: usize| {
        let (http, url, pixels) = (http.clone(), url.clone(), pixels.clone());
        async move {
            let body = serde_json::to_vec(&JsonRequest {
                inputs: [JsonInput {
                    name: "pixels",
                    shape: [rows, 64],
                    datatype: "FP32",
                    data: &pixels,
                }],
            })
            .expect("json");
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("http infer");
            assert!(r.status().is_success());
            let v: Value = r.json().await.expect("json");
            assert_eq!(
                v["outputs"][0]["data"].as_array().map(Vec::len),
                Some(rows * 10)
            );
        }
    });
    let (mut grpc, mut http_phases) = (Vec::new(), Vec::new());
    closed_loop(grpc_call.clone()).await; // warm-up
    closed_loop(http_call.clone()).await;
    for _ in 0..ROUNDS {
        grpc.push(closed_loop(grpc_call.clone()).await);
        http_phases.push(closed_loop(http_call.clone()).await);
    }
    let report = |name: &str, phases: &[Phase]| {
        let n = phases.len() as f64;
        let mean = |f: &dyn Fn(&Phase) -> f64| phases.iter().map(f).sum::<f64>() / n;
        println!(
            "{name:<10}: {:>7.0} req/s (rounds {:?}); CPU per request: server {:.0} µs, ort {:.0} µs, client {:.0} µs",
            mean(&|p| p.rps),
            phases.iter().map(|p| p.rps.round()).collect::<Vec<_>>(),
            mean(&|p| p.us_per_request[0]),
            mean(&|p| p.us_per_request[2]),
            mean(&|p| p.us_per_request[1]),
        );
    };
    println!("mlp_digits, {rows} row(s)/request, {CLIENTS} clients, {ROUNDS} x {PHASE:?} alternating phases");
    report("gRPC raw", &grpc);
    report("HTTP JSON", &http_phases);
}
