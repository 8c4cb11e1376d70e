//! `mlpserve check`: the whole zoo passes; deliberately broken repositories (a fixed batch
//! axis under a config that asks for batching, an unknown key, an out-of-range value, a
//! version without its model file, a corrupt ONNX file) each name the model, the file, the
//! key and a fix, and the exit status says what happened (0 passed, 1 problems, 2 could
//! not run). The real binary, real ONNX Runtime, real files.

mod common;

use std::path::Path;

use common::{zoo, ScratchRepo};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("1/model.onnx")
}

/// Runs `mlpserve check` with `args`; (exit code, stdout, stderr).
fn check(args: &[&str]) -> (i32, String, String) {
    common::run_subcommand("check", args, &[])
}

#[test]
fn every_zoo_model_passes() {
    let zoo = zoo();
    let (code, out, err) = check(&[zoo.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let models: Vec<String> = std::fs::read_dir(&zoo)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("1/model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(models.len() >= 10, "{models:?}");
    for m in &models {
        assert!(
            out.contains(&format!("ok       {m} version 1: ")),
            "{m}: {out}"
        );
    }
    assert!(
        out.contains(&format!(
            "passed: {0} versions of {0} models load",
            models.len()
        )),
        "{out}"
    );
    assert!(!out.contains("PROBLEM"), "{out}");
}

/// The repository `--model-repository` names is checked when no path is given.
#[test]
fn the_server_flags_pick_the_repository() {
    let repo = ScratchRepo::digits("check-flags");
    let (code, out, _) = check(&["--model-repository", repo.path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok       mlp_digits version 1"), "{out}");
}

#[test]
fn each_broken_model_is_named_with_its_file_key_and_fix() {
    let repo = ScratchRepo::new("check-broken");
    repo.add("mlp_digits", "good", 1, "");
    repo.add_file(&fixture("fixed_batch"), "fixed", 1, "max_batch_size = 8\n");
    repo.add("mlp_digits", "typo", 1, "instances = 1\nmax_batch = 4\n");
    repo.add("mlp_digits", "range", 1, "max_queue_size = 0\n");
    repo.add(
        "din_ctr",
        "padding",
        1,
        "[inputs.target_item]\npad_axes = [1]\n",
    );
    repo.add(
        "din_ctr",
        "pad_value",
        1,
        "[inputs.hist_mask]\npad_axes = [1]\npad_value = 1e40\n",
    );
    repo.add(
        "widedeep_ctr",
        "vocabulary",
        1,
        "[features]\nsite = { vocabulary = \"site.txt\" }\nx = {}\n[inputs.cat_ids]\nfrom = [\"site\", \"site\", \"site\", \"site\", \"site\", \"site\", \"site\", \"site\"]\n[inputs.dense]\nfrom = [\"x\", \"x\", \"x\", \"x\"]\n",
    );
    repo.add("mlp_digits", "missing", 1, "");
    std::fs::remove_file(repo.path.join("missing/1/model.onnx")).unwrap();
    repo.add("mlp_digits", "corrupt", 1, "");
    std::fs::write(repo.path.join("corrupt/1/model.onnx"), b"not an onnx graph").unwrap();

    let (code, out, err) = check(&[repo.path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ok       good version 1"), "{out}");
    let problem = |model: &str| -> String {
        let start = out
            .find(&format!("PROBLEM  {model}: "))
            .unwrap_or_else(|| panic!("no problem for {model}: {out}"));
        let rest = &out[start..];
        let end = rest.find("\nPROBLEM").unwrap_or(rest.len());
        rest[..end].to_string()
    };
    for (model, needles) in [
        (
            "fixed",
            &[
                "fixed/config.toml: key max_batch_size",
                "input 'x' has a fixed first axis",
                "fix: export the graph with a dynamic first axis",
            ][..],
        ),
        (
            "typo",
            &[
                "typo/config.toml:2: key max_batch:",
                "unknown field",
                "fix: remove the key or correct its spelling",
            ],
        ),
        (
            "range",
            &[
                "range/config.toml:1: key max_queue_size:",
                "out of range",
                "1..=",
                "fix: set a value within the range",
            ],
        ),
        (
            "padding",
            &[
                "padding/config.toml: key inputs.target_item.pad_axes:",
                "cannot pad axis 1",
                "fix: list only dynamic non-batch axes",
            ],
        ),
        (
            "pad_value",
            &[
                "pad_value/config.toml: key inputs.hist_mask.pad_value:",
                "FP32",
                "fix: choose a pad value of the input's datatype",
            ],
        ),
        (
            "missing",
            &[
                "missing/1: version directory has no model.onnx",
                "fix: put the exported graph at missing/1/model.onnx",
            ],
        ),
        (
            "corrupt",
            &[
                "corrupt/1/model.onnx: version 1:",
                "Protobuf parsing failed",
                "fix: the file is not a loadable ONNX model",
            ],
        ),
    ] {
        let p = problem(model);
        for needle in needles {
            assert!(p.contains(needle), "{model}: {needle:?} not in {p}");
        }
    }
    assert!(!out.contains("PROBLEM  good"), "{out}");
    assert!(out.contains("failed: 9 problems"), "{out}");

    let (code, json, _) = check(&["--json", repo.path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    let typo = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == "typo")
        .expect("typo problem");
    assert_eq!(typo["file"], "typo/config.toml");
    assert_eq!(typo["key"], "max_batch");
    assert_eq!(typo["line"], 2);
}

#[test]
fn exit_status_two_when_the_check_cannot_run() {
    let repo = ScratchRepo::digits("check-no-ort");
    let (code, out, err) = check(&[
        repo.path.to_str().unwrap(),
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
    let (code, _, err) = check(&["--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    // A server setting out of range: the check cannot load models as the server would.
    let (code, out, err) = check(&[repo.path.to_str().unwrap(), "--shutdown-delay", "100000"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("shutdown_delay = 100000 is out of range"),
        "{err}"
    );
}

#[test]
fn a_missing_repository_is_a_problem() {
    let (code, out, _) = check(&["/nonexistent/models"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot read /nonexistent/models"), "{out}");
}

/// The server logs, at load, the settings the check reports: the operator sees the same
/// mistake either way.
#[test]
fn the_server_warns_about_batching_settings_a_fixed_graph_ignores() {
    let repo = ScratchRepo::new("check-serve-warns");
    repo.add_file(
        &fixture("fixed_batch"),
        "fixed",
        1,
        "max_batch_size = 8\npreferred_batch_sizes = [4]\n",
    );
    let (lines, child) = common::run_binary(&repo.path, &[]);
    let _server = common::Binary(child.expect("server runs"));
    for key in ["max_batch_size", "preferred_batch_sizes"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("config.toml setting has no effect")
                    && l.contains(key)
                    && l.contains("fixed first axis")),
            "{key}: {lines:#?}"
        );
    }
}
