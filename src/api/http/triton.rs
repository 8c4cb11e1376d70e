//! Triton's HTTP extensions: model configuration (`GET /v2/models/{m}/config`) and
//! statistics (`GET /v2/models[/{m}[/versions/{v}]]/stats`), rendered as JSON from the
//! service's views (the gRPC transport renders the same views as protobuf).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::contract::{ModelErrors, ModelPath, ModelStatsResponse};
use crate::error::Result;
use crate::service::{ModelRef, Service, TritonConfig};

/// Triton model configuration (the newest loaded version)
///
/// `GET /v2/models/{name}[/versions/{version}]/config`.
#[utoipa::path(get, path = "/v2/models/{name}/config", operation_id = "modelConfig", tag = "triton",
    params(ModelPath),
    responses(
        (status = 200, description = "`model_config.proto` as JSON; read by perf_analyzer for `max_batch_size` and the per-row dims.", body = TritonConfig),
        ModelErrors,
    ))]
pub async fn model_config(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<TritonConfig>> {
    Ok(Json(service.model_config(&model)?))
}

/// Triton statistics of every loaded model version
///
/// `GET /v2/models/stats`.
#[utoipa::path(get, path = "/v2/models/stats", operation_id = "allModelStats", tag = "triton",
    responses((status = 200, description = "Statistics per model version.", body = ModelStatsResponse)))]
pub async fn all_stats(State(service): State<Arc<Service>>) -> Result<Json<ModelStatsResponse>> {
    let model_stats = service.statistics(None, None)?;
    Ok(Json(ModelStatsResponse { model_stats }))
}

/// Triton statistics (every loaded version of the model)
///
/// `GET /v2/models/{name}[/versions/{version}]/stats`: every loaded version of one model
/// (as Triton does), or one version.
#[utoipa::path(get, path = "/v2/models/{name}/stats", operation_id = "modelStats", tag = "triton",
    params(ModelPath),
    responses(
        (status = 200, description = "Statistics per model version.", body = ModelStatsResponse),
        ModelErrors,
    ))]
pub async fn model_stats(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<ModelStatsResponse>> {
    let model_stats = service.statistics(Some(&model.name), model.version.as_deref())?;
    Ok(Json(ModelStatsResponse { model_stats }))
}
