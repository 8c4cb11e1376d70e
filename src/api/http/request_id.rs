//! Request ids for requests that arrive without one: a random per-process prefix plus a
//! counter. Unique across restarts and replicas, and no random-number syscall per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;

use super::REQUEST_ID;

/// Makes ids like `3f2a9c1e-1b`.
#[derive(Clone)]
pub struct CounterRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl CounterRequestId {
    pub fn new() -> CounterRequestId {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 4];
        // Should the system source fail, the prefix is zeros: ids stay unique in this
        // process, only not across replicas.
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        let prefix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        CounterRequestId {
            prefix: prefix.into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl Default for CounterRequestId {
    fn default() -> Self {
        CounterRequestId::new()
    }
}

impl CounterRequestId {
    /// The next id.
    pub fn make(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // The prefix is hex and the counter too: always a valid header value.
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .unwrap_or(HeaderValue::from_static("unnamed"))
    }
}

/// Longest client request id kept; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client id is kept only when short and made of `[A-Za-z0-9._:-]`, so logs and the
/// echoed header never carry what a client smuggles in.
pub fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Keeps the client's id when it is one acceptable value, else replaces it with a
/// generated one, so every layer and handler inside sees one id; returns it for the answer.
pub fn assign(ids: &CounterRequestId, req: &mut Request) -> HeaderValue {
    let mut sent = req.headers().get_all(REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(one), None) if is_acceptable(one.as_bytes()) => one.clone(),
        _ => {
            let id = ids.make();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    }
}

/// Puts the request's id on its answer, unless a handler set one already.
pub fn echo(response: &mut Response, id: HeaderValue) {
    response.headers_mut().entry(REQUEST_ID).or_insert(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(is_acceptable(b"req-1.a_b:c"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(&[b'a'; 129]));
        assert!(is_acceptable(&[b'a'; 128]));
        assert!(!is_acceptable("caf\u{e9}".as_bytes()));
        assert!(!is_acceptable(b"a b"));
        assert!(!is_acceptable(b"a\"b"));
    }

    #[test]
    fn ids_are_distinct_and_share_the_process_prefix() {
        let ids = CounterRequestId::new();
        let (a, b) = (ids.make(), ids.make());
        assert_ne!(a, b);
        let (a, b) = (a.to_str().unwrap_or(""), b.to_str().unwrap_or(""));
        assert_eq!(a.split('-').next(), b.split('-').next());
    }
}
