//! Why the payload log cannot start: a directory it cannot write, a sink URL it cannot
//! use, or no thread to write from. Records lost later are counted, not returned.

use std::path::PathBuf;

/// Payload logging was asked for but cannot run; the server does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadLogError {
    /// The directory of a `file:` sink cannot be created.
    #[error("payload log directory {}: {reason}", dir.display())]
    Directory { dir: PathBuf, reason: String },
    /// The current file in the directory cannot be opened for appending.
    #[error("payload log file in {}: {reason}", dir.display())]
    File { dir: PathBuf, reason: String },
    #[error("payload_log = {url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    /// An `https://` sink with no CA certificate to verify it by, or TLS settings rustls
    /// refuses.
    #[error("payload_log = {url:?}: {reason}")]
    Tls { url: String, reason: String },
    #[error("cannot start the payload log thread: {0}")]
    Thread(String),
}
