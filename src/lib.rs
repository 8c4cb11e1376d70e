//! mlpserve: an inference server for MLP-family ONNX models.
//!
//! Crate map (the request's path, top to bottom; each layer uses only those below it):
//! - [`api`]: transports. `api::http` (axum: KServe V2 REST, `/predict`, health, metrics)
//!   and `api::grpc` (tonic) decode bodies into [`tensor::Tensor`]s, call the service,
//!   encode answers and map errors to status codes.
//! - [`service`]: transport-neutral: resolve a model reference, readiness, output
//!   selection, submit, and the metadata/config/statistics views.
//! - [`repository`]: the loaded model versions; [`repository::Model::infer`] validates a
//!   request against its [`spec::ModelSpec`] and submits it to the version's batcher.
//! - [`batcher`]: per-version dynamic batching; a pure queue, an async driver, the
//!   stack/pad/split of tensors and the worker threads that own ORT sessions.
//! - [`runtime`]: ONNX Runtime loading, session building, a pure `execute`.
//! - [`spec`]: what a model version takes and gives, and the validation rules.
//! - [`inspect`]: `mlpserve inspect`, a model described before it is deployed (above the
//!   repository and the runtime, which it uses; nothing uses it).
//! - [`config`], [`tensor`], [`error`], [`metrics`], [`logging`]: leaves (configuration
//!   layers, tensors and codecs, the error type, the Prometheus registry, log output that
//!   never fails).
//! - [`payload_log`]: sampled records of what inference requests sent and got, handed to
//!   a bounded sink (files or CloudEvents) that no request waits for.
//! - [`telemetry`]: OpenTelemetry spans of inference requests (off without an endpoint);
//!   the transports open them, the batcher records its runs in them.

pub mod api;
pub mod batcher;
pub mod config;
pub mod error;
pub mod features;
pub(crate) mod handoff;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod payload_log;
pub mod repository;
pub mod runtime;
pub mod service;
pub mod spec;
pub mod telemetry;
pub mod tensor;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::ServerConfig;

/// Why [`run`] failed: the part that could not start, with its own error (its message
/// unchanged), or a port's server task that panicked.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Runtime(#[from] runtime::LibraryError),
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error(transparent)]
    PayloadLog(#[from] payload_log::PayloadLogError),
    #[error(transparent)]
    Tls(#[from] api::tls::TlsError),
    #[error(transparent)]
    Repository(#[from] repository::StartupError),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Pre-bound listeners, so tests can bind `127.0.0.1:0` and read the ports back.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds the ports the config names (0 = ephemeral). An error names the address and
    /// which port it was for (e.g. "Address already in use").
    pub async fn bind(config: &ServerConfig) -> std::io::Result<Listeners> {
        let bind = |what: &'static str, flag: &'static str, port: u16| {
            let addr = format!("{}:{port}", config.host);
            async move {
                TcpListener::bind(&addr).await.map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot bind the {what} port ({flag}) to {addr}: {e}"),
                    )
                })
            }
        };
        Ok(Listeners {
            http: bind("HTTP", "--http-port", config.http_port).await?,
            grpc: bind("gRPC", "--grpc-port", config.grpc_port).await?,
            metrics: match config.metrics_port {
                Some(p) => Some(bind("metrics", "--metrics-port", p).await?),
                None => None,
            },
        })
    }
}

