//! Finding and loading the ONNX Runtime shared library (`ort` is built with `load-dynamic`).
//! Search order: `--ort-lib`, `ORT_DYLIB_PATH`, `.onnxruntime/` (from
//! `scripts/fetch-onnxruntime.sh`), then next to the executable.

use std::path::{Path, PathBuf};

use super::LibraryError;

/// The library file name the fetch script installs.
const LIB_NAME: &str = "libonnxruntime.so";
/// The folder the fetch script fills, relative to the repository root.
const FETCH_DIR: &str = ".onnxruntime";

/// Where the library may be, in search order, each with a label for messages.
fn candidates(explicit: Option<&Path>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(("--ort-lib".to_string(), p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(("ORT_DYLIB_PATH".to_string(), PathBuf::from(p)));
    }
    out.push((
        "working directory".to_string(),
        Path::new(FETCH_DIR).join(LIB_NAME),
    ));
    out.push((
        "source tree".to_string(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(FETCH_DIR)
            .join(LIB_NAME),
    ));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(("next to the executable".to_string(), dir.join(LIB_NAME)));
    }
    out
}

/// Resolves the library path. An explicitly named path (flag or env) must exist; the
/// fallbacks are tried in order. The error names what was tried and the command to run.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, LibraryError> {
    let candidates = candidates(explicit);
    for (label, path) in &candidates {
        let is_explicit = label == "--ort-lib" || label == "ORT_DYLIB_PATH";
        if path.is_file() {
            return Ok(path.clone());
        }
        if is_explicit {
            return Err(LibraryError::NotAtGivenPath {
                given_by: label.clone(),
                path: path.clone(),
            });
        }
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|(_, p)| p.display().to_string())
        .collect();
    Err(LibraryError::NotFound {
        tried: tried.join(", "),
    })
}
