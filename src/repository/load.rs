//! Turning one version directory into a serving [`Model`]: build every instance's session,
//! read the spec, warm each instance up, start the worker threads and the batcher. Session
//! building and warm-up run on a blocking thread (`spawn_blocking`), never on an async
//! worker; only the cheap start of threads and the driver task happens on the caller's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::Model;
use super::ControlError;
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
    /// Most bytes one batch's estimated working memory may reach (`ModelSpec::max_batch_work_bytes`).
    pub max_batch_work_bytes: usize,
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
            max_batch_work_bytes: config.max_inflight_bytes / BATCH_WORK_SHARE,
        }
    }
}

/// One batch's estimated working memory may take this share of the in-flight budget
/// (1/4): batches of several models, and the request bodies they came from, fit beside it.
const BATCH_WORK_SHARE: usize = 4;

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
    pub async fn load(&self, v: VersionToLoad) -> Result<Arc<Model>, ControlError> {
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

    async fn load_inner(&self, v: VersionToLoad) -> Result<Arc<Model>, ControlError> {
        let runtime = self.runtime.clone();
        let defaults = self.options.session.clone();
        let (sessions, mut spec) =
            tokio::task::spawn_blocking(move || prepare(&runtime, &defaults, &v, true))
                .await
                .map_err(|e| ControlError::Internal(format!("loading panicked: {e}")))??;
        spec.max_batch_work_bytes = self.options.max_batch_work_bytes;
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
            inline_elements = spec.inline_elements,
            work_bytes_per_element = spec.footprint.bytes_per_element,
            work_measured = spec.footprint.measured,
            batch_element_limit = spec.batch_element_limit(),
            instances = spec.config.instances,
            placements = ?spec.placements.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "model loaded"
        );
        let model_metrics = self.metrics.model(&spec.name, &spec.version);
        let batcher = Batcher::start(spec.clone(), sessions, model_metrics.clone())
            .map_err(|e| ControlError::Internal(format!("cannot start worker threads: {e}")))?;
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
) -> Result<Option<FeatureSet>, ControlError> {
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
    let mut set = FeatureSet::build(
        &spec.config.features,
        spec.config
            .inputs
            .iter()
            .map(|(name, c)| (name.as_str(), c.from.as_slice())),
        &graph,
        dir,
    )
    .map_err(|e| ControlError::Unservable(format!("model '{}' config.toml: {e}", spec.name)))?;
    if let Some(set) = &mut set {
        // Declared broadcast, or an input of the context graph (sent once per request).
        for name in spec.inputs.iter().filter(|s| s.broadcast).map(|s| &s.name) {
            set.set_broadcast(name).map_err(|e| {
                ControlError::Unservable(format!("model '{}' config.toml: {e}", spec.name))
            })?;
        }
    }
    Ok(set)
}

