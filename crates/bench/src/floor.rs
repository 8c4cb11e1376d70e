//! `--floor`: the transport floor. A bare axum server on the server's own runtime that
//! decodes each V2 body with the HTTP handler's decoder (`api::http::v2_codec::decode`)
//! and answers with a canned copy of the real server's answer to the same request: no
//! routing layers, batching, ORT or encoding. The same levels are run against it, so the
//! report can say what fraction of "HTTP + JSON decode alone" the server reaches.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::payload::Payload;
use crate::shared::v2_codec;
use crate::LevelReport;

/// The real server's answer to the benchmark request, replayed by the floor server.
#[derive(Clone)]
pub struct Canned {
    body: Bytes,
    /// `inference-header-content-length`, when the answer carries binary outputs.
    header_length: Option<HeaderValue>,
}

/// Asks the real server once for its answer to `payload`.
pub async fn capture(
    http: &reqwest::Client,
    base: &str,
    payload: &Payload,
) -> Result<Canned, String> {
    let mut request = http
        .post(format!("{base}{}", payload.path))
        .header("content-type", payload.content_type)
        .body(payload.body.clone());
    if let Some(len) = payload.json_len {
        request = request.header(v2_codec::HEADER_LENGTH, len);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("floor: cannot get the server's answer: {e}"))?;
    let header_length = response.headers().get(v2_codec::HEADER_LENGTH).cloned();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("floor: cannot read the server's answer: {e}"))?;
    Ok(Canned {
        body,
        header_length,
    })
}

/// Binds 127.0.0.1:0 and serves the floor on `runtime` (the server's runtime, so both
/// get the same threads). Returns the address; the server lives until the process ends.
pub fn start(runtime: &tokio::runtime::Handle, canned: Canned) -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("floor: cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("floor: {e}"))?
        .to_string();
    let canned = Arc::new(canned);
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let canned = canned.clone();
        async move { answer(&canned, &headers, &body) }
    });
    runtime.spawn(async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("floor server stopped: {e}");
                }
            }
            Err(e) => eprintln!("floor server cannot start: {e}"),
        }
    });
    Ok(addr)
}

fn answer(canned: &Canned, headers: &HeaderMap, body: &[u8]) -> Response {
    match v2_codec::decode(headers, body) {
        Ok(request) => {
            drop(std::hint::black_box(request));
            let mut response = canned.body.clone().into_response();
            let h = response.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            if let Some(len) = &canned.header_length {
                h.insert(v2_codec::HEADER_LENGTH, len.clone());
            }
            response
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// One line per level: the floor's req/s and p50 next to the server's, and the ratio.
pub fn print(server: &[LevelReport], floor: &[LevelReport]) {
    println!();
    println!("transport floor (axum + the V2 decoder, canned answer; same clients):");
    println!(
        "{:>7} {:>11} {:>12} {:>13} {:>14} {:>15} {:>17}",
        "clients",
        "floor req/s",
        "floor p50 ms",
        "server req/s",
        "server ÷ floor",
        "p50 − floor µs",
        "CPU µs/req f / s"
    );
    for (s, f) in server.iter().zip(floor) {
        let rps = LevelReport::requests_per_s;
        let p50 = |l: &LevelReport| l.result.latency.value_at_quantile(0.5) as f64 / 1e3;
        // Every server thread's CPU per request: what the transport alone costs at this
        // load next to what the whole server costs.
        let cpu = |l: &LevelReport| {
            crate::report::server_cpu_per_request_us(l).map_or("-".into(), |c| format!("{c:.1}"))
        };
        println!(
            "{:>7} {:>11.0} {:>12.3} {:>13.0} {:>14.2} {:>15.0} {:>17}",
            f.concurrency,
            rps(f),
            p50(f) / 1e3,
            rps(s),
            rps(s) / rps(f).max(1e-9),
            p50(s) - p50(f),
            format!("{} / {}", cpu(f), cpu(s))
        );
    }
}
