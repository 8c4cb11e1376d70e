//! `mlpserve-bench`: closed-loop HTTP or gRPC load against a server (one started
//! in-process with `--model-repository`, or a running one at `--url`) at several
//! concurrency levels, and optionally the in-process ORT ceiling for the same model file,
//! so one run reports the server's throughput, latency and batching next to what bare
//! `session.run` achieves.
//!
//! Layout: `payload` builds the request once, `load` drives the clients (`grpc` is their
//! HTTP/2 side), `server` starts the server and reads its counters, `cpu` splits CPU time
//! by thread role, `ceiling` runs ORT directly, `report` prints. Nothing here changes how
//! the server serves.
//!
//! A crate of its own so the server binary links neither this code nor its HTTP client and
//! histogram dependencies; it reuses the server's library (see [`shared`]) rather than copies.

mod args;
mod ceiling;
mod context;
mod cpu;
mod floor;
mod grpc;
mod load;
mod payload;
mod report;
mod server;

use std::sync::Arc;
use std::time::Instant;

pub use args::{parse_duration, BenchArgs};
pub use payload::Api;

use shared::{ExecutionProvider, ModelConfig, ServerArgs, ServerConfig};

/// The `mlpserve` library items the bench reuses: configuration, session building and spec
/// reading exactly as the server does them, tensors, and the server itself (started
/// in-process). Every `mlpserve::` path of this crate is in these lines, so a move inside
/// the server crate is one edit here.
mod shared {
    pub use mlpserve::api::grpc::proto::{
        model_infer_request::InferInputTensor, ModelInferRequest,
    };
    pub use mlpserve::api::http::v2_codec;
    pub use mlpserve::config::{ExecutionProvider, ModelConfig, ServerArgs, ServerConfig};
    pub use mlpserve::runtime::{build_session, read_spec, to_ort_value, Runtime, SessionOptions};
    pub use mlpserve::tensor::{
        dispatch_dtype, element_count, encode_binary, with_tensor_data, ByteStrings, DataType,
        Element, Flat, FromJson, JsonNumber, Nested, Tensor, TensorData,
    };
    pub use mlpserve::{run, Listeners, ServeError};
}

