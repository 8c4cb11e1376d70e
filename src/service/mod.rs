//! The transport-neutral service both transports call: resolve a model reference, decide
//! readiness, run one inference (validate, select outputs, submit) and build the views the
//! descriptive endpoints render. HTTP and gRPC handlers are thin adapters around it, so
//! every rule here holds for both. Knows no web framework.

pub mod budget;
mod control;
pub mod rank;
mod views;

/// The repository's types the transports name: they reach the repository only through
/// the service, so these are the service's vocabulary too.
pub use crate::repository::{IndexEntry, LoadRequest, Model};
pub use control::checked_path;
pub use views::{
    Datatype, DynamicBatching, FieldColumn, FieldMetadata, InferStatistics, InstanceGroup,
    ModelMetadata, ModelStatistics, QueuePolicy, Reshape, ServerMetadata, StatDuration,
    StringParameter, TensorConfig, TensorMetadata, TritonConfig,
};

use std::sync::Arc;
use std::time::Duration;

use crate::batcher::JobOutput;
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::repository::{InferRequest, Repository};
use crate::spec::NamedTensor;
use crate::tensor::Tensor;

/// Protocol extensions this server implements, advertised by both transports' server
/// metadata (`GET /v2`, the `ServerMetadata` RPC).
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
];

/// Everything the handlers share.
pub struct Service {
    pub repository: Arc<Repository>,
    pub metrics: Metrics,
    pub config: ServerConfig,
    /// Set for `--shutdown-delay`: readiness answers 503 while requests are still served,
    /// so load balancers stop routing here before the listeners close.
    pub unready: std::sync::atomic::AtomicBool,
    /// Requests the transports are handling right now.
    pub activity: Activity,
    /// The in-flight byte budget every transport's requests draw from.
    pub inflight: Arc<budget::ByteBudget>,
    /// Sampled request/response records (`--payload-log`); `None`: off.
    pub payload_log: Option<crate::payload_log::PayloadLog>,
}

/// Requests in the server from arrival to answer, on every route of both ports. A request
/// that finds only itself here may run inline (`inline_run_us`): nothing else could join
/// its batch. A per-model count cannot tell this, since under load most requests are
/// still being read, decoded or written, outside any queue.
pub struct Activity {
    /// Exported as `mlpserve_requests_active`; one atomic either way.
    count: prometheus::IntGauge,
    /// The runtime has one async thread: see [`Activity::alone_now`].
    one_thread: bool,
}

impl Activity {
    /// For the current runtime (its thread count decides how `alone_now` looks), counting
    /// in `count`.
    pub fn for_current_runtime(count: prometheus::IntGauge) -> Activity {
        let threads =
            tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
        Activity {
            count,
            one_thread: threads == 1,
        }
    }

    /// Counts a request until the guard drops.
    pub fn begin(&self) -> Busy<'_> {
        self.count.inc();
        Busy(self)
    }

    /// No request but (at most) the caller's own is in the server.
    pub fn alone(&self) -> bool {
        self.count.get() <= 1
    }

    /// [`Activity::alone`], also counting requests that have arrived but not been read.
    /// With one async thread those are still in their sockets while the caller runs, so
    /// it yields once: tokio resumes a yielded task only after it has polled the sockets
    /// and run the tasks that became ready, and each of those counts its request. Under
    /// load the caller then sees them and its request is batched with theirs; alone, it
    /// costs one socket poll (a few µs) before the inline run.
    pub async fn alone_now(&self) -> bool {
        if !self.alone() {
            return false;
        }
        if self.one_thread {
            tokio::task::yield_now().await;
            return self.alone();
        }
        true
    }
}

/// One request counted in [`Activity`].
pub struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.count.dec();
    }
}

/// A model name and an optional version, as a request names them. An empty version means
/// the default (highest) version, as in the KServe V2 protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub version: Option<String>,
}

