//! Why a load or an unload failed, by cause. The service turns each cause into the answer
//! both transports give: an absent model, a request or model that cannot work, a provider
//! the server lacks, the server's own failure.

use std::path::PathBuf;

use super::discover::DiscoverError;
use crate::runtime::SessionError;

/// A failed load or unload of one model; the message says what failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No model of that name: no directory under the root (load), none loaded (unload).
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as sent: a name that is no plain directory name,
    /// a file override outside its version directory or through a symbolic link.
    #[error("{0}")]
    BadRequest(String),
    /// The model's files cannot serve: no loadable version, a `config.toml` value out of
    /// range, a graph ONNX Runtime refuses or one that contradicts its config.
    #[error("{0}")]
    Unservable(String),
    /// The model asks for an execution provider this server cannot use.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The server failed: a write to the repository, a task that panicked, worker threads
    /// that would not start.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// The same cause with its message rewritten by `f` (to say which version failed).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> ControlError {
        match self {
            ControlError::NotFound(m) => ControlError::NotFound(f(m)),
            ControlError::BadRequest(m) => ControlError::BadRequest(f(m)),
            ControlError::Unservable(m) => ControlError::Unservable(f(m)),
            ControlError::ProviderUnavailable(m) => ControlError::ProviderUnavailable(f(m)),
            ControlError::Internal(m) => ControlError::Internal(f(m)),
        }
    }

    /// Several versions' failures as one: every message, and the cause an operator must
    /// act on first (the server's own failure, then a missing provider, then the model).
    pub fn joined(failures: Vec<ControlError>) -> Option<ControlError> {
        let rank = |e: &ControlError| match e {
            ControlError::Internal(_) => 0,
            ControlError::ProviderUnavailable(_) => 1,
            ControlError::Unservable(_) => 2,
            ControlError::BadRequest(_) => 3,
            ControlError::NotFound(_) => 4,
        };
        let first = failures.iter().min_by_key(|e| rank(e))?.clone();
        let message = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Some(first.map_message(|_| message))
    }
}

/// Why the models loaded at start-up fail the server's start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// The repository root cannot be listed.
    #[error(transparent)]
    Unreadable(#[from] DiscoverError),
    /// Control mode `none` with no model under the root: nothing could ever be served.
    #[error("no models found under {} (expected <model>/<version>/model.onnx)", .0.display())]
    NoModels(PathBuf),
    /// `--exit-on-error`, and these models (name, why) failed to load.
    #[error("--exit-on-error: {}", failed_models(.0))]
    ModelsFailed(Vec<(String, ControlError)>),
}

fn failed_models(failures: &[(String, ControlError)]) -> String {
    failures
        .iter()
        .map(|(name, e)| format!("model '{name}': {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<SessionError> for ControlError {
    fn from(e: SessionError) -> ControlError {
        match e {
            SessionError::ProviderUnavailable(m) => ControlError::ProviderUnavailable(m),
            SessionError::Unservable(m) => ControlError::Unservable(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ControlError;

    #[test]
    fn joined_failures_keep_every_message_and_the_most_pressing_cause() {
        let joined = ControlError::joined(vec![
            ControlError::Unservable("version 1: bad graph".into()),
            ControlError::ProviderUnavailable("version 2: no CUDA".into()),
        ]);
        assert_eq!(
            joined,
            Some(ControlError::ProviderUnavailable(
                "version 1: bad graph; version 2: no CUDA".into()
            ))
        );
        assert_eq!(ControlError::joined(Vec::new()), None);
    }
}
