//! HTTP transport (axum): KServe V2 REST with Triton's binary-tensor extension, the
//! application-friendly `/predict`, health probes and `/metrics`. Layers add request ids,
//! a body limit, tracing spans and per-route metrics.

mod admission;
mod auth;
mod contract;
mod error;
mod health;
mod lift;
mod model_ref;
mod payload;
pub mod predict;
mod predict_rank;
mod repository;
mod request_id;
mod triton;
mod v2;
pub mod v2_codec;
mod v2_params;
#[cfg(feature = "json-compare")]
mod v2_sonic;

pub use error::{answered_status, status};

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::decompression::{DecompressionBody, RequestDecompressionLayer};
use tower_http::timeout::RequestBodyTimeout;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::conn::{self, Port};
use crate::api::Transport;
use crate::error::Error;
use crate::service::Service;
use crate::spec::ModelSpec;
use crate::telemetry;
use crate::tensor::Tensor;

/// Header carrying the request id, taken from the client or generated.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the HTTP API, each registered with its documented operation: the
/// router and the OpenAPI document are two views of this one list.
fn api() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::with_openapi(contract::ApiDoc::openapi())
        .routes(routes!(health::server_metadata))
        .routes(contract::also_at(
            routes!(health::server_metadata),
            "/v2/",
            "Slash",
        ))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(contract::also_at(
            routes!(health::live),
            "/health/live",
            "Alias",
        ))
        .routes(contract::also_at(
            routes!(health::ready),
            "/health/ready",
            "Alias",
        ))
        .routes(routes!(metrics))
        .routes(contract::with_version(routes!(v2::model_metadata)))
        .routes(contract::with_version(routes!(v2::model_ready)))
        .routes(contract::with_version(routes!(v2::infer)))
        .routes(contract::with_version(routes!(triton::model_config)))
        .routes(routes!(triton::all_stats))
        .routes(contract::with_version(routes!(triton::model_stats)))
        .routes(routes!(predict::predict))
        .routes(routes!(repository::index))
        .routes(routes!(repository::load))
        .routes(routes!(repository::unload))
        .routes(routes!(openapi))
}

/// The OpenAPI document of [`api`], as JSON (built once).
pub fn openapi_json() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, doc) = api().split_for_parts();
        // A document of derived types and literals always serializes.
        serde_json::to_string(&contract::finish(doc)).unwrap_or_default()
    })
}

/// The full HTTP API.
pub fn router(state: Arc<Service>) -> Router {
    let body_limit = state.config.max_body_bytes;
    let budget = state.inflight.clone();
    let (routes, _) = api().split_for_parts();
    routes
        .fallback(not_found)
        // One stack, applied once: every `Router::layer` call boxes the route again (a boxed
        // service clone and a boxed future per layer and request), and so does every
        // `from_fn` layer, hence few of those. Listed outermost first.
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    Front {
                        service: state.clone(),
                        gate: auth::Gate::new(&state),
                        ids: request_id::CounterRequestId::new(),
                    },
                    front,
                ))
                // Triton clients may gzip/deflate bodies both ways (`Content-Encoding`,
                // `Accept-Encoding`). Answers are compressed only when they are inference
                // results, as Triton does: its clients read every other answer (metadata,
                // config, statistics, errors) as plain text whatever they asked for.
                .layer(
                    CompressionLayer::new().compress_when(DefaultPredicate::new().and(
                        |_, _, _: &_, ext: &axum::http::Extensions| {
                            ext.get::<Compressible>().is_some()
                        },
                    )),
                )
                .layer(RequestDecompressionLayer::new())
                .map_request(|req: Request<DecompressionBody<Body>>| req.map(Body::new))
                // Inside decompression: inflated bytes are what the in-flight budget is charged.
                .layer(axum::middleware::from_fn_with_state(
                    budget,
                    admission::admit,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

/// Serves the API on `listener` through the connection layer (timeouts, connection cap,
/// TLS) until `shutdown` completes, then lets in-flight requests finish. A request body
/// that stalls longer than `--body-read-timeout-secs` fails the request (400) and the
/// connection.
pub async fn serve(
    listener: TcpListener,
    state: Arc<Service>,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let body_timeout = state.config.transport.body_read_timeout;
    let app = RequestBodyTimeout::new(router(state), body_timeout);
    let port = Port {
        name: "http",
        http2_only: false,
        tls: transport.tls.as_ref().map(|t| t.http.clone()),
        http2_windows: None,
    };
    conn::serve(listener, port, transport.conns, app, shutdown).await
}

/// Serves only `/metrics` (for `--metrics-port`), with the same connection layer and TLS.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<Service>,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            auth::Gate::new(&state),
            auth::require_key,
        ))
        .with_state(state);
    let port = Port {
        name: "metrics",
        http2_only: false,
        tls: transport.tls.as_ref().map(|t| t.http.clone()),
        http2_windows: None,
    };
    conn::serve(listener, port, transport.conns, app, shutdown).await
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4.",
        body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of the HTTP API.",
        body = Object, content_type = "application/json")))]
async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
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

/// State of [`front`].
#[derive(Clone)]
struct Front {
    service: Arc<Service>,
    gate: Arc<auth::Gate>,
    ids: request_id::CounterRequestId,
}

