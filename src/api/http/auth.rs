//! The API-key gate of the HTTP API: inference and metadata routes need
//! `Authorization: Bearer <key>` when keys are configured; health probes and `/metrics`
//! only when `--auth-health` / `--auth-metrics` say so. A refusal is a 401 that says what
//! is needed, never which keys exist; it is counted in `mlpserve_auth_failures_total`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::IntCounter;

use crate::api::auth::Keys;
use crate::service::Service;

/// The keys and which route groups they guard.
#[derive(Clone)]
pub struct Gate {
    keys: Keys,
    health: bool,
    metrics: bool,
    /// `--admin-token` is set: it alone guards the repository endpoints (both would need
    /// the same `Authorization` header).
    admin_token: bool,
    failures: IntCounter,
}

impl Gate {
    pub fn new(service: &Service) -> Arc<Gate> {
        let t = &service.config.transport;
        Arc::new(Gate {
            keys: Keys::new(&t.api_keys),
            health: t.auth_health,
            metrics: t.auth_metrics,
            admin_token: service.config.admin_token.is_some(),
            failures: service
                .metrics
                .transport
                .auth_failures
                .with_label_values(&["http"]),
        })
    }

    /// Whether a request to `path` needs a key.
    fn guards(&self, path: &str) -> bool {
        if self.keys.is_open() {
            return false;
        }
        match path {
            "/metrics" => self.metrics,
            // The same probes stay open over gRPC (`ServerLive`, `ServerReady`, Health).
            "/v2/health/live" | "/v2/health/ready" | "/health/live" | "/health/ready" => {
                self.health
            }
            p if p.starts_with("/v2/repository/") => !self.admin_token,
            _ => true,
        }
    }
}

/// The 401 for a request to a guarded route without a valid key; `None` lets it pass.
pub fn refusal(gate: &Gate, req: &Request) -> Option<Response> {
    if !gate.guards(req.uri().path()) {
        return None;
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if gate.keys.allows(authorization) {
        return None;
    }
    gate.failures.inc();
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "missing or invalid API key: send `Authorization: Bearer <key>`"
            })),
        )
            .into_response(),
    )
}

/// Middleware (the metrics port): passes the request on, or answers 401.
pub async fn require_key(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    match refusal(&gate, &req) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}
