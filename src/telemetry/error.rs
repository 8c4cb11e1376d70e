//! Why tracing cannot start (a collector endpoint the exporter cannot use, or no thread
//! to export from), and why one export did not reach the collector (its spans are then
//! dropped, counted and logged, never returned to a request).

use std::time::Duration;

/// Tracing was asked for but cannot run; the server does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// An endpoint that is no URL, or an `https://` one (the exporter speaks plain HTTP).
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot start the span export thread: {0}")]
    Thread(String),
}

/// Why the collector did not take one export request.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No gRPC connection to the collector (refused, unreachable, closed).
    #[error("cannot reach the collector: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The gRPC call failed: the collector answered with an error status, or the
    /// connection broke during the call.
    #[error("{code:?}: {message}")]
    Grpc { code: tonic::Code, message: String },
    /// The OTLP/HTTP request could not be built (an invalid URL part).
    #[error("cannot build the export request: {0}")]
    Request(#[from] http::Error),
    /// The OTLP/HTTP post failed before an answer (connection refused, reset).
    #[error("the collector did not answer: {0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    /// The OTLP/HTTP collector answered with a non-success status.
    #[error("the collector answered {0}")]
    Status(http::StatusCode),
    /// Nothing came back within the export timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl From<tonic::Status> for ExportError {
    fn from(s: tonic::Status) -> Self {
        ExportError::Grpc {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}
