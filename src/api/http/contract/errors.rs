//! The error answers: each status's `{"error": ...}` answer declared once as a named
//! response, and the sets of them that operations share.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{IntoResponses, ToResponse, ToSchema};

use super::{request_id_header, string};

fn count_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .description(Some(description))
        .build()
}

/// An answer's `{"error": ...}` body.
fn error_response(description: &str, headers: &[(&str, Header)]) -> Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("Error"))),
    );
    builder = builder.header("x-request-id", request_id_header());
    for (name, header) in headers {
        builder = builder.header(*name, header.clone());
    }
    builder.build()
}

fn retry_after() -> Header {
    count_header("Seconds to wait before retrying.")
}

/// Declares a named error answer (`#/components/responses/NAME`).
macro_rules! error_answer {
    ($name:ident, $description:expr) => {
        error_answer!($name, $description, []);
    };
    ($name:ident, $description:expr, [$(($header:expr, $value:expr)),*]) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (
                    stringify!($name),
                    error_response($description, &[$(($header, $value)),*]).into(),
                )
            }
        }
    };
}

error_answer!(
    BadRequest,
    "Malformed body, or wrong/missing/extra input, datatype, rank, dims, element count, ragged arrays, empty batch, bad binary sizes."
);
error_answer!(NotFound, "Unknown model or version.");
error_answer!(
    TooLarge,
    "Body over `--max-body-bytes`, or more rows than the model's `max_request_rows`."
);
error_answer!(
    Overloaded,
    "The model's queue is full; retry later.",
    [("Retry-After", retry_after())]
);
error_answer!(
    Internal,
    "ONNX Runtime failure or a lost worker (details in the server log)."
);
error_answer!(
    Unavailable,
    "The server is shutting down.",
    [("Retry-After", retry_after())]
);
error_answer!(
    Timeout,
    "The request's deadline passed while it was queued."
);
error_answer!(
    Unauthorized,
    "The admin token (`--admin-token`) is missing or wrong."
);
error_answer!(
    Forbidden,
    "Not allowed in this control mode (load and unload need `--model-control-mode explicit`)."
);

/// Declares a set of error answers several operations share, as references to the named
/// answers above.
macro_rules! error_set {
    ($name:ident, $doc:expr, [$(($status:literal, $answer:ident)),*]) => {
        #[doc = $doc]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([$((
                    $status.to_string(),
                    RefOr::Ref(Ref::from_response_name(stringify!($answer))),
                )),*])
            }
        }
    };
}

error_set!(
    ModelErrors,
    "A model route's errors: the model or version is unknown, or the server is shutting down.",
    [("404", NotFound), ("503", Unavailable)]
);
error_set!(
    InferenceErrors,
    "An inference's errors, from the body to the deadline.",
    [
        ("400", BadRequest),
        ("404", NotFound),
        ("413", TooLarge),
        ("415", UnsupportedContentEncoding),
        ("429", Overloaded),
        ("500", Internal),
        ("503", Unavailable),
        ("504", Timeout)
    ]
);
error_set!(
    ControlErrors,
    "A load's or unload's errors.",
    [
        ("400", BadRequest),
        ("401", Unauthorized),
        ("403", Forbidden),
        ("404", NotFound),
        ("413", TooLarge),
        ("500", Internal),
        ("503", Unavailable)
    ]
);

/// 415: answered before the body is read, with an empty body.
pub struct UnsupportedContentEncoding;

impl<'r> ToResponse<'r> for UnsupportedContentEncoding {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = ResponseBuilder::new()
            .description(
                "`Content-Encoding` other than gzip, deflate or identity; empty body, `Accept-Encoding` lists what is accepted.",
            )
            .header("x-request-id", request_id_header())
            .header(
                "Accept-Encoding",
                HeaderBuilder::new().schema(string()).build(),
            )
            .build();
        ("UnsupportedContentEncoding", response.into())
    }
}

/// Every error answer's body.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, naming the model, input, expected and received values.
    pub error: String,
}
