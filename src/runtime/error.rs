//! Why ONNX Runtime cannot be used at all (its library), and why one run failed. A
//! session that cannot be built or cannot serve is [`super::SessionError`].

use std::path::PathBuf;

/// The ONNX Runtime library cannot be found or loaded, or its environment not created: the
/// process cannot serve any model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    /// A path named by `--ort-lib` or `ORT_DYLIB_PATH` that is no file.
    #[error("ONNX Runtime library given by {given_by} not found at {}", path.display())]
    NotAtGivenPath { given_by: String, path: PathBuf },
    /// None of the fallback places holds the library; `tried` lists them.
    #[error(
        "ONNX Runtime shared library not found (tried {tried}). Run `scripts/fetch-onnxruntime.sh` \
         to fetch it from PyPI, or pass --ort-lib /path/to/libonnxruntime.so"
    )]
    NotFound { tried: String },
    /// The file exists but is no ONNX Runtime library of a version `ort` can use.
    #[error("cannot load ONNX Runtime from {}: {reason}", path.display())]
    Unloadable { path: PathBuf, reason: String },
    #[error("cannot create the ONNX Runtime environment: {0}")]
    Environment(String),
    /// An earlier load in this process panicked while it held the runtime's lock.
    #[error("ONNX Runtime initialisation panicked earlier")]
    Poisoned,
}

/// One run of a session that failed; every request of its batch fails with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// ONNX Runtime's own error: inputs it refused, a kernel that failed.
    #[error("{0}")]
    Ort(String),
    #[error("ONNX Runtime returned no output '{0}'")]
    MissingOutput(String),
    /// An output that is a sequence or a map, not a tensor.
    #[error("output is a {0}, not a tensor")]
    NotATensor(String),
    #[error("output element type {0} is not supported")]
    UnsupportedOutput(String),
    /// A context run asked of a model, or an instance, without a context graph.
    #[error("the model has no context graph")]
    NoContextGraph,
    #[error("the instance has no context session")]
    NoContextSession,
}

impl From<ort::Error> for RunError {
    fn from(e: ort::Error) -> RunError {
        RunError::Ort(e.to_string())
    }
}
