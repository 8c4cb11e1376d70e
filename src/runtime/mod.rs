//! ONNX Runtime: library loading, the process-wide environment, session building, reading
//! a graph's serving contract and one pure `execute`. The only module that calls ORT; it
//! knows nothing of requests, queues or threads.

mod calibrate;
mod context;
mod error;
mod execute;
mod footprint;
pub mod gate;
mod library;
mod session;
mod value;

/// For the load generator's ceiling (bare runs on pre-built values); the server itself
/// converts only inside `runtime`.
pub use value::to_ort_value;

pub use calibrate::{calibrate, Calibration, AUTO_CAP, UNMEASURED};
pub use error::{LibraryError, RunError};
pub use execute::{execute, execute_context};
pub use footprint::measure as measure_footprint;
pub use library::find_library;
pub use session::{build_session, read_spec, warm_up, Session, SessionError, SessionOptions};

use std::path::Path;
use std::sync::{Arc, Mutex};

/// The loaded ORT library and its environment; created once per process.
pub struct Runtime {
    env: ort::environment::Environment,
    pub library: std::path::PathBuf,
}

/// ORT allows one library and one environment per process; every server in the process
/// (several in tests) shares this one.
static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

impl Runtime {
    /// Loads the shared library (searching as [`find_library`] does) and builds the
    /// environment on first use; later calls return the same runtime.
    pub fn load(explicit: Option<&Path>) -> Result<Arc<Runtime>, LibraryError> {
        let mut slot = RUNTIME.lock().map_err(|_| LibraryError::Poisoned)?;
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let library = find_library(explicit)?;
        let env = ort::init_from(&library)
            .map_err(|e| LibraryError::Unloadable {
                path: library.clone(),
                reason: e.to_string(),
            })?
            .with_name("mlpserve")
            .build()
            .map_err(|e| LibraryError::Environment(e.to_string()))?;
        let runtime = Arc::new(Runtime { env, library });
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    pub fn env(&self) -> &ort::environment::Environment {
        &self.env
    }
}