impl ModelRef {
    pub fn new(name: impl Into<String>, version: Option<&str>) -> ModelRef {
        ModelRef {
            name: name.into(),
            version: version.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }
}

/// One inference as a transport decoded it.
pub struct InferCall {
    pub inputs: Vec<NamedTensor>,
    /// Output names in the order the client wants them; empty = every output, graph order.
    pub outputs: Vec<String>,
    /// The client's deadline; `None` uses the model's `default_timeout_ms`.
    pub timeout: Option<Duration>,
    /// `top_k` (and `rank_by`): answer the best rows too, as the outputs
    /// [`crate::spec::TOP_K_INDICES`] and [`crate::spec::TOP_K_SCORES`].
    pub ranking: Option<rank::Ranking>,
}

/// The answer of one inference: the selected outputs in the order asked.
pub struct InferAnswer {
    /// (index into the spec's outputs, tensor), in the order the client asked; indices
    /// past the graph's outputs are the ranking outputs (`ModelSpec::output_name`).
    pub outputs: Vec<(usize, Tensor)>,
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// Rows in the ORT run this request was part of.
    pub batch_rows: usize,
}

/// The step between decoding and validation for a model with `[features]`: the raw fields
/// a request sent become the graph inputs they build (on the request's own task, before
/// the queue); inputs sent as tensors pass through to validation.
fn raw_fields(
    features: &crate::features::FeatureSet,
    spec: &crate::spec::ModelSpec,
    inputs: Vec<NamedTensor>,
    max_string_bytes: usize,
) -> Result<Vec<NamedTensor>> {
    let invalid = |e: &dyn std::fmt::Display| {
        Error::InvalidInput(format!(
            "model '{}' version {}: {e}",
            spec.name, spec.version
        ))
    };
    // The same cap as string graph inputs: a field's text is hashed or looked up, and an
    // oversized one is refused before any of that.
    for NamedTensor { name, tensor } in &inputs {
        let Some(strings) = tensor.data.as_strings() else {
            continue;
        };
        if features.field(name).is_none() {
            continue;
        }
        if let Some((row, len)) = strings.first_longer_than(max_string_bytes) {
            return Err(invalid(&format_args!(
                "field '{name}' row {row} is a string of {len} bytes, more than the {max_string_bytes} bytes a string may have (max_string_bytes)"
            )));
        }
    }
    let given = inputs.into_iter().map(|t| (t.name, t.tensor)).collect();
    let built = features.apply(given).map_err(|e| invalid(&e))?;
    Ok(built
        .into_iter()
        .map(|(name, tensor)| NamedTensor { name, tensor })
        .collect())
}

/// The answered outputs, as indices for [`InferAnswer::outputs`], in the order asked:
/// graph outputs by [`crate::spec::ModelSpec::select_outputs`]'s rules, and with `ranking`
/// the two ranking outputs (listed by name, or after every graph output when the request
/// names none). Naming a ranking output without `top_k` is refused.
fn select(spec: &crate::spec::ModelSpec, asked: &[String], ranking: bool) -> Result<Vec<usize>> {
    use crate::spec::{TOP_K_INDICES, TOP_K_SCORES};
    let extra = |name: &str| match name {
        TOP_K_INDICES => Some(spec.outputs.len()),
        TOP_K_SCORES => Some(spec.outputs.len() + 1),
        _ => None,
    };
    // A graph output of the same name wins: the model's own outputs are never shadowed.
    let is_extra =
        |name: &str| extra(name).is_some() && spec.outputs.iter().all(|o| o.name != name);
    if let Some(name) = asked.iter().find(|n| is_extra(n)).filter(|_| !ranking) {
        return Err(Error::InvalidInput(format!(
            "model '{}' version {}: output '{name}' is answered only to a ranking request (parameter 'top_k')",
            spec.name, spec.version
        )));
    }
    if asked.is_empty() {
        let mut selected = spec.select_outputs([])?;
        if ranking {
            selected.extend([spec.outputs.len(), spec.outputs.len() + 1]);
        }
        return Ok(selected);
    }
    let graph: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|n| !is_extra(n))
        .collect();
    // Checked by the one rule for graph outputs (unknown or repeated names); an empty
    // list would mean every output.
    let mut graph = if graph.is_empty() {
        Vec::new()
    } else {
        spec.select_outputs(graph)?
    }
    .into_iter();
    let mut selected = Vec::with_capacity(asked.len());
    for name in asked {
        match extra(name).filter(|_| is_extra(name)) {
            Some(index) if selected.contains(&index) => {
                return Err(Error::InvalidInput(format!(
                    "model '{}' version {}: output '{name}' requested more than once",
                    spec.name, spec.version
                )))
            }
            Some(index) => selected.push(index),
            None => selected.extend(graph.next()),
        }
    }
    Ok(selected)
}

impl Service {
    /// The version `r` names (the highest when it names none).
    pub fn model(&self, r: &ModelRef) -> Result<Arc<Model>> {
        self.repository.get(&r.name, r.version.as_deref())
    }

    /// Like [`Service::model`], but refuses with 503 while shutting down.
    pub fn model_for_inference(&self, r: &ModelRef) -> Result<Arc<Model>> {
        self.repository
            .get_for_inference(&r.name, r.version.as_deref())
    }

