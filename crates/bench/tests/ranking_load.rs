//! Ranking requests end to end: the bench binary starts the real server in-process on the
//! committed zoo and sends `ranking_ctr` requests whose user context (`--context`) is drawn
//! once and repeated on every row, over V2 JSON, binary tensors and gRPC; the options that
//! shape such requests are checked before anything starts. `ranking_towers`, whose user
//! tower is a context graph, is compared with its ceiling: that graph on one row per
//! request and model.onnx on the batch.

use std::path::PathBuf;
use std::process::Command;

const CONTEXT: &str = "user_id,country,age,history";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bench(args: &[&str]) -> (bool, String, String) {
    bench_model("ranking_ctr", args)
}

fn bench_model(model: &str, args: &[&str]) -> (bool, String, String) {
    let root = root();
    // Only the model under test loads, so each run starts in a moment.
    let config = std::env::temp_dir().join(format!(
        "mlpserve-bench-ranking-{model}-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!("model_control_mode = \"explicit\"\nload_model = [\"{model}\"]\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mlpserve-bench"))
        .args(["--model-repository", root.join("models").to_str().unwrap()])
        .args(["--server-config", config.to_str().unwrap()])
        .args([
            "--ort-lib",
            root.join(".onnxruntime/libonnxruntime.so")
                .to_str()
                .unwrap(),
        ])
        .args(["--model", model, "--warmup", "100ms"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the bench binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The level line of `clients` clients: clients, req/s, rows/s, p50, p90, p99, max, errors, ...
fn level(stdout: &str, clients: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(clients))
        .unwrap_or_else(|| panic!("no level line for {clients} clients in {stdout}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_request_with_its_context_repeated_is_answered_over_every_api() {
    for (api, says) in [
        (&["--api", "v2"][..], "api v2 JSON"),
        (&["--api", "v2", "--binary"][..], "api v2 binary"),
        (&["--api", "grpc"][..], "api gRPC raw tensors"),
    ] {
        let mut args = api.to_vec();
        args.extend(["--rows", "50", "--context", CONTEXT]);
        args.extend(["--concurrency", "2", "--duration", "300ms"]);
        let (ok, stdout, stderr) = bench(&args);
        assert!(ok, "{api:?}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(says) && stdout.contains("rows/request 50"),
            "{stdout}"
        );
        let line = level(&stdout, "2");
        assert!(line[1].parse::<f64>().unwrap() > 0.0, "{stdout}");
        assert_eq!(line[7], "0", "errors in {stdout}");
    }
}

#[test]
fn context_options_are_checked_before_anything_starts() {
    for (args, says) in [
        (&["--context-once"][..], "need --context"),
        (&["--compare-context"][..], "need --context"),
        (
            &["--context", CONTEXT, "--compare-context", "--floor"][..],
            "neither --context-once nor --floor",
        ),
        (
            &["--context", CONTEXT, "--compare-context", "--rounds", "0"][..],
            "at least 1",
        ),
        (
            &["--context", CONTEXT, "--payload", "Cargo.toml"][..],
            "leave out --payload",
        ),
    ] {
        let (ok, _, stderr) = bench(args);
        assert!(!ok && stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn an_unknown_context_input_is_refused_naming_it_and_the_inputs() {
    let (ok, _, stderr) = bench(&["--context", "user_id,hist", "--duration", "100ms"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("'hist'") && stderr.contains("history"),
        "{stderr}"
    );
}

#[test]
fn compare_context_measures_both_forms_and_prints_the_ratios() {
    let (ok, stdout, stderr) = bench(&[
        "--rows",
        "20",
        "--context",
        CONTEXT,
        "--compare-context",
        "--rounds",
        "1",
        "--concurrency",
        "2",
        "--duration",
        "300ms",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("context-once vs repeated context")
            && stdout.contains("request body: repeated"),
        "{stdout}"
    );
    // round, clients, form, rows/s, ...: both forms answered at the level
    for form in ["repeated", "once"] {
        let line: Vec<&str> = stdout
            .lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .find(|w| w.len() > 3 && w[0] == "1" && w[1] == "2" && w[2] == form)
            .unwrap_or_else(|| panic!("no {form} line in {stdout}"));
        assert!(line[3].parse::<f64>().unwrap() > 0.0, "{stdout}");
    }
    assert!(
        stdout.contains("2 clients: once ÷ repeated rows/s = "),
        "{stdout}"
    );
    // the usual report is the context-once form's: the body carries the context once
    let main_line = stdout.lines().next().unwrap_or_default();
    assert!(main_line.contains("rows/request 20"), "{stdout}");
    assert_eq!(level(&stdout, "2")[7], "0", "errors in {stdout}");
}

#[test]
fn a_context_models_ceiling_runs_both_graphs_and_the_comparison_reads_it() {
    let (ok, stdout, stderr) = bench_model(
        "ranking_towers",
        &[
            "--rows",
            "20",
            "--context",
            CONTEXT,
            "--compare-context",
            "--rounds",
            "1",
            "--concurrency",
            "2",
            "--duration",
            "300ms",
            "--ceiling",
            "--ceiling-batches",
            "1,20,40,400",
            "--ceiling-duration",
            "200ms",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("best ceiling:"), "{stdout}");
    // 20 rows per request: a batch of 40 rows holds 2 requests, so 2 context rows.
    assert!(
        stdout.contains("(+ context graph on 2 rows)")
            && stdout.contains("(+ context graph on 20 rows)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 clients: once ÷ repeated rows/s = ")
            && stdout.contains("2 clients: once ÷ ceiling at batch"),
        "{stdout}"
    );
    assert_eq!(level(&stdout, "2")[7], "0", "errors in {stdout}");
}
