//! The V2 inference bodies (`POST /v2/models/{name}/infer`), which `v2_codec` reads and
//! writes by hand, described as schema types of their own.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::ToSchema;

/// A schema of the given JSON types.
pub(super) fn of_types(types: &[Type], description: Option<&str>) -> ObjectBuilder {
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
