//! The `mlpserve` binary: parse the command line, set up logging, run.

use clap::{Parser, Subcommand};
use mlpserve::config::{LogFormat, ServerArgs, ServerConfig};
use mlpserve::logging::{print_stderr, LogSink};
use tracing_subscriber::EnvFilter;

/// Many small allocations per request (JSON, tensors, headers); mimalloc serves them faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mlpserve",
    version,
    about = "Inference server for MLP-family ONNX models (KServe V2 over HTTP and gRPC, dynamic batching)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every model in a model repository.
    Serve(ServerArgs),
}

fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A failing stderr drops lines (counted) instead of panicking the thread that logs.
    let sink = LogSink::stderr(format == LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(sink);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn main() -> std::process::ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    match serve(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            print_stderr(&format!("mlpserve: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The configuration comes first: it says how many threads the async runtime gets.
fn serve(args: ServerArgs) -> Result<(), String> {
    mlpserve::config::raise_fd_limit();
    let config = ServerConfig::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.async_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        init_tracing(config.log_format, &config.log_level);
        tracing::info!(config = %serde_json::to_string(&config).unwrap_or_default(), "resolved configuration");
        let listeners = mlpserve::Listeners::bind(&config)
            .await
            .map_err(|e| e.to_string())?;
        mlpserve::run(config, listeners, shutdown_signal()).await
    })
}
