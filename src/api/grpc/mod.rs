//! KServe V2 gRPC transport (`inference.GRPCInferenceService`, with Triton's ModelConfig,
//! ModelStatistics, ModelStreamInfer and RepositoryIndex) plus the standard
//! `grpc.health.v1.Health` service. This module wires the server: message limits, health
//! status and graceful shutdown. Handlers are in `service`, tensor (de)coding in `codec`,
//! the descriptive messages in `config`, status codes in `status`, generated code in `proto`.

pub mod codec;
mod config;
pub mod proto;
mod service;
mod status;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::service::Service;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;
pub use service::InferenceService;

/// Serves gRPC on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight calls finish. The health service reports SERVING for `""` and for
/// `inference.GRPCInferenceService` until shutdown starts, NOT_SERVING after.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    type Inference = GrpcInferenceServiceServer<InferenceService>;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<Inference>().await;
    // A request is one message, so the HTTP body limit is the natural message limit too.
    let limit = service.config.max_body_bytes;
    let inference = Inference::new(InferenceService::new(service))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let shutdown = async move {
        shutdown.await;
        reporter.set_not_serving::<Inference>().await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    };
    // Small request/response pairs: Nagle's delay would dominate their latency.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(health)
        .add_service(inference)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| format!("gRPC server failed: {e}"))
}
