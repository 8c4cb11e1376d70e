//! Log output that never fails the code that logs. The formatter writes each event to a
//! [`LogSink`]; a write that fails (stderr on a full device, a log pipe whose reader is
//! gone) drops that line, counts it in `mlpserve_log_lines_dropped_total` and reports
//! `Ok` to the formatter, so nothing panics and nothing retries. The first line that can
//! be written again is preceded by one line saying how many were dropped and why.
//!
//! tracing-subscriber's own fallback for a failing writer is `eprintln!`, which panics
//! when stderr fails; the sink never returns an error, so that path is never taken.
//!
//! Also the request id of the task that runs an inference ([`with_request_id`]), so a line
//! logged far from the transport (a failed batch on a worker thread) names its requests.

use std::future::Future;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use prometheus::IntCounter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines dropped since the process started (all sinks together).
pub static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "mlpserve_log_lines_dropped_total",
        "Log lines dropped because the log destination failed (full device, closed pipe).",
    )
    .expect("valid counter")
});

/// Lines dropped since the last line that was written, and the last error's text.
#[derive(Default)]
pub struct DropState {
    pending: AtomicU64,
    last_error: Mutex<String>,
}

impl DropState {
    /// Writes one formatted line to `dest`. A failure drops it and is counted; the first
    /// success after failures first writes the notice of the dropped lines (`json`: as a
    /// JSON object, like the other lines). Never fails.
    pub fn write_line(&self, dest: &mut impl Write, line: &[u8], json: bool) {
        let pending = self.pending.load(Ordering::Acquire);
        if pending > 0 {
            let reason = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let notice = notice(pending, &reason, json);
            if dest.write_all(notice.as_bytes()).is_ok() {
                // Lines dropped while the notice was written are reported next time.
                self.pending.fetch_sub(pending, Ordering::AcqRel);
            }
        }
        if let Err(e) = dest.write_all(line).and_then(|()| dest.flush()) {
            self.pending.fetch_add(1, Ordering::AcqRel);
            DROPPED.inc();
            *self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = e.to_string();
        }
    }
}

fn notice(dropped: u64, reason: &str, json: bool) -> String {
    let message =
        format!("{dropped} log lines were dropped: the log destination failed ({reason})");
    if json {
        let value = serde_json::json!({
            "level": "WARN",
            "message": message,
            "target": module_path!(),
            "dropped": dropped,
        });
        format!("{value}\n")
    } else {
        format!("WARN {}: {message}\n", module_path!())
    }
}

/// The process's stderr as a tracing writer that drops lines instead of failing.
pub struct LogSink {
    state: DropState,
    json: bool,
}

impl LogSink {
    /// A sink for stderr; `json` says how the dropped-lines notice is formatted.
    pub fn stderr(json: bool) -> LogSink {
        LogSink {
            state: DropState::default(),
            json,
        }
    }
}

/// One event's writer: the formatter writes the whole line in one `write_all`.
pub struct SinkWriter<'a> {
    sink: &'a LogSink,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut stderr = io::stderr().lock();
        self.sink.state.write_line(&mut stderr, buf, self.sink.json);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> SinkWriter<'a> {
        SinkWriter { sink: self }
    }
}

tokio::task_local! {
    /// The id of the request the running task serves (see [`with_request_id`]).
    static REQUEST_ID: Arc<str>;
}

/// Runs `work` (a transport's handling of one inference request) with `id` as the
/// request's id: the batcher reads it ([`request_id`]) into the jobs it queues, so the
/// worker that runs them logs a failure with the ids of every request in the batch.
pub async fn with_request_id<T>(id: Arc<str>, work: impl Future<Output = T>) -> T {
    REQUEST_ID.scope(id, work).await
}

/// The id of the request the running task serves, if a transport gave it one.
pub fn request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Writes `message` and a newline to stderr, ignoring a failure (unlike `eprintln!`, which
/// panics when stderr cannot be written).
pub fn print_stderr(message: &str) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that fails while `broken` is set and records what it accepted.
    struct Flaky {
        broken: bool,
        written: Vec<u8>,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.broken {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn failed_lines_are_counted_and_reported_once_writing_works_again() {
        let state = DropState::default();
        let mut dest = Flaky {
            broken: true,
            written: Vec::new(),
        };
        let before = DROPPED.get();
        state.write_line(&mut dest, b"one\n", false);
        state.write_line(&mut dest, b"two\n", false);
        assert!(DROPPED.get() >= before + 2);
        assert!(dest.written.is_empty());

        dest.broken = false;
        state.write_line(&mut dest, b"three\n", false);
        state.write_line(&mut dest, b"four\n", false);
        let text = String::from_utf8(dest.written).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("2 log lines were dropped") && lines[0].contains("os error 28"),
            "{text}"
        );
        assert_eq!(&lines[1..], ["three", "four"]);
    }

    #[test]
    fn the_json_notice_is_one_json_object() {
        let state = DropState::default();
        let mut dest = Flaky {
            broken: true,
            written: Vec::new(),
        };
        state.write_line(&mut dest, b"{}\n", true);
        dest.broken = false;
        state.write_line(&mut dest, b"{}\n", true);
        let text = String::from_utf8(dest.written).expect("utf-8");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["dropped"], 1);
        assert_eq!(first["level"], "WARN");
    }
}
