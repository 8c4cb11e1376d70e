//! The benchmark's OTLP receiver (`otlp-sink`) end to end: the bench binary starts the
//! real server in-process with tracing at ratio 1.0 pointed at the sink, and the sink must
//! accept the server's exports (no export failure logged) and count their spans.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use support::bench;

#[test]
fn the_sink_accepts_and_counts_the_servers_spans() {
    let mut sink = Command::new(env!("CARGO_BIN_EXE_otlp-sink"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sink runs");
    let mut out = BufReader::new(sink.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).unwrap();
    let port: u16 = port.trim().parse().expect("the sink prints its port first");

    let dir = std::env::temp_dir().join(format!("mlpserve-otlp-sink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!("otlp_endpoint = \"http://127.0.0.1:{port}\"\ntrace_sample_ratio = 1.0\n"),
    )
    .unwrap();
    let bench = bench(&[
        "--concurrency",
        "2",
        "--duration",
        "300ms",
        "--server-config",
        config.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    // The server flushed its spans at shutdown; stop the sink for its counts.
    let stopped = Command::new("kill")
        .args(["-TERM", &sink.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(sink.wait().unwrap().success());

    let stderr = String::from_utf8_lossy(&bench.stderr);
    assert!(
        bench.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&bench.stdout)
    );
    assert!(!stderr.contains("OTLP export failed"), "{stderr}");
    // "otlp-sink: N spans in M exports (B bytes)"
    let words: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"otlp-sink:"), "{rest}");
    let spans: u64 = words[1].parse().unwrap();
    let exports: u64 = words[4].parse().unwrap();
    assert!(exports >= 1, "{rest}");
    // Each traced request makes at least its server span, decode, queue and ORT run.
    assert!(spans >= 4 * exports, "{rest}");
}
