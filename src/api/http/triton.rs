//! Triton's HTTP extensions: model configuration (`GET /v2/models/{m}/config`) and
//! statistics (`GET /v2/models[/{m}[/versions/{v}]]/stats`). Load tools such as
//! perf_analyzer read the configuration to learn `max_batch_size` and the per-row dims.
//! This module only renders what the repository and the metrics already know; it never
//! touches batching or ONNX Runtime.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::Result;
use crate::metrics::ModelStats;
use crate::repository::{Model, ModelSpec, TensorSpec};
use crate::AppState;

/// Triton's tensor config entries. For batched models the batch axis is left out of `dims`
/// (Triton's convention: `max_batch_size > 0` implies a leading batch dim); dynamic dims
/// stay `-1`.
fn tensor_config(specs: &[TensorSpec], batched: bool) -> Vec<Value> {
    specs
        .iter()
        .map(|s| {
            json!({ "name": s.name, "data_type": s.dtype.triton_name(), "dims": s.triton_dims(batched) })
        })
        .collect()
}

/// The Triton model configuration of one model version (`model_config.proto` as JSON).
pub fn config_json(spec: &ModelSpec) -> Value {
    let mut config = json!({
        "name": spec.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": spec.triton_max_batch_size(),
        "input": tensor_config(&spec.inputs, spec.batched),
        "output": tensor_config(&spec.outputs, spec.batched),
        "default_model_filename": "model.onnx",
        "instance_group": [{
            "name": spec.name,
            "count": spec.config.instances,
            "kind": "KIND_CPU",
        }],
    });
    // Triton rejects `dynamic_batching` on a model that cannot batch; so do we.
    if spec.batched {
        let c = &spec.config;
        config["dynamic_batching"] = json!({
            "preferred_batch_size": c.preferred_batch_sizes,
            "max_queue_delay_microseconds": c.max_queue_delay_us,
            "default_queue_policy": {
                "default_timeout_microseconds": c.default_timeout_ms.saturating_mul(1000),
                "allow_timeout_override": true,
                "max_queue_size": c.max_queue_size,
            },
        });
    }
    config
}

/// `GET /v2/models/{name}/config`: the configuration of the version that serves by default.
pub async fn model_config(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let model = state.repository.get(&name, None)?;
    Ok(Json(config_json(&model.spec)))
}

/// `GET /v2/models/{name}/versions/{version}/config`.
pub async fn model_config_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let model = state.repository.get(&name, Some(&version))?;
    Ok(Json(config_json(&model.spec)))
}

fn duration(count: u64, ns: u64) -> Value {
    json!({ "count": count, "ns": ns })
}

/// One entry of Triton's `model_stats` array.
///
/// Triton counts `queue` and `compute_*` per request (perf_analyzer divides every total by
/// the success count); see [`ModelStats::request_compute_ns`]. Failed requests are counted
/// but not timed. `last_inference` is not
/// tracked and reads 0; there is no response cache, so `cache_*` are 0.
pub fn model_stats_json(spec: &ModelSpec, stats: &ModelStats) -> Value {
    json!({
        "name": spec.name,
        "version": spec.version,
        "last_inference": 0,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": duration(stats.success_count, stats.success_ns),
            "fail": duration(stats.fail_count, 0),
            "queue": duration(stats.success_count, stats.queue_ns),
            "compute_input": duration(stats.success_count, 0),
            "compute_infer": duration(stats.success_count, stats.request_compute_ns()),
            "compute_output": duration(stats.success_count, 0),
            "cache_hit": duration(0, 0),
            "cache_miss": duration(0, 0),
        },
        "batch_stats": [],
    })
}

fn stats_response<'a>(models: impl IntoIterator<Item = &'a Arc<Model>>) -> Json<Value> {
    let entries: Vec<Value> = models
        .into_iter()
        .map(|m| model_stats_json(&m.spec, &m.metrics.stats()))
        .collect();
    Json(json!({ "model_stats": entries }))
}

/// `GET /v2/models/stats`: every loaded model version.
pub async fn all_stats(State(state): State<Arc<AppState>>) -> Json<Value> {
    stats_response(state.repository.all())
}

/// `GET /v2/models/{name}/stats`: every loaded version of one model (as Triton does).
pub async fn model_stats(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    Ok(stats_response(&state.repository.all_versions(&name)?))
}

/// `GET /v2/models/{name}/versions/{version}/stats`.
pub async fn model_stats_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let model = state.repository.get(&name, Some(&version))?;
    Ok(stats_response(std::iter::once(&model)))
}
