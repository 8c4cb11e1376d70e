//! Many small models are cheap: a hundred copies of a tiny zoo model under the default
//! configuration (`max_batch_size = "auto"`, so each one calibrates and warms up), served by
//! the binary as its own process. What each loaded model keeps (sessions, ONNX Runtime
//! arenas, calibration leftovers) shows up a hundred times, so the server's resident memory
//! once ready, read from outside (`/proc/PID/status`), must stay under 600 MB. The time to
//! ready is printed, not asserted (a speed figure; scripts/many-models.sh measures the
//! release build).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{serve_command, Binary, ScratchRepo};

const MODELS: usize = 100;
const RSS_LIMIT_BYTES: u64 = 600_000_000;

/// `VmRSS` of a process in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn a_hundred_tiny_models_are_ready_in_under_600_mb() {
    let repo = ScratchRepo::new("many-models");
    for i in 0..MODELS {
        repo.add("mlp_digits", &format!("m{i:03}"), 1, "");
    }
    let start = Instant::now();
    let mut child = serve_command(&repo.path).spawn().expect("binary starts");
    // The ports open once start-up loading is done; the log line announcing the HTTP
    // port names its ephemeral address.
    let stderr = child.stderr.take().expect("stderr");
    let server = Binary(child);
    let mut lines = BufReader::new(stderr).lines();
    let http: SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("HTTP listening"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .and_then(|v| v["addr"].as_str()?.parse().ok())
        .expect("the server starts and logs its HTTP address");
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let client = reqwest::blocking::Client::new();
    let deadline = start + Duration::from_secs(600);
    while !client
        .get(format!("http://{http}/v2/health/ready"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not ready after 600 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = start.elapsed();
    let rss = rss_bytes(server.0.id());
    let index: serde_json::Value = client
        .post(format!("http://{http}/v2/repository/index"))
        .json(&serde_json::json!({"ready": true}))
        .send()
        .expect("index")
        .json()
        .expect("json");
    eprintln!(
        "{MODELS} models: ready after {:.1} s, VmRSS {} MB",
        ready.as_secs_f64(),
        rss / 1_000_000
    );
    assert_eq!(
        index.as_array().map(Vec::len),
        Some(MODELS),
        "every model serves"
    );
    assert!(
        rss < RSS_LIMIT_BYTES,
        "{MODELS} tiny models hold {} MB resident once ready (limit {} MB)",
        rss / 1_000_000,
        RSS_LIMIT_BYTES / 1_000_000
    );
}
