//! The span processor between the tracer and the OTLP exporter. A finished span is handed
//! to a bounded queue with `try_send` and never waited on: when the queue is full (the
//! collector is slow, down or unreachable) the span is dropped and counted in
//! `mlpserve_trace_spans_dropped_total`. One named thread drains the queue in batches and
//! runs the exporter's future on the server's tokio runtime with a timeout; a failed
//! export drops its batch (counted too). Shutdown exports what is queued, within a limit.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::IntCounter;

/// Spans dropped since the process started: queue full, export failed or timed out.
pub static SPANS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mlpserve_trace_spans_dropped_total",
        "Spans not exported: the export queue was full, or the collector refused, failed or timed out.",
    )
    .expect("valid counter")
});

/// Spans exported to the collector since the process started.
pub static SPANS_EXPORTED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mlpserve_trace_spans_exported_total",
        "Spans the OTLP collector accepted.",
    )
    .expect("valid counter")
});

/// Spans held while the collector is slow; beyond, new spans are dropped.
pub const QUEUE_SPANS: usize = 8192;
/// Most spans in one export request.
const BATCH_SPANS: usize = 512;
/// A partial batch is sent after this long.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// One export may take this long before its batch is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

enum Message {
    Span(Box<SpanData>),
    /// Export everything queued, then answer.
    Flush(SyncSender<()>),
    /// Export everything queued, shut the exporter down, answer and end the thread.
    Shutdown(SyncSender<()>),
}

/// Bounded, never-blocking span processor (see the module header).
#[derive(Debug)]
pub struct BoundedProcessor {
    queue: SyncSender<Message>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl BoundedProcessor {
    /// Starts the export thread; `runtime` runs the exporter's futures (the tonic channel
    /// and the HTTP client live on it).
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<BoundedProcessor> {
        let (queue, rx) = sync_channel(QUEUE_SPANS);
        let thread = std::thread::Builder::new()
            .name("otlp-export".to_string())
            .spawn(move || drain(exporter, rx, runtime))?;
        Ok(BoundedProcessor {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends a control message and waits for its answer at most `timeout`.
    fn control(&self, make: fn(SyncSender<()>) -> Message, timeout: Duration) -> OTelSdkResult {
        let (tx, rx) = sync_channel(1);
        // The queue may be full: a control message waits for room, within the timeout.
        let deadline = Instant::now() + timeout;
        let mut message = make(tx);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    /// Never blocks: a full queue drops the span.
    fn on_end(&self, span: SpanData) {
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            SPANS_DROPPED.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, EXPORT_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Message::Shutdown, timeout);
        if result.is_ok() {
            if let Some(t) = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = t.join();
            }
        }
        result
    }
}

/// The export thread: batches of up to `BATCH_SPANS`, sent when full or `BATCH_DELAY`
/// after their first span.
fn drain<E: SpanExporter>(mut exporter: E, rx: Receiver<Message>, runtime: tokio::runtime::Handle) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH_SPANS);
    let mut first: Option<Instant> = None;
    loop {
        let wait = first.map_or(Duration::from_secs(3600), |t| {
            (t + BATCH_DELAY).saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                first.get_or_insert_with(Instant::now);
                if batch.len() >= BATCH_SPANS {
                    export(&exporter, &mut batch, &runtime);
                    first = None;
                }
            }
            Ok(Message::Flush(done)) => {
                export_queued(&exporter, &mut batch, &rx, &runtime);
                first = None;
                let _ = done.send(());
            }
            Ok(Message::Shutdown(done)) => {
                export_queued(&exporter, &mut batch, &rx, &runtime);
                let _ = exporter.shutdown();
                let _ = done.send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export(&exporter, &mut batch, &runtime);
                first = None;
            }
            Err(RecvTimeoutError::Disconnected) => {
                export(&exporter, &mut batch, &runtime);
                return;
            }
        }
    }
}

/// Exports `batch` and every span already queued behind it.
fn export_queued<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    rx: &Receiver<Message>,
    runtime: &tokio::runtime::Handle,
) {
    while let Ok(message) = rx.try_recv() {
        match message {
            Message::Span(span) => batch.push(*span),
            // Answered at once: this flush covers theirs.
            Message::Flush(done) | Message::Shutdown(done) => {
                let _ = done.send(());
            }
        }
        if batch.len() >= BATCH_SPANS {
            export(exporter, batch, runtime);
        }
    }
    export(exporter, batch, runtime);
}

/// One export request; a failure drops the batch, counted, and is logged at most once a
/// minute (a dead collector would otherwise log every half second).
fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    runtime: &tokio::runtime::Handle,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::replace(batch, Vec::with_capacity(BATCH_SPANS));
    let n = spans.len() as u64;
    let result = runtime.block_on(async {
        match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(spans)).await {
            Ok(r) => r,
            Err(_) => Err(OTelSdkError::Timeout(EXPORT_TIMEOUT)),
        }
    });
    match result {
        Ok(()) => SPANS_EXPORTED.inc_by(n),
        Err(e) => {
            SPANS_DROPPED.inc_by(n);
            static LAST: Mutex<Option<Instant>> = Mutex::new(None);
            let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                *last = Some(Instant::now());
                tracing::warn!(error = %e, spans = n, dropped_total = SPANS_DROPPED.get(), "OTLP export failed: spans dropped (logged at most once a minute)");
            }
        }
    }
}
