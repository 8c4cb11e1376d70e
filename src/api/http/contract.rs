//! The HTTP contract as an OpenAPI 3.1 document, generated: the router registers each route
//! together with its handler's `#[utoipa::path]` operation (`utoipa_axum::routes!`), the
//! answers' schemas are derived from the types the handlers serialize, and this module adds
//! what is common to every operation (the document's header, the error answers, the
//! `x-request-id` header). Bodies that the handlers read by hand for speed or for their
//! messages (V2 inference, `/predict`, the repository extension) are described here by
//! schema types of their own. Served at `GET /openapi.json`; nothing here runs per request.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem, Paths};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Required};
use utoipa::{IntoParams, IntoResponses, OpenApi, ToResponse, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;

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

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(string())
        .description(Some("The client's `x-request-id`, or one the server made."))
        .build()
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).into()
}

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

/// A schema of the given JSON types.
fn of_types(types: &[Type], description: Option<&str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(types.to_vec()))
        .description(description)
}

/// A `parameters` object: the keys named in `known`, any other scalar.
fn parameters(known: ObjectBuilder) -> Schema {
    known
        .additional_properties(Some(of_types(
            &[Type::String, Type::Number, Type::Boolean],
            None,
        )))
        .into()
}

fn request_parameters() -> Schema {
    parameters(
        ObjectBuilder::new()
            .property(
                "timeout",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some(
                        "Deadline in microseconds; overrides the model's default.",
                    )),
            )
            .property(
                "binary_data_output",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .description(Some(
                        "Return every output as binary unless the output says otherwise.",
                    )),
            )
            .property(
                "top_k",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .description(Some(
                        "Answer the k best rows as the outputs `top_k_indices` and `top_k_scores`.",
                    )),
            )
            .property(
                "rank_by",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The output `top_k` ranks by.")),
            ),
    )
}

fn input_parameters() -> Schema {
    parameters(
        ObjectBuilder::new().property(
            "binary_data_size",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .description(Some(
                    "Length of this input's raw bytes after the JSON; replaces `data`.",
                )),
        ),
    )
}

fn output_parameters() -> Schema {
    parameters(ObjectBuilder::new().property(
        "binary_data",
        ObjectBuilder::new().schema_type(Type::Boolean),
    ))
}

fn input_data() -> Schema {
    of_types(
        &[Type::Array, Type::Number, Type::Boolean, Type::String],
        Some("Row-major elements, flat or nested (strings for BYTES); required unless `binary_data_size` is given."),
    )
    .into()
}

fn shape(minimum: i64) -> Schema {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(minimum)),
        )
        .into()
}

fn shape_from_zero() -> Schema {
    shape(0)
}

/// The body of `POST /v2/models/{name}/infer` (read by `v2_codec`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequest {
    /// Echoed in the response.
    #[schema(nullable = false)]
    id: Option<String>,
    #[schema(schema_with = request_parameters)]
    parameters: Option<()>,
    inputs: Vec<InferInput>,
    /// Outputs to return, in this order; all when absent.
    #[schema(nullable = false)]
    outputs: Option<Vec<InferRequestedOutput>>,
}

/// One input of an [`InferRequest`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferInput {
    name: String,
    #[schema(schema_with = shape_from_zero)]
    shape: Vec<u64>,
    /// One of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, BF16,
    /// FP32, FP64, BYTES; anything else is a 400.
    datatype: String,
    #[schema(schema_with = input_parameters)]
    parameters: Option<()>,
    #[schema(schema_with = input_data)]
    data: Option<()>,
}

/// One requested output of an [`InferRequest`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferRequestedOutput {
    name: String,
    #[schema(schema_with = output_parameters)]
    parameters: Option<()>,
}

fn output_data() -> Schema {
    ArrayBuilder::new()
        .items(of_types(
            &[Type::Number, Type::Boolean, Type::String, Type::Null],
            None,
        ))
        .description(Some("Flat, row-major; absent on binary outputs. FP16/BF16 as their FP32 value; non-finite floats are `null`; BYTES elements are strings."))
        .into()
}