/// One measured level, as reported.
#[derive(Clone)]
pub struct LevelReport {
    pub concurrency: usize,
    pub result: load::LevelResult,
    pub rows_per_request: usize,
    pub mean_batch: Option<f64>,
    pub mean_queue_us: Option<f64>,
    /// Cores used per thread role during the window.
    pub cores: Vec<(&'static str, f64)>,
}

impl LevelReport {
    /// Answered requests per second of the window.
    pub fn requests_per_s(&self) -> f64 {
        self.result.ok as f64 / self.result.window.as_secs_f64().max(1e-9)
    }
}

/// Everything the client side measured.
struct Measured {
    payload: payload::Payload,
    levels: Vec<LevelReport>,
    /// The same levels against the transport floor (`--floor`).
    floor: Vec<LevelReport>,
    /// Both context forms, round by round (`--compare-context`).
    comparison: Option<context::Comparison>,
    ceiling: Option<Result<Vec<ceiling::CeilingPoint>, String>>,
}

/// The in-process server's options (`--model-repository`), or `None` with `--url`.
fn server_args(args: &BenchArgs) -> Option<ServerArgs> {
    Some(ServerArgs {
        config: args.server_config.clone(),
        model_repository: Some(args.model_repository.clone()?),
        intra_op_threads: args.intra_op_threads,
        async_threads: args.async_threads,
        ort_lib: args.ort_lib.clone(),
        ..ServerArgs::default()
    })
}

/// How many threads the runtime that hosts the in-process server gets: what `serve` would
/// give it for the same options (`None` with `--url`: tokio's default).
pub fn server_async_threads(args: &BenchArgs) -> Result<Option<usize>, String> {
    server_args(args)
        .map(|a| {
            ServerConfig::resolve(a)
                .map(|c| c.async_threads)
                .map_err(|e| e.to_string())
        })
        .transpose()
}

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err("--concurrency needs one or more positive client counts".into());
    }
    if args.rows == 0 || args.client_threads == 0 {
        return Err("--rows and --client-threads must be at least 1".into());
    }
    if args.ceiling && (args.ceiling_batches.is_empty() || args.ceiling_batches.contains(&0)) {
        return Err("--ceiling-batches needs one or more positive batch sizes".into());
    }
    if (args.context_once || args.compare_context) && args.context.is_empty() {
        return Err(
            "--context-once and --compare-context need --context (the context's inputs)".into(),
        );
    }
    if !args.context.is_empty() && args.payload.is_some() {
        return Err("--context shapes a generated request: leave out --payload".into());
    }
    if args.compare_context && (args.context_once || args.floor || args.rounds == 0) {
        return Err(
            "--compare-context measures both forms itself, in --rounds (at least 1) rounds; \
             it takes neither --context-once nor --floor"
                .into(),
        );
    }
    if args.dry_run {
        let target = match &args.model_repository {
            Some(repo) => format!("an in-process server on {}", repo.display()),
            None => args.url.clone(),
        };
        println!(
            "mlpserve-bench --dry-run: options accepted; would load model {} through {target}, \
             {} client level(s){}",
            args.model,
            args.concurrency.len(),
            if args.ceiling {
                ", then the ceiling"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let in_process = match server_args(&args) {
        Some(server_args) => Some(server::start(server_args).await?),
        None => None,
    };
    let base = match &in_process {
        Some(s) => format!("http://{}", s.addr),
        None => args.url.trim_end_matches('/').to_string(),
    };
    let grpc_addr = match &in_process {
        Some(s) => s.grpc_addr.clone(),
        None => args.grpc_addr.clone(),
    };
    let ceiling = if args.ceiling {
        Some(ceiling_config(&args, in_process.as_ref())?)
    } else {
        None
    };

    // The load generator gets its own thread and runtime, apart from the server's.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let client_args = args.clone();
    let client_base = base.clone();
    let server_runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name(cpu::CLIENT_THREAD.into())
        .spawn(move || {
            let _ = tx.send(client_side(
                client_args,
                Endpoints {
                    base: client_base,
                    grpc_addr,
                },
                ceiling,
                server_runtime,
            ));
        })
        .map_err(|e| format!("cannot start the load generator thread: {e}"))?;
    let measured = rx
        .await
        .map_err(|_| "the load generator thread panicked".to_string());
    let server_config = in_process.as_ref().map(|s| s.config.clone());
    if let Some(server) = in_process {
        server.stop().await?;
    }
    let measured = measured??;
    report::print(&report::Report {
        args: &args,
        base: &base,
        server: server_config.as_ref(),
        payload: &measured.payload,
        levels: &measured.levels,
        ceiling: measured.ceiling.as_ref(),
    });
    if !measured.floor.is_empty() {
        floor::print(&measured.levels, &measured.floor);
    }
    if let Some(comparison) = &measured.comparison {
        context::print(&args, comparison, measured.ceiling.as_ref());
    }
    Ok(())
}

/// Which model file and threading the ceiling uses: the in-process server's, else
/// `--model-file` with `--intra-op-threads`.
fn ceiling_config(
    args: &BenchArgs,
    in_process: Option<&server::InProcess>,
) -> Result<ceiling::CeilingConfig, String> {
    let (model_file, intra, provider, context_file) = match (in_process, &args.model_file) {
        (_, Some(file)) => (
            file.clone(),
            args.intra_op_threads.unwrap_or(1),
            ExecutionProvider::Cpu,
            None,
        ),
        (Some(s), None) => {
            let repo = &s.config.model_repository;
            let model_config = ModelConfig::load(&repo.join(&args.model).join("config.toml"))
                .map_err(|e| e.to_string())?;
            let file = server::model_file(repo, &args.model, args.model_version.as_deref())?;
            let intra = model_config
                .intra_op_threads
                .unwrap_or(s.config.intra_op_threads);
            // A context model's ceiling runs its context graph too, as the server does.
            let context = model_config
                .context
                .as_ref()
                .and_then(|c| Some(file.parent()?.join(&c.model)));
            (file, intra, s.config.execution_provider, context)
        }
        (None, None) => {
            return Err("--ceiling against an external server needs --model-file".into())
        }
    };
    Ok(ceiling::CeilingConfig {
        model_file,
        ort_lib: args.ort_lib.clone(),
        intra_op_threads: intra,
        execution_provider: provider,
        batch_sizes: args.ceiling_batches.clone(),
        duration: args.ceiling_duration,
        random: payload::RandomSpec {
            int_range: args.int_range,
            seed: args.seed,
        },
        context_file,
        rows_per_request: args.rows,
    })
}

/// Runs on the load generator's thread: the ceiling (while the server is idle), every
/// level, then the ceiling again; the two ceilings are averaged and their difference shows
/// how much the machine's speed drifted during the run.
fn client_side(
    args: BenchArgs,
    endpoints: Endpoints,
    ceiling: Option<ceiling::CeilingConfig>,
    server_runtime: tokio::runtime::Handle,
) -> Result<Measured, String> {
    let rt = if args.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .thread_name(cpu::CLIENT_THREAD)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("cannot start the load generator runtime: {e}"))?;
    let before = ceiling.as_ref().map(ceiling::measure);
    let (payload, levels, floor, comparison) =
        rt.block_on(levels(&args, &endpoints, &server_runtime))?;
    drop(rt);
    let after = ceiling.as_ref().map(ceiling::measure);
    let ceiling = before.zip(after).map(|(a, b)| ceiling::combine(a?, b?));
    Ok(Measured {
        payload,
        levels,
        floor,
        comparison,
        ceiling,
    })
}

type Levels = (
    payload::Payload,
    Vec<LevelReport>,
    Vec<LevelReport>,
    Option<context::Comparison>,
);

/// Where the server listens: the HTTP base URL (metadata, counters, HTTP load) and the
/// gRPC port's `host:port` (`--api grpc`).
struct Endpoints {
    base: String,
    grpc_addr: String,
}

async fn levels(
    args: &BenchArgs,
    endpoints: &Endpoints,
    server_runtime: &tokio::runtime::Handle,
) -> Result<Levels, String> {
    let base = endpoints.base.as_str();
    let http = reqwest::Client::new();
    let version = args.model_version.as_deref();
    let url = reqwest::Url::parse(base).map_err(|e| format!("bad --url {base}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("--url {base} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    if url.scheme() != "http" {
        return Err(format!("--url {base}: only http:// is supported"));
    }
    let addr = match args.api {
        Api::Grpc => endpoints.grpc_addr.clone(),
        Api::V2 | Api::Predict => format!("{host}:{port}"),
    };
    let generate = |inputs: &[payload::InputDesc], context_form| {
        let request = payload::RandomRequest {
            api: args.api,
            binary: args.binary,
            model: &args.model,
            version,
            rows: args.rows,
            random: payload::RandomSpec {
                int_range: args.int_range,
                seed: args.seed,
            },
            context: &args.context,
            context_form,
        };
        payload::random(request, inputs)
    };
    if args.compare_context {
        let meta = server::metadata(&http, base, &args.model, version).await?;
        let inputs = payload::inputs_from_metadata(&meta)?;
        let repeated = generate(&inputs, payload::ContextForm::Repeated)?;
        let once = generate(&inputs, payload::ContextForm::Once)?;
        let mut rounds = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            let mut pair = Vec::with_capacity(2);
            for p in [&repeated, &once] {
                let request = Arc::new(load::Request::new(p, &addr));
                check_once(&addr, &request).await?;
                pair.push(run_levels(args, &http, base, &addr, &request, p.rows).await?);
            }
            let once = pair.pop().unwrap_or_default();
            let repeated = pair.pop().unwrap_or_default();
            rounds.push(context::Round { repeated, once });
        }
        let comparison = context::Comparison {
            repeated_body: repeated.body.len(),
            once_body: once.body.len(),
            rounds,
        };
        // The main report shows the context-once form's last round.
        let last = comparison.rounds.last().map(|round| round.once.clone());
        return Ok((once, last.unwrap_or_default(), Vec::new(), Some(comparison)));
    }
    let payload = match &args.payload {
        Some(file) => payload::from_file(file, args.api, &args.model, version)?,
        None => {
            let meta = server::metadata(&http, base, &args.model, version).await?;
            let inputs = payload::inputs_from_metadata(&meta)?;
            let form = if args.context_once {
                payload::ContextForm::Once
            } else {
                payload::ContextForm::Repeated
            };
            generate(&inputs, form)?
        }
    };
    let request = Arc::new(load::Request::new(&payload, &addr));
    check_once(&addr, &request).await?;
    let reports = run_levels(args, &http, base, &addr, &request, payload.rows).await?;
    let mut floor_reports = Vec::new();
    if args.floor {
        if args.api != Api::V2 {
            return Err("--floor measures the V2 API only".into());
        }
        let canned = floor::capture(&http, base, &payload).await?;
        let floor_addr = floor::start(server_runtime, canned)?;
        let floor_base = format!("http://{floor_addr}");
        let request = Arc::new(load::Request::new(&payload, &floor_addr));
        check_once(&floor_addr, &request).await?;
        floor_reports = run_levels(
            args,
            &http,
            &floor_base,
            &floor_addr,
            &request,
            payload.rows,
        )
        .await?;
    }
    Ok((payload, reports, floor_reports, None))
}

/// Every `--concurrency` level against `addr`, in turn.
async fn run_levels(
    args: &BenchArgs,
    http: &reqwest::Client,
    base: &str,
    addr: &str,
    request: &Arc<load::Request>,
    rows: usize,
) -> Result<Vec<LevelReport>, String> {
    let mut reports = Vec::with_capacity(args.concurrency.len());
    for &concurrency in &args.concurrency {
        let config = load::LevelConfig {
            addr: addr.to_string(),
            concurrency,
            warmup: args.warmup,
            duration: args.duration,
        };
        let start = Instant::now();
        let running = tokio::spawn({
            let request = request.clone();
            async move { load::run_level(&config, request).await }
        });
        tokio::time::sleep_until((start + args.warmup).into()).await;
        let (c0, cpu0, t0) = (
            server::counters(http, base, &args.model).await,
            cpu::snapshot(),
            Instant::now(),
        );
        tokio::time::sleep_until((start + args.warmup + args.duration).into()).await;
        let (c1, cpu1, t1) = (
            server::counters(http, base, &args.model).await,
            cpu::snapshot(),
            Instant::now(),
        );
        let result = running
            .await
            .map_err(|e| format!("load level failed: {e}"))?;
        let (mean_batch, mean_queue_us) = match (c0, c1) {
            (Some(a), Some(b)) => (a.mean_batch(&b), a.mean_queue_us(&b)),
            _ => (None, None),
        };
        let cores = cpu::cores(&cpu0, &cpu1, t1 - t0)
            .into_iter()
            .map(|(r, c)| (r.label(), c))
            .collect();
        reports.push(LevelReport {
            concurrency,
            result,
            rows_per_request: rows,
            mean_batch,
            mean_queue_us,
            cores,
        });
    }
    Ok(reports)
}

/// Sends the request once so a bad payload fails fast with the server's message.
async fn check_once(addr: &str, request: &load::Request) -> Result<(), String> {
    load::probe(addr, request)
        .await
        .map_err(|e| format!("the first request failed: {e}"))
}
