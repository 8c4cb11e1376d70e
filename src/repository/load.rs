//! Turning one version directory into a serving [`Model`]: build every instance's session,
//! read the spec, warm each instance up, start the worker threads and the batcher. Session
//! building and warm-up run on a blocking thread (`spawn_blocking`), never on an async
//! worker; only the cheap start of threads and the driver task happens on the caller's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::Model;
use crate::batcher::Batcher;
use crate::config::{BatchSize, ModelConfig};
use crate::features::{FeatureSet, GraphInput};
use crate::metrics::Metrics;
use crate::runtime::{self, Runtime, SessionOptions};
use crate::spec::ModelSpec;

/// Server-wide defaults for building sessions.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub session: SessionOptions,
}

impl LoadOptions {
    /// The server-wide session settings of `config` (a model's `config.toml` may override).
    pub fn from_config(config: &crate::config::ServerConfig) -> LoadOptions {
        LoadOptions {
            session: SessionOptions {
                intra_op_threads: config.intra_op_threads,
                execution_provider: config.execution_provider,
                fallback: config.execution_provider_fallback,
                device_id: 0,
            },
        }
    }
}

/// Everything needed to load versions; shared by start-up, polling and the API.
pub struct Loader {
    pub runtime: Arc<Runtime>,
    pub options: LoadOptions,
    pub metrics: Metrics,
}

/// One version to load.
pub struct VersionToLoad {
    pub name: String,
    pub version: u64,
    pub model_file: PathBuf,
    pub config: ModelConfig,
}

impl Loader {
    /// Loads and warms up `v`; counts the outcome and the duration. The error says why.
    pub async fn load(&self, v: VersionToLoad) -> Result<Arc<Model>, String> {
        let started = Instant::now();
        let result = self.load_inner(v).await;
        let lifecycle = self.metrics.lifecycle();
        lifecycle
            .load_duration
            .observe(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "success" } else { "failure" };
        lifecycle.loads.with_label_values(&[outcome]).inc();
        result
    }

    async fn load_inner(&self, v: VersionToLoad) -> Result<Arc<Model>, String> {
        let runtime = self.runtime.clone();
        let defaults = self.options.session.clone();
        let (sessions, spec) =
            tokio::task::spawn_blocking(move || prepare(&runtime, &defaults, &v, true))
                .await
                .map_err(|e| format!("loading panicked: {e}"))??;
        let spec = Arc::new(spec);
        for (key, why) in spec.ignored_settings() {
            tracing::warn!(model = %spec.name, version = %spec.version, key, reason = %why, "config.toml setting has no effect");
        }
        tracing::info!(
            model = %spec.name, version = %spec.version,
            inputs = ?spec.inputs.iter().map(|i| format!("{}: {}", i.name, i.describe())).collect::<Vec<_>>(),
            batched = spec.batched, max_batch_size = spec.max_batch_size(),
            max_batch_size_source = spec.max_batch_size_source(),
            inline_rows = spec.inline_rows,
            instances = spec.config.instances,
            placements = ?spec.placements.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "model loaded"
        );
        let model_metrics = self.metrics.model(&spec.name, &spec.version);
        let batcher = Batcher::start(spec.clone(), sessions, model_metrics.clone())
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
        let placed = spec
            .placements
            .iter()
            .map(|p| {
                self.metrics
                    .instance_placed(&spec.name, &spec.version, &p.to_string())
            })
            .collect();
        Ok(Arc::new(Model::new(spec, batcher, model_metrics, placed)))
    }
}

/// The version's [`FeatureSet`] from its config's `[features]` and `from` lists, checked
/// against the graph; vocabulary files are read from the model's directory (beside
/// `config.toml`, above the version directory). Errors name the model.
fn build_features(
    spec: &ModelSpec,
    model_file: &std::path::Path,
) -> Result<Option<FeatureSet>, String> {
    let graph: Vec<GraphInput> = spec
        .inputs
        .iter()
        .map(|s| GraphInput {
            name: &s.name,
            dtype: s.dtype,
            shape: &s.shape,
        })
        .collect();
    let dir = model_file
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or(std::path::Path::new("."));
    FeatureSet::build(
        &spec.config.features,
        spec.config
            .inputs
            .iter()
            .map(|(name, c)| (name.as_str(), c.from.as_slice())),
        &graph,
        dir,
    )
    .map_err(|e| format!("model '{}' config.toml: {e}", spec.name))
}

