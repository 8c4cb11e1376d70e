//! The control plane both transports expose (Triton's repository extension): the index,
//! load and unload, the admin-token check and the control-mode rules. The index is
//! available in every mode (it is how failures are seen); load and unload only in
//! `explicit` mode. With an admin token set, all three need `Authorization: Bearer <token>`.

use crate::config::ControlMode;
use crate::error::{Error, Result};
use crate::repository::{ControlError, IndexEntry, LoadRequest};

use super::Service;

impl Service {
    /// Checks the `Authorization` header value against `--admin-token` (when one is set)
    /// in constant time. The token is never logged or echoed.
    pub fn authorize_admin(&self, authorization: Option<&[u8]>) -> Result<()> {
        let Some(token) = &self.config.admin_token else {
            return Ok(());
        };
        // The scheme is case-insensitive (RFC 9110), as it is for API keys.
        let given = authorization
            .and_then(|h| {
                let (scheme, rest) = (h.get(..7)?, h.get(7..)?);
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then(|| rest.trim_ascii())
            })
            .unwrap_or_default();
        if constant_time_eq(given, token.as_bytes()) {
            Ok(())
        } else {
            Err(Error::Unauthorized(
                "the repository endpoints need 'Authorization: Bearer <admin token>'".to_string(),
            ))
        }
    }

    /// `POST /v2/repository/index`, the `RepositoryIndex` RPC.
    pub fn repository_index(&self, ready_only: bool) -> Vec<IndexEntry> {
        self.repository.index(ready_only)
    }

    /// Loads (or reloads what changed of) a model; answers when done.
    pub async fn load_model(&self, name: &str, request: LoadRequest) -> Result<()> {
        self.allow_control("load")?;
        if !request.ignored_keys.is_empty() {
            tracing::warn!(
                model = name,
                ignored = request.ignored_keys.join(", "),
                "config override: these keys have no meaning in mlpserve and were ignored"
            );
        }
        self.repository
            .load_model(name, request)
            .await
            .map_err(|e| control_error(name, "load", e))
    }

    /// Unloads every version of a model; answers when it no longer takes new requests
    /// (admitted requests still finish on it).
    pub async fn unload_model(&self, name: &str) -> Result<()> {
        self.allow_control("unload")?;
        self.repository
            .unload_model(name)
            .await
            .map_err(|e| control_error(name, "unload", e))
    }

    fn allow_control(&self, what: &str) -> Result<()> {
        match self.repository.mode() {
            ControlMode::Explicit => Ok(()),
            mode => Err(Error::NotAllowed(format!(
                "model {what} is not allowed: the server runs with --model-control-mode {}; \
                 start it with --model-control-mode explicit to load and unload through the API",
                match mode {
                    ControlMode::None => "none",
                    _ => "poll",
                }
            ))),
        }
    }
}

/// The answer to a load or unload of `name` that failed, by its cause; each transport
/// maps the [`Error`] once. An unusable model or request is the client's to fix (400, as
/// Triton answers a failed load; the Open Inference Protocol knows no 422). A provider
/// the server lacks is the server's own fault (500, logged): not a passing condition that
/// a retry would outlast, which 503 would promise.
fn control_error(name: &str, what: &str, e: ControlError) -> Error {
    match e {
        ControlError::NotFound(_) => Error::ModelNotFound(name.to_string()),
        ControlError::BadRequest(m) | ControlError::Unservable(m) => {
            Error::InvalidInput(format!("failed to {what} model '{name}': {m}"))
        }
        ControlError::ProviderUnavailable(m) | ControlError::Internal(m) => {
            Error::Internal(format!("failed to {what} model '{name}': {m}"))
        }
    }
}

/// `name`, a load request's `file:<version>/<path>` override, as a path inside the model
/// directory; one that could leave it is the client's error, refused before any load.
pub fn checked_path(name: &str) -> Result<std::path::PathBuf> {
    crate::repository::checked_path(name).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// Equal lengths and bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare_needs_every_byte() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cres", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret!", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
    }
}
