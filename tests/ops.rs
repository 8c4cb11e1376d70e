//! Operations: exact metric counts after a known mix of requests, `promtool check metrics`,
//! graceful shutdown of the real binary on SIGTERM, server errors in its log.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Binary, ScratchRepo, TestServer};
use serde_json::{json, Value};

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_requests_made() {
    let repo = ScratchRepo::new("metrics");
    repo.add("mlp_digits", "digits", 1, "");
    repo.add(
        "mlp_digits",
        "slow",
        1,
        "max_queue_size = 1\nmax_queue_delay_us = 1500000\n",
    );
    let server = TestServer::start(&repo.path);
    let client = reqwest::Client::new();
    let predict =
        |model: &str, rows: usize| json!({"model": model, "inputs": vec![vec![0.25; 64]; rows]});
    for rows in [1, 2, 1] {
        let r = client
            .post(server.url("/predict"))
            .json(&predict("digits", rows))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200);
    }
    for bad in [
        json!({"model": "digits", "inputs": [[1.0]]}),
        json!({"model": "digits", "inputs": {"x": [[1.0]]}}),
    ] {
        let r = client
            .post(server.url("/predict"))
            .json(&bad)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 400);
    }
    let admitted = tokio::spawn(
        client
            .post(server.url("/predict"))
            .json(&predict("slow", 1))
            .send(),
    );
    // Admitted and queued: the queue (size 1) is full.
    server
        .wait_metric(
            "mlpserve_inflight_requests{model=\"slow\",version=\"1\"}",
            |n| n == 1.0,
        )
        .await;
    for _ in 0..2 {
        let r = client
            .post(server.url("/predict"))
            .json(&predict("slow", 1))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 429);
    }
    assert_eq!(
        admitted
            .await
            .expect("join")
            .expect("request")
            .status()
            .as_u16(),
        200
    );

    let text = server.metrics_text().await;
    let expect = [
        (
            "mlpserve_requests_total{model=\"digits\",outcome=\"success\",version=\"1\"}",
            3.0,
        ),
        (
            "mlpserve_requests_total{model=\"digits\",outcome=\"invalid\",version=\"1\"}",
            2.0,
        ),
        (
            "mlpserve_requests_total{model=\"slow\",outcome=\"success\",version=\"1\"}",
            1.0,
        ),
        (
            "mlpserve_requests_total{model=\"slow\",outcome=\"overloaded\",version=\"1\"}",
            2.0,
        ),
        (
            "mlpserve_inference_rows_total{model=\"digits\",version=\"1\"}",
            4.0,
        ),
        (
            "mlpserve_executions_total{model=\"digits\",version=\"1\"}",
            3.0,
        ),
        (
            "mlpserve_request_duration_seconds_count{model=\"digits\",version=\"1\"}",
            3.0,
        ),
        (
            "mlpserve_batch_size_count{model=\"digits\",version=\"1\"}",
            3.0,
        ),
        ("mlpserve_queue_depth{model=\"slow\",version=\"1\"}", 0.0),
        (
            "mlpserve_inflight_requests{model=\"slow\",version=\"1\"}",
            0.0,
        ),
        ("mlpserve_model_ready{model=\"digits\",version=\"1\"}", 1.0),
        (
            "mlpserve_http_requests_total{method=\"POST\",route=\"/predict\",status=\"429\"}",
            2.0,
        ),
        (
            "mlpserve_http_requests_total{method=\"POST\",route=\"/predict\",status=\"400\"}",
            2.0,
        ),
    ];
    for (line, value) in expect {
        assert_eq!(metric(&text, line), Some(value), "{line}\n{text}");
    }
    assert!(
        metric(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "process metrics"
    );
    assert!(text.contains("le=\"0.00005\""), "buckets start at 50 µs");

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = promtool
        .expect("promtool is installed (Debian package `prometheus`; scripts/test.sh installs it)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the real binary on an ephemeral port; returns it and its HTTP address, read from
/// its JSON log (`log_filter` as `RUST_LOG`). Its stderr lines keep flowing into the
/// returned receiver.
fn spawn_binary(
    repo: &std::path::Path,
    log_filter: &str,
) -> (
    Binary,
    String,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Binary(
        common::serve_command(repo)
            .args(["--shutdown-timeout", "20"])
            .env("RUST_LOG", log_filter)
            .spawn()
            .expect("binary starts"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut startup = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let log = serde_json::from_str::<Value>(&line).unwrap_or_default();
        startup.push(line);
        if log["message"] == "HTTP listening" {
            return (
                child,
                log["addr"].as_str().expect("addr").to_string(),
                startup,
                rx,
            );
        }
    }
    panic!("binary did not start listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let repo = ScratchRepo::new("sigterm");
    repo.add("mlp_digits", "digits", 1, "max_queue_delay_us = 1500000\n");
    let (mut child, addr, startup, logs) =
        spawn_binary(&repo.path, "info,mlpserve=debug,tower_http=debug");
    let url = format!("http://{addr}/predict");
    let client = reqwest::Client::new();
    let body = json!({"model": "digits", "inputs": [vec![0.5; 64]]});
    let in_flight: Vec<_> = (0..3)
        .map(|i| {
            let req = client
                .post(&url)
                .header("x-request-id", format!("drain-{i}"))
                .json(&body)
                .send();
            tokio::spawn(req)
        })
        .collect();
    // All three are admitted (queued behind the 1.5 s delay) before the signal.
    common::wait_metric(
        &format!("http://{addr}/metrics"),
        "mlpserve_inflight_requests{model=\"digits\",version=\"1\"}",
        |n| n == 3.0,
    )
    .await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // The server has taken the signal once it says so.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen
        .iter()
        .any(|l: &String| l.contains("refusing new requests"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no shutdown line in the log: {seen:?}");
        if let Ok(line) = logs.recv_timeout(left) {
            seen.push(line);
        }
    }

    // After the signal: 503 or a refused connection, never a hang.
    let late = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(5))
        .json(&body)
        .send()
        .await;
    match late {
        Ok(r) => assert_eq!(
            r.status().as_u16(),
            503,
            "a request after SIGTERM is refused"
        ),
        Err(e) => assert!(
            e.is_connect() || e.is_request(),
            "refused, not timed out: {e}"
        ),
    }
    for r in in_flight {
        let r = r.await.expect("join").expect("in-flight request answered");
        assert_eq!(
            r.status().as_u16(),
            200,
            "in-flight requests complete during shutdown"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    let logs: Vec<String> = startup
        .into_iter()
        .chain(seen)
        .chain(logs.try_iter())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("drain-1")),
        "the request id appears in the logs"
    );
    assert!(
        logs.iter().any(|l| l.contains("resolved configuration")),
        "resolved config logged at start-up"
    );
}

/// The next JSON log line whose message is `message`, within a few seconds.
fn next_log(logs: &std::sync::mpsc::Receiver<String>, message: &str) -> Value {
    log_until(logs, message).0
}

/// The next line with this message, and the JSON lines logged before it.
fn log_until(logs: &std::sync::mpsc::Receiver<String>, message: &str) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = logs.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let log = serde_json::from_str::<Value>(&line).unwrap_or_default();
        if log["message"] == message {
            return (log, seen);
        }
        seen.push(log);
    }
    panic!("no '{message}' line; log: {seen:#?}");
}

/// The ERROR lines logged from now until the server has finished a marker request (a
/// readiness probe with id `marker`, seen in its DEBUG "request finished" line). Every line
/// of a request that was answered before the marker was sent is in the log by then.
async fn errors_before_marker(
    logs: &std::sync::mpsc::Receiver<String>,
    addr: &str,
    marker: &str,
) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v2/health/live"))
        .header("x-request-id", marker)
        .send()
        .await
        .expect("marker request");
    assert_eq!(r.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut errors = Vec::new();
    while Instant::now() < deadline {
        let Ok(line) = logs.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let log = serde_json::from_str::<Value>(&line).unwrap_or_default();
        if log["message"] == "request finished" && line.contains(marker) {
            return errors;
        }
        if log["level"] == "ERROR" {
            errors.push(log);
        }
    }
    panic!("no 'request finished' line for the marker {marker}; errors so far: {errors:#?}");
}

/// The one ERROR line of a failed run of one request on `gather`.
fn assert_one_failed_run(errors: &[Value], request_id: &str) {
    assert_one_failed_batch(errors, "gather", &[request_id]);
}

/// The one ERROR line of a failed run: model, version, batch size, the ids of the batch's
/// requests (one row each, in any order) and ONNX Runtime's cause.
fn assert_one_failed_batch(errors: &[Value], model: &str, request_ids: &[&str]) {
    assert_eq!(
        errors.len(),
        1,
        "one ERROR line per failed inference: {errors:#?}"
    );
    let log = &errors[0];
    assert_eq!(log["message"], "inference failed", "{log}");
    assert_eq!(log["model"], model, "{log}");
    assert_eq!(log["version"], "1", "{log}");
    assert_eq!(log["batch_rows"], request_ids.len(), "{log}");
    assert_eq!(log["requests"], request_ids.len(), "{log}");
    let mut logged: Vec<&str> = log["request_ids"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .collect();
    logged.sort_unstable();
    let mut expected = request_ids.to_vec();
    expected.sort_unstable();
    assert_eq!(logged, expected, "{log}");
    let error = log["error"].as_str().unwrap_or_default();
    assert!(error.contains("Gather"), "ONNX Runtime's cause: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inference_is_one_error_line_with_its_model_batch_request_ids_and_cause() {
    use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlpserve::api::grpc::proto::{model_infer_request::InferInputTensor, ModelInferRequest};

    let repo = ScratchRepo::new("error-log");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gather_fail/1/model.onnx");
    repo.add_file(&fixture, "gather", 1, "");
    // Two requests always run as one batch on a worker thread (never inline).
    repo.add_file(
        &fixture,
        "gather_pairs",
        1,
        "max_batch_size = 2\nmax_queue_delay_us = 5000000\n",
    );
    // The default level, and DEBUG for the HTTP layer's "request finished" marker lines.
    let (_child, addr, _, logs) = spawn_binary(&repo.path, "info,mlpserve::api::http=debug");
    let grpc_addr = next_log(&logs, "gRPC listening")["addr"]
        .as_str()
        .expect("gRPC addr")
        .to_string();
    // Index 99 is out of the table's range: ONNX Runtime fails the run.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/predict"))
        .header("x-request-id", "boom-7")
        .json(&json!({"model": "gather", "inputs": [99]}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 500);
    let body: Value = r.json().await.expect("json body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("model 'gather' version 1 failed to run")),
        "{body}"
    );
    assert_one_failed_run(
        &errors_before_marker(&logs, &addr, "marker-1").await,
        "boom-7",
    );

    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v2/models/gather/infer"))
        .header("x-request-id", "boom-v2")
        .json(
            &json!({"inputs": [{"name": "idx", "datatype": "INT64", "shape": [1], "data": [99]}]}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 500);
    assert_one_failed_run(
        &errors_before_marker(&logs, &addr, "marker-2").await,
        "boom-v2",
    );

    let mut client = GrpcInferenceServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connect");
    let request = ModelInferRequest {
        model_name: "gather".into(),
        id: "grpc-boom-8".into(),
        inputs: vec![InferInputTensor {
            name: "idx".into(),
            datatype: "INT64".into(),
            shape: vec![1],
            ..Default::default()
        }],
        raw_input_contents: vec![99i64.to_le_bytes().to_vec().into()],
        ..Default::default()
    };
    let status = client
        .model_infer(request)
        .await
        .expect_err("the run fails");
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(status.message().contains("failed to run"), "{status:?}");
    assert_one_failed_run(
        &errors_before_marker(&logs, &addr, "marker-3").await,
        "grpc-boom-8",
    );

    // One batch of two requests, one of them out of range: both fail, one line names both.
    let client = reqwest::Client::new();
    let post = |id: &'static str, index: i64| {
        client
            .post(format!("http://{addr}/predict"))
            .header("x-request-id", id)
            .json(&json!({"model": "gather_pairs", "inputs": [index]}))
            .send()
    };
    let (a, b) = tokio::join!(post("pair-a", 99), post("pair-b", 1));
    assert_eq!(a.expect("request").status().as_u16(), 500);
    assert_eq!(b.expect("request").status().as_u16(), 500);
    let errors = errors_before_marker(&logs, &addr, "marker-5").await;
    assert_one_failed_batch(&errors, "gather_pairs", &["pair-a", "pair-b"]);

    // A served request logs no error: the marker counts only what failed.
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/predict"))
        .header("x-request-id", "fine-9")
        .json(&json!({"model": "gather", "inputs": [1]}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let errors = errors_before_marker(&logs, &addr, "marker-6").await;
    assert!(
        errors.is_empty(),
        "a served request logs no error: {errors:#?}"
    );
}