/// The blocking part of a load, shared by the server and `mlpserve check`: builds every
/// instance's session, reads the spec (the config checked against the graph), warms each
/// instance up and, with `measure`, times batch sizes for `"auto"` and inline runs.
/// Starts no thread and touches no metrics. The error says why the version cannot serve.
pub fn prepare(
    runtime: &Runtime,
    defaults: &SessionOptions,
    v: &VersionToLoad,
    measure: bool,
) -> Result<(Vec<runtime::Session>, ModelSpec), String> {
    let size = std::fs::metadata(&v.model_file)
        .map(|m| m.len())
        .map_err(|e| e.to_string())?;
    if size == 0 {
        return Err("model.onnx is empty".to_string());
    }
    let c = &v.config;
    let mut sessions = Vec::with_capacity(c.instances);
    let mut placements = Vec::with_capacity(c.instances);
    let mut first_options = defaults.clone();
    for index in 0..c.instances {
        let options = SessionOptions {
            intra_op_threads: c.intra_op_threads.unwrap_or(defaults.intra_op_threads),
            execution_provider: c.execution_provider.unwrap_or(defaults.execution_provider),
            fallback: c.fallback.unwrap_or(defaults.fallback),
            device_id: c.device_id(index),
        };
        if index == 0 {
            first_options = options.clone();
        }
        let (session, placement) = runtime::build_session(runtime.env(), &v.model_file, &options)?;
        if placement.provider != options.execution_provider {
            tracing::warn!(
                model = %v.name, version = v.version, instance = index,
                asked = ?options.execution_provider, runs_on = %placement,
                "model instance runs on the CPU instead of the execution provider asked for"
            );
        }
        sessions.push(session);
        placements.push(placement);
    }
    let mut spec = runtime::read_spec(
        &sessions[0],
        &v.name,
        &v.version.to_string(),
        v.config.clone(),
    )?;
    spec.placements = placements;
    spec.features = build_features(&spec, &v.model_file)?.map(Arc::new);
    for session in &mut sessions {
        runtime::warm_up(session, &spec)?;
    }
    if measure && spec.batched {
        // Timed on a session of its own, dropped afterwards: the largest batch tried
        // grows ORT's memory arena, which a serving session would keep for good
        // (about 21 MB per small model), however small the batches it then runs.
        let (mut probe, _) = runtime::build_session(runtime.env(), &v.model_file, &first_options)?;
        measure_batch_sizes(&mut probe, &mut spec);
    }
    Ok((sessions, spec))
}

/// Times runs at growing batch sizes on one instance (all instances run the same graph
/// with the same threads) for `max_batch_size = "auto"` (the largest batch within the
/// model's latency budget) and for `inline_rows` (the largest within `inline_run_us`).
fn measure_batch_sizes(session: &mut runtime::Session, spec: &mut ModelSpec) {
    let auto = spec.config.max_batch_size == BatchSize::Auto;
    let inline = spec.config.inline_run_budget();
    if !auto && inline.is_zero() {
        return;
    }
    let (budget, cap) = if auto {
        let budget = Duration::from_secs_f64(spec.config.max_batch_latency_ms / 1000.0);
        (budget.max(inline), runtime::AUTO_CAP)
    } else {
        (inline, spec.max_batch)
    };
    match runtime::calibrate(session, spec, budget, cap) {
        Ok(c) => {
            if auto {
                spec.max_batch = c.max_batch;
            }
            spec.inline_rows = c
                .samples
                .iter()
                .filter(|&&(_, time)| time <= inline)
                .map(|&(rows, _)| rows)
                .max()
                .unwrap_or(0)
                .min(spec.max_batch_size());
            if !auto {
                return;
            }
            let measured: Vec<String> = c
                .samples
                .iter()
                .map(|(b, t)| format!("{b}:{}us", t.as_micros()))
                .collect();
            tracing::info!(
                model = %spec.name, version = %spec.version, max_batch_size = c.max_batch,
                max_batch_latency_ms = spec.config.max_batch_latency_ms,
                inline_rows = spec.inline_rows,
                measured = %measured.join(" "),
                "max_batch_size auto: largest batch within the latency budget"
            );
        }
        Err(e) => {
            // The spec keeps UNMEASURED (auto) and inline_rows 0: every request hands off.
            tracing::warn!(
                model = %spec.name, version = %spec.version, error = %e,
                max_batch_size = spec.max_batch_size(),
                "could not time runs at load (max_batch_size auto, inline runs)"
            );
        }
    }
}
