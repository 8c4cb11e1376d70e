//! KServe V2 gRPC transport (`inference.GRPCInferenceService`, with Triton's ModelConfig,
//! ModelStatistics, ModelStreamInfer and RepositoryIndex) plus the standard
//! `grpc.health.v1.Health` service. This module wires the server: message limits, health
//! status, API keys and graceful shutdown (connections are `api::conn`'s). Handlers are in `service`, tensor (de)coding in `codec`,
//! the descriptive messages in `config`, status codes in `status`, generated code in `proto`.

mod admission;
pub mod codec;
mod config;
mod payload;
pub mod proto;
mod repository;
mod service;
mod status;
mod tuning;

use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::ServiceExt;

use crate::api::auth::Keys;
use crate::api::conn::{self, Port};
use crate::api::Transport;

use crate::service::budget::Charged;
use crate::service::Service;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;
pub use service::InferenceService;

/// Serves gRPC on `listener` through the connection layer (timeouts, connection cap,
/// HTTP/2 keep-alive PINGs, TLS) until `shutdown` completes, then stops accepting and lets
/// in-flight calls finish. The health service reports SERVING for `""` and for
/// `inference.GRPCInferenceService` until shutdown starts, NOT_SERVING after. With API
/// keys configured, inference and metadata RPCs need `authorization: Bearer <key>`
/// metadata; health checks only with `--auth-health`.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    type Inference = GrpcInferenceServiceServer<InferenceService>;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<Inference>().await;
    // A request is one message, so the HTTP body limit is the natural message limit too.
    let limit = service.config.max_body_bytes;
    let gate = KeyGate {
        keys: Arc::new(Keys::new(&service.config.transport.api_keys)),
        health: service.config.transport.auth_health,
        admin_token: service.config.admin_token.is_some(),
        failures: service
            .metrics
            .transport
            .auth_failures
            .with_label_values(&["grpc"]),
    };
    let budget = service.inflight.clone();
    let inference = Inference::new(InferenceService::new(service))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let routes = Routes::new(health).add_service(inference).prepare();
    let gated = tower::service_fn(move |req: Request<Incoming>| {
        let (gate, routes) = (gate.clone(), routes.clone());
        // Inference messages take their bytes from the in-flight budget as they arrive;
        // a unary call holds them until it is answered, a stream until each message is.
        let charge = admission::charged(req.uri().path()).then(|| budget.charge("grpc"));
        async move {
            if let Err(status) = gate.check(&req) {
                return Ok(status.into_http());
            }
            let (mut parts, body) = req.into_parts();
            if let Some(charge) = &charge {
                parts.extensions.insert(charge.clone());
            }
            let req = Request::from_parts(parts, admission::Counted::new(body, charge.clone()));
            let response = routes.oneshot(req).await;
            // The answer's bytes stay charged until it is written.
            Ok(response?.map(|body| match charge {
                Some(charge) => tonic::body::Body::new(Charged::new(body, charge)),
                None => body,
            }))
        }
    });
    let shutdown = async move {
        shutdown.await;
        reporter.set_not_serving::<Inference>().await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    };
    let port = Port {
        name: "grpc",
        http2_only: true,
        tls: transport.tls.as_ref().map(|t| t.grpc.clone()),
        http2_windows: Some(tuning::WINDOWS),
    };
    conn::serve(listener, port, transport.conns, gated, shutdown).await
}

/// The API-key check of the gRPC port (see [`crate::api::auth`]): every RPC needs
/// `authorization: Bearer <key>` metadata when keys are configured, except the health
/// probes (`ServerLive`, `ServerReady`, `grpc.health.v1.Health`) unless `--auth-health`.
#[derive(Clone)]
struct KeyGate {
    keys: Arc<Keys>,
    health: bool,
    /// `--admin-token` is set: it alone guards the repository RPCs.
    admin_token: bool,
    failures: prometheus::IntCounter,
}

impl KeyGate {
    fn check<B>(&self, req: &Request<B>) -> Result<(), tonic::Status> {
        let probe = matches!(
            req.uri().path(),
            "/inference.GRPCInferenceService/ServerLive"
                | "/inference.GRPCInferenceService/ServerReady"
                | "/grpc.health.v1.Health/Check"
                | "/grpc.health.v1.Health/Watch"
        );
        if probe && !self.health {
            return Ok(());
        }
        let repository = req
            .uri()
            .path()
            .starts_with("/inference.GRPCInferenceService/Repository");
        if repository && self.admin_token {
            return Ok(());
        }
        let authorization = req.headers().get("authorization").map(|v| v.as_bytes());
        if self.keys.allows(authorization) {
            Ok(())
        } else {
            self.failures.inc();
            Err(tonic::Status::unauthenticated(
                "missing or invalid API key: send `authorization: Bearer <key>` metadata",
            ))
        }
    }
}
