//! Admission before expensive work: the server-wide budget of in-flight request body bytes
//! (`--max-inflight-bytes`) and the accepted content encodings. Runs before any body byte
//! is read or inflated. A declared `Content-Length` is taken from the budget up front; a
//! body without one (chunked, or inflated from gzip/deflate) is charged as its bytes stream
//! in. Over budget: 413 when the body alone is larger than the whole budget (it can never
//! fit), else 503 with `Retry-After`; a JSON error either way, never an OOM. The handlers
//! add what decoding and answering build to the same charge (see [`Hold`]); the charge
//! lasts until the answer's body is written. The budget is the service's, shared with
//! gRPC. This module never decodes a body.
//!
//! [`Hold`]: crate::service::budget::Hold

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::error::Error;
use crate::service::budget::{ByteBudget, Charged};

/// The body ran over the in-flight budget while streaming.
#[derive(Debug, thiserror::Error)]
#[error("over the in-flight request byte budget")]
struct OverBudget;

/// Middleware (inside request decompression, so inflated bytes are what is charged).
pub async fn admit(State(budget): State<Arc<ByteBudget>>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let charge = budget.charge("http");
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut req = match declared {
        Some(n) => {
            if let Err(refusal) = charge.take(n) {
                let refused = budget.error(refusal).into_response();
                drain(req, n).await;
                return refused;
            }
            req
        }
        None => {
            let (parts, body) = req.into_parts();
            let counter = charge.clone();
            let counted = body.into_data_stream().map(move |chunk| {
                let chunk = chunk?;
                if counter.take(chunk.len()).is_ok() {
                    Ok(chunk)
                } else {
                    Err(axum::Error::new(OverBudget))
                }
            });
            Request::from_parts(parts, Body::from_stream(counted))
        }
    };
    // Handlers charge what decoding adds to the same request.
    req.extensions_mut().insert(charge.clone());
    let response = next.run(req).await;
    if let Some(refusal) = charge.refused() {
        return budget.error(refusal).into_response();
    }
    // The answer's bytes stay charged until they are written.
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Charged::new(body, charge)))
}

/// Most body bytes read and dropped after a refusal, and for how long at most.
const DRAIN_LIMIT: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops the body of a request refused before it was read (`declared` bytes,
/// at most [`DRAIN_LIMIT`], for at most [`DRAIN_TIME`]). A client that writes its whole
/// body before reading (Python's http.client) otherwise finds the connection closed under
/// its writes and sees a broken pipe or a reset instead of the refusal. Holds no memory:
/// each chunk is dropped as it comes. Not for `Expect: 100-continue`: such a client sends
/// nothing until told to, and the refusal tells it not to.
async fn drain(req: Request, declared: usize) {
    let expects = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects || declared > DRAIN_LIMIT {
        return;
    }
    let mut body = req.into_body().into_data_stream();
    let read_all = async { while let Some(Ok(_)) = body.next().await {} };
    let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
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
