//! OpenTelemetry traces of inference requests, exported over OTLP (gRPC or HTTP/protobuf).
//! Off unless `--otlp-endpoint` is set: then no tracer exists, and every hook here is one
//! atomic load that finds none. On, a request gets a server span (continuing the caller's
//! W3C `traceparent`/`tracestate`) with children for its decode, its wait in the queue and
//! its encode; the ORT run of a batch is one span, child of its first sampled request and
//! linked from every request it served. Spans leave through [`export::BoundedProcessor`],
//! which never blocks or fails a request. Knows no transport: the transports hand it
//! their headers through [`HeaderSource`].

pub mod export;

use std::borrow::Cow;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::observe::{OtlpProtocol, TraceConfig};

/// The process's tracer, set once by [`Telemetry::start`]; none while tracing is off.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// How long shutdown waits for the last spans to reach the collector.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Tracing is on in this process.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The running exporter; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Builds the exporter and installs the tracer; `None` config: tracing stays off.
    /// Must run inside the server's tokio runtime (the exporter's connections live there).
    /// A second server in one process (tests) keeps the first one's tracer.
    pub fn start(config: Option<&TraceConfig>) -> Result<Telemetry, String> {
        let Some(config) = config else {
            return Ok(Telemetry { provider: None });
        };
        if enabled() {
            tracing::warn!("a tracer is already installed in this process: keeping it");
            return Ok(Telemetry { provider: None });
        }
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let mut exporter = build_exporter(config)?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let processor =
            export::BoundedProcessor::start(exporter, tokio::runtime::Handle::current())
                .map_err(|e| format!("cannot start the span export thread: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let _ = TRACER.set(provider.tracer("mlpserve"));
        tracing::info!(
            endpoint = %config.endpoint,
            protocol = ?config.protocol,
            service_name = %config.service_name,
            sample_ratio = config.sample_ratio,
            "OpenTelemetry tracing on"
        );
        Ok(Telemetry {
            provider: Some(provider),
        })
    }

    /// Exports the spans still queued (at most [`SHUTDOWN_FLUSH`]); off the async threads,
    /// whose I/O the export itself needs.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_FLUSH))
                .await;
        match done {
            Ok(Ok(())) => tracing::info!("trace spans flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "trace spans not all flushed at shutdown"),
            Err(e) => tracing::warn!(error = %e, "trace flush task failed"),
        }
    }
}

fn build_exporter(config: &TraceConfig) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let built = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(http_traces_url(&config.endpoint))
            .with_timeout(Duration::from_secs(10))
            .with_http_client(
                opentelemetry_http::hyper::HyperClient::with_default_connector(
                    Duration::from_secs(10),
                    None,
                ),
            )
            .build(),
    };
    built.map_err(|e| {
        format!(
            "cannot set up the OTLP exporter for {}: {e}",
            config.endpoint
        )
    })
}

/// OTLP/HTTP posts to `/v1/traces`; a collector URL given without a path gets it.
fn http_traces_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    if rest.trim_end_matches('/').contains('/') {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// Request headers the caller's trace context is read from: HTTP headers or gRPC metadata.
pub enum HeaderSource<'a> {
    Http(&'a http::HeaderMap),
    Grpc(&'a tonic::metadata::MetadataMap),
}

impl Extractor for HeaderSource<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self {
            HeaderSource::Http(h) => h.get(key).and_then(|v| v.to_str().ok()),
            HeaderSource::Grpc(m) => m.get(key).and_then(|v| v.to_str().ok()),
        }
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            HeaderSource::Http(h) => h.keys().map(|k| k.as_str()).collect(),
            HeaderSource::Grpc(m) => m
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect(),
        }
    }
}

/// The caller's trace context from `traceparent`/`tracestate` (empty when absent or
/// malformed: the request then starts a trace); `None` while tracing is off.
pub fn caller_context(headers: HeaderSource<'_>) -> Option<Context> {
    enabled().then(|| TraceContextPropagator::new().extract(&headers))
}

/// One inference request's server span, or nothing while tracing is off. Its context
/// carries the span through the service into the batcher (see [`current_span`]).
pub struct RequestTrace {
    cx: Option<Context>,
}

impl RequestTrace {
    /// No span.
    pub fn off() -> RequestTrace {
        RequestTrace { cx: None }
    }

