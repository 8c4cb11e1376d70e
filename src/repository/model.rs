//! A loaded model version: its spec, its batcher and its metrics. `infer` is the single
//! entry point every transport calls, so validation, limits, deadlines and metrics are the
//! same for HTTP and gRPC.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::batcher::{Batcher, JobOutput};
use crate::error::{Error, Result};
use crate::metrics::ModelMetrics;

use crate::spec::{ModelSpec, NamedTensor};

/// What a transport hands over after decoding.
pub struct InferRequest {
    pub inputs: Vec<NamedTensor>,
    /// Per-request deadline; `None` uses the model's `default_timeout_ms`.
    pub timeout: Option<Duration>,
    /// Nothing else is in the server: the request may run inline (`inline_run_us`).
    pub may_inline: bool,
}

/// What runs when the last `Arc` of a retired version is dropped.
pub type DropHook = Box<dyn FnOnce() + Send>;

/// A model version ready to serve. Requests hold an `Arc<Model>` until answered; when the
/// last one goes, the batcher's channel closes, its driver finishes the queue and exits,
/// and the worker threads (and their sessions) end with it.
pub struct Model {
    pub spec: Arc<ModelSpec>,
    pub metrics: ModelMetrics,
    batcher: Batcher,
    /// One `mlpserve_model_instances` gauge per instance, decremented on drop.
    placed: Vec<prometheus::IntGauge>,
    on_drop: Mutex<Option<DropHook>>,
}

impl Model {
    pub fn new(
        spec: Arc<ModelSpec>,
        batcher: Batcher,
        metrics: ModelMetrics,
        placed: Vec<prometheus::IntGauge>,
    ) -> Model {
        Model {
            spec,
            metrics,
            batcher,
            placed,
            on_drop: Mutex::new(None),
        }
    }

    /// Whether the version's workers are sound; a failed version is UNAVAILABLE.
    pub fn health(&self) -> &crate::batcher::Health {
        self.batcher.health()
    }

    /// Runs `hook` when this version is finally dropped (its last request answered).
    pub fn on_last_drop(&self, hook: DropHook) {
        *self.on_drop.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Counts a request a transport refused before it reached [`Model::infer`] (e.g. an
    /// undecodable body) and hands the error back.
    pub fn refuse(&self, error: Error) -> Error {
        self.metrics.failure(error.reason());
        error
    }

    /// Validates, queues and runs one request; outputs come back in the graph's output
    /// order. Records the request's outcome and timings.
    /// The span is DEBUG: at the default INFO level a per-request span cost ~10% of
    /// small-request throughput; the events that matter at INFO name the model themselves.
    #[tracing::instrument(level = "debug", name = "infer", skip_all, fields(model = %self.spec.name, version = %self.spec.version, rows, batch_rows))]
    pub async fn infer(&self, request: InferRequest) -> Result<JobOutput> {
        let started = Instant::now();
        let result = self.run(request, started).await;
        match &result {
            Ok(out) => {
                let m = &self.metrics;
                m.success.inc();
                m.rows
                    .inc_by(out.outputs.first().map_or(0, |t| t.rows()) as u64);
                m.request_duration.observe(started.elapsed().as_secs_f64());
                m.queue_duration.observe(out.queue_time.as_secs_f64());
                tracing::Span::current().record("batch_rows", out.batch_rows);
                tracing::debug!(
                    queue_us = out.queue_time.as_micros() as u64,
                    compute_us = out.compute_time.as_micros() as u64,
                    "inferred"
                );
            }
            Err(e) => {
                // The transports log server faults once per request, with the request id.
                self.metrics.failure(e.reason());
                tracing::debug!(error = %e, "request failed");
            }
        }
        result
    }

    async fn run(&self, request: InferRequest, started: Instant) -> Result<JobOutput> {
        let (tensors, rows) = self.spec.validate(request.inputs)?;
        tracing::Span::current().record("rows", rows);
        let limit = self.spec.config.max_request_rows;
        if rows > limit {
            return Err(Error::TooLarge(format!(
                "model '{}' version {}: request has {rows} rows, more than max_request_rows ({limit})",
                self.spec.name, self.spec.version
            )));
        }
        let timeout = request.timeout.or(self.spec.config.default_timeout());
        let deadline = timeout.map(|t| started + t);
        self.batcher
            .submit(tensors, rows, deadline, request.may_inline)
            .await
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        for gauge in &self.placed {
            gauge.dec();
        }
        let hook = self
            .on_drop
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(hook) = hook {
            hook();
        }
    }
}