    /// The server is ready: every model loaded and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.repository.is_ready() && !self.unready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The one readiness rule for a model: ready when the version (or label, or default)
    /// resolves to a served version whose workers are sound and the server is not
    /// shutting down. A known model
    /// with nothing served is not ready; an unknown model or version is an error saying
    /// why (HTTP answers it with its 4xx, gRPC with `ready = false`).
    pub fn model_readiness(&self, r: &ModelRef) -> Result<bool> {
        match self.model(r) {
            Ok(m) => Ok(!self.repository.is_closing() && m.health().failure().is_none()),
            Err(Error::Unavailable(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Selects outputs, validates and runs one request on `model`. Refusals before the
    /// queue are counted in the model's metrics like any other failure.
    pub async fn infer(&self, model: &Model, call: InferCall) -> Result<InferAnswer> {
        if self.payload_log.is_some() {
            crate::payload_log::note_served(|| crate::payload_log::Served {
                model: model.spec.name.clone(),
                version: model.spec.version.clone(),
                sample: model.spec.config.payload_log_sample,
            });
        }
        let trace = crate::telemetry::RequestTrace::current();
        if trace.is_on() {
            let rows = call.inputs.first().map_or(0, |t| t.tensor.rows());
            trace.set(|| crate::telemetry::kv_text("mlpserve.model", &model.spec.name));
            trace.set(|| crate::telemetry::kv_text("mlpserve.version", &model.spec.version));
            trace.set(|| crate::telemetry::kv_count("mlpserve.rows", rows));
        }
        let spec = &model.spec;
        let invalid = |e: rank::RankError| {
            model.refuse(Error::InvalidInput(format!(
                "model '{}' version {}: {e}",
                spec.name, spec.version
            )))
        };
        let ranked = match &call.ranking {
            Some(r) => Some((r.top_k, r.output(spec).map_err(invalid)?)),
            None => None,
        };
        let selected =
            select(spec, &call.outputs, ranked.is_some()).map_err(|e| model.refuse(e))?;
        let inputs = match &model.spec.features {
            Some(features) => raw_fields(
                features,
                &model.spec,
                call.inputs,
                self.config.max_string_bytes,
            )
            .map_err(|e| model.refuse(e))?,
            None => call.inputs,
        };
        model
            .spec
            .check_strings(&inputs, self.config.max_string_bytes)
            .map_err(|e| model.refuse(e))?;
        // Held until the answer is built: ORT's working memory is in flight like the body.
        let _work = self.charge_work(model, &inputs)?;
        let JobOutput {
            outputs,
            queue_time,
            compute_time,
            batch_rows,
        } = model
            .infer(InferRequest {
                inputs,
                // The one timeout rule of every transport: 0 means no per-request deadline
                // (the model's default_timeout_ms applies, where 0 is none too).
                timeout: call.timeout.filter(|t| !t.is_zero()),
                may_inline: self.activity.alone_now().await,
            })
            .await?;
        let mut slots: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
        if let Some((k, index)) = ranked {
            let scores = slots.get(index).and_then(Option::as_ref).ok_or_else(|| {
                Error::Internal(format!("model '{}' produced no output #{index}", spec.name))
            })?;
            let (indices, best) =
                rank::top_k(&spec.outputs[index].name, scores, k).map_err(invalid)?;
            slots.extend([Some(indices), Some(best)]);
        }
        let outputs = selected
            .into_iter()
            .map(|i| {
                let tensor = slots.get_mut(i).and_then(Option::take).ok_or_else(|| {
                    Error::Internal(format!(
                        "model '{}' produced no output #{i}",
                        model.spec.name
                    ))
                })?;
                Ok((i, tensor))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(InferAnswer {
            outputs,
            queue_time,
            compute_time,
            batch_rows,
        })
    }

    /// Charges the request's estimated ORT working memory (`ModelSpec::work`) to the
    /// in-flight budget when it is a large run (`spec::LARGE_RUN_BYTES`): 413 when even one
    /// batch of it can never fit, 503 when other requests hold the budget now.
    fn charge_work(
        &self,
        model: &Model,
        inputs: &[crate::spec::NamedTensor],
    ) -> Result<Arc<budget::Charge>> {
        let spec = &model.spec;
        let work = spec.work(inputs);
        let charge = self.inflight.charge("working_memory");
        if work.bytes <= crate::spec::LARGE_RUN_BYTES {
            // Runs within the arena every instance keeps anyway: nothing in flight.
            return Ok(charge);
        }
        charge.take(work.bytes).map_err(|refusal| {
            let estimate = budget::WorkEstimate {
                model: &spec.name,
                version: &spec.version,
                work,
                bytes_per_element: spec.footprint.bytes_per_element,
                measured: spec.footprint.measured,
            };
            model.refuse(self.inflight.work_error(refusal, &estimate))
        })?;
        Ok(charge)
    }

    /// `GET /v2` and the `ServerMetadata` RPC.
    pub fn server_metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: "mlpserve",
            version: env!("CARGO_PKG_VERSION"),
            extensions: EXTENSIONS,
        }
    }

    /// The KServe V2 model metadata of the version `r` names.
    pub fn model_metadata(&self, r: &ModelRef) -> Result<ModelMetadata> {
        let model = self.model(r)?;
        Ok(ModelMetadata::new(
            &model.spec,
            self.repository.versions(&r.name),
        ))
    }

    /// Triton's model configuration of the version `r` names.
    pub fn model_config(&self, r: &ModelRef) -> Result<TritonConfig> {
        Ok(TritonConfig::new(&self.model(r)?.spec))
    }

    /// Triton's statistics. No name: every model version; a name: every loaded version of
    /// it; a name and a version: that version. Unknown names and versions are not found.
    pub fn statistics(
        &self,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<ModelStatistics>> {
        let models: Vec<Arc<Model>> = match (
            name.filter(|n| !n.is_empty()),
            version.filter(|v| !v.is_empty()),
        ) {
            (None, _) => self.repository.all(),
            (Some(name), None) => self.repository.all_versions(name)?,
            (Some(name), Some(version)) => vec![self.repository.get(name, Some(version))?],
        };
        Ok(models
            .iter()
            .map(|m| ModelStatistics::new(&m.spec, &m.metrics.stats()))
            .collect())
    }
}
