//! The closed-loop load generator: N clients, each on its own keep-alive connection, send
//! the same pre-serialised request back to back for a warm-up and then a measured window.
//! It speaks just enough HTTP/1.1 (one request in flight per connection, responses framed
//! by `Content-Length`) to keep its own CPU cost far below the server's on a shared
//! machine. Latency is client-side: from writing the request to reading the last byte.
//! With `--api grpc` each client holds an HTTP/2 connection instead (see `grpc`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::grpc;
use super::payload::{Api, Payload};

/// One load level.
#[derive(Debug, Clone)]
pub struct LevelConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a level measured: requests completed inside the measured window.
#[derive(Clone)]
pub struct LevelResult {
    pub ok: u64,
    pub errors: u64,
    /// The first error seen (status line and body, or the I/O error), to print.
    pub first_error: Option<String>,
    /// Latency of successful requests, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Where that latency went (ns), from the server's `x-queue-time-us` and
    /// `x-compute-time-us` headers: batch queue, ORT worker (assemble, run, split), rest.
    pub split: Split,
    pub window: Duration,
}

/// A request as the clients send it, built once.
pub enum Request {
    /// The whole HTTP/1.1 request, head and body.
    Http1(bytes::Bytes),
    /// A gRPC call: method path and length-prefixed message.
    Grpc { path: String, message: bytes::Bytes },
}

impl Request {
    /// `payload` for a server at `addr` (`host:port`).
    pub fn new(payload: &Payload, addr: &str) -> Request {
        match payload.api {
            Api::Grpc => Request::Grpc {
                path: payload.path.clone(),
                message: bytes::Bytes::from(payload.body.clone()),
            },
            Api::V2 | Api::Predict => Request::Http1(request_bytes(payload, addr).into()),
        }
    }
}

/// An open connection of the kind its request needs, holding the request it sends (the
/// bytes are shared, not copied).
enum Connection {
    Http1 {
        stream: TcpStream,
        request: bytes::Bytes,
    },
    Grpc {
        channel: grpc::Channel,
        message: bytes::Bytes,
    },
}

impl Connection {
    async fn open(addr: &str, request: &Request) -> Result<Connection, Failure> {
        Ok(match request {
            Request::Http1(bytes) => Connection::Http1 {
                stream: connect_tcp(addr).await?,
                request: bytes.clone(),
            },
            Request::Grpc { path, message } => Connection::Grpc {
                channel: grpc::connect(addr, path).await?,
                message: message.clone(),
            },
        })
    }

    /// Its request and the whole response; the server's timing headers where it sent them.
    async fn exchange(&mut self, buf: &mut Vec<u8>) -> Result<Option<ServerTimes>, Failure> {
        match self {
            Connection::Http1 { stream, request } => exchange(stream, request, buf).await,
            Connection::Grpc { channel, message } => {
                grpc::call(channel, message).await.map(|()| None)
            }
        }
    }
}

/// The request as bytes on the wire, built once.
pub fn request_bytes(payload: &Payload, host: &str) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
        payload.path,
        payload.content_type,
        payload.body.len()
    );
    if let Some(len) = payload.json_len {
        head.push_str(&format!("inference-header-content-length: {len}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&payload.body);
    bytes
}

/// Latency split by where it was spent (see [`LevelResult::split`]).
#[derive(Clone)]
pub struct Split {
    pub queue: Histogram<u64>,
    pub compute: Histogram<u64>,
    pub rest: Histogram<u64>,
}

impl Split {
    fn new() -> Split {
        Split {
            queue: new_histogram(),
            compute: new_histogram(),
            rest: new_histogram(),
        }
    }

    fn record(&mut self, latency_ns: u64, server: ServerTimes) {
        let queue = server.queue_us * 1_000;
        let compute = server.compute_us * 1_000;
        let _ = self.queue.record(queue.max(1_000));
        let _ = self.compute.record(compute.max(1_000));
        let _ = self
            .rest
            .record(latency_ns.saturating_sub(queue + compute).max(1_000));
    }

    fn add(&mut self, other: &Split) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.queue.add(&other.queue);
        let _ = self.compute.add(&other.compute);
        let _ = self.rest.add(&other.rest);
    }
}

/// The server's own timing headers of one response, in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServerTimes {
    queue_us: u64,
    compute_us: u64,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; constant bounds that hdrhistogram accepts.
    Histogram::new_with_bounds(1_000, 600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// Runs one level: `concurrency` clients for `warmup + duration`. Only requests completed
/// inside the measured window count (completion time decides, so the count is unbiased).
pub async fn run_level(config: &LevelConfig, request: Arc<Request>) -> LevelResult {
    let start = Instant::now();
    let from = start + config.warmup;
    let until = from + config.duration;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency {
        let addr = config.addr.clone();
        let request = request.clone();
        clients.spawn(client(addr, request, from, until));
    }
    let mut total = LevelResult {
        ok: 0,
        errors: 0,
        first_error: None,
        latency: new_histogram(),
        split: Split::new(),
        window: config.duration,
    };
    while let Some(r) = clients.join_next().await {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("client task failed: {e}"));
                continue;
            }
        };
        total.ok += r.ok;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
        // Both histograms share the same bounds, so adding cannot fail.
        let _ = total.latency.add(&r.latency);
        total.split.add(&r.split);
    }
    total
}