fn binary_size() -> Schema {
    ObjectBuilder::new()
        .property(
            "binary_data_size",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        )
        .required("binary_data_size")
        .description(Some("Only on binary outputs."))
        .into()
}

/// The answer of `POST /v2/models/{name}/infer` (written by `v2_codec`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferResponse {
    model_name: String,
    model_version: String,
    #[schema(nullable = false)]
    id: Option<String>,
    outputs: Vec<InferOutput>,
}

/// One output of an [`InferResponse`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct InferOutput {
    name: String,
    #[schema(value_type = crate::service::Datatype)]
    datatype: String,
    #[schema(schema_with = shape_from_zero)]
    shape: Vec<u64>,
    #[schema(schema_with = binary_size)]
    parameters: Option<()>,
    #[schema(schema_with = output_data)]
    data: Option<()>,
}

/// A value of a column, row or field of `/predict`.
fn predict_value(description: Option<&str>) -> ObjectBuilder {
    of_types(
        &[Type::Array, Type::Number, Type::Boolean, Type::String],
        description,
    )
}

fn predict_inputs() -> Schema {
    of_types(
        &[Type::Object, Type::Array],
        Some("Nested arrays keyed by input name, or one nested array for a single-input model. A model with `[features]` also takes its raw fields here by name, one value per row (strings, integers or numbers)."),
    )
    .additional_properties(Some(predict_value(Some(
        "A number or boolean, or an array of them nested to the tensor's rank; a raw field's array of strings or numbers.",
    ))))
    .into()
}

fn predict_instances() -> Schema {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new().additional_properties(Some(predict_value(None))),
        )
        .description(Some("Rows (TF Serving's row form): one object per row of input or field name to that row's value; a field a row leaves out takes its default."))
        .into()
}

fn predict_context() -> Schema {
    ObjectBuilder::new()
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some("A ranking request's context: one row of the model's broadcast inputs (an input's one row, e.g. a history list) and broadcast fields (one value each), by name; sent with `candidates`. See docs/ranking.md."))
        .into()
}

fn predict_candidates() -> Schema {
    let columns = ObjectBuilder::new()
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::Array)));
    let rows = ArrayBuilder::new()
        .min_items(Some(1))
        .items(ObjectBuilder::new());
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(columns)
        .item(rows)
        .description(Some("A ranking request's N candidates: columns (an object of name to an array of N values or rows) or rows (an array of objects of name to value)."))
        .into()
}

/// The body of `POST /predict`: give either `inputs` (columns) or `instances` (rows).
#[derive(ToSchema)]
#[schema(no_recursion)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PredictRequest {
    model: String,
    /// Newest loaded version when absent.
    #[schema(nullable = false)]
    version: Option<String>,
    #[schema(schema_with = predict_inputs)]
    inputs: Option<()>,
    #[schema(schema_with = predict_instances)]
    instances: Option<()>,
    /// Deadline in milliseconds; overrides the model's default.
    #[schema(nullable = false)]
    timeout_ms: Option<u64>,
    /// Output names to return, in this order; all when absent.
    #[schema(nullable = false)]
    outputs: Option<Vec<String>>,
    #[schema(schema_with = predict_context)]
    context: Option<()>,
    #[schema(schema_with = predict_candidates)]
    candidates: Option<()>,
    /// Answer the k best rows (by `rank_by`) under `top_k` beside every row's outputs; k
    /// over N answers N.
    #[schema(nullable = false, minimum = 1)]
    top_k: Option<u64>,
    /// The output `top_k` ranks by (one value per row); default: the model's `rank_by`,
    /// else its only output.
    #[schema(nullable = false)]
    rank_by: Option<String>,
}

