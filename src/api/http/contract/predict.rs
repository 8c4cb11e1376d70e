//! The `/predict` bodies, which its handler reads by hand, described as schema types of
//! their own.

use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::ToSchema;

use super::infer::of_types;

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
