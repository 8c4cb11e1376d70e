//! How a core [`Error`] leaves over HTTP: status code, JSON body `{"error": ...}`,
//! `Retry-After` on overload and unavailability. Client errors are never 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::OverloadStatus;
use crate::error::Error;

/// The status a client is answered with: [`status`], except that a full queue is answered
/// as `--overload-status` says (429, or 503 as Triton answers it).
pub fn answered_status(error: &Error, overload: OverloadStatus) -> StatusCode {
    match (error, overload) {
        (Error::Overloaded { .. }, OverloadStatus::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        _ => status(error),
    }
}

/// HTTP status for `error`.
pub fn status(error: &Error) -> StatusCode {
    match error {
        Error::ModelNotFound(_) | Error::VersionNotFound { .. } => StatusCode::NOT_FOUND,
        Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::NotAllowed(_) => StatusCode::FORBIDDEN,
        Error::Internal(_) | Error::RunFailed(_) | Error::NonFiniteOutput(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status(&self);
        let body = axum::Json(super::contract::ErrorBody {
            error: self.client_message(),
        });
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
            assert!(status(&e).is_client_error(), "{e:?}");
        }
        assert_eq!(
            status(&Error::Internal("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
