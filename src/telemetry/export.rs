//! Between the request path and the collector: a bounded [`Handoff`] of recorded requests
//! and batches, and one named thread that drains it, writes the OTLP export requests and
//! sends them. The thread runs the collector connection on a small runtime of its own:
//! the export's HTTP/2 framing, socket writes and the wake-ups between them stay off the
//! server's async threads, which serve the requests. Handing over never waits; when the queue holds [`QUEUE_SPANS`] (the
//! collector is slow, down or unreachable) new spans are dropped and counted in
//! `mlpserve_trace_spans_dropped_total`; a failed export drops its spans too (counted).
//! Shutdown exports what is queued, within a limit.

use std::sync::mpsc::sync_channel;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::IntCounter;

use super::error::ExportError;
use super::otlp::{self, Resource};
use super::record::{self, Batch, Request};
use super::transport::{Collector, EXPORT_TIMEOUT};
use super::TelemetryError;
use crate::config::observe::TraceConfig;
use crate::handoff::{Flush, Handoff};

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
pub const QUEUE_SPANS: usize = 32_768;
/// Spans in one export request at most; this many waiting wake the thread at once.
/// About 120 kB of protobuf: far larger requests made every export allocate (and the
/// kernel zero) fresh pages for the gRPC client's buffers.
const BATCH_SPANS: usize = 1024;
/// Spans wait at most this long for company before they are sent.
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// A finished record for the export thread.
pub enum Item {
    Request(Box<Request>),
    Batch(Box<Batch>),
}

impl Item {
    /// The spans it makes.
    fn spans(&self) -> usize {
        match self {
            Item::Request(r) => 1 + r.children.len(),
            Item::Batch(b) => 1 + b.jobs.len(),
        }
    }
}

/// The queue's sending side; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    handoff: Handoff<Item>,
}

impl Queue {
    /// Queues a finished request (its server span and children) or batch run (its run
    /// span and each traced job's queue wait); a full queue drops it, counted.
    pub fn push(&self, item: Item) {
        let spans = item.spans();
        if self.handoff.push(item, spans).is_err() {
            SPANS_DROPPED.inc_by(spans as u64);
        }
    }
}

/// The running export thread.
pub struct Exporter {
    queue: Queue,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Starts the export thread with its own runtime and sets up the collector connection
    /// there; a collector `config` the exporter cannot use is refused here.
    pub fn start(config: &TraceConfig, resource: Resource) -> Result<Exporter, TelemetryError> {
        let queue = Queue {
            handoff: Handoff::new(QUEUE_SPANS, BATCH_SPANS),
        };
        let drained = queue.handoff.clone();
        let config = config.clone();
        let (ready, started) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("otlp-export".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready.send(Err(TelemetryError::Thread(e.to_string())));
                        return;
                    }
                };
                // The connection's tasks are spawned on this runtime, and run while an
                // export waits on it.
                let collector = match runtime.block_on(async { Collector::new(&config) }) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                drain(&drained, collector, &resource, &runtime);
            })
            .map_err(|e| TelemetryError::Thread(e.to_string()))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Exporter {
                queue,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(TelemetryError::Thread(
                    "the export thread ended while starting".to_string(),
                ))
            }
        }
    }

    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// Exports what is queued and ends the thread, within `timeout`. False when the
    /// spans were not all handed over in time (they are lost then).
    pub fn shutdown(mut self, timeout: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        self.queue.handoff.flush(Flush::Blocking(done), true);
        let done = wait.recv_timeout(timeout).is_ok();
        if done {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        done
    }
}

/// The export thread: takes what is queued when a full export's worth waits or
/// [`BATCH_DELAY`] after the first span, and sends it in requests of up to [`BATCH_SPANS`].
fn drain(
    handoff: &Handoff<Item>,
    mut collector: Collector,
    resource: &Resource,
    runtime: &tokio::runtime::Runtime,
) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut ids = record::span_id;
    let (mut requests, mut batches) = (Vec::new(), Vec::new());
    loop {
        let taken = handoff.take(BATCH_DELAY);
        let mut items = taken.items.into_iter().peekable();
        while items.peek().is_some() {
            // One export request of about BATCH_SPANS spans.
            let mut spans = 0;
            while spans < BATCH_SPANS {
                let Some(item) = items.next() else { break };
                spans += item.spans();
                match item {
                    Item::Request(r) => requests.push(r),
                    Item::Batch(b) => batches.push(b),
                }
            }
            // One wall-clock reading per export request, not one per span.
            let clock = record::Clock::now();
            let n = otlp::encode(resource, &requests, &batches, &clock, &mut ids, &mut buf);
            requests.clear();
            batches.clear();
            export(&mut collector, Bytes::copy_from_slice(&buf), n, runtime);
        }
        taken.flushes.into_iter().for_each(Flush::done);
        if taken.closed {
            return;
        }
    }
}

/// One export request; a failure drops its spans, counted, and is logged at most once a
/// minute (a dead collector would otherwise log at every look).
fn export(collector: &mut Collector, body: Bytes, spans: usize, runtime: &tokio::runtime::Runtime) {
    if spans == 0 {
        return;
    }
    let n = spans as u64;
    let result = runtime.block_on(async {
        match tokio::time::timeout(EXPORT_TIMEOUT, collector.send(body)).await {
            Ok(r) => r,
            Err(_) => Err(ExportError::Timeout(EXPORT_TIMEOUT)),
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
