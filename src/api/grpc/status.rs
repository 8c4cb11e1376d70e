//! How a core [`Error`] leaves over gRPC: one code per variant.

use tonic::{Code, Status};

use crate::config::OverloadStatus;
use crate::error::Error;

/// gRPC code for `error`. Over-size requests are INVALID_ARGUMENT, as over HTTP they are a
/// client error (413).
pub fn code(error: &Error) -> Code {
    match error {
        Error::ModelNotFound(_) | Error::VersionNotFound { .. } => Code::NotFound,
        Error::InvalidInput(_) | Error::TooLarge(_) | Error::UnsupportedEncoding(_) => {
            Code::InvalidArgument
        }
        Error::Overloaded { .. } => Code::ResourceExhausted,
        Error::Timeout { .. } | Error::BodyTimeout(_) => Code::DeadlineExceeded,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Unauthorized(_) => Code::Unauthenticated,
        Error::NotAllowed(_) => Code::PermissionDenied,
        Error::Internal(_) | Error::RunFailed(_) | Error::NonFiniteOutput(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(code(&e), e.client_message())
    }
}

/// The status of an inference error: as [`code`], except that a full queue is UNAVAILABLE
/// when the server is configured to answer overload as Triton does.
pub fn infer_status(e: Error, overload: OverloadStatus) -> Status {
    match (&e, overload) {
        (Error::Overloaded { .. }, OverloadStatus::Unavailable) => {
            Status::new(Code::Unavailable, e.client_message())
        }
        _ => e.into(),
    }
}
