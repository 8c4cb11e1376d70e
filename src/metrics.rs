//! Prometheus metrics: typed handles on our own `Registry` (one per server, so test servers
//! in one process stay isolated). Labels are `model`/`version`, never paths or request ids.
//! The Triton-style statistics endpoints read the same counters, so both always agree.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds buckets from 50 µs to ~13 s (doubling).
fn duration_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(50e-6, 2.0, 19).expect("constant bucket spec is valid")
}

/// Every metric the server exports. Cloning shares the same registry and series.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rows: IntCounterVec,
    executions: IntCounterVec,
    inline_executions: IntCounterVec,
    request_duration: HistogramVec,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    queue_depth: IntGaugeVec,
    in_flight: IntGaugeVec,
    model_ready: IntGaugeVec,
    instances: IntGaugeVec,
    worker_restarts: IntCounterVec,
    http_requests: IntCounterVec,
    /// Requests in the server now, from arrival to answer, every route of both ports: the
    /// count `service::Activity` keeps (a scrape counts itself).
    pub requests_active: IntGauge,
    /// Connection and authentication counters of the transports.
    pub transport: TransportMetrics,
    lifecycle: LifecycleMetrics,
}

/// Model lifecycle: load outcomes and durations, and each version's state.
#[derive(Clone)]
pub struct LifecycleMetrics {
    /// Loads by outcome (`success`, `failure`).
    pub loads: IntCounterVec,
    /// Time to build, read and warm up one version (successful or not).
    pub load_duration: Histogram,
    /// 1 for the state a version is in (`LOADING`, `READY`, `UNLOADING`, `UNAVAILABLE`), 0 for the others.
    pub version_state: IntGaugeVec,
}

/// The states a version can be in, as the index and the state gauge name them.
pub const VERSION_STATES: &[&str] = &["LOADING", "READY", "UNLOADING", "UNAVAILABLE"];

impl LifecycleMetrics {
    /// Sets the state gauge of `model`/`version` to `state` (and its other states to 0);
    /// `None` removes the version's series (it left the index).
    pub fn set_state(&self, model: &str, version: &str, state: Option<&str>) {
        for s in VERSION_STATES {
            match state {
                Some(state) => self
                    .version_state
                    .with_label_values(&[model, version, s])
                    .set(i64::from(*s == state)),
                None => {
                    let _ = self.version_state.remove_label_values(&[model, version, s]);
                }
            }
        }
    }
}

/// The handles of one model version, labelled once so the hot path does no label lookups.
#[derive(Clone)]
pub struct ModelMetrics {
    pub success: IntCounter,
    requests: IntCounterVec,
    labels: [String; 2],
    pub rows: IntCounter,
    pub executions: IntCounter,
    /// Executions of a lone request on the receiving thread (a subset of `executions`).
    pub inline_executions: IntCounter,
    pub request_duration: Histogram,
    pub queue_duration: Histogram,
    pub compute_duration: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: IntGauge,
    pub in_flight: IntGauge,
    pub ready: IntGauge,
    /// Worker threads restarted after a panic.
    pub worker_restarts: IntCounter,
}

impl ModelMetrics {
    /// Counts one failed request by reason (`invalid`, `overloaded`, `timeout`, ...).
    pub fn failure(&self, reason: &str) {
        self.requests
            .with_label_values(&[&self.labels[0], &self.labels[1], reason])
            .inc();
    }

    /// Failed requests of one reason so far.
    pub fn failures(&self, reason: &str) -> u64 {
        self.requests
            .with_label_values(&[&self.labels[0], &self.labels[1], reason])
            .get()
    }

    /// Triton-style totals derived from these same counters.
    pub fn stats(&self) -> ModelStats {
        let secs_to_ns = |s: f64| (s * 1e9).round() as u64;
        ModelStats {
            success_count: self.success.get(),
            success_ns: secs_to_ns(self.request_duration.get_sample_sum()),
            fail_count: FAILURE_REASONS.iter().map(|r| self.failures(r)).sum(),
            inference_count: self.rows.get(),
            execution_count: self.executions.get(),
            queue_ns: secs_to_ns(self.queue_duration.get_sample_sum()),
            compute_ns: secs_to_ns(self.compute_duration.get_sample_sum()),
        }
    }
}

impl ModelStats {
    /// Triton charges each request with the compute time of its batch; our compute
    /// histogram is per execution, so the per-request total is derived as the requests'
    /// total time minus their queue time (it also covers assembling, splitting, answering).
    pub fn request_compute_ns(&self) -> u64 {
        self.success_ns.saturating_sub(self.queue_ns)
    }
}

/// The bounded `method` label: the standard methods by name, anything else `other`.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];
    KNOWN
        .iter()
        .find(|&&m| m == method)
        .copied()
        .unwrap_or("other")
}

/// Every failure reason label (see `Error::reason`).
pub const FAILURE_REASONS: &[&str] = &[
    "invalid",
    "not_found",
    "overloaded",
    "timeout",
    "unavailable",
    "internal",
];

