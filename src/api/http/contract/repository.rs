//! The bodies of the repository extension (index, load, unload).

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::ToSchema;

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
