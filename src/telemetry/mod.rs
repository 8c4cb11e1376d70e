//! OpenTelemetry traces of inference requests, exported over OTLP (gRPC or HTTP/protobuf).
//! Off unless `--otlp-endpoint` is set: then every hook here is one atomic load that
//! finds no tracer. On, the sampler decides once, when a request arrives (parent-based:
//! the caller's W3C `traceparent` sampled flag, else the ratio): a request left out costs
//! a header lookup and a random number, nothing more. A sampled request gets a server
//! span (continuing the caller's trace) with children for its decode, its wait in the
//! queue and its encode; the ORT run of a batch is one span, child of its first sampled
//! request and linked from every request it served. Along the request path these are
//! plain timestamps gathered in a [`record::Request`] that travels with the request's task
//! (a task-local); the worker gathers a batch's in a [`record::Batch`]. Each is handed
//! whole to the export thread ([`export`]), which writes the OTLP spans ([`otlp`]) and
//! sends them ([`transport`]); nothing there blocks or fails a request. Knows no
//! transport of its own: the servers hand it their headers through [`HeaderSource`].

mod error;
pub mod export;
mod otlp;
mod record;
mod transport;

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use error::TelemetryError;
pub use record::SpanRef;
use record::{Attr, Attrs, BatchJob, Child, Children, Outcome, Value};

use crate::config::observe::TraceConfig;

/// The process's tracer, set once by [`Telemetry::start`]; none while tracing is off.
static TRACER: OnceLock<Tracer> = OnceLock::new();

/// How long shutdown waits for the last spans to reach the collector.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The sampler and the queue to the export thread.
struct Tracer {
    /// New traces are kept when the random half of their id falls below this
    /// (`TraceIdRatioBased`'s rule: ratio × 2^63); `u64::MAX` keeps all.
    threshold: u64,
    queue: export::Queue,
}

/// Tracing is on in this process.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The running exporter; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    exporter: Option<export::Exporter>,
}

impl Telemetry {
    /// Connects the exporter and installs the tracer; `None` config: tracing stays off.
    /// A second server in one process (tests) keeps the first one's tracer.
    pub fn start(config: Option<&TraceConfig>) -> Result<Telemetry, TelemetryError> {
        let Some(config) = config else {
            return Ok(Telemetry { exporter: None });
        };
        if enabled() {
            tracing::warn!("a tracer is already installed in this process: keeping it");
            return Ok(Telemetry { exporter: None });
        }
        let resource = otlp::Resource {
            service_name: config.service_name.clone(),
            service_version: env!("CARGO_PKG_VERSION"),
        };
        let exporter = export::Exporter::start(config, resource)?;
        let _ = TRACER.set(Tracer {
            threshold: threshold(config.sample_ratio),
            queue: exporter.queue(),
        });
        tracing::info!(
            endpoint = %config.endpoint,
            protocol = ?config.protocol,
            service_name = %config.service_name,
            sample_ratio = config.sample_ratio,
            "OpenTelemetry tracing on"
        );
        Ok(Telemetry {
            exporter: Some(exporter),
        })
    }

    /// Exports the spans still queued (at most [`SHUTDOWN_FLUSH`]); off the async threads,
    /// as it waits for the export thread.
    pub async fn shutdown(self) {
        let Some(exporter) = self.exporter else {
            return;
        };
        match tokio::task::spawn_blocking(move || exporter.shutdown(SHUTDOWN_FLUSH)).await {
            Ok(true) => tracing::info!("trace spans flushed"),
            Ok(false) => {
                tracing::warn!("trace spans not all flushed within {SHUTDOWN_FLUSH:?} at shutdown")
            }
            Err(e) => tracing::warn!(error = %e, "trace flush task failed"),
        }
    }
}

/// The sampler's bound for a ratio of new traces (see [`Tracer::threshold`]).
fn threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio.max(0.0) * (1u64 << 63) as f64) as u64
    }
}

/// Request headers the caller's trace context is read from: HTTP headers or gRPC metadata.
pub enum HeaderSource<'a> {
    Http(&'a http::HeaderMap),
    Grpc(&'a tonic::metadata::MetadataMap),
}

/// W3C Trace Context's headers, as names made once: a lookup by `&str` would parse the
/// name again on every request.
const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

impl HeaderSource<'_> {
    fn get(&self, key: &http::HeaderName) -> Option<&str> {
        match self {
            HeaderSource::Http(h) => h.get(key).and_then(|v| v.to_str().ok()),
            HeaderSource::Grpc(m) => m.get(key.as_str()).and_then(|v| v.to_str().ok()),
        }
    }
}

/// The caller's trace, from its W3C `traceparent` and `tracestate`.
#[derive(Debug, Clone)]
pub struct Caller {
    span: SpanRef,
    sampled: bool,
    state: Option<Box<str>>,
}