/// Cumulative statistics of one model version (the Triton statistics extension's core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelStats {
    /// Successful requests, and their total time from admission to answer.
    pub success_count: u64,
    pub success_ns: u64,
    /// Failed requests (any reason).
    pub fail_count: u64,
    /// Rows inferred (Triton's `inference_count`).
    pub inference_count: u64,
    /// ORT executions (batches); `inference_count / execution_count` is the mean batch size.
    pub execution_count: u64,
    /// Total queue time of successful requests.
    pub queue_ns: u64,
    /// Total worker time of executions (assemble + run + split).
    pub compute_ns: u64,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Metrics {
    pub fn new() -> Metrics {
        // No registry-wide prefix: process metrics keep their standard `process_*` names.
        let registry = Registry::new();
        let mv = &["model", "version"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help).namespace("mlpserve"), labels)
                    .expect("valid counter"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let opts = HistogramOpts::new(name, help)
                .namespace("mlpserve")
                .buckets(buckets);
            register(
                &registry,
                HistogramVec::new(opts, mv).expect("valid histogram"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help).namespace("mlpserve"), mv)
                    .expect("valid gauge"),
            )
        };
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");
        // Process-wide: the log sink is one per process, shared by every registry.
        register(&registry, crate::logging::DROPPED.clone());
        register(&registry, crate::telemetry::export::SPANS_DROPPED.clone());
        register(&registry, crate::telemetry::export::SPANS_EXPORTED.clone());
        register(&registry, crate::payload_log::DROPPED.clone());
        register(&registry, crate::payload_log::WRITTEN.clone());
        Metrics {
            requests: counter(
                "requests_total",
                "Inference requests by outcome (success, invalid, overloaded, timeout, unavailable, not_found, internal).",
                &["model", "version", "outcome"],
            ),
            rows: counter("inference_rows_total", "Rows (batch items) inferred successfully.", mv),
            executions: counter("executions_total", "ONNX Runtime executions (batches run).", mv),
            inline_executions: counter(
                "inline_executions_total",
                "Executions of a request that found the server otherwise empty and ran on the receiving thread, without the batcher's hand-offs (included in executions_total).",
                mv,
            ),
            request_duration: histogram(
                "request_duration_seconds",
                "Time from admission to answer of successful requests.",
                duration_buckets(),
            ),
            queue_duration: histogram("queue_duration_seconds", "Time requests waited in the batch queue.", duration_buckets()),
            compute_duration: histogram(
                "compute_duration_seconds",
                "Time of one batch on a worker: assemble, ONNX Runtime run, split.",
                duration_buckets(),
            ),
            batch_size: histogram(
                "batch_size",
                "Rows per ONNX Runtime execution.",
                prometheus::exponential_buckets(1.0, 2.0, 14).expect("constant bucket spec is valid"),
            ),
            queue_depth: gauge("queue_depth", "Requests waiting in the batch queue."),
            in_flight: gauge("inflight_requests", "Requests admitted and not yet answered."),
            model_ready: gauge("model_ready", "1 when the model version is loaded and serving."),
            instances: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new("model_instances", "Model instances by where they actually run (cpu, cuda:<device>).")
                        .namespace("mlpserve"),
                    &["model", "version", "provider"],
                )
                .expect("valid gauge"),
            ),
            worker_restarts: counter(
                "worker_restarts_total",
                "Worker threads that panicked and were replaced by a fresh worker.",
                mv,
            ),
            http_requests: counter(
                "http_requests_total",
                "HTTP requests by route template, method and status.",
                &["route", "method", "status"],
            ),
            requests_active: register(
                &registry,
                IntGauge::with_opts(
                    Opts::new(
                        "requests_active",
                        "Requests in the server now, from arrival to answer, on every route of the HTTP and gRPC ports (a scrape on the HTTP port counts itself).",
                    )
                    .namespace("mlpserve"),
                )
                .expect("valid gauge"),
            ),
            transport: TransportMetrics::new(&registry),
            lifecycle: LifecycleMetrics {
                loads: counter(
                    "model_loads_total",
                    "Model version loads by outcome (success, failure).",
                    &["outcome"],
                ),
                load_duration: register(
                    &registry,
                    Histogram::with_opts(
                        HistogramOpts::new(
                            "model_load_duration_seconds",
                            "Time to load and warm up one model version.",
                        )
                        .namespace("mlpserve")
                        .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("constant bucket spec is valid")),
                    )
                    .expect("valid histogram"),
                ),
                version_state: register(
                    &registry,
                    IntGaugeVec::new(
                        Opts::new("model_version_state", "1 for the state each model version is in.")
                            .namespace("mlpserve"),
                        &["model", "version", "state"],
                    )
                    .expect("valid gauge"),
                ),
            },
            registry,
        }
    }

    /// The lifecycle handles.
    pub fn lifecycle(&self) -> &LifecycleMetrics {
        &self.lifecycle
    }

    /// Pre-labelled handles for one model version.
    pub fn model(&self, model: &str, version: &str) -> ModelMetrics {
        let l = [model, version];
        ModelMetrics {
            success: self
                .requests
                .with_label_values(&[model, version, "success"]),
            requests: self.requests.clone(),
            labels: [model.to_string(), version.to_string()],
            rows: self.rows.with_label_values(&l),
            executions: self.executions.with_label_values(&l),
            inline_executions: self.inline_executions.with_label_values(&l),
            request_duration: self.request_duration.with_label_values(&l),
            queue_duration: self.queue_duration.with_label_values(&l),
            compute_duration: self.compute_duration.with_label_values(&l),
            batch_size: self.batch_size.with_label_values(&l),
            queue_depth: self.queue_depth.with_label_values(&l),
            in_flight: self.in_flight.with_label_values(&l),
            ready: self.model_ready.with_label_values(&l),
            worker_restarts: self.worker_restarts.with_label_values(&l),
        }
    }

    /// Records that one instance of a model version runs on `provider` (`cpu`, `cuda:0`);
    /// the returned gauge is decremented when the instance is dropped, so the gauge counts
    /// live instances.
    pub fn instance_placed(&self, model: &str, version: &str, provider: &str) -> IntGauge {
        let gauge = self
            .instances
            .with_label_values(&[model, version, provider]);
        gauge.inc();
        gauge
    }

    /// Removes every series of a version that left the index and answered its last
    /// request, so retired versions do not pile up in the exposition; an instance series
    /// stays while an instance with the same labels still lives (a reload in flight).
    pub fn remove_version(&self, model: &str, version: &str, providers: &[String]) {
        let l = [model, version];
        for outcome in std::iter::once("success").chain(FAILURE_REASONS.iter().copied()) {
            let _ = self
                .requests
                .remove_label_values(&[model, version, outcome]);
        }
        for vec in [
            &self.rows,
            &self.executions,
            &self.inline_executions,
            &self.worker_restarts,
        ] {
            let _ = vec.remove_label_values(&l);
        }
        for vec in [
            &self.request_duration,
            &self.queue_duration,
            &self.compute_duration,
            &self.batch_size,
        ] {
            let _ = vec.remove_label_values(&l);
        }
        for vec in [&self.queue_depth, &self.in_flight, &self.model_ready] {
            let _ = vec.remove_label_values(&l);
        }
        for provider in providers {
            let labels = [model, version, provider.as_str()];
            if self
                .instances
                .get_metric_with_label_values(&labels)
                .is_ok_and(|g| g.get() == 0)
            {
                let _ = self.instances.remove_label_values(&labels);
            }
        }
    }

    /// Counts one HTTP request; `route` is the matched template (e.g. `/v2/models/{name}/infer`)
    /// or `unmatched`, never a raw path. The method label comes from a fixed set (see
    /// [`method_label`]), so a client cannot create series at will.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .with_label_values(&[route, method_label(method), &status.to_string()])
            .inc();
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Connection and authentication metrics. Labels come from fixed sets: `transport` is
/// `http` or `grpc`, `reason` one of [`CLOSE_REASONS`].
#[derive(Clone)]
pub struct TransportMetrics {
    /// Requests refused for a missing or wrong API key.
    pub auth_failures: IntCounterVec,
    /// Client connections open now (all ports).
    pub connections_open: IntGauge,
    /// Connections the server closed or refused on its own, by reason.
    pub connections_closed: IntCounterVec,
    /// Requests refused by the in-flight byte budget, by source and refusal.
    pub inflight_refusals: IntCounterVec,
}

