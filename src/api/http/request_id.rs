//! Request ids for requests that arrive without one: a random per-process prefix plus a
//! counter. Unique across restarts and replicas, and no random-number syscall per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Makes ids like `3f2a9c1e-1b`.
#[derive(Clone)]
pub struct CounterRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl CounterRequestId {
    pub fn new() -> CounterRequestId {
        let prefix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
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

impl MakeRequestId for CounterRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
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

/// Middleware (outside `SetRequestIdLayer`): drops an unacceptable client id, so a
/// generated one takes its place.
pub async fn sanitize(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let keep = req
        .headers()
        .get_all(super::REQUEST_ID)
        .iter()
        .map(|v| is_acceptable(v.as_bytes()))
        .collect::<Vec<_>>();
    if keep != [true] && !keep.is_empty() {
        req.headers_mut().remove(super::REQUEST_ID);
    }
    next.run(req).await
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
        let mut make = CounterRequestId::new();
        let req = Request::new(());
        let a = make.make_request_id(&req).expect("id");
        let b = make.make_request_id(&req).expect("id");
        assert_ne!(a.header_value(), b.header_value());
        let (a, b) = (
            a.header_value().to_str().unwrap_or(""),
            b.header_value().to_str().unwrap_or(""),
        );
        assert_eq!(a.split('-').next(), b.split('-').next());
    }
}
