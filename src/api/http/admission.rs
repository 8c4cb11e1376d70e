//! Admission before expensive work: the server-wide budget of in-flight request body bytes
//! (`--max-inflight-bytes`) and the accepted content encodings. Runs before any body byte
//! is read or inflated. A declared `Content-Length` is taken from the budget up front; a
//! body without one (chunked, or inflated from gzip/deflate) is charged as its bytes stream
//! in. Over budget: 503 with `Retry-After` and a JSON error, never an OOM. The bytes are
//! given back once the response is ready. This module never decodes a body.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::Error;

/// Bytes every request together may hold; shared by all connections of one server.
pub struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Takes `n` bytes if they fit; all or nothing.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    fn refusal(&self) -> Error {
        Error::Unavailable(format!(
            "the server holds its limit of {} in-flight request body bytes (--max-inflight-bytes); retry later",
            self.limit
        ))
    }
}

/// What one request has taken from the budget; given back on drop.
struct Charge {
    budget: Arc<ByteBudget>,
    taken: AtomicUsize,
    /// Set when a streamed body ran over the budget, so the answer becomes a 503.
    exceeded: AtomicBool,
}

impl Charge {
    fn take(&self, n: usize) -> bool {
        if self.budget.try_take(n) {
            self.taken.fetch_add(n, Ordering::AcqRel);
            true
        } else {
            self.exceeded.store(true, Ordering::Release);
            false
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(*self.taken.get_mut());
    }
}

/// The body ran over the in-flight budget while streaming.
#[derive(Debug, thiserror::Error)]
#[error("over the in-flight request byte budget")]
struct OverBudget;

/// Middleware (inside request decompression, so inflated bytes are what is charged).
pub async fn admit(State(budget): State<Arc<ByteBudget>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let charge = Arc::new(Charge {
        budget: budget.clone(),
        taken: AtomicUsize::new(0),
        exceeded: AtomicBool::new(false),
    });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let req = match declared {
        Some(n) => {
            if !charge.take(n) {
                return budget.refusal().into_response();
            }
            req
        }
        None => {
            let (parts, body) = req.into_parts();
            let counter = charge.clone();
            let counted = body.into_data_stream().map(move |chunk| {
                let chunk = chunk?;
                if counter.take(chunk.len()) {
                    Ok(chunk)
                } else {
                    Err(axum::Error::new(OverBudget))
                }
            });
            Request::from_parts(parts, Body::from_stream(counted))
        }
    };
    let response = next.run(req).await;
    if charge.exceeded.load(Ordering::Acquire) {
        return budget.refusal().into_response();
    }
    response
}

/// Runs outside request decompression: only `gzip` and `deflate` bodies are inflated;
/// `identity` is the same as none (the header is dropped); anything else gets this 415
/// with a JSON error before the body is read.
pub fn encoding_refusal(req: &mut Request) -> Option<Response> {
    let value = req.headers().get(header::CONTENT_ENCODING)?;
    match value.as_bytes() {
        b"gzip" | b"deflate" => None,
        b"identity" => {
            req.headers_mut().remove(header::CONTENT_ENCODING);
            None
        }
        other => Some(
            Error::UnsupportedEncoding(format!(
                "Content-Encoding '{}' is not supported; send gzip, deflate or an unencoded body",
                String::from_utf8_lossy(other)
            ))
            .into_response(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_all_or_nothing_and_given_back() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5), "6 + 5 is over 10");
        assert!(budget.try_take(4));
        budget.give(10);
        assert!(budget.try_take(10));
    }
}