/// Marks the inputs built from broadcast fields broadcast; refuses broadcast on a graph
/// that cannot batch (its first axis is no batch to repeat a row along), and a `rank_by`
/// that names no output or one with more than one value per row.
fn check_ranking(spec: &mut ModelSpec) -> Result<(), ControlError> {
    if let Some(name) = &spec.config.rank_by {
        let Some(output) = spec.outputs.iter().find(|o| &o.name == name) else {
            let names: Vec<String> = spec
                .outputs
                .iter()
                .map(|o| format!("'{}'", o.name))
                .collect();
            return Err(ControlError::Unservable(format!(
                "model '{}' config.toml: rank_by = \"{name}\" names no output; the model gives {}",
                spec.name,
                names.join(", ")
            )));
        };
        if !crate::spec::one_value_per_row(&output.shape) {
            return Err(ControlError::Unservable(format!(
                "model '{}' config.toml: rank_by = \"{name}\": output '{name}' has shape {:?}; ranking needs one value per row ([-1] or [-1, 1])",
                spec.name, output.shape
            )));
        }
    }
    if let Some(features) = &spec.features {
        for built in features.built().iter().filter(|b| b.broadcast) {
            if let Some(input) = spec.inputs.iter_mut().find(|s| s.name == built.name) {
                input.broadcast = true;
            }
        }
    }
    if let Some(input) = spec.inputs.iter().find(|s| s.broadcast) {
        if let Some(blocker) = spec.batch_blocker() {
            return Err(ControlError::Unservable(format!(
                "model '{}' config.toml: inputs.{}: broadcast needs a batch axis to repeat the row along, but the graph cannot batch: {blocker}",
                spec.name, input.name
            )));
        }
    }
    Ok(())
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
) -> Result<(Vec<runtime::Session>, ModelSpec), ControlError> {
    let size = std::fs::metadata(&v.model_file)
        .map(|m| m.len())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ControlError::NotFound(format!("{}: {e}", v.model_file.display()))
            }
            _ => ControlError::Internal(format!("{}: {e}", v.model_file.display())),
        })?;
    if size == 0 {
        return Err(ControlError::Unservable("model.onnx is empty".to_string()));
    }
    let c = &v.config;
    let started = Instant::now();
    // Building and warming up run beside other loads' (not while one measures).
    let loading = runtime::gate::loading();
    let context_file = context_file(v)?;
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
        let (mut session, placement) =
            runtime::build_session(runtime.env(), &v.model_file, &options)?;
        if let Some(file) = &context_file {
            session.attach_context(build_context(runtime, v, file, &options)?);
        }
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
    check_ranking(&mut spec)?;
    let built = started.elapsed();
    for session in &mut sessions {
        runtime::warm_up(session, &spec)?;
    }
    let warmed = started.elapsed();
    if measure && needs_probe(&spec) {
        // Measured on sessions of their own, dropped afterwards: the largest run tried
        // grows ORT's memory arena, which a serving session would keep for good (about
        // 21 MB per small model), however small the runs it then has.
        // Batch sizes are timed on the scorer alone: it runs the expanded batch, the
        // context graph one row per request (or per row of a request that repeats its
        // context).
        let (mut probe, _) = runtime::build_session(runtime.env(), &v.model_file, &first_options)?;
        let mut context_probe = match &context_file {
            Some(file) => Some(runtime::build_session(runtime.env(), file, &first_options)?.0),
            None => None,
        };
        drop(loading);
        let waited = Instant::now();
        let quiet = runtime::gate::measuring();
        let measuring = Instant::now();
        measure_footprint(&mut probe, &mut spec, &quiet);
        if let Some(context) = &mut context_probe {
            measure_context_footprint(context, &mut spec, &quiet);
        }
        let footprint = measuring.elapsed();
        if spec.batched {
            measure_batch_sizes(&mut probe, &mut spec, &quiet);
        }
        drop(quiet);
        tracing::debug!(
            model = %spec.name, version = %spec.version,
            build_ms = millis(built), warm_up_ms = millis(warmed - built),
            probe_build_ms = millis(waited.duration_since(started) - warmed),
            gate_wait_ms = millis(measuring - waited),
            footprint_ms = millis(footprint),
            calibration_ms = millis(measuring.elapsed() - footprint),
            "measured on a throwaway session"
        );
    } else if measure {
        tracing::info!(
            model = %spec.name, version = %spec.version,
            bytes_per_element = spec.footprint.bytes_per_element,
            "no throwaway calibration session: fixed max_batch_size, inline_run_us = 0 and fixed input shapes; working memory per element assumed, not measured"
        );
    }
    Ok((sessions, spec))
}

/// A duration in milliseconds with microsecond precision, for the load's debug log.
fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// The context graph's file of a version with `[context]`, checked to exist.
fn context_file(v: &VersionToLoad) -> Result<Option<PathBuf>, ControlError> {
    let Some(context) = &v.config.context else {
        return Ok(None);
    };
    let dir = v.model_file.parent().unwrap_or(std::path::Path::new("."));
    let file = dir.join(&context.model);
    match std::fs::metadata(&file) {
        Ok(m) if m.is_file() && m.len() > 0 => Ok(Some(file)),
        Ok(_) => Err(ControlError::Unservable(format!(
            "model '{}' [context] model = \"{}\": {} is empty or not a file",
            v.name,
            context.model,
            file.display()
        ))),
        Err(e) => Err(ControlError::Unservable(format!(
            "model '{}' [context] model = \"{}\": cannot read {}: {e} (the context graph belongs in the version folder beside model.onnx)",
            v.name,
            context.model,
            file.display()
        ))),
    }
}