/// The caller's trace context: `Some(None)` when it sent none (or a malformed one: the
/// request then starts a trace); `None` while tracing is off.
pub fn caller_context(headers: HeaderSource<'_>) -> Option<Option<Caller>> {
    enabled().then(|| {
        let (span, sampled) = parse_traceparent(headers.get(&TRACEPARENT)?)?;
        let state = headers
            .get(&TRACESTATE)
            .filter(|s| valid_tracestate(s))
            .map(|s| s.trim().into());
        Some(Caller {
            span,
            sampled,
            state,
        })
    })
}

/// `version-traceid-parentid-flags`, lower-case hex (W3C Trace Context): the caller's span
/// and whether it sampled the trace. All-zero ids and version `ff` are invalid; a later
/// version may append fields, which are ignored.
fn parse_traceparent(value: &str) -> Option<(SpanRef, bool)> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || !is_hex(version) {
        return None;
    }
    if version == "00" && (parts.next().is_some() || value.len() != 55) {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(trace, &mut trace_id)?;
    hex_into(span, &mut span_id)?;
    let mut flag = [0u8; 1];
    hex_into(flags, &mut flag)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((SpanRef { trace_id, span_id }, flag[0] & 1 == 1))
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if !is_hex(s) {
        return None;
    }
    let nibble = |b: u8| if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    Some(())
}

/// A `tracestate` to pass on: at most 32 `key=value` members of printable ASCII, keys
/// lower-case (W3C Trace Context); anything else is dropped whole, as the SDKs do.
fn valid_tracestate(s: &str) -> bool {
    let members: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    !members.is_empty()
        && members.len() <= 32
        && s.len() <= 512
        && members.iter().all(|m| {
            m.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty()
                    && k.len() <= 256
                    && k.bytes().all(|b| {
                        matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@')
                    })
                    && !v.is_empty()
                    && v.len() <= 256
                    && v.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            })
        })
}

tokio::task_local! {
    /// The running request's record while it is traced (see [`RequestTrace::scope`]).
    static ACTIVE: RefCell<Option<Box<record::Request>>>;
}

/// One inference request's server span, or nothing while tracing is off or the sampler
/// left the request out.
pub struct RequestTrace {
    rec: Option<Box<record::Request>>,
}

impl RequestTrace {
    /// No span.
    pub fn off() -> RequestTrace {
        RequestTrace { rec: None }
    }

    /// Samples a request that arrived over `transport` and, when kept, starts its server
    /// span in the caller's trace (`caller`, from [`caller_context`]: `None` while tracing
    /// is off, `Some(None)` when the caller sent no trace context).
    pub fn start(
        caller: Option<&Option<Caller>>,
        transport: &'static str,
        request_id: &str,
    ) -> RequestTrace {
        let (Some(tracer), Some(caller)) = (TRACER.get(), caller) else {
            return RequestTrace::off();
        };
        let (trace_id, parent, trace_state) = match caller {
            Some(c) if !c.sampled => return RequestTrace::off(),
            Some(c) => (c.span.trace_id, Some(c.span.span_id), c.state.clone()),
            None => {
                let low = record::random_u64();
                // The low half of the id decides, as TraceIdRatioBased does.
                if tracer.threshold != u64::MAX && low >> 1 >= tracer.threshold {
                    return RequestTrace::off();
                }
                let mut id = record::trace_id();
                id[8..].copy_from_slice(&low.to_be_bytes());
                (id, None, None)
            }
        };
        let start = Instant::now();
        let mut attrs = Attrs::default();
        attrs.push(kv("mlpserve.transport", transport));
        attrs.push(kv_text("mlpserve.request_id", request_id));
        RequestTrace {
            rec: Some(Box::new(record::Request {
                own: SpanRef {
                    trace_id,
                    span_id: record::span_id(),
                },
                parent,
                trace_state,
                start,
                end: start,
                attrs,
                children: Children::default(),
                outcome: Outcome::Unset,
            })),
        }
    }

    /// The request span of the running task (see [`RequestTrace::scope`]), to add
    /// attributes and children to; whether there is one is looked up once, here.
    pub fn current() -> Current {
        Current {
            on: ACTIVE.try_with(|a| a.borrow().is_some()).unwrap_or(false),
        }
    }

    /// The span is recorded (tracing on and this request sampled).
    pub fn is_on(&self) -> bool {
        self.rec.is_some()
    }

    /// Sets an attribute, built only when the span is recorded.
    pub fn set(&mut self, make: impl FnOnce() -> Attr) {
        if let Some(rec) = &mut self.rec {
            rec.attrs.push(make());
        }
    }

    /// Runs `work` with this span as the task's current one, so the service and the
    /// batcher find it.
    pub async fn scope<T>(&mut self, work: impl Future<Output = T>) -> T {
        let Some(rec) = self.rec.take() else {
            return work.await;
        };
        let (out, rec) = ACTIVE
            .scope(RefCell::new(Some(rec)), async move {
                let out = work.await;
                (out, ACTIVE.with(|a| a.borrow_mut().take()))
            })
            .await;
        self.rec = rec;
        out
    }

