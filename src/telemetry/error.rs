//! Why tracing cannot start: a collector endpoint the exporter cannot use, or no thread
//! to export from. Spans lost later are counted and logged, not returned.

/// Tracing was asked for but cannot run; the server does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryError {
    /// An endpoint that is no URL, or an `https://` one (the exporter speaks plain HTTP).
    #[error("cannot set up the OTLP exporter for {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot start the span export thread: {0}")]
    Thread(String),
}