async fn client(addr: String, request: Arc<Request>, from: Instant, until: Instant) -> LevelResult {
    let mut result = LevelResult {
        ok: 0,
        errors: 0,
        first_error: None,
        latency: new_histogram(),
        split: Split::new(),
        window: until - from,
    };
    let mut conn: Option<Connection> = None;
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let outcome = match conn.as_mut() {
            Some(open) => open.exchange(&mut buf).await,
            None => match Connection::open(&addr, &request).await {
                Ok(open) => conn.insert(open).exchange(&mut buf).await,
                Err(e) => Err(e),
            },
        };
        let done = Instant::now();
        let counted = done >= from && done <= until;
        match outcome {
            Ok(server) if counted => {
                result.ok += 1;
                let latency = (done - sent).as_nanos() as u64;
                let _ = result.latency.record(latency);
                if let Some(times) = server {
                    result.split.record(latency, times);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if counted {
                    result.errors += 1;
                    result.first_error.get_or_insert(e.message);
                }
                if e.fatal {
                    conn = None;
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    result
}

/// One request on a fresh connection; the error says what went wrong.
pub async fn probe(addr: &str, request: &Request) -> Result<(), String> {
    let mut conn = Connection::open(addr, request)
        .await
        .map_err(|e| e.message)?;
    conn.exchange(&mut Vec::new())
        .await
        .map(drop)
        .map_err(|e| e.message)
}

/// A TCP connection to `addr` with Nagle's algorithm off, as every client wants.
pub async fn connect_tcp(addr: &str) -> Result<TcpStream, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::fatal(format!("cannot connect to {addr}: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| Failure::fatal(format!("cannot set TCP_NODELAY: {e}")))?;
    Ok(stream)
}

/// A failed exchange; `fatal` = the connection is unusable and must be reopened.
pub struct Failure {
    message: String,
    fatal: bool,
}

impl Failure {
    pub fn fatal(message: String) -> Failure {
        Failure {
            message,
            fatal: true,
        }
    }

    /// An error answer on a connection that stays usable.
    pub fn kept(message: String) -> Failure {
        Failure {
            message,
            fatal: false,
        }
    }
}

/// Writes the request and reads one whole response; returns the server's timing headers
/// when it sent them. A non-2xx status is an error that keeps the connection; broken
/// framing or I/O errors drop it.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Option<ServerTimes>, Failure> {
    let io = |e: std::io::Error| Failure::fatal(format!("connection error: {e}"));
    stream.write_all(request).await.map_err(io)?;
    buf.clear();
    let head_end = loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        read_more(stream, buf).await?;
    };
    let head = Head::parse(&buf[..head_end])?;
    let total = head_end + head.content_length;
    while buf.len() < total {
        read_more(stream, buf).await?;
    }
    if buf.len() > total {
        return Err(Failure::fatal(
            "server sent bytes after the response".to_string(),
        ));
    }
    if (200..300).contains(&head.status) {
        Ok(head
            .queue_us
            .zip(head.compute_us)
            .map(|(queue_us, compute_us)| ServerTimes {
                queue_us,
                compute_us,
            }))
    } else {
        let body = String::from_utf8_lossy(&buf[head_end..total]);
        Err(Failure {
            message: format!(
                "HTTP {}: {}",
                head.status,
                body.chars().take(300).collect::<String>()
            ),
            fatal: head.close,
        })
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Failure> {
    match stream.read_buf(buf).await {
        Ok(0) => Err(Failure::fatal("server closed the connection".to_string())),
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::fatal(format!("connection error: {e}"))),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The parts of a response head the client needs.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    content_length: usize,
    close: bool,
    queue_us: Option<u64>,
    compute_us: Option<u64>,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Head, Failure> {
        let text = std::str::from_utf8(head)
            .map_err(|_| Failure::fatal("response head is not UTF-8".to_string()))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::fatal(format!("bad status line {status_line:?}")))?;
        let mut content_length = None;
        let mut close = false;
        let (mut queue_us, mut compute_us) = (None, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Failure::fatal(format!(
                    "transfer-encoding {value} is not supported by the bench client"
                )));
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("x-queue-time-us") {
                queue_us = value.parse().ok();
            } else if name.eq_ignore_ascii_case("x-compute-time-us") {
                compute_us = value.parse().ok();
            }
        }
        let content_length = content_length
            .ok_or_else(|| Failure::fatal("response has no content-length".to_string()))?;
        Ok(Head {
            status,
            content_length,
            close,
            queue_us,
            compute_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let h = Head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\ncontent-type: x\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                content_length: 12,
                close: false,
                queue_us: None,
                compute_us: None,
            }
        );
        let h =
            Head::parse(b"HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .ok()
                .unwrap();
        assert!(h.close && h.status == 429);
        let h = Head::parse(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\nx-queue-time-us: 7\r\nx-compute-time-us: 30\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!((h.queue_us, h.compute_us), (Some(7), Some(30)));
        assert!(Head::parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(Head::parse(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn request_carries_lengths() {
        let p = Payload {
            api: Api::V2,
            path: "/p".into(),
            body: b"{}xy".to_vec(),
            content_type: "application/octet-stream",
            json_len: Some(2),
            rows: 1,
        };
        let r = String::from_utf8(request_bytes(&p, "h:1")).unwrap();
        assert!(r.starts_with("POST /p HTTP/1.1\r\n"));
        assert!(
            r.contains("content-length: 4\r\n")
                && r.contains("inference-header-content-length: 2\r\n")
        );
        assert!(r.ends_with("\r\n\r\n{}xy"));
    }
}
