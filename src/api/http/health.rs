//! Liveness, readiness and server metadata.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::contract::{Live, Ready};
use crate::service::{ServerMetadata, Service};

/// Server liveness
#[utoipa::path(get, path = "/v2/health/live", operation_id = "serverLive", tag = "health",
    responses((status = 200, description = "The process is serving.", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Server readiness
#[utoipa::path(get, path = "/v2/health/ready", operation_id = "serverReady", tag = "health",
    responses(
        (status = 200, description = "Every model is loaded and the server is not shutting down.", body = Ready),
        (status = 503, description = "Shutting down: `{\"ready\": false}`.", body = Ready),
    ))]
pub async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, Json<Ready>) {
    let ready = service.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { ready }))
}

/// Server metadata
#[utoipa::path(get, path = "/v2", operation_id = "serverMetadata", tag = "server",
    responses((status = 200, description = "Name, version and the protocol extensions served.", body = ServerMetadata)))]
pub async fn server_metadata(State(service): State<Arc<Service>>) -> Json<ServerMetadata> {
    Json(service.server_metadata())
}
