//! What a traced request and a traced batch leave behind: plain ids, `Instant`s and
//! attributes, gathered along the request path and handed to the export thread whole,
//! which writes them as OTLP spans ([`super::otlp`]). Nothing here locks, and nothing is
//! built for a request the sampler left out. A request's record is one fixed-size
//! allocation: its attributes and child spans live inline ([`Attrs`], [`Children`]),
//! short strings (request ids, model names) inline in their value ([`ShortStr`]), and
//! its times are `Instant`s that the export thread turns into wall-clock times.

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
    /// A string short enough to keep inline (no allocation).
    Short(ShortStr),
    Int(i64),
}

impl Value {
    /// A string value: inline when short, else an owned copy.
    pub fn text(s: &str) -> Value {
        match ShortStr::new(s) {
            Some(short) => Value::Short(short),
            None => Value::Str(Cow::Owned(s.to_string())),
        }
    }
}

/// A string of at most [`ShortStr::CAPACITY`] bytes, held inline.
#[derive(Clone, Copy)]
pub struct ShortStr {
    len: u8,
    bytes: [u8; ShortStr::CAPACITY],
}

impl ShortStr {
    pub const CAPACITY: usize = 46;

    pub fn new(s: &str) -> Option<ShortStr> {
        let len = s.len();
        (len <= Self::CAPACITY).then(|| {
            let mut bytes = [0; Self::CAPACITY];
            bytes[..len].copy_from_slice(s.as_bytes());
            ShortStr {
                len: len as u8,
                bytes,
            }
        })
    }

    pub fn as_str(&self) -> &str {
        // Copied whole from a `&str`, so valid UTF-8 up to `len`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// Up to `N` items kept inline; more are not kept (a record holds a known, small set).
#[derive(Debug)]
pub struct Inline<T, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<T, const N: usize> Default for Inline<T, N> {
    fn default() -> Self {
        Inline {
            items: std::array::from_fn(|_| None),
            len: 0,
        }
    }
}

impl<T, const N: usize> Inline<T, N> {
    /// Keeps `item` when there is room.
    pub fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(item);
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..self.len].iter().flatten()
    }
}

impl<T, const N: usize> FromIterator<T> for Inline<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Inline::default();
        iter.into_iter().for_each(|i| out.push(i));
        out
    }
}

/// A span's attributes: the request span sets at most eight (transport, request id,
/// model, version, rows, status code, outcome), a batch run five.
pub type Attrs = Inline<Attr, 8>;
/// A request's child spans (decode and encode).
pub type Children = Inline<Child, 4>;

/// A span attribute.
#[derive(Debug, Clone)]
pub struct Attr {
    pub key: &'static str,
    pub value: Value,
}

/// A pair of clock readings taken together, to turn `Instant`s into wall-clock times
/// (spans carry Unix nanoseconds) without reading the wall clock for each: the export
/// thread takes one per export request, for spans at most a few hundred milliseconds old.
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
    pub start: Instant,
    pub end: Instant,
    pub attrs: Attrs,
    pub children: Children,
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
    pub formed: Instant,
    pub started: Instant,
    pub ended: Instant,
    pub attrs: Attrs,
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
    fn short_strings_stay_inline_and_long_ones_are_owned() {
        let id = "0123456789abcdef-0123456789abcdef-0123456789ab";
        assert_eq!(id.len(), ShortStr::CAPACITY);
        assert!(matches!(Value::text(id), Value::Short(s) if s.as_str() == id));
        assert!(matches!(Value::text("é"), Value::Short(s) if s.as_str() == "é"));
        let long = format!("{id}x");
        assert!(matches!(Value::text(&long), Value::Str(s) if s == long));
    }

    #[test]
    fn inline_lists_keep_what_fits() {
        let mut kept: Inline<u32, 2> = Inline::default();
        assert!(kept.is_empty());
        (1..=3).for_each(|i| kept.push(i));
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.iter().copied().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(trace_id()));
            assert_ne!(span_id(), [0; 8]);
        }
    }
}
