//! The [`ModelRef`] extractor: one handler serves both `/v2/models/{name}/...` and
//! `/v2/models/{name}/versions/{version}/...`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::service::ModelRef;

impl<S: Send + Sync> FromRequestParts<S> for ModelRef {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = params.remove("name").unwrap_or_default();
        let version = params.remove("version");
        // `/versions//infer` must not quietly mean the default version: an empty path
        // segment is a malformed URL (gRPC's empty `model_version` is the protocol's default).
        if name.is_empty() || version.as_deref() == Some("") {
            return Err(Error::InvalidInput(format!(
                "empty model name or version segment in path '{}'",
                parts.uri.path()
            ))
            .into_response());
        }
        Ok(ModelRef::new(name, version.as_deref()))
    }
}
