//! Sampled payload logging: what an inference request sent and what it was answered, for
//! joining with outcomes (clicks) and watching for drift. Off unless `--payload-log` is set.
//! A transport hands a finished [`Record`] (the bodies as they went over the wire, shared,
//! not copied) to [`PayloadLog::submit`], which never waits: the record goes into a
//! bounded queue owned by the sink (`file`: JSON Lines, rotated, written by a thread that
//! takes the records in batches through a [`Handoff`]; `cloudevents`: CloudEvents over
//! HTTP); all formatting happens there. When the queue is full the record is dropped and
//! counted in `mlpserve_payload_log_dropped_total`, with a WARN at most once a minute.
//! Credentials never reach a record: only allow-listed headers are copied, and never one
//! that carries a secret (`config::observe::is_secret_header`).

mod cloudevents;
mod error;
mod file;

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

pub use error::PayloadLogError;

use crate::config::observe::{is_secret_header, PayloadLogConfig, PayloadLogMode, PayloadSink};
use crate::handoff::{Flush, Handoff};

/// Records dropped since the process started: buffer full, sink failed.
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mlpserve_payload_log_dropped_total",
        "Payload log records dropped: the buffer was full (slow or dead sink) or the sink failed after its retries.",
    )
    .expect("valid counter")
});

/// Records the sink wrote or delivered.
pub static WRITTEN: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mlpserve_payload_log_records_total",
        "Payload log records written to files or accepted by the CloudEvents sink.",
    )
    .expect("valid counter")
});

/// Records held while the sink is behind; beyond, new records are dropped.
const BUFFER_RECORDS: usize = 8192;
/// How long shutdown waits for the sink to write what is buffered.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// A body as it went over the wire.
#[derive(Debug, Clone)]
pub struct Payload {
    pub content_type: Cow<'static, str>,
    pub body: Bytes,
    /// The body is one JSON document that the server parsed whole (a request it answered
    /// with success) or wrote itself (its answers): the file sink copies such a body into
    /// its line as it is, without parsing it again.
    pub whole_json: bool,
}

impl Payload {
    /// A content type, borrowed when it is the common JSON one.
    pub fn content_type(value: &str) -> Cow<'static, str> {
        match value {
            "application/json" => Cow::Borrowed("application/json"),
            other => Cow::Owned(other.to_string()),
        }
    }
}

/// One inference request and its answer.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: SystemTime,
    pub id: String,
    pub model: String,
    pub version: String,
    pub status: u16,
    pub latency: Duration,
    /// Allow-listed request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Absent in `response` mode.
    pub request: Option<Payload>,
    /// Absent in `request` mode.
    pub response: Option<Payload>,
}

enum Message {
    Record(Box<Record>),
    /// Write everything before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// Where records go.
enum Sink {
    Files(Handoff<Box<Record>>),
    Http(mpsc::Sender<Message>),
}

/// The running payload log; cheap to share behind the service.
pub struct PayloadLog {
    sink: Sink,
    sample: f64,
    mode: PayloadLogMode,
    headers: Vec<String>,
}

impl PayloadLog {
    /// Starts the sink `config` names (none: off). Inside the tokio runtime.
    pub fn start(config: Option<&PayloadLogConfig>) -> Result<Option<PayloadLog>, PayloadLogError> {
        let Some(config) = config else {
            return Ok(None);
        };
        let sink = match &config.sink {
            PayloadSink::Files(dir) => Sink::Files(file::start(
                dir,
                config.max_file_bytes,
                config.max_files,
                BUFFER_RECORDS,
            )?),
            PayloadSink::Http(url) => {
                let (tx, rx) = mpsc::channel(BUFFER_RECORDS);
                cloudevents::start(url, rx)?;
                Sink::Http(tx)
            }
        };
        tracing::info!(sink = ?config.sink, sample = config.sample, mode = ?config.mode, headers = ?config.headers, "payload logging on");
        Ok(Some(PayloadLog {
            sink,
            sample: config.sample,
            mode: config.mode,
            headers: config
                .headers
                .iter()
                .filter(|h| !is_secret_header(h))
                .cloned()
                .collect(),
        }))
    }

    /// Whether this request is logged: the model's own ratio when it sets one, else the
    /// server's.
    pub fn sampled(&self, model_sample: Option<f64>) -> bool {
        let ratio = model_sample.unwrap_or(self.sample);
        ratio >= 1.0 || (ratio > 0.0 && uniform() < ratio)
    }

    /// What the mode keeps of the request body.
    pub fn keeps_request(&self) -> bool {
        self.mode != PayloadLogMode::Response
    }

