//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the fuzz target
//! functions on stable Rust, without libFuzzer: every seed and every input that once found
//! new coverage or a crash must still pass the target's checks. Long fuzzing runs use
//! `cargo fuzz run <target>` (see docs/development.md, "Fuzzing").

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// Feeds every file of `fuzz/corpus/<name>` to `target`; the corpus must not be empty.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        // A panic names the input, so it can be re-run with `cargo fuzz run <name> <file>`.
        eprintln!("{name}: {}", path.display());
        target(&data);
        count += 1;
    }
    assert!(count > 0, "{} has no corpus files", dir.display());
}

#[test]
fn v2_json() {
    replay("v2_json", targets::v2_json);
}

#[test]
fn v2_binary() {
    replay("v2_binary", targets::v2_binary);
}

#[test]
fn predict() {
    replay("predict", targets::predict);
}

#[test]
fn grpc_request() {
    replay("grpc_request", targets::grpc_request);
}

#[test]
fn decompression() {
    replay("decompression", targets::decompression);
}

#[test]
fn config_toml() {
    replay("config_toml", targets::config_toml);
}

#[test]
fn tensor_binary() {
    replay("tensor_binary", targets::tensor_binary);
}

// Regression tests for what the fuzzers found (the inputs are also in the corpus).

/// `predict` crash-efc3f3fd…: an empty array followed by numbers at the same level was
/// accepted as shape [3] holding 2 numbers (the ragged check only caught numbers before
/// arrays). Now a decode error, for /predict and for V2 `data` alike.
#[test]
fn numbers_after_an_empty_array_are_ragged() {
    use mlpserve::tensor::{decode_array, DataType, JsonArrayError};
    let ragged = |text: &str| match decode_array(text, DataType::F32) {
        Err(JsonArrayError::Invalid(e)) => e.contains("ragged"),
        _ => false,
    };
    let body = br#"{"model": "m", "inputs": {"a": [[],0 ,0]}}"#;
    let inputs = mlpserve::api::http::predict::parse_inputs(body).expect("well-formed body");
    assert!(ragged(&inputs[0].1), "{:?}", inputs[0]);
    for text in ["[[], 1]", "[[[]], [1]]", "[[1], [[]], 2]"] {
        assert!(ragged(text), "{text}");
    }
    let v2 = br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [[], 1]}]}"#;
    let err = match mlpserve::api::http::v2_codec::decode(&Default::default(), v2) {
        Ok(_) => panic!("a ragged V2 data array was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ragged"), "{err}");
}
