//! Failures around the server that must not take it down: a log destination that fails
//! (stderr on a full device, a log pipe whose reader is gone) and signals (SIGHUP). Each
//! test runs the real binary as its own process.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Binary, ScratchRepo};
use serde_json::{json, Value};

/// A loopback port that was free a moment ago (for servers whose log cannot be read).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

/// Polls `GET url` in 10 ms steps until it answers 200 (at most 60 s); panics with the
/// process's exit status when it exits first.
fn wait_ok(child: &mut Binary, url: &str) {
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the server exited: {status}");
        }
        if client
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{url} did not answer 200 within 60 s");
}

fn predict(base: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}/predict"))
        .json(&json!({"model": "mlp_digits", "inputs": [vec![0.5; 64]]}))
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn dropped_lines(base: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics"))
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .find(|l| l.starts_with("mlpserve_log_lines_dropped_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mlpserve_log_lines_dropped_total in\n{text}"))
}

#[test]
fn starts_and_serves_with_stderr_on_a_full_device() {
    let repo = ScratchRepo::digits("devfull");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let port = free_port();
    let mut child = Binary(
        Command::new(env!("CARGO_BIN_EXE_mlpserve"))
            .args(["serve", "--host", "127.0.0.1", "--grpc-port", "0"])
            .args(["--http-port", &port.to_string()])
            .arg("--model-repository")
            .arg(&repo.path)
            .env("RUST_LOG", "debug")
            .stderr(Stdio::from(full))
            .spawn()
            .expect("binary starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&mut child, &format!("{base}/v2/health/ready"));
    for _ in 0..5 {
        let (status, body) = predict(&base);
        assert_eq!(status, 200, "{body}");
    }
    assert!(dropped_lines(&base) > 0.0);
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "still running"
    );
}

#[test]
fn a_log_pipe_whose_reader_is_gone_drops_lines_and_serving_goes_on() {
    let repo = ScratchRepo::digits("closedpipe");
    let mut child = Binary(
        common::serve_command(&repo.path)
            .env("RUST_LOG", "debug")
            .spawn()
            .expect("binary starts"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let mut addr = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let log: Value = serde_json::from_str(&line).unwrap_or_default();
        if log["message"] == "HTTP listening" {
            addr = log["addr"].as_str().map(str::to_string);
            break;
        }
    }
    // The reader is dropped here: every later log line meets a closed pipe.
    let base = format!("http://{}", addr.expect("the server logged its address"));
    wait_ok(&mut child, &format!("{base}/v2/health/ready"));
    for _ in 0..20 {
        let (status, body) = predict(&base);
        assert_eq!(status, 200, "{body}");
    }
    assert!(dropped_lines(&base) > 0.0);
    let (status, _) = predict(&base);
    assert_eq!(status, 200);
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "still running"
    );
}

/// Sends `signal` (e.g. "-HUP") to the child with kill(1).
fn signal(child: &Binary, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Starts `command` (a [`common::serve_command`] with its extra args or environment), its
/// JSON log read on a thread; returns it, its HTTP base URL and the receiver of its later
/// log lines.
fn spawn_logged(mut command: Command) -> (Binary, String, std::sync::mpsc::Receiver<Value>) {
    let mut child = Binary(command.spawn().expect("binary starts"));
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    let log = wait_log(&rx, "HTTP listening");
    let base = format!("http://{}", log["addr"].as_str().expect("addr"));
    wait_ok(&mut child, &format!("{base}/v2/health/ready"));
    (child, base, rx)
}

/// The next log line whose message is `message` (at most 60 s).
fn wait_log(rx: &std::sync::mpsc::Receiver<Value>, message: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(log) if log["message"] == message => return log,
            Ok(_) => {}
            Err(e) => panic!("no log line {message:?}: {e}"),
        }
    }
    panic!("no log line {message:?} within 60 s");
}

#[test]
fn sighup_does_not_end_a_server_without_tls() {
    let repo = ScratchRepo::digits("hup-plain");
    let (mut child, base, logs) = spawn_logged(common::serve_command(&repo.path));
    signal(&child, "-HUP");
    let log = wait_log(&logs, "SIGHUP received");
    assert!(
        log["reloads"].as_str().unwrap_or("").starts_with("nothing"),
        "{log}"
    );
    let (status, body) = predict(&base);
    assert_eq!(status, 200, "{body}");
    signal(&child, "-HUP");
    wait_log(&logs, "SIGHUP received");
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "still running"
    );
}

#[test]
fn sighup_rescans_a_polling_repository_at_once() {
    let repo = ScratchRepo::digits("hup-poll");
    let mut command = common::serve_command(&repo.path);
    command.args([
        "--model-control-mode",
        "poll",
        "--repository-poll-secs",
        "3600",
    ]);
    let (mut child, base, logs) = spawn_logged(command);
    repo.add("mlp_digits", "second", 1, "");
    signal(&child, "-HUP");
    let log = wait_log(&logs, "SIGHUP received");
    assert_eq!(log["reloads"], "repository rescan");
    // Poll mode wants stable files: the rescan that sees them first only records them, so
    // one more SIGHUP after the first rescan's pass loads them.
    let client = reqwest::blocking::Client::new();
    let url = format!("{base}/v2/models/second/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    for step in 1.. {
        if client.get(&url).send().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "model 'second' never became ready"
        );
        assert!(
            child.0.try_wait().expect("status").is_none(),
            "still running"
        );
        if step % 20 == 0 {
            signal(&child, "-HUP");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_worker_panic_mid_batch_answers_its_requests_and_a_fresh_worker_takes_over() {
    let repo = ScratchRepo::new("worker-panic");
    // Requests go through the batcher (never inline) and a 2-row and a 1-row request form
    // one batch of 3 rows, the batch the test trigger panics on.
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "max_queue_delay_us = 5000000\npreferred_batch_sizes = [3]\n",
    );
    let mut command = common::serve_command(&repo.path);
    command.env("MLPSERVE_TEST_WORKER_PANIC_ROWS", "3");
    let (_child, base, logs) = spawn_logged(command);

    let send = |rows: usize| {
        let url = format!("{base}/predict");
        std::thread::spawn(move || {
            let r = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client")
                .post(url)
                .json(&json!({"model": "digits", "inputs": vec![vec![0.5; 64]; rows]}))
                .send()
                .expect("an answer, not a hang");
            let status = r.status().as_u16();
            (status, r.json::<Value>().unwrap_or(Value::Null))
        })
    };
    let held = [send(2), send(1)];
    for request in held {
        let (status, body) = request.join().expect("client thread");
        assert_eq!(status, 500, "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("panicked"), "{body}");
    }
    let failed = wait_log(
        &logs,
        "worker thread panicked: version UNAVAILABLE until a fresh worker has warmed up",
    );
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("MLPSERVE_TEST_WORKER_PANIC_ROWS=3")),
        "{failed}"
    );
    wait_log(&logs, "fresh worker warmed up: version READY again");

    let client = reqwest::blocking::Client::new();
    let index: Value = client
        .post(format!("{base}/v2/repository/index"))
        .json(&json!({}))
        .send()
        .and_then(|r| r.json())
        .expect("index");
    let entry = &index[0];
    assert_eq!(entry["state"], "READY", "{index}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("recovered from: worker 0")),
        "{index}"
    );
    let ready = client
        .get(format!("{base}/v2/health/ready"))
        .send()
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let (status, body) = send(4).join().expect("client thread");
    assert_eq!(status, 200, "{body}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    assert!(
        metrics.contains("mlpserve_worker_restarts_total{model=\"digits\",version=\"1\"} 1"),
        "{metrics}"
    );
}
