//! The `mlpserve` binary: parse the command line, set up logging, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mlpserve::config::{ConfigError, LogFormat, ServerArgs, ServerConfig};
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
    /// Check a model repository as `serve` would load it (config files, model files,
    /// settings against the graphs), without serving. Exit status: 0 when every selected
    /// version loads as configured, 1 when a problem was found, 2 when the check could not run.
    Check(CheckArgs),
    /// Describe one model as the server would serve it: inputs and outputs, batching,
    /// paddable axes, external data, opset and producer, the batch size "auto" picks on
    /// this machine, and example requests. PATH is a model.onnx, a version directory or a
    /// model directory. Exit status: 0 when the server would serve it as it is, 1 when not
    /// (each problem printed), 2 when the inspection could not run.
    Inspect(InspectArgs),
    /// Print the configuration `serve` would run with, resolved from the defaults, the
    /// --config file, MLPSERVE_* variables and flags (as its start-up log line shows it),
    /// and exit.
    Config(ConfigArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Print the built-in defaults, ignoring the options, the environment and --config
    #[arg(long)]
    print_defaults: bool,
    /// Print JSON (the form of the start-up log line) instead of `key = value` lines
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// A model.onnx, a version directory or a model directory (with its config.toml)
    path: PathBuf,
    /// The model name the example requests use [default: the model directory's name]
    #[arg(long)]
    name: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// The server's options: the model is loaded with the same settings.
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The model repository [default: --model-repository, else models]
    repository: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// The server's options: the check loads models with the same settings.
    #[command(flatten)]
    server: ServerArgs,
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

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => {
            fixed_mmap_threshold();
            match serve(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    print_stderr(&format!("mlpserve: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => check(args),
        Command::Inspect(args) => inspect(args),
        Command::Config(args) => print_config(args),
    }
}

/// glibc's malloc variable that fixes its mmap threshold.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_VAR: &str = "MALLOC_MMAP_THRESHOLD_";

/// Blocks of this size and larger come from `mmap` and go back to the kernel when freed
/// (glibc's initial threshold, kept fixed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: &str = "131072";

/// Makes `serve` run with glibc's mmap threshold fixed, re-executing itself once with
/// `MALLOC_MMAP_THRESHOLD_` set when the environment does not set it (or its
/// `GLIBC_TUNABLES` equivalent): glibc reads it only when a process starts.
///
/// Why: ONNX Runtime allocates through glibc's malloc (mimalloc serves only this crate's
/// allocations). glibc raises its threshold each time a large mmapped block is freed (up
/// to 32 MiB), after which such blocks (a model's load, its calibration probe, a large
/// run) come from the heap, whose freed holes stay resident: every model swap kept
/// another ~25 MB, without bound. A fixed threshold returns them. An operator's own value,
/// whatever it is, is left as it is; where re-executing fails the server says so and runs
/// without it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    let tuned = std::env::var_os(MMAP_THRESHOLD_VAR).is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
    if tuned {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            print_stderr(&format!(
                "mlpserve: cannot find its own executable to set {MMAP_THRESHOLD_VAR} ({e}); memory freed by ONNX Runtime may stay resident"
            ));
            return;
        }
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Returns only when the exec failed.
    let e = command
        .args(args)
        .env(MMAP_THRESHOLD_VAR, MMAP_THRESHOLD_BYTES)
        .exec();
    print_stderr(&format!(
        "mlpserve: cannot re-execute with {MMAP_THRESHOLD_VAR} set ({e}); memory freed by ONNX Runtime may stay resident"
    ));
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}

/// The resolved configuration as JSON: the defaults come from the one place that
/// declares them (`ServerConfig::resolve`), so the docs that show this cannot drift.
fn print_config(args: ConfigArgs) -> ExitCode {
    let server = if args.print_defaults {
        ServerArgs::default()
    } else {
        args.server
    };
    match ServerConfig::resolve(server) {
        Ok(config) => {
            let value = serde_json::to_value(&config).unwrap_or_default();
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                let mut lines = Vec::new();
                flatten("", &value, &mut lines);
                println!("{}", lines.join("\n"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_stderr(&format!("mlpserve config: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// `key = value` lines of a resolved configuration: nested sections as dotted keys,
/// durations (`{"secs", "nanos"}`) in seconds, `null` as `none`.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match value {
        Value::Object(map) if map.len() == 2 && map.contains_key("secs") => {
            let secs = map["secs"].as_u64().unwrap_or(0) as f64;
            let nanos = map["nanos"].as_u64().unwrap_or(0) as f64;
            out.push(format!("{prefix} = {} s", secs + nanos / 1e9));
        }
        Value::Object(map) => {
            for (key, v) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Null => out.push(format!("{prefix} = none")),
        other => out.push(format!("{prefix} = {other}")),
    }
}

fn inspect(args: InspectArgs) -> ExitCode {
    let (config, runtime) = match offline_setup("inspect", args.server) {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    let options = mlpserve::repository::LoadOptions::from_config(&config);
    match mlpserve::inspect::inspect(&args.path, &runtime, &options, args.name.as_deref()) {
        Ok(report) => print_report(&report, args.json, report.render(), report.passed()),
        Err(e) => {
            print_stderr(&format!("mlpserve inspect: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Exit status of `check` and `inspect` when it could not run at all (as for a usage error).
const CANNOT_RUN: u8 = 2;

fn check(args: CheckArgs) -> ExitCode {
    let mut server = args.server;
    if args.repository.is_some() {
        server.model_repository = args.repository;
    }
    let (config, runtime) = match offline_setup("check", server) {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    let options = mlpserve::repository::LoadOptions::from_config(&config);
    let report = mlpserve::repository::check(&config.model_repository, &runtime, &options);
    print_report(&report, args.json, report.render(), report.passed())
}

/// What `check` and `inspect` (`command`) need before they look at a model: the server's
/// configuration and ONNX Runtime. Either missing, they cannot run: the reason is printed
/// and the error is the exit status [`CANNOT_RUN`].
fn offline_setup(
    command: &str,
    server: ServerArgs,
) -> Result<(ServerConfig, std::sync::Arc<mlpserve::runtime::Runtime>), ExitCode> {
    let config = ServerConfig::resolve(server).map_err(|e| {
        print_stderr(&format!("mlpserve {command}: server configuration: {e}"));
        ExitCode::from(CANNOT_RUN)
    })?;
    let runtime = mlpserve::runtime::Runtime::load(config.ort_lib.as_deref()).map_err(|e| {
        print_stderr(&format!("mlpserve {command}: {e}"));
        ExitCode::from(CANNOT_RUN)
    })?;
    Ok((config, runtime))
}

/// Prints a report (`rendered`, or as JSON with `json`) and gives the exit status: 0 when
/// it `passed`, 1 when it lists problems.
fn print_report(
    report: &impl serde::Serialize,
    json: bool,
    rendered: String,
    passed: bool,
) -> ExitCode {
    let text = if json {
        serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
    } else {
        rendered
    };
    print!("{text}");
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Why `mlpserve serve` exits with an error.
#[derive(Debug, thiserror::Error)]
enum ServeFailed {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the async runtime: {0}")]
    AsyncRuntime(std::io::Error),
    /// A port that cannot be bound; the message names it.
    #[error(transparent)]
    Bind(std::io::Error),
    #[error(transparent)]
    Serve(#[from] mlpserve::ServeError),
}

/// The configuration comes first: it says how many threads the async runtime gets.
fn serve(args: ServerArgs) -> Result<(), ServeFailed> {
    mlpserve::config::raise_fd_limit();
    let config = ServerConfig::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.async_threads)
        .enable_all()
        .build()
        .map_err(ServeFailed::AsyncRuntime)?;
    runtime.block_on(async {
        init_tracing(config.log_format, &config.log_level);
        tracing::info!(config = %serde_json::to_string(&config).unwrap_or_default(), "resolved configuration");
        let listeners = mlpserve::Listeners::bind(&config)
            .await
            .map_err(ServeFailed::Bind)?;
        Ok(mlpserve::run(config, listeners, shutdown_signal()).await?)
    })
}