fn predict_outputs() -> Schema {
    ObjectBuilder::new()
        .additional_properties(Some(of_types(
            &[Type::Array, Type::Number, Type::Boolean, Type::Null],
            None,
        )))
        .description(Some("Nested arrays keyed by output name."))
        .into()
}

/// The answer of `POST /predict`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PredictResponse {
    model: String,
    version: String,
    #[schema(schema_with = predict_outputs)]
    outputs: (),
    #[schema(nullable = false)]
    top_k: Option<TopK>,
}

/// For a request with `top_k`: the best rows' indices (best first, ties to the lower
/// index, NaN last) and their scores.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TopK {
    indices: Vec<u64>,
    scores: Vec<f64>,
}

/// The body of `POST /v2/repository/index`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IndexRequest {
    /// Only ready versions.
    #[schema(nullable = false)]
    ready: Option<bool>,
}

fn load_parameters() -> Schema {
    ObjectBuilder::new()
        .property(
            "config",
            ObjectBuilder::new().schema_type(Type::String).description(Some(
                "The model's config as a JSON string (same keys as config.toml).",
            )),
        )
        .property(
            "force",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("Reload even when nothing changed.")),
        )
        .additional_properties(Some(ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(
            "`file:<version>/model.onnx`: base64 file contents, written inside the model's directory only.",
        ))))
        .into()
}

/// The body of `POST /v2/repository/models/{name}/load`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoadBody {
    #[schema(schema_with = load_parameters)]
    parameters: Option<()>,
}

/// The body of `POST /v2/repository/models/{name}/unload`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UnloadBody {
    /// Accepted; models here have no dependents.
    #[schema(nullable = false)]
    parameters: Option<std::collections::BTreeMap<String, bool>>,
}

/// `route` served at `path` as well (an alias): the same handler, its operation repeated
/// with `suffix` on its id.
pub fn also_at<S: Clone + Send + Sync + 'static>(
    (schemas, mut paths, handler): UtoipaMethodRouter<S>,
    path: &str,
    suffix: &str,
) -> UtoipaMethodRouter<S> {
    let item = paths.paths.values().next().cloned();
    let mut alias = Paths::new();
    if let Some(item) = item {
        alias.paths.insert(path.to_string(), renamed(item, suffix));
    }
    paths = alias;
    (schemas, paths, handler)
}

/// A model route, `/v2/models/{name}/...`, served for one version as well at
/// `/v2/models/{name}/versions/{version}/...` (the handler's `ModelRef` reads either).
pub fn with_version<S: Clone + Send + Sync + 'static>(
    (schemas, mut paths, handler): UtoipaMethodRouter<S>,
) -> UtoipaMethodRouter<S> {
    let versioned: Vec<(String, PathItem)> = paths
        .paths
        .iter()
        .map(|(path, item)| {
            let rest = path.strip_prefix("/v2/models/{name}").unwrap_or(path);
            let path = format!("/v2/models/{{name}}/versions/{{version}}{rest}");
            let mut item = renamed(item.clone(), "Version");
            for operation in operations(&mut item) {
                if let Some(summary) = &mut operation.summary {
                    let kept = summary.split(" (").next().unwrap_or_default().to_string();
                    *summary = format!("{kept} (the given version)");
                }
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                let at = parameters
                    .iter()
                    .position(|p| p.name == "name")
                    .map_or(0, |i| i + 1);
                parameters.insert(at, version_parameter());
            }
            (path, item)
        })
        .collect();
    paths.paths.extend(versioned);
    (schemas, paths, handler)
}

fn version_parameter() -> Parameter {
    let mut params = VersionPath::into_params(|| None);
    params.retain(|p| p.name == "version");
    params.pop().unwrap_or_default()
}

/// `item` with `suffix` added to each operation's id.
fn renamed(mut item: PathItem, suffix: &str) -> PathItem {
    for operation in operations(&mut item) {
        if let Some(id) = &mut operation.operation_id {
            id.push_str(suffix);
        }
    }
    item
}

/// The operations of `item` (the methods this API uses).
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}
