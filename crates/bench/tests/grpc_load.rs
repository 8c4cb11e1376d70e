//! `--api grpc` end to end: the bench binary starts the real server in-process on the
//! committed zoo and drives its gRPC port with its own HTTP/2 client. The first call must
//! succeed (the bench stops with the server's status otherwise) and the level must count
//! answers without errors.

mod support;

use support::bench;

#[test]
fn grpc_load_counts_answered_calls() {
    let out = bench(&["--api", "grpc", "--concurrency", "2", "--duration", "300ms"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("api gRPC raw tensors"), "{stdout}");
    // The level line: clients, req/s, rows/s, p50, p90, p99, max, errors, ...
    let level: Vec<&str> = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .unwrap_or_else(|| panic!("no level line in {stdout}"))
        .split_whitespace()
        .collect();
    let answered: f64 = level[1].parse().unwrap();
    assert!(answered > 0.0, "{stdout}");
    assert_eq!(level[7], "0", "errors in {stdout}");
}

#[test]
fn grpc_load_rejects_json_only_options() {
    for (args, says) in [
        (
            &["--api", "grpc", "--binary"][..],
            "--binary needs --api v2",
        ),
        (
            &["--api", "grpc", "--payload", "Cargo.toml"][..],
            "--payload is a JSON body",
        ),
    ] {
        let out = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
    }
}
