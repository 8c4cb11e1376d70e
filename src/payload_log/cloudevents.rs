//! The `http(s)://URL` sink: each record becomes CloudEvents 1.0 in binary content mode,
//! as KServe's payload logger sends them, so a KServe or Knative Eventing sink takes them
//! alike: type `org.kubeflow.serving.inference.request` with the request body and
//! `…response` with the answer, `ce-id` the request id (shared by the pair), the model in
//! `ce-inferenceservicename` (KServe's name for it), `ce-modelname` and `ce-modelversion`.
//! Allow-listed request headers travel as headers of the POST. An `https://` sink is
//! verified against the system's CA certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` name
//! others, e.g. a cluster's private CA). Up to [`CONCURRENCY`]
//! records are delivered at once over kept-alive connections; a failed POST (connection
//! error, timeout, 429 or 5xx) is retried with doubling backoff, then dropped (counted).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{dropped, rfc3339, Message, Payload, PayloadLogError, Record, WRITTEN};

/// Why the client for an `https://` sink cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkTlsError {
    /// No CA certificate was found (`found`: the first reason the system store gave).
    #[error(
        "no CA certificate to verify the sink with ({found}); set SSL_CERT_FILE to a PEM bundle holding the sink's CA"
    )]
    NoCaCertificate { found: String },
    /// rustls refused its settings.
    #[error(transparent)]
    Settings(#[from] rustls::Error),
}

/// Why an event was not delivered.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// The POST could not be built (a header or the URL it refused).
    #[error("cannot build the POST: {0}")]
    Request(#[from] http::Error),
    /// The sink answered with a status other than success.
    #[error("answered {0}")]
    Answered(http::StatusCode),
    /// No answer came: connection refused, reset, TLS failure (with its causes).
    #[error("{}", with_causes(.0))]
    Transport(hyper_util::client::legacy::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Every try failed; the last one's reason.
    #[error("{last} ({tries} tries)")]
    GaveUp {
        last: Box<DeliveryError>,
        tries: u32,
    },
}

impl DeliveryError {
    /// Whether another try may succeed: not after a client error other than 429.
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Answered(status) => {
                !status.is_client_error() || *status == http::StatusCode::TOO_MANY_REQUESTS
            }
            DeliveryError::Request(_) | DeliveryError::GaveUp { .. } => false,
            DeliveryError::Transport(_) | DeliveryError::Timeout(_) => true,
        }
    }
}

/// Records delivered at once.
const CONCURRENCY: usize = 16;
/// Tries per event.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// One POST may take this long.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Starts the delivery task; an unusable URL, or an `https://` one with no CA certificate
/// to verify it by, is an error at start.
pub fn start(url: &str, rx: mpsc::Receiver<Message>) -> Result<(), PayloadLogError> {
    let uri: Uri = url.parse().map_err(|source| PayloadLogError::NotAUrl {
        url: url.to_string(),
        source,
    })?;
    let tls =
        tls_config(uri.scheme_str() == Some("https")).map_err(|source| PayloadLogError::Tls {
            url: url.to_string(),
            source,
        })?;
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    tokio::spawn(serve(client, uri, rx));
    Ok(())
}

/// The client's TLS settings: the system's CA certificates (those `SSL_CERT_FILE` or
/// `SSL_CERT_DIR` name when set). Required only when the sink is `https://`.
fn tls_config(https: bool) -> Result<rustls::ClientConfig, SinkTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if https && added == 0 {
        let found = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), ToString::to_string);
        return Err(SinkTlsError::NoCaCertificate { found });
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

async fn serve(client: HttpClient, uri: Uri, mut rx: mpsc::Receiver<Message>) {
    let mut inflight = JoinSet::new();
    while let Some(message) = rx.recv().await {
        match message {
            Message::Record(record) => {
                while inflight.len() >= CONCURRENCY {
                    inflight.join_next().await;
                }
                inflight.spawn(deliver(client.clone(), uri.clone(), record));
            }
            Message::Flush(done) => {
                while inflight.join_next().await.is_some() {}
                let _ = done.send(());
            }
        }
    }
}

/// Sends a record's events; a record counts as written when all of them were accepted.
async fn deliver(client: HttpClient, uri: Uri, record: Box<Record>) {
    let events = [
        (REQUEST_TYPE, record.request.as_ref()),
        (RESPONSE_TYPE, record.response.as_ref()),
    ];
    for (kind, payload) in events {
        let Some(payload) = payload else { continue };
        let headers = event_headers(&record, kind, payload);
        if let Err(e) = post(&client, &uri, headers, payload.body.clone()).await {
            dropped(1, &format!("the CloudEvents sink {uri} failed: {e}"));
            return;
        }
    }
    WRITTEN.inc();
}

/// The binary-mode CloudEvents headers of one event of `record`.
fn event_headers(record: &Record, kind: &'static str, payload: &Payload) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("ce-specversion", "1.0");
    put("ce-id", &record.id);
    put("ce-type", kind);
    put("ce-source", &format!("/mlpserve/models/{}", record.model));
    put("ce-time", &rfc3339(record.time));
    put("ce-inferenceservicename", &record.model);
    put("ce-modelname", &record.model);
    put("ce-modelversion", &record.version);
    if kind == RESPONSE_TYPE {
        put("ce-statuscode", &record.status.to_string());
    }
    put("content-type", &payload.content_type);
    for (name, value) in &record.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    h
}

/// An error and its causes ("client error (Connect): invalid peer certificate: ...").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// One event POST with retries.
async fn post(
    client: &HttpClient,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(), DeliveryError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let mut request = Request::post(uri.clone()).body(Full::new(body.clone()))?;
        *request.headers_mut() = headers.clone();
        let failed = match tokio::time::timeout(POST_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => return Ok(()),
            Ok(Ok(response)) => DeliveryError::Answered(response.status()),
            Ok(Err(e)) => DeliveryError::Transport(e),
            Err(_) => DeliveryError::Timeout(POST_TIMEOUT),
        };
        if !failed.retryable() {
            return Err(failed);
        }
        if attempt == ATTEMPTS {
            return Err(DeliveryError::GaveUp {
                last: Box::new(failed),
                tries: ATTEMPTS,
            });
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_other_than_429_are_not_retried() {
        let answered =
            |code: u16| DeliveryError::Answered(http::StatusCode::from_u16(code).unwrap());
        assert!(!answered(400).retryable());
        assert!(!answered(404).retryable());
        assert!(answered(429).retryable());
        assert!(answered(503).retryable());
        assert!(DeliveryError::Timeout(POST_TIMEOUT).retryable());
        let gave_up = DeliveryError::GaveUp {
            last: Box::new(answered(503)),
            tries: ATTEMPTS,
        };
        assert_eq!(
            gave_up.to_string(),
            "answered 503 Service Unavailable (4 tries)"
        );
    }
}
