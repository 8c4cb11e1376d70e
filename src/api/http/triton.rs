//! Triton's HTTP extensions: model configuration (`GET /v2/models/{m}/config`) and
//! statistics (`GET /v2/models[/{m}[/versions/{v}]]/stats`), rendered as JSON from the
//! service's views (the gRPC transport renders the same views as protobuf).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::Result;
use crate::service::{ModelRef, Service, TritonConfig};

/// `GET /v2/models/{name}[/versions/{version}]/config`.
pub async fn model_config(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<TritonConfig>> {
    Ok(Json(service.model_config(&model)?))
}

/// `GET /v2/models/stats`: every loaded model version.
pub async fn all_stats(State(service): State<Arc<Service>>) -> Result<Json<Value>> {
    Ok(Json(
        json!({ "model_stats": service.statistics(None, None)? }),
    ))
}

/// `GET /v2/models/{name}[/versions/{version}]/stats`: every loaded version of one model
/// (as Triton does), or one version.
pub async fn model_stats(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<Value>> {
    let stats = service.statistics(Some(&model.name), model.version.as_deref())?;
    Ok(Json(json!({ "model_stats": stats })))
}
