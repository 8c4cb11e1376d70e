//! The load generator's gRPC client (`--api grpc`): one HTTP/2 connection per client,
//! spoken with the `h2` crate directly and a message encoded once before the load starts,
//! as the HTTP/1.1 client sends prebuilt bytes, so the client's own cost stays small next
//! to the server's. Only the parts of gRPC a unary call needs: the length-prefixed message
//! out, the response body drained, `grpc-status` checked.

use bytes::Bytes;
use h2::client::SendRequest;

use crate::load::Failure;

/// The service method every call goes to (KServe V2 / Triton `ModelInfer`).
pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// One client's HTTP/2 connection.
pub struct Channel {
    send: SendRequest<Bytes>,
    uri: http::Uri,
}

/// Opens an HTTP/2 connection to `addr` for calls to `path`; its frames are driven by a
/// task of its own on the current runtime.
pub async fn connect(addr: &str, path: &str) -> Result<Channel, Failure> {
    let tcp = crate::load::connect_tcp(addr).await?;
    let uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| Failure::fatal(format!("bad gRPC address {addr}: {e}")))?;
    let (send, connection) = h2::client::handshake(tcp)
        .await
        .map_err(|e| Failure::fatal(format!("HTTP/2 handshake with {addr} failed: {e}")))?;
    tokio::spawn(async move {
        // Ends with the connection; a broken one shows up as the next call's error.
        let _ = connection.await;
    });
    Ok(Channel { send, uri })
}

/// One unary call with the framed `message`; `Ok` when the server answered with
/// `grpc-status` 0.
pub async fn call(channel: &mut Channel, message: &Bytes) -> Result<(), Failure> {
    let h2 = |e: h2::Error| Failure::fatal(format!("HTTP/2 error: {e}"));
    let request = http::Request::post(channel.uri.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| Failure::fatal(format!("cannot build the request: {e}")))?;
    let mut send = channel.send.clone().ready().await.map_err(h2)?;
    let (response, mut stream) = send.send_request(request, false).map_err(h2)?;
    stream.send_data(message.clone(), true).map_err(h2)?;
    let response = response.await.map_err(h2)?;
    let status = response.status();
    // A trailers-only answer (every gRPC error) carries its status in the headers.
    let mut grpc = GrpcStatus::from_headers(response.headers());
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2)?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    if let Some(trailers) = body.trailers().await.map_err(h2)? {
        grpc = grpc.or(GrpcStatus::from_headers(&trailers));
    }
    match grpc {
        _ if !status.is_success() => Err(Failure::fatal(format!("HTTP/2 status {status}"))),
        Some(GrpcStatus { code: 0, .. }) => Ok(()),
        Some(GrpcStatus { code, message }) => {
            Err(Failure::kept(format!("gRPC status {code}: {message}")))
        }
        None => Err(Failure::fatal("response without grpc-status".to_string())),
    }
}

/// A call's `grpc-status` and `grpc-message`.
#[derive(Debug, PartialEq)]
struct GrpcStatus {
    code: u32,
    message: String,
}

impl GrpcStatus {
    fn from_headers(headers: &http::HeaderMap) -> Option<GrpcStatus> {
        let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        // Percent-encoded on the wire (gRPC over HTTP/2).
        let message = headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .map(|m| percent_encoding::percent_decode_str(m).decode_utf8_lossy())
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Some(GrpcStatus { code, message })
    }
}

/// `message` as a gRPC length-prefixed message (uncompressed flag, big-endian length).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_frames() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(GrpcStatus::from_headers(&headers), None);
        headers.insert("grpc-status", "3".parse().unwrap());
        headers.insert("grpc-message", "bad%20shape".parse().unwrap());
        assert_eq!(
            GrpcStatus::from_headers(&headers),
            Some(GrpcStatus {
                code: 3,
                message: "bad shape".into()
            })
        );
        assert_eq!(frame(b"ab"), vec![0, 0, 0, 0, 2, b'a', b'b']);
    }
}
