//! Swapping versions while serving: 32 clients stream requests while a new version arrives
//! by poll (a copy into the repository) or by the API, and the old one is unloaded — zero
//! non-200 answers, each answer matches the version that reports it, and after the swap
//! every answer comes from the new one. Also: a corrupt version pushed over a working one,
//! a slow copy that must never load half-written, and (ignored, a measurement) RSS over 20
//! swaps. The two "versions" are gmlp_digits and mixer_digits: same signature, different
//! outputs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{zoo, ScratchRepo, TestServer};
use mlpserve::config::ControlMode;
use mlpserve::ServerConfig;
use serde_json::{json, Value};

fn model_bytes(zoo_model: &str) -> Vec<u8> {
    std::fs::read(zoo().join(zoo_model).join("1").join("model.onnx")).expect("zoo model")
}

fn image_body() -> Value {
    let data: Vec<f32> = (0..64).map(|i| (i % 17) as f32 / 16.0).collect();
    json!({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": data}]})
}

fn server(repo: &ScratchRepo, mode: ControlMode) -> TestServer {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.model_control_mode = mode;
    config.repository_poll = Duration::from_secs(1);
    config.load_model = vec!["*".to_string()];
    TestServer::start_with(config)
}

/// The state of `name`/`version` in the index ("" when absent).
fn state(server: &TestServer, name: &str, version: &str) -> (String, String) {
    let (_, idx) = server.post_json("/v2/repository/index", &json!({}));
    idx.as_array()
        .expect("index")
        .iter()
        .find(|e| e["name"] == name && e["version"] == version)
        .map(|e| {
            (
                e["state"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .unwrap_or_default()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Element-wise equal within float noise (batched runs may round differently).
fn close(got: &Value, want: &Value) -> bool {
    let (Some(g), Some(w)) = (got.as_array(), want.as_array()) else {
        return false;
    };
    g.len() == w.len()
        && g.iter().zip(w).all(|(g, w)| {
            let (g, w) = (
                g.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs()
        })
}

/// One answered request: when it started, its status, the version and whether the
/// outputs equal that version's reference.
struct Answer {
    started: Instant,
    status: u16,
    version: String,
    matches: bool,
}

/// Streams requests from 32 clients at `m` while `swap` runs; returns the answers and the
/// instant the swap was complete.
fn swap_under_load(server: &TestServer, swap: impl FnOnce()) -> (Vec<Answer>, Instant) {
    let reference = |name: &str| {
        server
            .post_json(&format!("/v2/models/{name}/infer"), &image_body())
            .1["outputs"][0]["data"]
            .clone()
    };
    let refs = Arc::new([("1", reference("ref_a")), ("2", reference("ref_b"))]);
    assert!(
        !close(&refs[0].1, &refs[1].1),
        "the two versions must answer differently"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let url = server.url("/v2/models/m/infer");
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (stop, answers, refs, url) =
                (stop.clone(), answers.clone(), refs.clone(), url.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = client
                        .post(&url)
                        .json(&image_body())
                        .send()
                        .expect("request");
                    let status = r.status().as_u16();
                    let body: Value = r.json().unwrap_or_default();
                    let version = body["model_version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let matches = refs
                        .iter()
                        .any(|(v, data)| *v == version && close(&body["outputs"][0]["data"], data));
                    answers.lock().unwrap().push(Answer {
                        started,
                        status,
                        version,
                        matches,
                    });
                }
            })
        })
        .collect();
    wait_for("the load to flow", Duration::from_secs(30), || {
        answers.lock().unwrap().len() >= 64
    });
    swap();
    wait_for("version 1 to leave", Duration::from_secs(30), || {
        let (s, _) = state(server, "m", "1");
        s.is_empty() || s == "UNLOADING"
    });
    let swapped = Instant::now();
    wait_for("answers after the swap", Duration::from_secs(30), || {
        let answers = answers.lock().unwrap();
        answers.iter().filter(|a| a.started > swapped).count() >= 64
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    (answers, swapped)
}

fn check_swap(answers: &[Answer], swapped: Instant) {
    let failed = answers.iter().filter(|a| a.status != 200).count();
    let wrong = answers.iter().filter(|a| !a.matches).count();
    let old_after = answers
        .iter()
        .filter(|a| a.started > swapped && a.version != "2")
        .count();
    let (v1, v2) = (
        answers.iter().filter(|a| a.version == "1").count(),
        answers.iter().filter(|a| a.version == "2").count(),
    );
    println!(
        "{} answers: {v1} from version 1, {v2} from version 2",
        answers.len()
    );
    assert_eq!(failed, 0, "non-200 answers during the swap");
    assert_eq!(
        wrong, 0,
        "answers that do not match their version's reference"
    );
    assert_eq!(old_after, 0, "answers from version 1 after the swap");
    assert!(
        v1 > 0 && v2 > 0,
        "the swap happened under load ({v1}, {v2})"
    );
}

fn swap_repo(tag: &str) -> ScratchRepo {
    let repo = ScratchRepo::new(tag);
    repo.add("gmlp_digits", "ref_a", 1, "");
    repo.add("mixer_digits", "ref_b", 1, "");
    repo.add("gmlp_digits", "m", 1, "");
    repo
}

#[test]
fn poll_swap_under_load_drops_no_request() {
    let repo = swap_repo("swap-poll");
    let server = server(&repo, ControlMode::Poll);
    let dir = repo.path.join("m");
    let (answers, swapped) = swap_under_load(&server, || {
        std::fs::create_dir_all(dir.join("2")).unwrap();
        std::fs::write(dir.join("2/model.onnx"), model_bytes("mixer_digits")).unwrap();
    });
    check_swap(&answers, swapped);
}

#[test]
fn explicit_swap_under_load_drops_no_request() {
    let repo = swap_repo("swap-explicit");
    let server = server(&repo, ControlMode::Explicit);
    let b64 = base64::engine::general_purpose::STANDARD.encode(model_bytes("mixer_digits"));
    let (answers, swapped) = swap_under_load(&server, || {
        let load = json!({"parameters": {"config": "{}", "file:2/model.onnx": b64}});
        let (status, body) = server.post_json("/v2/repository/models/m/load", &load);
        assert_eq!(status, 200, "{body}");
    });
    check_swap(&answers, swapped);
}

#[test]
fn a_corrupt_version_keeps_the_working_one_serving_and_polling_goes_on() {
    let repo = swap_repo("corrupt-over");
    let server = server(&repo, ControlMode::Poll);
    let dir = repo.path.join("m");
    std::fs::create_dir_all(dir.join("2")).unwrap();
    std::fs::write(dir.join("2/model.onnx"), b"definitely not onnx").unwrap();
    wait_for("version 2 to fail", Duration::from_secs(20), || {
        state(&server, "m", "2").0 == "UNAVAILABLE"
    });
    let (_, reason) = state(&server, "m", "2");
    assert!(!reason.is_empty());
    assert_eq!(state(&server, "m", "1").0, "READY");
    let (status, body) = server.post_json("/v2/models/m/infer", &image_body());
    assert_eq!((status, body["model_version"].clone()), (200, json!("1")));
    assert_eq!(server.get_json("/v2/health/ready").0, 200);

    std::fs::create_dir_all(dir.join("3")).unwrap();
    std::fs::write(dir.join("3/model.onnx"), model_bytes("mixer_digits")).unwrap();
    wait_for("version 3 to serve", Duration::from_secs(20), || {
        state(&server, "m", "3").0 == "READY"
    });
    wait_for("version 1 to leave", Duration::from_secs(10), || {
        state(&server, "m", "1").0.is_empty()
    });
    assert_eq!(
        server.post_json("/v2/models/m/infer", &image_body()).1["model_version"],
        "3"
    );
}

#[test]
fn a_slow_copy_is_never_loaded_half_written() {
    let repo = swap_repo("slow-copy");
    let server = server(&repo, ControlMode::Poll);
    let bytes = model_bytes("mixer_digits");
    let target = repo.path.join("m/2/model.onnx");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let pieces = 8;
    let chunk = bytes.len().div_ceil(pieces);
    let mut file = std::fs::File::create(&target).unwrap();
    for piece in bytes.chunks(chunk) {
        std::io::Write::write_all(&mut file, piece).unwrap();
        std::io::Write::flush(&mut file).unwrap();
        // Pieces 600 ms apart with a 1 s poll: every poll sees the file change.
        let until = Instant::now() + Duration::from_millis(600);
        while Instant::now() < until {
            let (s, reason) = state(&server, "m", "2");
            assert!(
                s.is_empty() || s == "LOADING",
                "half-written version 2 was loaded: {s} {reason}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(file);
    wait_for("version 2 to serve", Duration::from_secs(20), || {
        state(&server, "m", "2").0 == "READY"
    });
    assert_eq!(
        server.post_json("/v2/models/m/infer", &image_body()).1["model_version"],
        "2"
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A measurement, not a check: RSS (server and clients in this process) after each of 20
/// swaps under load (explicit mode, alternating the two models as new versions).
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn rss_over_twenty_swaps() {
    let repo = swap_repo("rss");
    let server = server(&repo, ControlMode::Explicit);
    let encode = |m: &str| base64::engine::general_purpose::STANDARD.encode(model_bytes(m));
    let models = [encode("gmlp_digits"), encode("mixer_digits")];
    let client = reqwest::blocking::Client::new();
    println!("swap,version,rss_kib");
    for swap in 0..20u64 {
        let version = swap + 2;
        let load = json!({"parameters": {"config": "{}", format!("file:{version}/model.onnx"): models[(swap % 2) as usize]}});
        assert_eq!(
            server.post_json("/v2/repository/models/m/load", &load).0,
            200
        );
        for _ in 0..200 {
            let r = client
                .post(server.url("/v2/models/m/infer"))
                .json(&image_body())
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
        let _ = std::fs::remove_dir_all(repo.path.join(format!("m/{}", version - 1)));
        println!("{swap},{version},{}", rss_kib());
    }
}

/// `VmRSS` of another process in MiB, read from outside.
fn rss_mib_of(pid: u32) -> u64 {
    common::memory_mib(pid).0
}

/// Versions published one after another into a poll-mode repository (copied under a
/// non-numeric name, renamed to the next number, as docs/lifecycle.md tells writers) each
/// load, calibrate and warm up on fresh sessions while the old one is dropped. What they
/// free must go back to the kernel: the server process's resident memory after the eighth
/// swap stays within 64 MiB of the second (glibc's grown mmap threshold kept ~25 MB per
/// swap, without bound: +150 MiB over these swaps).
#[test]
fn swaps_in_poll_mode_leave_resident_memory_flat() {
    let repo = ScratchRepo::new("swap-rss");
    repo.add("string_echo", "m", 1, "");
    let (server, http) = common::spawn_http(
        &repo.path,
        &[
            "--model-control-mode",
            "poll",
            "--repository-poll-secs",
            "1",
        ],
    );
    let client = reqwest::blocking::Client::new();
    let mut readings = Vec::new();
    for version in 2..=9u32 {
        let model = repo.path.join("m");
        let staging = model.join(format!("{version}.tmp"));
        std::fs::create_dir_all(&staging).expect("staging dir");
        std::fs::copy(model.join("1/model.onnx"), staging.join("model.onnx")).expect("copy");
        let name = version.to_string();
        std::fs::rename(&staging, model.join(&name)).expect("publish");
        wait_for(
            &format!("version {version} alone"),
            Duration::from_secs(120),
            || {
                let index: Value = client
                    .post(format!("http://{http}/v2/repository/index"))
                    .json(&json!({}))
                    .send()
                    .and_then(|r| r.json())
                    .unwrap_or(Value::Null);
                index.as_array().is_some_and(|entries| {
                    entries.iter().all(|e| {
                        e["name"] != "m"
                            || (e["version"].as_str() == Some(name.as_str())
                                && e["state"] == "READY")
                    })
                })
            },
        );
        readings.push(rss_mib_of(server.0.id()));
    }
    let (second, last) = (readings[0], readings[readings.len() - 1]);
    eprintln!("RSS after each swap (MiB): {readings:?}");
    assert!(
        last <= second + 64,
        "resident memory grew with the swaps: {readings:?} MiB"
    );
}
