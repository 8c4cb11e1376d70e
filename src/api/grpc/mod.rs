//! KServe V2 gRPC transport (`inference.GRPCInferenceService`, with Triton's ModelConfig,
//! ModelStatistics, ModelStreamInfer and RepositoryIndex) plus the standard
//! `grpc.health.v1.Health` service. This module wires the server: message limits, health
//! status, API keys and graceful shutdown (connections are `api::conn`'s). Handlers are in `service`, tensor (de)coding in `codec`,
//! the descriptive messages in `config`, status codes in `status`, generated code in `proto`.

mod codec;
mod config;
pub mod proto;
mod service;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Interceptor, Routes};
use tonic_health::ServingStatus;

use crate::api::auth::Keys;
use crate::api::conn::{self, Port};
use crate::api::Transport;

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
) -> Result<(), String> {
    type Inference = GrpcInferenceServiceServer<InferenceService>;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<Inference>().await;
    // A request is one message, so the HTTP body limit is the natural message limit too.
    let limit = service.config.max_body_bytes;
    let t = &service.config.transport;
    let gate = KeyGate {
        keys: Arc::new(Keys::new(&t.api_keys)),
        failures: service
            .metrics
            .transport
            .auth_failures
            .with_label_values(&["grpc"]),
    };
    let health_gate = match t.auth_health {
        true => gate.clone(),
        false => KeyGate {
            keys: Arc::new(Keys::new(&Default::default())),
            ..gate.clone()
        },
    };
    let inference = Inference::new(InferenceService::new(service))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let routes = Routes::new(InterceptedService::new(health, health_gate))
        .add_service(InterceptedService::new(inference, gate))
        .prepare();
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
    };
    conn::serve(listener, port, transport.conns, routes, shutdown).await
}

/// The API-key check as a tonic interceptor (see [`crate::api::auth`]).
#[derive(Clone)]
struct KeyGate {
    keys: Arc<Keys>,
    failures: prometheus::IntCounter,
}

impl Interceptor for KeyGate {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let authorization = req.metadata().get("authorization").map(|v| v.as_bytes());
        if self.keys.allows(authorization) {
            Ok(req)
        } else {
            self.failures.inc();
            Err(tonic::Status::unauthenticated(
                "missing or invalid API key: send `authorization: Bearer <key>` metadata",
            ))
        }
    }
}
