//! `mlpserve config`: prints the configuration `serve` would run with, from the same
//! layers (flags over `MLPSERVE_*` variables over defaults); `--print-defaults` prints the
//! built-in defaults whatever the environment says; a bad value exits 1 naming the key.

use std::process::Command;

fn config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mlpserve"))
        .arg("config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("binary runs");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_and_variables_resolve_as_serve_resolves_them() {
    let env = [
        ("MLPSERVE_HTTP_PORT", "9000"),
        ("MLPSERVE_GRPC_PORT", "9001"),
    ];
    let (code, out, err) = config(&["--grpc-port", "7001", "--shutdown-timeout", "5"], &env);
    assert_eq!(code, 0, "{err}");
    for line in [
        "http_port = 9000",
        "grpc_port = 7001",
        "shutdown_timeout = 5 s",
        "metrics_port = none",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let (code, out, _) = config(&["--print-defaults"], &env);
    assert_eq!(code, 0);
    for line in [
        "http_port = 8000",
        "grpc_port = 8001",
        "shutdown_timeout = 30 s",
        "transport.idle_timeout = 60 s",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let (code, out, _) = config(&["--print-defaults", "--json"], &[]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["http_port"], 8000);
    assert_eq!(json["shutdown_timeout"]["secs"], 30);
}

#[test]
fn an_invalid_value_exits_one_naming_the_key() {
    let (code, _, err) = config(&["--shutdown-delay", "100000"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("shutdown_delay = 100000 is out of range"),
        "{err}"
    );
}
