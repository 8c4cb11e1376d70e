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

#[cfg(test)]
mod tests {
    use super::*;

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
