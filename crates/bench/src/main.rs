//! The `mlpserve-bench` binary: parse the command line, set up logging, run the benchmark.

use clap::Parser;
use mlpserve_bench::BenchArgs;
use tracing_subscriber::EnvFilter;

/// The same allocator as the `mlpserve` binary, so the in-process server is measured as it
/// serves in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mlpserve-bench",
    version,
    about = "Closed-loop HTTP or gRPC load test against an mlpserve server, plus the in-process ORT ceiling"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The report goes to stdout, the in-process server's log to stderr. INFO, the server's
    // own default level, because its per-request spans cost CPU only when enabled: a bench
    // at WARN would measure a cheaper server than the one deployed.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = mlpserve_bench::server_async_threads(&cli.args).and_then(|threads| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = threads {
            builder.worker_threads(threads);
        }
        builder
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?
            .block_on(mlpserve_bench::run(cli.args))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlpserve-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
