//! Whether a version's workers are sound. A worker thread that panics outside the guarded
//! ORT run (a bug in stacking, splitting, answering, logging) marks its version failed
//! with the reason: readiness and the repository index report it UNAVAILABLE. The worker
//! answers the jobs it held, starts afresh on the same session, warms it up, and once
//! that run succeeds the version is READY again (the index keeps the reason of the last
//! panic). Readiness must come back without traffic: with strict readiness one failed
//! version makes the whole server unready, load balancers stop sending requests, and a
//! version waiting for a successful request would never see one.
//!
//! `MLPSERVE_TEST_WORKER_PANIC_ROWS=N` (tests only, read from the server's environment,
//! off when unset): a worker panics, outside the guarded run, on every batch of exactly
//! N rows. A client cannot enable it; it exists so tests can kill a worker mid-batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

/// The test trigger (see the module docs); `None` unless the variable holds a number.
pub static TEST_PANIC_ROWS: LazyLock<Option<usize>> = LazyLock::new(|| {
    std::env::var("MLPSERVE_TEST_WORKER_PANIC_ROWS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
});

/// A version's worker health, shared by its workers, its batcher and the repository.
#[derive(Default)]
pub struct Health {
    /// Fast path for the workers: true while `failure` is set.
    failed: AtomicBool,
    /// Why the version is unavailable now.
    failure: Mutex<Option<String>>,
    /// The reason of the last failure the version recovered from.
    recovered: Mutex<Option<String>>,
}

impl Health {
    /// Why the version cannot serve now; `None` when its workers are sound.
    pub fn failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The reason of the last failure recovered from, for the index of a READY version.
    pub fn recovered_from(&self) -> Option<String> {
        self.recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Marks the version failed with `reason` (replacing an earlier reason).
    pub fn fail(&self, reason: String) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.failed.store(true, Ordering::Release);
    }

    /// Marks the version sound again; returns the reason it had failed with, if it had.
    pub fn recover(&self) -> Option<String> {
        if !self.failed.swap(false, Ordering::AcqRel) {
            return None;
        }
        let reason = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        *self
            .recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason.clone();
        reason
    }
}

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_then_recover_keeps_the_reason() {
        let health = Health::default();
        assert_eq!(health.failure(), None);
        health.fail("worker 0 panicked: boom".to_string());
        assert_eq!(health.failure().as_deref(), Some("worker 0 panicked: boom"));
        assert_eq!(health.recover().as_deref(), Some("worker 0 panicked: boom"));
        assert_eq!(health.failure(), None);
        assert_eq!(
            health.recovered_from().as_deref(),
            Some("worker 0 panicked: boom")
        );
        assert_eq!(health.recover(), None);
    }
}
