//! What a traced request and a traced batch leave behind: plain ids, `Instant`s and
//! attributes, gathered along the request path and handed to the export thread whole,
//! which writes them as OTLP spans ([`super::otlp`]). Nothing here locks, and nothing is
//! built for a request the sampler left out.

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Instant, SystemTime};

/// A span another span points at (parent or link): its trace and its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
}

/// A span attribute.
#[derive(Debug, Clone)]
pub struct Attr {
    pub key: &'static str,
    pub value: Value,
}

/// A pair of clock readings taken together, to turn `Instant`s into wall-clock times
/// (spans carry Unix nanoseconds) without reading the wall clock for each.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub instant: Instant,
    pub unix_nanos: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock {
            instant: Instant::now(),
            unix_nanos,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not finished (never exported so).
    Unset,
    Ok,
    /// The message the client got.
    Error(String),
}

/// A finished stage of a request (decode, encode).
#[derive(Debug, Clone)]
pub struct Child {
    pub name: &'static str,
    pub start: Instant,
    pub end: Instant,
}

/// One traced request: its server span and children.
#[derive(Debug)]
pub struct Request {
    pub own: SpanRef,
    /// The caller's span (from `traceparent`), if any.
    pub parent: Option<[u8; 8]>,
    pub trace_state: Option<Box<str>>,
    pub clock: Clock,
    pub start: Instant,
    pub end: Instant,
    pub attrs: Vec<Attr>,
    pub children: Vec<Child>,
    pub outcome: Outcome,
}

/// A traced request's job in a batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchJob {
    pub span: SpanRef,
    pub enqueued: Instant,
}

/// One ORT run of a batch that served at least one traced request.
#[derive(Debug)]
pub struct Batch {
    pub clock: Clock,
    pub formed: Instant,
    pub started: Instant,
    pub ended: Instant,
    pub attrs: Vec<Attr>,
    /// The traced jobs; the first one's request is the run's parent.
    pub jobs: Vec<BatchJob>,
}

/// Random 64-bit numbers from a per-thread generator (wyrand): trace and span ids need
/// uniqueness, not secrecy, and no lock or system call per id.
pub fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            h.finish()
        });
    }
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// A new span id (never all zero, which means "none").
pub fn span_id() -> [u8; 8] {
    loop {
        let v = random_u64();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

/// A new trace id (never all zero).
pub fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&span_id());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(trace_id()));
            assert_ne!(span_id(), [0; 8]);
        }
    }
}
