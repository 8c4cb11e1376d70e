//! The one error type of the request path, and the one table that maps each variant to an
//! HTTP status, a gRPC code and a metrics reason. Client errors are never 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong while serving one request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("model '{0}' is not in the repository")]
    ModelNotFound(String),
    #[error("model '{model}' has no version '{version}' (available: {available})")]
    VersionNotFound {
        model: String,
        version: String,
        available: String,
    },
    /// Malformed body, wrong names, dtypes or shapes; the message says what was expected.
    #[error("{0}")]
    InvalidInput(String),
    /// Request body or row count over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The model's queue is full; the client should back off and retry.
    #[error("model '{model}' version {version} is overloaded: queue full ({max_queue_size} requests waiting), retry later")]
    Overloaded {
        model: String,
        version: String,
        max_queue_size: usize,
    },
    /// The request's deadline passed before it could run.
    #[error("request to model '{model}' timed out after {waited_ms} ms in the queue (deadline {timeout_ms} ms)")]
    Timeout {
        model: String,
        waited_ms: u64,
        timeout_ms: u64,
    },
    /// Shutting down, or the model is not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A failure on our side (ONNX Runtime error, worker gone). Details are logged.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        self.mapping().0
    }

    /// gRPC status code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        self.mapping().1
    }

    /// Low-cardinality reason label for metrics.
    pub fn reason(&self) -> &'static str {
        self.mapping().2
    }

    fn mapping(&self) -> (StatusCode, tonic::Code, &'static str) {
        use tonic::Code;
        match self {
            Error::ModelNotFound(_) | Error::VersionNotFound { .. } => {
                (StatusCode::NOT_FOUND, Code::NotFound, "not_found")
            }
            Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, Code::InvalidArgument, "invalid"),
            Error::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::InvalidArgument,
                "invalid",
            ),
            Error::Overloaded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                "overloaded",
            ),
            Error::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                Code::DeadlineExceeded,
                "timeout",
            ),
            Error::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "unavailable",
            ),
            Error::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal",
            ),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (status, body).into_response();
        if matches!(self, Error::Overloaded { .. } | Error::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // Extensions let the metrics layer count the failure by reason.
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_never_500() {
        let client_errors = [
            Error::ModelNotFound("m".into()),
            Error::InvalidInput("x".into()),
            Error::TooLarge("x".into()),
            Error::Overloaded {
                model: "m".into(),
                version: "1".into(),
                max_queue_size: 1,
            },
        ];
        for e in client_errors {
            assert!(e.http_status().is_client_error(), "{e:?}");
        }
        assert_eq!(
            Error::Internal("x".into()).grpc_code(),
            tonic::Code::Internal
        );
    }
}