/// One instance's context session, built with the scorer's options; ONNX Runtime's refusal
/// names the model and the file.
fn build_context(
    runtime: &Runtime,
    v: &VersionToLoad,
    file: &std::path::Path,
    options: &SessionOptions,
) -> Result<runtime::Session, ControlError> {
    let (session, _) = runtime::build_session(runtime.env(), file, options).map_err(|e| {
        let why = format!(
            "model '{}' [context] {}: ONNX Runtime cannot load the context graph: {e}",
            v.name,
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        match e {
            runtime::SessionError::ProviderUnavailable(_) => ControlError::ProviderUnavailable(why),
            runtime::SessionError::Unservable(_) => ControlError::Unservable(why),
        }
    })?;
    Ok(session)
}

/// Whether load needs the throwaway session: to time batch sizes (`max_batch_size =
/// "auto"`, inline runs) or to measure working memory that varies with more than rows
/// (a dynamic non-batch axis). A model with none of these runs at most `max_batch_size`
/// rows of one shape, which warm-up already ran.
fn needs_probe(spec: &ModelSpec) -> bool {
    let timed = spec.batched
        && (spec.config.max_batch_size == BatchSize::Auto
            || !spec.config.inline_run_budget().is_zero());
    timed || has_variable_axis(spec)
}

/// Some input has a dynamic non-batch axis: rows of one model may differ in cost.
fn has_variable_axis(spec: &ModelSpec) -> bool {
    let first = usize::from(spec.batched);
    spec.inputs
        .iter()
        .any(|s| s.shape.iter().skip(first).any(|&d| d < 0))
}

/// ORT's working memory and time per padded element (see `runtime::measure_footprint`);
/// the spec keeps the fallback when the probe fails.
fn measure_footprint(
    session: &mut runtime::Session,
    spec: &mut ModelSpec,
    quiet: &runtime::gate::Measuring,
) {
    match runtime::measure_footprint(session, spec, quiet) {
        Ok(footprint) => {
            spec.footprint = footprint;
            if !footprint.measured {
                tracing::warn!(
                    model = %spec.name, version = %spec.version,
                    bytes_per_element = footprint.bytes_per_element,
                    "cannot read the process's peak memory (/proc/self/clear_refs): ONNX Runtime's working memory per element is assumed, not measured"
                );
            }
        }
        Err(e) => tracing::warn!(
            model = %spec.name, version = %spec.version, error = %e,
            bytes_per_element = spec.footprint.bytes_per_element,
            "could not measure ONNX Runtime's working memory per element: assumed"
        ),
    }
}

/// A context model's working memory per element is the larger of its two graphs': one
/// figure covers a batch's scorer rows and context rows alike, and the context graph (an
/// attention over a history, say) may need far more per element than the scorer.
fn measure_context_footprint(
    session: &mut runtime::Session,
    spec: &mut ModelSpec,
    quiet: &runtime::gate::Measuring,
) {
    let Some(context) = &spec.context else {
        return;
    };
    let mut alone = spec.clone();
    alone.inputs = context.input_specs.clone();
    alone.outputs = context.outputs.clone();
    alone.context = None;
    match runtime::measure_footprint(session, &alone, quiet) {
        Ok(footprint) => {
            tracing::debug!(
                model = %spec.name, version = %spec.version,
                scorer_bytes_per_element = spec.footprint.bytes_per_element,
                context_bytes_per_element = footprint.bytes_per_element,
                "working memory per element of both graphs"
            );
            let f = &mut spec.footprint;
            f.bytes_per_element = f.bytes_per_element.max(footprint.bytes_per_element);
            f.measured = f.measured && footprint.measured;
        }
        Err(e) => tracing::warn!(
            model = %spec.name, version = %spec.version, error = %e,
            bytes_per_element = spec.footprint.bytes_per_element,
            "could not measure the context graph's working memory per element: the scorer's is used"
        ),
    }
}

/// Times runs at growing batch sizes on one instance (all instances run the same graph
/// with the same threads) for `max_batch_size = "auto"` (the largest batch within the
/// model's latency budget) and for `inline_rows` (the largest within `inline_run_us`).
fn measure_batch_sizes(
    session: &mut runtime::Session,
    spec: &mut ModelSpec,
    quiet: &runtime::gate::Measuring,
) {
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
    // Sizes are measured one by one up to the inline budget, so inline_rows below reads
    // the same doublings whether or not the search extrapolates past them.
    match runtime::calibrate(session, spec, budget, inline, cap, quiet) {
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
            spec.inline_elements = inline_elements(spec, inline);
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
            // The spec keeps UNMEASURED (auto) and inline_rows 0 (and inline_elements 0):
            // every request hands off.
            tracing::warn!(
                model = %spec.name, version = %spec.version, error = %e,
                max_batch_size = spec.max_batch_size(),
                "could not time runs at load (max_batch_size auto, inline runs)"
            );
        }
    }
}

/// Most padded elements that run within `inline`. A model whose rows all have one width
/// was timed exactly by the calibration: its inline rows times that width. One with a
/// dynamic non-batch axis was calibrated at length 1, far cheaper per row than a long
/// history: the probe's time per element (at length 4096) decides, or, when the probe
/// was not timed, nothing runs inline beyond the calibrated rows at length 1.
fn inline_elements(spec: &ModelSpec, inline: Duration) -> usize {
    let first = usize::from(spec.batched);
    // The calibration timed model.onnx alone (a context model's scorer).
    let width: usize = spec
        .graph_inputs()
        .iter()
        .map(|s| {
            s.shape
                .iter()
                .skip(first)
                .map(|&d| d.max(1) as usize)
                .product::<usize>()
        })
        .sum();
    let per_element = spec.footprint.nanos_per_element;
    if !has_variable_axis(spec) || per_element <= 0.0 {
        return spec.inline_rows.saturating_mul(width);
    }
    (inline.as_nanos() as f64 / per_element) as usize
}
