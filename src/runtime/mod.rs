//! ONNX Runtime: library loading, the process-wide environment, session building and the
//! worker threads that own sessions. The only module that calls ORT.

mod library;
mod session;
mod worker;

pub use library::find_library;
pub use session::{build_session, read_spec, warm_up, ExecutionProvider, SessionOptions};
pub use worker::{spawn_workers, Batch, WorkerPool};

use std::path::Path;

/// The loaded ORT library and its environment; created once per process.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: std::path::PathBuf,
}

impl Runtime {
    /// Loads the shared library (searching as [`find_library`] does) and builds the
    /// environment. Loading is process-global in ORT, so later calls reuse the first library.
    pub fn load(explicit: Option<&Path>) -> Result<Runtime, String> {
        let library = find_library(explicit)?;
        let env = ort::init_from(&library)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?
            .with_name("mlpserve")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        Ok(Runtime { env, library })
    }

    pub fn env(&self) -> &ort::environment::Environment {
        &self.env
    }
}