/// Why the server closed a connection: `idle` (idle timeout), `shed` (closed to make room
/// at the connection cap), `refused` (at the cap with none idle), `handshake` (TLS
/// handshake failed or timed out).
pub const CLOSE_REASONS: &[&str] = &["idle", "shed", "refused", "handshake"];

impl TransportMetrics {
    fn new(registry: &Registry) -> TransportMetrics {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("mlpserve");
        TransportMetrics {
            auth_failures: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "auth_failures_total",
                        "Requests refused for a missing or wrong API key, by transport.",
                    ),
                    &["transport"],
                )
                .expect("valid counter"),
            ),
            connections_open: register(
                registry,
                IntGauge::with_opts(opts("connections_open", "Client connections open now."))
                    .expect("valid gauge"),
            ),
            connections_closed: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "connections_closed_total",
                        "Connections closed or refused by the server, by reason (idle, shed, refused, handshake).",
                    ),
                    &["reason"],
                )
                .expect("valid counter"),
            ),
            inflight_refusals: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "inflight_refusals_total",
                        "Requests refused by the in-flight byte budget (--max-inflight-bytes), by source (http: a body, grpc: a message, working_memory: a request's estimated ONNX Runtime working memory) and refusal (never_fits: 413 / RESOURCE_EXHAUSTED, not_now: 503 / UNAVAILABLE).",
                    ),
                    &["source", "refusal"],
                )
                .expect("valid counter"),
            ),
        }
    }

    /// Counts one connection closed by the server; `reason` is one of [`CLOSE_REASONS`].
    pub fn closed(&self, reason: &'static str) {
        debug_assert!(CLOSE_REASONS.contains(&reason));
        self.connections_closed.with_label_values(&[reason]).inc();
    }
}
