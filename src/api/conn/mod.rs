//! The connection layer under every port (HTTP, gRPC, metrics): accept, admit against the
//! connection cap, TLS handshake, and serve HTTP/1.1 or HTTP/2 with hyper, with bounds on
//! how long a connection may hold a slot without doing work:
//! - a fresh connection must finish its TLS handshake and start a request within the
//!   header-read timeout (this also closes a gRPC client stuck in the HTTP/2 preface);
//! - HTTP/1.1 headers must arrive within the header-read timeout (hyper's own timer, which
//!   also runs while a kept-alive connection waits for its next request);
//! - a connection with no request in flight for the idle timeout is closed gracefully
//!   (HTTP/2 gets a GOAWAY);
//! - at the cap the longest-idle connection is closed for a newcomer; with none idle the
//!   newcomer is refused (plain HTTP gets a 503 first).
//!
//! It knows nothing of routes or models: each port hands it a tower service.

pub mod table;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::config::TransportConfig;
use crate::metrics::TransportMetrics;
use table::{Admission, ConnState, ConnTable, Slot};

/// How long a connection asked to close (idle or shed) may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every port shares: the one connection table (the cap is process-wide, like the
/// file-descriptor limit it protects), the settings and the metrics.
pub struct Connections {
    pub table: Arc<ConnTable>,
    pub config: TransportConfig,
    pub metrics: TransportMetrics,
}

impl Connections {
    pub fn new(config: TransportConfig, metrics: TransportMetrics) -> Arc<Connections> {
        Arc::new(Connections {
            table: ConnTable::new(config.max_connections),
            config,
            metrics,
        })
    }
}

/// One port's protocol choices.
pub struct Port {
    /// For logs: `http`, `grpc` or `metrics`.
    pub name: &'static str,
    /// gRPC speaks only HTTP/2.
    pub http2_only: bool,
    /// Serve TLS only, with this acceptor.
    pub tls: Option<TlsAcceptor>,
    /// HTTP/2 flow-control settings; `None` keeps h2's defaults.
    pub http2_windows: Option<Http2Windows>,
}

/// HTTP/2 flow-control and framing settings of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Windows {
    /// Per-stream receive window, in bytes.
    pub stream_window: u32,
    /// Per-connection receive window, in bytes.
    pub connection_window: u32,
    /// Largest frame accepted, in bytes.
    pub max_frame: u32,
    /// BDP-probing adaptive windows (overrides the static windows when on).
    pub adaptive: bool,
}

/// Answer written to a plain-HTTP client refused at the connection cap.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 1\r\nConnection: close\r\nContent-Length: 50\r\n\r\n\
{\"error\":\"too many open connections, retry later\"}";

/// Serves `service` on `listener` until `stop` completes; then stops accepting, asks every
/// connection to finish gracefully and returns when all have closed.
pub async fn serve<S, B>(
    listener: TcpListener,
    port: Port,
    conns: Arc<Connections>,
    service: S,
    stop: impl Future<Output = ()> + Send + 'static,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let port = Arc::new(PortState {
        builder: builder(&conns.config, &port),
        name: port.name,
        plain_http1: port.tls.is_none() && !port.http2_only,
        tls: port.tls,
        service,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task, so shutdown can wait for the last one to finish.
    let tasks = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let tcp = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    accept_failed(&conns, port.name, e).await;
                    continue;
                }
            },
        };
        let slot = match conns.table.admit(Instant::now()) {
            Admission::Admitted { slot, shed_one } => {
                if shed_one {
                    conns.metrics.closed("shed");
                }
                slot
            }
            Admission::Refused => {
                conns.metrics.closed("refused");
                tracing::debug!(port = port.name, "connection refused: at --max-connections");
                tokio::spawn(refuse(tcp, port.plain_http1));
                continue;
            }
        };
        let task = Connection {
            port: port.clone(),
            conns: conns.clone(),
            slot,
            stop: stop_rx.clone(),
        };
        tasks.spawn(task.run(tcp));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tasks.close();
    tasks.wait().await;
}

/// The hyper connection builder of a port: HTTP/1.1 header timer, HTTP/2 PINGs and the
/// port's HTTP/2 windows.
fn builder(config: &TransportConfig, port: &Port) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keepalive_interval)
        .keep_alive_timeout(config.http2_keepalive_timeout);
    if let Some(w) = port.http2_windows {
        b.http2()
            .initial_stream_window_size(w.stream_window)
            .initial_connection_window_size(w.connection_window)
            .max_frame_size(w.max_frame)
            .adaptive_window(w.adaptive);
    }
    if port.http2_only {
        b = b.http2_only();
    }
    b
}

/// Out of file descriptors: make room by shedding an idle connection, and pause briefly so
/// the loop does not spin. Other accept errors concern one client only.
async fn accept_failed(conns: &Connections, port: &str, e: std::io::Error) {
    let out_of_fds = matches!(e.raw_os_error(), Some(24 /* EMFILE */ | 23 /* ENFILE */));
    if out_of_fds {
        let shed = conns.table.shed_idle();
        if shed {
            conns.metrics.closed("shed");
        }
        tracing::warn!(port, error = %e, shed_idle = shed, "accept failed: out of file descriptors");
        tokio::time::sleep(Duration::from_millis(20)).await;
    } else {
        tracing::debug!(port, error = %e, "accept failed");
    }
}