/// Loads the models and serves until `shutdown` completes; with a `shutdown_delay`, readiness
/// then answers 503 while requests are still served for that long. Then it drains: new
/// requests get 503 at once, in-flight requests finish (bounded by
/// `shutdown_timeout`), queued batches run, and the function returns.
pub async fn run(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // First, so a SIGHUP during the model loads does not end the process either.
    let hangups = Hangups::install();
    let runtime = runtime::Runtime::load(config.ort_lib.as_deref())?;
    tracing::info!(library = %runtime.library.display(), "ONNX Runtime loaded");
    tracing::info!(
        bytes = config.max_inflight_bytes,
        from = %config.max_inflight_bytes_from,
        "in-flight memory budget"
    );
    let metrics = metrics::Metrics::new();
    let telemetry = telemetry::Telemetry::start(config.traces.as_ref())?;
    let payload_log = payload_log::PayloadLog::start(config.payload_log.as_ref())?;
    // Before the models load, so a bad certificate fails fast.
    let transport = api::Transport::new(&config.transport, &metrics.transport)?;
    let rescan = Arc::new(tokio::sync::Notify::new());
    let repo = start_repository(&config, runtime, &metrics, rescan.clone()).await?;
    let activity = service::Activity::for_current_runtime(metrics.requests_active.clone());
    let inflight = service::budget::ByteBudget::counted(
        config.max_inflight_bytes,
        metrics.transport.inflight_refusals.clone(),
    );
    let state = Arc::new(service::Service {
        repository: repo,
        metrics,
        inflight,
        payload_log,
        config,
        unready: std::sync::atomic::AtomicBool::new(false),
        activity,
    });

    // One shutdown signal fans out to every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        let delay = signal_state.config.shutdown_delay;
        if !delay.is_zero() {
            // Readiness first, listeners later: load balancers see 503 and stop routing
            // here while requests that still arrive are served.
            tracing::info!(
                ?delay,
                "shutdown requested: readiness is 503, still serving for the shutdown delay"
            );
            signal_state
                .unready
                .store(true, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(delay).await;
        }
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

    if let (Some(tls), Some(files)) = (&transport.tls, &state.config.transport.tls) {
        let interval = state.config.transport.tls_reload_interval;
        tokio::spawn(api::tls::watch(
            tls.store.clone(),
            files.clone(),
            interval,
            stopped(),
        ));
    }
    tokio::spawn(hangups.serve(
        transport.tls.is_some(),
        (state.config.model_control_mode == config::ControlMode::Poll).then_some(rescan),
        stopped(),
    ));
    let scheme = if transport.tls.is_some() {
        "TLS"
    } else {
        "plain text"
    };

    let mut servers = tokio::task::JoinSet::new();
    tracing::info!(addr = %local(&listeners.http), scheme, "HTTP listening");
    servers.spawn(api::http::serve(
        listeners.http,
        state.clone(),
        transport.clone(),
        stopped(),
    ));
    tracing::info!(addr = %local(&listeners.grpc), scheme, "gRPC listening");
    servers.spawn(api::grpc::serve(
        listeners.grpc,
        state.clone(),
        transport.clone(),
        stopped(),
    ));
    if let Some(l) = listeners.metrics {
        tracing::info!(addr = %local(&l), scheme, "metrics listening");
        servers.spawn(api::http::serve_metrics(
            l,
            state.clone(),
            transport.clone(),
            stopped(),
        ));
    }

    let timeout = state.config.shutdown_timeout;
    let drain = async {
        while let Some(r) = servers.join_next().await {
            r?;
        }
        Ok(())
    };
    let wait_stop = stopped();
    tokio::pin!(drain, wait_stop);
    tokio::select! {
        r = &mut drain => {
            flush_observers(&state, telemetry).await;
            return r;
        }
        () = &mut wait_stop => {}
    }
    let drained = match tokio::time::timeout(timeout, drain).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                ?timeout,
                "shutdown timeout passed with requests still in flight"
            );
            Ok(())
        }
    };
    flush_observers(&state, telemetry).await;
    drained
}

/// After the drain, when the last requests' spans and payload records are queued: hands
/// them to their sinks (each within its own limit).
async fn flush_observers(state: &service::Service, telemetry: telemetry::Telemetry) {
    if let Some(log) = &state.payload_log {
        log.flush().await;
    }
    telemetry.shutdown().await;
}

/// Builds the repository and loads what the control mode loads at start; in poll mode
/// also starts the poll loop (it stops when shutdown starts).
async fn start_repository(
    config: &ServerConfig,
    runtime: Arc<runtime::Runtime>,
    metrics: &metrics::Metrics,
    rescan: Arc<tokio::sync::Notify>,
) -> Result<Arc<repository::Repository>, repository::StartupError> {
    let loader = repository::Loader {
        runtime,
        options: repository::LoadOptions::from_config(config),
        metrics: metrics.clone(),
    };
    let options = repository::RepositoryOptions {
        root: config.model_repository.clone(),
        mode: config.model_control_mode,
        strict_readiness: config.strict_readiness,
    };
    let repo = Arc::new(repository::Repository::new(options, loader));
    repo.start(&config.load_model, config.exit_on_error).await?;
    if config.model_control_mode == config::ControlMode::Poll {
        tokio::spawn(repo.clone().poll_forever(config.repository_poll, rescan));
    }
    Ok(repo)
}

fn local(l: &TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}

/// SIGHUP (logrotate, a closed terminal, an operator asking for a reload) never ends the
/// process: it reloads what can be reloaded. The TLS watcher reloads the certificate on
/// its own SIGHUP listener; this one rescans the repository in poll mode and logs what
/// the signal did.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Replaces the default action (terminate) at once.
    fn install() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGHUP"))
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// Answers each SIGHUP until `stop` completes.
    async fn serve(
        self,
        tls: bool,
        rescan: Option<Arc<tokio::sync::Notify>>,
        stop: impl Future<Output = ()>,
    ) {
        #[cfg(unix)]
        {
            let Some(mut signal) = self.signal else {
                return;
            };
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    got = signal.recv() => if got.is_none() { return },
                }
                let reloads = match (tls, rescan.is_some()) {
                    (true, true) => "TLS certificate and key, repository rescan",
                    (true, false) => "TLS certificate and key",
                    (false, true) => "repository rescan",
                    (false, false) => "nothing (no TLS, repository not in poll mode)",
                };
                tracing::info!(reloads, "SIGHUP received");
                if let Some(rescan) = &rescan {
                    rescan.notify_one();
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (self, tls, rescan, stop);
        }
    }
}