/// Gives the request its id (`request_id::assign`) and echoes it on the answer, opens the
/// request's span (DEBUG only), counts every request by route template (never the raw
/// path) and status, logs the ones the server itself failed (500) with their request id
/// and error, and refuses before any other work a request without a valid key (401) or
/// with a body encoding that cannot be inflated (415); refusals are counted too.
/// One middleware for all of it, as each layer costs a boxed service and future per
/// request.
async fn front(State(front): State<Front>, mut req: Request, next: Next) -> Response {
    let id_header = request_id::assign(&front.ids, &mut req);
    // A cheap clone (the template is shared), not a copy per request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let method = req.method().clone();
    let id = id_header.to_str().unwrap_or("");
    // Only at DEBUG: at INFO, formatting its fields cost ~5% of small-request throughput.
    let span = tracing::debug_span!("http", %method, uri = %req.uri(), request_id = id);
    let started = std::time::Instant::now();
    let _busy = front.service.activity.begin();
    let refused =
        auth::refusal(&front.gate, &req).or_else(|| admission::encoding_refusal(&mut req));
    // Inference routes get an OpenTelemetry server span (nothing while tracing is off).
    let mut trace = if is_inference(route) {
        let caller = telemetry::caller_context(telemetry::HeaderSource::Http(req.headers()));
        telemetry::RequestTrace::start(caller.as_ref(), "http", id)
    } else {
        telemetry::RequestTrace::off()
    };
    let mut response = match refused {
        Some(refused) => refused,
        None if is_inference(route) => {
            let work = trace.scope(next.run(req).instrument(span.clone()));
            crate::logging::with_request_id(id.into(), work).await
        }
        None => trace.scope(next.run(req).instrument(span.clone())).await,
    };
    if let Some(e @ Error::Overloaded { .. }) = response.extensions().get::<Error>() {
        *response.status_mut() = answered_status(e, front.service.config.overload_status);
    }
    let status = response.status();
    if trace.is_on() {
        trace.set(|| telemetry::kv_count("http.response.status_code", status.as_u16().into()));
        trace.finish(if status.is_success() {
            Ok(())
        } else {
            let error = response.extensions().get::<Error>();
            Err((
                status.as_u16().to_string(),
                error.map_or_else(|| status.to_string(), Error::client_message),
            ))
        });
    }
    front
        .service
        .metrics
        .http_request(route, method.as_str(), status.as_u16());
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    // A 500 is the server's own failure (`Error::is_server_fault`, or a handler that broke);
    // 503/504 are load and lifecycle, counted in the metrics, not logged per request. A
    // failed run was logged by its worker, with this request's id.
    let error = response.extensions().get::<Error>();
    if status == StatusCode::INTERNAL_SERVER_ERROR && error.is_none_or(Error::is_logged_per_request)
    {
        let error = error.map(|e| e.to_string());
        tracing::error!(
            %method, route, status = status.as_u16(), request_id = id, latency_ms,
            error = error.as_deref().unwrap_or(""),
            "request failed"
        );
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), latency_ms, "request finished");
    }
    request_id::echo(&mut response, id_header);
    response
}

/// Routes whose requests run a model, and so are traced.
fn is_inference(route: &str) -> bool {
    route.ends_with("/infer") || route == "/predict"
}

/// Marks an answer that may be compressed (a successful inference result); every other
/// answer goes out as it is, whatever `Accept-Encoding` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compressible;

/// Bodies (and answers) above this many bytes are decoded (encoded) on the blocking pool,
/// so a large JSON body never stalls the async threads that serve every other model.
pub(crate) const OFF_RUNTIME_BYTES: usize = 64 << 10;

/// Runs `work` on the blocking pool when `large`, inline otherwise.
pub(crate) async fn off_runtime_if<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if !large {
        return Ok(work());
    }
    // At most one large decode per core at a time: the async threads stay free, and peak
    // memory stays what the cores can work on, not what every waiting body could take.
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| Error::Internal(format!("decode slots closed: {e}")))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("a decode/encode task failed: {e}")))
}

/// JSON has no NaN or infinity, and serializers would write `null`: an output going out as
/// JSON that holds one is an error naming the output (binary outputs and gRPC carry them
/// as they are).
pub(crate) fn check_json_output(spec: &ModelSpec, name: &str, t: &Tensor) -> Result<(), Error> {
    match t.data.first_non_finite() {
        None => Ok(()),
        Some((index, value)) => Err(Error::NonFiniteOutput(format!(
            "model '{}' version {}: output '{name}' element {index} is {value}, which JSON cannot carry; ask for it as binary data (\"binary_data\": true) or over gRPC to receive it as is",
            spec.name, spec.version
        ))),
    }
}

/// The body, or the error that explains why it could not be read (413 over the limit).
pub(crate) fn body_or_error(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, Error> {
    body.map_err(|rejection| {
        if is_body_timeout(&rejection) {
            Error::BodyTimeout(
                "the request body stalled for longer than the body read timeout (--body-read-timeout-secs)"
                    .to_string(),
            )
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
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

/// Whether reading the body failed because `RequestBodyTimeout` gave up on a stalled body.
fn is_body_timeout(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}
