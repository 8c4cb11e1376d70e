//! HTTP transport (axum): KServe V2 REST with Triton's binary-tensor extension, the
//! application-friendly `/predict`, health probes and `/metrics`. Layers add request ids,
//! a body limit, tracing spans and per-route metrics.

mod error;
mod health;
mod model_ref;
pub mod predict;
mod request_id;
mod triton;
mod v2;
pub mod v2_codec;

pub use error::status;

use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::service::Service;

/// Header carrying the request id, taken from the client or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The full HTTP API.
pub fn router(state: Arc<Service>) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/v2", get(health::server_metadata))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_metadata),
        )
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_ready),
        )
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer),
        )
        .route("/v2/models/{name}/config", get(triton::model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(triton::model_config),
        )
        .route("/v2/models/stats", get(triton::all_stats))
        .route("/v2/models/{name}/stats", get(triton::model_stats))
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(triton::model_stats),
        )
        .route("/predict", post(predict::predict))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // Triton clients may gzip/deflate bodies both ways (`Content-Encoding`, `Accept-Encoding`).
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID,
            request_id::CounterRequestId::new(),
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))
}

/// Serves only `/metrics` (for `--metrics-port`).
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("metrics server failed: {e}"))
}

async fn metrics(State(state): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn not_found(req: Request) -> Response {
    let error = format!("no route for {} {}", req.method(), req.uri().path());
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": error })),
    )
        .into_response()
}

/// Counts every request by route template (never the raw path) and status.
async fn count_requests(State(state): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let response = next.run(req).await;
    state
        .metrics
        .http_request(&route, method.as_str(), response.status().as_u16());
    response
}

/// The body, or the error that explains why it could not be read (413 over the limit).
pub(crate) fn body_or_error(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, Error> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(format!(
                "request body is larger than the {limit}-byte limit (--max-body-bytes)"
            ))
        } else {
            Error::InvalidInput(format!(
                "cannot read request body: {}",
                rejection.body_text()
            ))
        }
    })
}
