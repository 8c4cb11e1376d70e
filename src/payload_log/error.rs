//! Why the payload log cannot start: a directory it cannot write, a sink URL it cannot
//! use, or no thread to write from. Records lost later are counted, not returned.

use std::path::PathBuf;

/// Payload logging was asked for but cannot run; the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum PayloadLogError {
    /// The directory of a `file:` sink cannot be created.
    #[error("payload log directory {}: {source}", dir.display())]
    Directory {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The current file in the directory cannot be opened for appending.
    #[error("payload log file in {}: {source}", dir.display())]
    File {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("payload_log = {url:?} is not a URL: {source}")]
    NotAUrl {
        url: String,
        source: http::uri::InvalidUri,
    },
    /// An `https://` sink with no CA certificate to verify it by, or TLS settings rustls
    /// refuses.
    #[error("payload_log = {url:?}: {source}")]
    Tls {
        url: String,
        source: super::cloudevents::SinkTlsError,
    },
    #[error("cannot start the payload log thread: {0}")]
    Thread(#[source] std::io::Error),
}
