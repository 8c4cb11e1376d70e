//! Liveness, readiness and server metadata.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::service::{ServerMetadata, Service};

/// 200 while the process serves at all.
pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// 200 when every model is loaded and the server is not shutting down; 503 otherwise.
pub async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, Json<Value>) {
    let ready = service.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready })))
}

/// `GET /v2`.
pub async fn server_metadata(State(service): State<Arc<Service>>) -> Json<ServerMetadata> {
    Json(service.server_metadata())
}
