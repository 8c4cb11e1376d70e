//! `otlp-sink`: a lean live OTLP/gRPC trace receiver for the overhead benchmark
//! (`scripts/bench-observe.sh`). It serves `TraceService/Export` over plain HTTP/2 as any
//! collector does, answers every export with an empty `ExportTraceServiceResponse`, and
//! counts exports, bytes and spans; it keeps nothing. Spans are counted by walking the
//! message's outer fields (resource spans, scope spans, spans) without decoding a span:
//! the receiver shares the server's cores in the benchmark, and a receiver that parses
//! every span (the Python one it replaces cost about as much CPU per request as the server
//! spent making the spans) measures itself rather than the server. The tests' receivers
//! decode and check every span.
//!
//! Prints its port on the first line; on SIGTERM or SIGINT prints
//! `otlp-sink: N spans in M exports (B bytes)` and exits.
//!
//! ```text
//! otlp-sink [PORT]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response};

/// The one method served.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// What arrived so far.
#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    bytes: AtomicU64,
    spans: AtomicU64,
}

fn main() -> std::process::ExitCode {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            eprintln!("otlp-sink: the port must be a number: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // One thread: the receiver's CPU is part of what the benchmark measures.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otlp-sink: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otlp-sink: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Accepts connections until a stop signal, then prints the counts.
async fn serve(port: u16) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    println!("{port}");
    let counts = Arc::new(Counts::default());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                tokio::spawn(connection(socket, counts.clone()));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    println!(
        "otlp-sink: {} spans in {} exports ({} bytes)",
        counts.spans.load(Ordering::Relaxed),
        counts.exports.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Serves the calls of one HTTP/2 connection.
async fn connection(socket: tokio::net::TcpStream, counts: Arc<Counts>) {
    let Ok(mut conn) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, respond))) = conn.accept().await {
        tokio::spawn(call(request, respond, counts.clone()));
    }
}

/// One gRPC call: reads the whole request, counts it and answers.
async fn call(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    counts: Arc<Counts>,
) {
    let known = request.uri().path() == EXPORT_PATH;
    let mut body = request.into_body();
    let mut message = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        if known {
            message.extend_from_slice(&chunk);
        }
    }
    let status = if !known {
        "12" // UNIMPLEMENTED
    } else if let Some(spans) = grpc_message(&message).and_then(export_spans) {
        counts.exports.fetch_add(1, Ordering::Relaxed);
        counts
            .bytes
            .fetch_add(message.len() as u64, Ordering::Relaxed);
        counts.spans.fetch_add(spans, Ordering::Relaxed);
        "0"
    } else {
        "3" // INVALID_ARGUMENT: not one uncompressed protobuf message
    };
    let head = Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a static response head");
    let Ok(mut stream) = respond.send_response(head, false) else {
        return;
    };
    if status == "0" {
        // One message, uncompressed, of length zero: the empty ExportTraceServiceResponse.
        let _ = stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    let _ = stream.send_trailers(trailers);
}

/// The one uncompressed message of a gRPC request body (flag byte, big-endian length).
fn grpc_message(body: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = body.split_first()?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    (flag == 0 && rest.len() == 4 + len).then(|| &rest[4..])
}

/// Spans in an `ExportTraceServiceRequest`: field 1 (resource_spans) → its field 2
/// (scope_spans) → its field 2 (spans), counted without reading a span.
fn export_spans(message: &[u8]) -> Option<u64> {
    let mut spans = 0;
    for resource in fields(message, 1) {
        for scope in fields(resource?, 2) {
            for span in fields(scope?, 2) {
                span?;
                spans += 1;
            }
        }
    }
    Some(spans)
}

/// The length-delimited fields numbered `number` of a protobuf message, other fields
/// skipped; `None` marks a malformed message (and ends the walk).
fn fields(mut buf: &[u8], number: u64) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || loop {
        if buf.is_empty() {
            return None;
        }
        let Some(key) = varint(&mut buf) else {
            buf = &[];
            return Some(None);
        };
        let value = match key & 7 {
            0 => varint(&mut buf).map(|_| &[][..]),
            1 => take(&mut buf, 8),
            2 => varint(&mut buf).and_then(|len| take(&mut buf, len as usize)),
            5 => take(&mut buf, 4),
            _ => None,
        };
        match value {
            None => {
                buf = &[];
                return Some(None);
            }
            Some(v) if key >> 3 == number && key & 7 == 2 => return Some(Some(v)),
            Some(_) => {}
        }
    })
}

/// A base-128 varint off the front of `buf`.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}

/// `n` bytes off the front of `buf`.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field.
    fn field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn spans_are_counted_through_resource_and_scope() {
        let span = [field(1, &[7; 16]), vec![0x30, 2]].concat(); // trace_id, kind = 2
        let scope = [
            field(1, b"scope"),
            field(2, &span),
            field(2, &span),
            field(2, &span),
        ]
        .concat();
        let resource = [field(1, b"resource"), field(2, &scope)].concat();
        let export = [field(1, &resource), field(1, &resource)].concat();
        assert_eq!(export_spans(&export), Some(6));
        assert_eq!(export_spans(&export[..export.len() - 1]), None);
        let mut framed = vec![0, 0, 0, 0, export.len() as u8];
        framed.extend_from_slice(&export);
        assert_eq!(grpc_message(&framed), Some(&export[..]));
        framed[0] = 1;
        assert_eq!(grpc_message(&framed), None);
    }
}