/// Closes a refused connection; a plain-HTTP client is told why first. The read drains
/// what the client sent so the close is a FIN, not a reset that could eat the answer; it
/// is short, since each refused socket holds a file descriptor meanwhile.
async fn refuse(mut tcp: TcpStream, say_why: bool) {
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
        if say_why {
            tcp.write_all(REFUSAL).await?;
        }
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

struct PortState<S> {
    builder: auto::Builder<TokioExecutor>,
    name: &'static str,
    /// Plain-text port that may speak HTTP/1.1: a refused client can be told why.
    plain_http1: bool,
    tls: Option<TlsAcceptor>,
    service: S,
}

/// One accepted connection, from the TCP socket to its close.
struct Connection<S> {
    port: Arc<PortState<S>>,
    conns: Arc<Connections>,
    slot: Slot,
    stop: watch::Receiver<bool>,
}

/// Where a connection is in its life.
enum Phase {
    Open,
    /// Asked to close (idle or shed); dropped at this instant if still open and idle.
    Closing(tokio::time::Instant),
    /// Server shutdown: finishing in-flight requests (bounded by `run`'s drain timeout).
    Draining,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn run(mut self, tcp: TcpStream) {
        self.conns.metrics.connections_open.inc();
        let config = &self.conns.config;
        let _ = tcp.set_nodelay(true);
        if let Some(time) = config.tcp_keepalive {
            let keepalive = socket2::TcpKeepalive::new().with_time(time);
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        }
        match self.port.tls.clone() {
            None => self.drive(tcp).await,
            Some(acceptor) => {
                let state = self.slot.state.clone();
                let handshake =
                    tokio::time::timeout(config.header_read_timeout, acceptor.accept(tcp));
                let tls = tokio::select! {
                    r = handshake => r.map_err(|_| "timed out".to_string()),
                    _ = self.stop.wait_for(|s| *s) => Err("server shutting down".to_string()),
                    () = state.close.notified() => Err("connection shed".to_string()),
                };
                match tls {
                    Ok(Ok(stream)) => self.drive(stream).await,
                    Ok(Err(e)) => {
                        self.conns.metrics.closed("handshake");
                        tracing::debug!(port = self.port.name, error = %e, "TLS handshake failed");
                    }
                    Err(why) => {
                        self.conns.metrics.closed("handshake");
                        tracing::debug!(port = self.port.name, why, "TLS handshake abandoned");
                    }
                }
            }
        }
        self.conns.metrics.connections_open.dec();
    }

    /// Serves HTTP on `io` until the client leaves, the connection idles out or is shed,
    /// or the server shuts down.
    async fn drive<I>(&mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = self.slot.state.clone();
        let config = &self.conns.config;
        let service = self.port.service.clone();
        let counted = state.clone();
        let tracked = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = counted.begin(Instant::now());
            let call = service.clone().oneshot(req);
            async move {
                let response = call.await?;
                // The guard lives as long as the body: a streamed answer keeps the request
                // in flight until its last frame.
                Ok::<_, Infallible>(response.map(|body| {
                    body.map_frame(move |frame| {
                        let _ = &guard;
                        frame
                    })
                }))
            }
        });
        let conn = self
            .port
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), tracked);
        tokio::pin!(conn);
        let mut phase = Phase::Open;
        loop {
            let wake = match phase {
                Phase::Open => idle_deadline(&state, config),
                Phase::Closing(at) => at,
                Phase::Draining => tokio::time::Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(port = self.port.name, error = %e, "connection closed with an error");
                    }
                    return;
                }
                _ = self.stop.wait_for(|s| *s), if !matches!(phase, Phase::Draining) => {
                    conn.as_mut().graceful_shutdown();
                    phase = Phase::Draining;
                }
                () = state.close.notified(), if matches!(phase, Phase::Open) => {
                    conn.as_mut().graceful_shutdown();
                    phase = Phase::Closing(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                () = tokio::time::sleep_until(wake) => match phase {
                    // `wake` is as old as this timer: requests served since it was set
                    // count, so only a deadline computed now can say the connection idles.
                    Phase::Open => {
                        if state.in_flight() == 0
                            && idle_deadline(&state, config) <= tokio::time::Instant::now()
                        {
                            state.mark_closing();
                            self.conns.metrics.closed("idle");
                            conn.as_mut().graceful_shutdown();
                            phase = Phase::Closing(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                    }
                    // A request that slipped in before the close finishes; an idle
                    // connection that did not close by itself is dropped.
                    Phase::Closing(_) if state.in_flight() == 0 => return,
                    Phase::Closing(_) => phase = Phase::Closing(tokio::time::Instant::now() + CLOSE_GRACE),
                    Phase::Draining => {}
                },
            }
        }
    }
}

/// When an open connection counts as idle: the header-read timeout after accept while no
/// request has come, the idle timeout after its last request ended; while a request is in
/// flight, look again one idle timeout later.
fn idle_deadline(state: &ConnState, config: &TransportConfig) -> tokio::time::Instant {
    let now = Instant::now();
    let at = if state.in_flight() > 0 {
        now + config.idle_timeout
    } else if state.used() {
        state.last_active() + config.idle_timeout
    } else {
        state.last_active() + config.header_read_timeout
    };
    tokio::time::Instant::from_std(at)
}

#[cfg(test)]
mod tests {
    use super::REFUSAL;

    #[test]
    fn the_refusal_body_matches_its_content_length() {
        let text = std::str::from_utf8(REFUSAL).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("Content-Length");
        assert_eq!(length, body.len(), "{text}");
        serde_json::from_str::<serde_json::Value>(body).expect("a JSON body");
    }
}