    /// Starts the server span of a request that arrived over `transport`, in the caller's
    /// trace (`caller`, from [`caller_context`]).
    pub fn start(
        caller: Option<&Context>,
        transport: &'static str,
        request_id: &str,
    ) -> RequestTrace {
        let (Some(tracer), Some(caller)) = (TRACER.get(), caller) else {
            return RequestTrace::off();
        };
        let mut span = tracer
            .span_builder("infer")
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, caller);
        if !span.span_context().is_sampled() {
            return RequestTrace::off();
        }
        // Only now: a request left out by the sampler costs no attribute allocations.
        span.set_attribute(KeyValue::new("mlpserve.transport", transport));
        span.set_attribute(KeyValue::new("mlpserve.request_id", request_id.to_string()));
        RequestTrace {
            cx: Some(caller.with_span(span)),
        }
    }

    /// The request span the running task is in (see [`RequestTrace::scope`]), to add
    /// attributes and children to; ending it stays with the one who started it.
    pub fn current() -> RequestTrace {
        if !enabled() {
            return RequestTrace::off();
        }
        let cx = Context::current();
        if !cx.span().span_context().is_sampled() {
            return RequestTrace::off();
        }
        RequestTrace { cx: Some(cx) }
    }

    /// The span is recorded (tracing on and this trace sampled).
    pub fn is_on(&self) -> bool {
        self.cx.is_some()
    }

    /// Sets an attribute, built only when the span is recorded.
    pub fn set(&self, make: impl FnOnce() -> KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(make());
        }
    }

    /// Records a finished child span (decode, encode) from `start` to `end`.
    pub fn child(&self, name: &'static str, start: Instant, end: Instant) {
        let (Some(tracer), Some(cx)) = (TRACER.get(), &self.cx) else {
            return;
        };
        let mut span = tracer
            .span_builder(name)
            .with_start_time(wall(start))
            .start_with_context(tracer, cx);
        span.end_with_timestamp(wall(end));
    }

    /// Runs `work` with this span as the current context, so the batcher finds it.
    pub async fn scope<T>(&self, work: impl Future<Output = T>) -> T {
        match &self.cx {
            Some(cx) => work.with_context(cx.clone()).await,
            None => work.await,
        }
    }

    /// Ends the span with the request's outcome: `Ok`, or the error's message and the
    /// status code the transport answered.
    pub fn finish(self, outcome: Result<(), (String, String)>) {
        let Some(cx) = self.cx else {
            return;
        };
        let span = cx.span();
        match outcome {
            Ok(()) => {
                span.set_attribute(KeyValue::new("mlpserve.outcome", "ok"));
                span.set_status(Status::Ok);
            }
            Err((code, message)) => {
                span.set_attribute(KeyValue::new("mlpserve.outcome", code));
                span.set_status(Status::error(message));
            }
        }
        span.end();
    }
}

/// The recorded request span of the running task, for the batcher to carry with its job.
pub fn current_span() -> Option<SpanContext> {
    if !enabled() {
        return None;
    }
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_sampled().then(|| sc.clone())
}

/// One job of a batch, as the batch span records it.
pub struct TracedJob<'a> {
    pub span: &'a SpanContext,
    pub enqueued: Instant,
}

/// A run of one batch on one instance.
pub struct BatchRun<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub instance: usize,
    pub rows: usize,
    pub requests: usize,
    /// When the batch left the queue (the end of each job's queue wait).
    pub formed: Instant,
    pub started: Instant,
    pub ended: Instant,
}

/// Records each traced job's queue wait and the batch's ORT run: one span, child of the
/// first traced job's request, linked from every traced job.
pub fn record_batch(run: &BatchRun<'_>, jobs: &[TracedJob<'_>]) {
    let (Some(tracer), Some(first)) = (TRACER.get(), jobs.first()) else {
        return;
    };
    for job in jobs {
        let parent = Context::new().with_remote_span_context(job.span.clone());
        let mut wait = tracer
            .span_builder("queue")
            .with_start_time(wall(job.enqueued))
            .start_with_context(tracer, &parent);
        wait.end_with_timestamp(wall(run.formed.max(job.enqueued)));
    }
    let parent = Context::new().with_remote_span_context(first.span.clone());
    let links = jobs
        .iter()
        .map(|j| Link::with_context(j.span.clone()))
        .collect();
    let mut span = tracer
        .span_builder("ort.run")
        .with_kind(SpanKind::Internal)
        .with_start_time(wall(run.started))
        .with_links(links)
        .with_attributes([
            KeyValue::new("mlpserve.model", run.model.to_string()),
            KeyValue::new("mlpserve.version", run.version.to_string()),
            KeyValue::new("mlpserve.instance", run.instance as i64),
            KeyValue::new("mlpserve.batch_rows", run.rows as i64),
            KeyValue::new("mlpserve.batch_requests", run.requests as i64),
        ])
        .start_with_context(tracer, &parent);
    span.end_with_timestamp(wall(run.ended));
}

/// The wall-clock time of a past `Instant` (spans carry wall-clock times).
fn wall(t: Instant) -> SystemTime {
    SystemTime::now() - Instant::now().saturating_duration_since(t)
}

/// A `KeyValue` from a static key and any string.
pub fn kv(key: &'static str, value: impl Into<Cow<'static, str>>) -> KeyValue {
    KeyValue::new(key, value.into())
}

/// A `KeyValue` from a static key and a count.
pub fn kv_count(key: &'static str, value: usize) -> KeyValue {
    KeyValue::new(key, value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_collector_urls_get_the_traces_path_only_when_they_have_none() {
        assert_eq!(
            http_traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://gw:80/otlp/v1/traces"),
            "http://gw:80/otlp/v1/traces"
        );
    }

    #[test]
    fn off_hooks_do_nothing() {
        assert!(caller_context(HeaderSource::Http(&http::HeaderMap::new())).is_none());
        let t = RequestTrace::start(None, "http", "id");
        assert!(!t.is_on());
        assert!(current_span().is_none());
    }
}
