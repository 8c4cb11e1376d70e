//! KServe V2 model endpoints: metadata, readiness and inference.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{body_or_error, v2_codec};
use crate::batcher::JobOutput;
use crate::error::{Error, Result};
use crate::repository::{InferRequest, ModelSpec, TensorSpec};
use crate::AppState;

fn tensor_metadata(specs: &[TensorSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.dtype.name(), "shape": s.shape }))
        .collect()
}

/// The V2 model metadata object; card facts from the ONNX `metadata_props` go in `parameters`.
pub fn metadata_json(spec: &ModelSpec, versions: Vec<String>) -> Value {
    let mut body = json!({
        "name": spec.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": tensor_metadata(&spec.inputs),
        "outputs": tensor_metadata(&spec.outputs),
    });
    if !spec.properties.is_empty() {
        body["parameters"] = json!(spec.properties);
    }
    body
}

pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let model = state.repository.get(&name, None)?;
    Ok(Json(metadata_json(
        &model.spec,
        state.repository.versions(&name),
    )))
}

pub async fn model_metadata_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let model = state.repository.get(&name, Some(&version))?;
    Ok(Json(metadata_json(
        &model.spec,
        state.repository.versions(&name),
    )))
}

fn ready_response(state: &AppState, name: &str, version: Option<&str>) -> Result<Response> {
    state.repository.get(name, version)?;
    let ready = state.repository.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(json!({ "name": name, "ready": ready }))).into_response())
}

pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response> {
    ready_response(&state, &name, None)
}

pub async fn model_ready_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response> {
    ready_response(&state, &name, Some(&version))
}

pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    run_infer(&state, &name, None, &headers, body).await
}

pub async fn infer_version(
    State(state): State<Arc<AppState>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    run_infer(&state, &name, Some(&version), &headers, body).await
}

async fn run_infer(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let model = state.repository.get_for_inference(name, version)?;
    let spec = &model.spec;
    let decoded = body_or_error(body, state.config.max_body_bytes).and_then(|body| {
        v2_codec::decode(headers, &body, spec).map_err(|e| {
            Error::InvalidInput(format!(
                "model '{}' version {}: {e}",
                spec.name, spec.version
            ))
        })
    });
    let decoded = decoded.map_err(|e| model.refuse(e))?;
    let out = model
        .infer(InferRequest {
            inputs: decoded.inputs,
            timeout: decoded.timeout,
        })
        .await?;
    let encoded = v2_codec::encode(spec, decoded.id.as_deref(), &decoded.outputs, &out.outputs);
    let mut response = Response::new(Body::from(encoded.body));
    let h = response.headers_mut();
    match encoded.json_len {
        Some(len) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(v2_codec::HEADER_LENGTH, HeaderValue::from(len));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    timing_headers(h, &out);
    Ok(response)
}

/// Queue and compute time of the request, for clients that measure where time goes.
pub fn timing_headers(h: &mut HeaderMap, out: &JobOutput) {
    h.insert(
        "x-queue-time-us",
        HeaderValue::from(out.queue_time.as_micros() as u64),
    );
    h.insert(
        "x-compute-time-us",
        HeaderValue::from(out.compute_time.as_micros() as u64),
    );
    h.insert("x-batch-rows", HeaderValue::from(out.batch_rows));
}