    /// Ends the span with the request's outcome: `Ok`, or the status code the transport
    /// answered and the error's message; hands it to the export thread.
    pub fn finish(self, outcome: Result<(), (String, String)>) {
        let (Some(tracer), Some(mut rec)) = (TRACER.get(), self.rec) else {
            return;
        };
        rec.end = Instant::now();
        rec.outcome = match outcome {
            Ok(()) => {
                rec.attrs.push(kv("mlpserve.outcome", "ok"));
                Outcome::Ok
            }
            Err((code, message)) => {
                rec.attrs.push(kv("mlpserve.outcome", code));
                Outcome::Error(message)
            }
        };
        tracer.queue.push(export::Item::Request(rec));
    }
}

/// The traced request of the running task, if any (see [`RequestTrace::current`]).
pub struct Current {
    on: bool,
}

impl Current {
    fn with(&self, f: impl FnOnce(&mut record::Request)) {
        if !self.on {
            return;
        }
        let _ = ACTIVE.try_with(|a| {
            if let Some(rec) = a.borrow_mut().as_mut() {
                f(rec);
            }
        });
    }

    /// The running request is traced.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Sets an attribute, built only when the span is recorded.
    pub fn set(&self, make: impl FnOnce() -> Attr) {
        self.with(|rec| rec.attrs.push(make()));
    }

    /// The time a child span starts: read only when the request is traced, so a request
    /// left out reads no clock.
    pub fn now(&self) -> Option<Instant> {
        self.on.then(Instant::now)
    }

    /// Records a finished child span (decode, encode) from `start` (from [`Current::now`])
    /// to now.
    pub fn child(&self, name: &'static str, start: Option<Instant>) {
        let Some(start) = start else {
            return;
        };
        let end = Instant::now();
        self.with(|rec| rec.children.push(Child { name, start, end }));
    }
}

/// The recorded request span of the running task, for the batcher to carry with its job.
pub fn current_span() -> Option<SpanRef> {
    ACTIVE
        .try_with(|a| a.borrow().as_ref().map(|r| r.own))
        .ok()
        .flatten()
}

/// One job of a batch, as the batch span records it.
pub struct TracedJob<'a> {
    pub span: &'a SpanRef,
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
    let Some(tracer) = TRACER.get() else {
        return;
    };
    if jobs.is_empty() {
        return;
    }
    tracer
        .queue
        .push(export::Item::Batch(Box::new(record::Batch {
            formed: run.formed,
            started: run.started,
            ended: run.ended,
            attrs: [
                kv_text("mlpserve.model", run.model),
                kv_text("mlpserve.version", run.version),
                kv_count("mlpserve.instance", run.instance),
                kv_count("mlpserve.batch_rows", run.rows),
                kv_count("mlpserve.batch_requests", run.requests),
            ]
            .into_iter()
            .collect(),
            jobs: jobs
                .iter()
                .map(|j| BatchJob {
                    span: *j.span,
                    enqueued: j.enqueued,
                })
                .collect(),
        })));
}

/// An attribute from a static key and any string.
pub fn kv(key: &'static str, value: impl Into<Cow<'static, str>>) -> Attr {
    Attr {
        key,
        value: Value::Str(value.into()),
    }
}

/// An attribute from a static key and a borrowed string: kept inline when short (ids,
/// model names), so recording it allocates nothing.
pub fn kv_text(key: &'static str, value: &str) -> Attr {
    Attr {
        key,
        value: Value::text(value),
    }
}

/// An attribute from a static key and a count.
pub fn kv_count(key: &'static str, value: usize) -> Attr {
    Attr {
        key,
        value: Value::Int(value as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_hooks_do_nothing() {
        assert!(caller_context(HeaderSource::Http(&http::HeaderMap::new())).is_none());
        let t = RequestTrace::start(None, "http", "id");
        assert!(!t.is_on());
        assert!(current_span().is_none());
        assert!(!RequestTrace::current().is_on());
    }

    #[test]
    fn traceparent_follows_w3c_trace_context() {
        let (span, sampled) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(span.trace_id[0], 0x0a);
        assert_eq!(span.span_id[7], 0x31);
        assert!(sampled);
        let (_, sampled) =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap();
        assert!(!sampled);
        // A later version may add fields.
        assert!(
            parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra")
                .is_some()
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333x-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tracestate_is_passed_on_only_when_well_formed() {
        assert!(valid_tracestate("vendor=1"));
        assert!(valid_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"));
        assert!(!valid_tracestate(""));
        assert!(!valid_tracestate("Vendor=1"));
        assert!(!valid_tracestate("novalue"));
        assert!(!valid_tracestate("a=b=c"));
    }

    #[test]
    fn ratio_thresholds_match_trace_id_ratio_sampling() {
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(-1.0), 0);
        assert_eq!(threshold(0.5), 1u64 << 62);
    }
}
