//! Payload logging of the HTTP inference routes: runs the handler, then (when the request
//! is sampled) hands the body as sent and the answer as written to the payload log. The
//! log never waits and never changes the answer.

use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use super::REQUEST_ID;
use crate::config::OverloadStatus;
use crate::error::{Error, Result};
use crate::payload_log::{self, Payload, PayloadLog, Record};

/// What a record keeps of the request's headers, taken before the handler owns them
/// (shared values, not a copy of the map).
pub struct Sent {
    content_type: Option<HeaderValue>,
    id: Option<HeaderValue>,
    listed: Vec<(String, String)>,
    /// Binary tensors follow the JSON (Triton's binary extension).
    binary: bool,
}

impl Sent {
    pub fn of(log: &PayloadLog, headers: &HeaderMap) -> Sent {
        Sent {
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            id: headers.get(REQUEST_ID).cloned(),
            listed: log.copy_headers(headers),
            binary: headers.contains_key("inference-header-content-length"),
        }
    }
}

/// Runs `handler` and logs its request and answer when sampled. `model` names the model
/// a failed request asked for when the service noted none (the path's, over V2); the
/// status recorded is the one the client gets (`overload`: `--overload-status`).
pub async fn logged(
    log: &PayloadLog,
    overload: OverloadStatus,
    model: Option<&str>,
    sent: Sent,
    body: Option<Bytes>,
    handler: impl std::future::Future<Output = Result<Response>>,
) -> Result<Response> {
    let started = Instant::now();
    let time = SystemTime::now();
    let (result, served) = payload_log::served(handler).await;
    let served = served.unwrap_or_else(|| payload_log::Served {
        model: model.unwrap_or_default().to_string(),
        ..Default::default()
    });
    if !log.sampled(served.sample) {
        return result;
    }
    let content_type = |v: Option<&HeaderValue>| {
        Payload::content_type(
            v.and_then(|v| v.to_str().ok())
                .unwrap_or("application/json"),
        )
    };
    // A request answered with success was parsed whole, so a JSON body is one document.
    let parsed = !sent.binary && matches!(&result, Ok(answer) if answer.status().is_success());
    let request = body.filter(|_| log.keeps_request()).map(|body| Payload {
        content_type: content_type(sent.content_type.as_ref()),
        body: own(body),
        whole_json: parsed,
    });
    let (result, status, response) = match result {
        Ok(answer) => {
            let (parts, body) = answer.into_parts();
            // The handlers answer with whole bodies; collecting one takes no waiting.
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            // The handlers write their JSON answers whole.
            let payload = log.keeps_response().then(|| Payload {
                content_type: content_type(parts.headers.get(header::CONTENT_TYPE)),
                body: bytes.clone(),
                whole_json: true,
            });
            let status = parts.status.as_u16();
            (
                Ok(Response::from_parts(parts, Body::from(bytes))),
                status,
                payload,
            )
        }
        Err(e) => {
            let status = super::answered_status(&e, overload).as_u16();
            let payload = log.keeps_response().then(|| error_payload(&e));
            (Err(e), status, payload)
        }
    };
    log.submit(Record {
        time,
        id: sent
            .id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        model: served.model,
        version: served.version,
        status,
        latency: started.elapsed(),
        headers: sent.listed,
        request,
        response,
    });
    result
}

/// Bodies up to this size are copied for the record rather than shared.
const COPY_BELOW: usize = 64 * 1024;

/// A body the record can keep without keeping the connection's read buffer. A small body
/// is a slice of the buffer hyper reads the connection into: while the record holds it
/// (until the writer gets to it), hyper cannot reuse that buffer and allocates a fresh one
/// for every request on the connection, so memory churns at the request rate (page faults,
/// the kernel compacting memory for them). A copy of a few hundred bytes costs far less.
/// Larger bodies came in several reads and were gathered into a buffer of their own.
fn own(body: Bytes) -> Bytes {
    if body.len() < COPY_BELOW {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

/// An error answer as the client got it.
fn error_payload(e: &Error) -> Payload {
    Payload {
        content_type: "application/json".into(),
        body: Bytes::from(serde_json::json!({ "error": e.client_message() }).to_string()),
        whole_json: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_are_copied_and_large_ones_shared() {
        // A body as hyper hands it over: a slice of the connection's read buffer.
        let read_buffer = Bytes::from(vec![b'x'; 8192]);
        let body = read_buffer.slice(100..342);
        let kept = own(body.clone());
        assert_eq!(kept, body);
        assert_ne!(kept.as_ptr(), body.as_ptr(), "a small body is copied");
        let large = Bytes::from(vec![b'y'; COPY_BELOW]);
        assert_eq!(own(large.clone()).as_ptr(), large.as_ptr());
    }
}
