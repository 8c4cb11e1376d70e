//! The HTTP contract as an OpenAPI 3.1 document, generated: the router registers each route
//! together with its handler's `#[utoipa::path]` operation (`utoipa_axum::routes!`), the
//! answers' schemas are derived from the types the handlers serialize, and this module adds
//! what is common to every operation (the document's header, the error answers, the
//! `x-request-id` header). Bodies that the handlers read by hand for speed or for their
//! messages (V2 inference, `/predict`, the repository extension) are described here by
//! schema types of their own. Served at `GET /openapi.json`; nothing here runs per request.
//! The error answers are in `errors`, the hand-read bodies in `infer`, `predict` and
//! `repository`, and the routes served at more than one path in `paths`.

mod errors;
mod infer;
mod paths;
mod predict;
mod repository;

use serde::Serialize;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{OpenApi as Document, RefOr, Required};
use utoipa::{IntoParams, OpenApi, ToSchema};

pub use errors::{
    BadRequest, ControlErrors, ErrorBody, Forbidden, InferenceErrors, Internal, ModelErrors,
    NotFound, Overloaded, Timeout, TooLarge, Unauthorized, Unavailable, UnsupportedContentEncoding,
};
pub use infer::{InferRequest, InferResponse};
pub use paths::{also_at, with_version};
pub use predict::{PredictRequest, PredictResponse};
pub use repository::{IndexRequest, LoadBody, UnloadBody};

use paths::operations;

/// The document's header, tags and shared components; the router adds the paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mlpserve HTTP API",
        description = "KServe V2 (Open Inference Protocol) REST with Triton's binary tensor data, model configuration and statistics extensions, plus `/predict`, health probes and Prometheus metrics. Errors are `{\"error\": string}`. Every response carries `x-request-id`. Paths not listed answer 404 `{\"error\": \"no route for METHOD PATH\"}`; a listed path with another method answers 405. Request and response bodies may be gzip/deflate encoded (`Content-Encoding`, `Accept-Encoding`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "health"),
        (name = "server"),
        (name = "models"),
        (name = "inference"),
        (name = "triton"),
        (name = "repository"),
        (name = "operations"),
    ),
    components(schemas(ErrorBody), responses(
        BadRequest,
        NotFound,
        TooLarge,
        UnsupportedContentEncoding,
        Overloaded,
        Internal,
        Unavailable,
        Timeout,
        Unauthorized,
        Forbidden
    ))
)]
pub struct ApiDoc;

/// Finishes the document once the router has added its operations: the version is this
/// build's, and every operation takes an `x-request-id` header and every answer it
/// documents carries one.
pub fn finish(mut doc: Document) -> Document {
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(request_id_parameter());
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .entry("x-request-id".to_string())
                        .or_insert_with(request_id_header);
                }
            }
        }
    }
    doc
}

fn request_id_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("x-request-id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Request id to log and echo; the server makes one when absent.",
        ))
        .schema(Some(string()))
        .build()
}

pub(super) fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(string())
        .description(Some("The client's `x-request-id`, or one the server made."))
        .build()
}

pub(super) fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// `GET /v2/health/live`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// `GET /v2/models/{name}/ready`.
#[derive(Serialize, ToSchema)]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// `GET /v2/models[/{name}[/versions/{version}]]/stats`.
#[derive(Serialize, ToSchema)]
pub struct ModelStatsResponse {
    pub model_stats: Vec<crate::service::ModelStatistics>,
}

/// The path of a model's routes (a schema: `ModelRef` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ModelPath {
    /// Model name (a folder of the model repository).
    #[param(min_length = 1, example = "mlp_digits")]
    pub name: String,
}

/// The path of a model version's routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct VersionPath {
    /// Model name (a folder of the model repository).
    #[param(min_length = 1, example = "mlp_digits")]
    pub name: String,
    /// Model version (a numbered subfolder).
    #[param(min_length = 1, example = "1")]
    pub version: String,
}

/// The admin token of the repository extension.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct AdminToken {
    /// `Bearer <token>` when the server runs with `--admin-token`.
    #[param(rename = "Authorization", nullable = false)]
    pub authorization: Option<String>,
}

/// Triton's binary tensor extension on an inference request.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct BinaryHeader {
    /// Binary tensor extension: length of the JSON part of an `application/octet-stream`
    /// body; the inputs' raw bytes follow it.
    #[param(
        rename = "Inference-Header-Content-Length",
        minimum = 0,
        nullable = false
    )]
    pub length: Option<u64>,
}
