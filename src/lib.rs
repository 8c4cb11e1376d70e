//! mlpserve: an inference server for MLP-family ONNX models.
//!
//! Crate map (the request's path, top to bottom):
//! - [`api`]: transports. `api::http` (axum: KServe V2 REST, `/predict`, health, metrics)
//!   decodes bodies into [`tensor::Tensor`]s and encodes answers; no batching or ORT here.
//! - [`repository`]: the loaded models; [`repository::Model::infer`] validates a request
//!   against the graph's [`repository::ModelSpec`] and submits it to the model's batcher.
//! - [`batcher`]: per-model dynamic batching; a pure queue, an async driver and the
//!   stack/pad/split of tensors.
//! - [`runtime`]: ONNX Runtime loading, sessions and the worker threads that own them.
//! - [`config`], [`error`], [`metrics`]: configuration layers, the one error table, the
//!   Prometheus registry.

pub mod api;
pub mod batcher;
pub mod config;
pub mod error;
pub mod metrics;
pub mod repository;
pub mod runtime;
pub mod tensor;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::ServerConfig;

/// Everything the handlers share.
pub struct AppState {
    pub repository: repository::Repository,
    pub metrics: metrics::Metrics,
    pub config: ServerConfig,
}

/// Pre-bound listeners, so tests can bind `127.0.0.1:0` and read the ports back.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: Option<TcpListener>,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the ports the config names (0 = ephemeral).
    pub async fn bind(config: &ServerConfig) -> std::io::Result<Listeners> {
        let addr = |port: u16| format!("{}:{port}", config.host);
        Ok(Listeners {
            http: TcpListener::bind(addr(config.http_port)).await?,
            grpc: Some(TcpListener::bind(addr(config.grpc_port)).await?),
            metrics: match config.metrics_port {
                Some(p) => Some(TcpListener::bind(addr(p)).await?),
                None => None,
            },
        })
    }
}

/// Loads the models and serves until `shutdown` completes, then drains: readiness turns
/// false and new requests get 503 at once, in-flight requests finish (bounded by
/// `shutdown_timeout`), queued batches run, and the function returns.
pub async fn run(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let runtime = runtime::Runtime::load(config.ort_lib.as_deref())?;
    tracing::info!(library = %runtime.library.display(), "ONNX Runtime loaded");
    let metrics = metrics::Metrics::new();
    let options = repository::LoadOptions {
        session: runtime::SessionOptions {
            intra_op_threads: config.intra_op_threads,
            execution_provider: config.execution_provider,
        },
    };
    let repo =
        repository::Repository::load(&config.model_repository, &runtime, &options, &metrics)?;
    let state = Arc::new(AppState {
        repository: repo,
        metrics,
        config,
    });

    // One shutdown signal fans out to every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: refusing new requests, draining in-flight ones");
        signal_state.repository.start_closing();
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|&s| s).await;
        }
    };

    let mut servers = tokio::task::JoinSet::new();
    tracing::info!(addr = %local(&listeners.http), "HTTP listening");
    servers.spawn(api::http::serve(listeners.http, state.clone(), stopped()));
    if let Some(l) = listeners.grpc {
        tracing::info!(addr = %local(&l), "gRPC listening");
        servers.spawn(api::grpc::serve(l, state.clone(), stopped()));
    }
    if let Some(l) = listeners.metrics {
        tracing::info!(addr = %local(&l), "metrics listening");
        servers.spawn(api::http::serve_metrics(l, state.clone(), stopped()));
    }

    let timeout = state.config.shutdown_timeout;
    let drain = async {
        while let Some(r) = servers.join_next().await {
            match r {
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("server task failed: {e}")),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    };
    let wait_stop = stopped();
    tokio::pin!(drain, wait_stop);
    tokio::select! {
        r = &mut drain => return r,
        () = &mut wait_stop => {}
    }
    match tokio::time::timeout(timeout, drain).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                ?timeout,
                "shutdown timeout passed with requests still in flight"
            );
            Ok(())
        }
    }
}

fn local(l: &TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}