    /// What the mode keeps of the response body.
    pub fn keeps_response(&self) -> bool {
        self.mode != PayloadLogMode::Request
    }

    /// The allow-listed headers of a request, values that are not text left out.
    pub fn copy_headers(&self, headers: &http::HeaderMap) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter_map(|name| {
                let value = headers.get(name.as_str())?.to_str().ok()?;
                Some((name.clone(), value.to_string()))
            })
            .collect()
    }

    /// The allow-listed entries of gRPC metadata (text values only).
    pub fn copy_metadata(&self, metadata: &tonic::metadata::MetadataMap) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter_map(|name| {
                let value = metadata.get(name.as_str())?.to_str().ok()?;
                Some((name.clone(), value.to_string()))
            })
            .collect()
    }

    /// Hands a record to the sink without waiting; a full buffer drops it (counted).
    pub fn submit(&self, mut record: Record) {
        if !self.keeps_request() {
            record.request = None;
        }
        if !self.keeps_response() {
            record.response = None;
        }
        let refused = match &self.sink {
            Sink::Files(handoff) => handoff.push(Box::new(record), 1).is_err(),
            Sink::Http(tx) => tx.try_send(Message::Record(Box::new(record))).is_err(),
        };
        if refused {
            dropped(
                1,
                "the payload log buffer is full: the sink is slower than the requests",
            );
        }
    }

    /// Waits (at most [`SHUTDOWN_FLUSH`]) until the sink has handled every record
    /// submitted so far.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, async {
            match &self.sink {
                Sink::Files(handoff) => handoff.flush(Flush::Async(done), false),
                Sink::Http(tx) => tx.send(Message::Flush(done)).await.ok()?,
            }
            wait.await.ok()
        })
        .await;
        if !matches!(flushed, Ok(Some(()))) {
            tracing::warn!("payload log not flushed within {SHUTDOWN_FLUSH:?} at shutdown");
        }
    }
}

impl Drop for PayloadLog {
    /// Ends the file writer's thread once it has written what is queued.
    fn drop(&mut self) {
        if let Sink::Files(handoff) = &self.sink {
            let (done, _) = oneshot::channel();
            handoff.flush(Flush::Async(done), true);
        }
    }
}

/// The model version that served a request, as the service noted it (see [`served`]).
#[derive(Debug, Clone, Default)]
pub struct Served {
    pub model: String,
    pub version: String,
    /// The model's own `payload_log_sample`.
    pub sample: Option<f64>,
}

tokio::task_local! {
    static SERVED: std::cell::RefCell<Option<Served>>;
}

/// Runs a request's handler, returning what it answered and the model version the service
/// noted for it through [`note_served`] (none when it failed before choosing one).
pub async fn served<T>(work: impl std::future::Future<Output = T>) -> (T, Option<Served>) {
    SERVED
        .scope(std::cell::RefCell::new(None), async move {
            let out = work.await;
            let served = SERVED.with(|s| s.borrow_mut().take());
            (out, served)
        })
        .await
}

/// Notes the model version serving the running request, when a payload log wants it
/// ([`served`] is around the handler); elsewhere it does nothing.
pub fn note_served(make: impl FnOnce() -> Served) {
    let _ = SERVED.try_with(|s| *s.borrow_mut() = Some(make()));
}

/// Counts `n` dropped records and logs why, at most once a minute.
fn dropped(n: u64, why: &str) {
    DROPPED.inc_by(n);
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!(
            reason = why,
            dropped_total = DROPPED.get(),
            "payload log records dropped (logged at most once a minute)"
        );
    }
}

/// An id for a record whose request carried none (gRPC ids are optional): a random
/// per-process prefix and a counter, as the HTTP port makes them.
pub fn fallback_id() -> String {
    static PREFIX: LazyLock<String> =
        LazyLock::new(|| format!("{:08x}", uniform().to_bits() >> 32));
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-g{n:x}", *PREFIX)
}

/// A uniform number in [0, 1) from a per-thread xorshift generator: sampling needs no
/// cryptographic quality, and no lock or syscall per request.
fn uniform() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// RFC 3339 UTC time with microseconds (`2024-05-01T12:00:00.123456Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339`], appended to `out`.
pub fn write_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_714_564_800_123_456);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00.123456Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn uniform_numbers_spread_over_the_unit_interval() {
        let n = 100_000;
        let below = (0..n).filter(|_| uniform() < 0.25).count();
        assert!((below as f64 / n as f64 - 0.25).abs() < 0.01, "{below}");
    }
}
