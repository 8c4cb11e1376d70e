//! Connection bounds on real sockets: idle, partial-header and
//! partial-body HTTP connections and a gRPC client stuck in the HTTP/2 preface are closed
//! by the server; at the connection cap the longest-idle connection makes room for a
//! newcomer, and with none idle the newcomer gets a clean 503; others are served
//! throughout. A connection in steady use (HTTP/1.1 or gRPC) outlives every timeout.
//! Timeouts are shortened to fractions of a second; the bounds checked are generous (the
//! test fails only if a connection stays open for many timeouts).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{ScratchRepo, TestServer};
use mlpserve::ServerConfig;

/// Far more than any timeout configured here: a connection still open after this is a bug.
const PATIENCE: Duration = Duration::from_secs(10);

fn server(repo: &ScratchRepo, edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.transport.header_read_timeout = Duration::from_millis(500);
    config.transport.idle_timeout = Duration::from_millis(800);
    config.transport.body_read_timeout = Duration::from_millis(500);
    edit(&mut config);
    TestServer::start_with(config)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s
}

/// Reads until the server closes the connection; returns what it sent. Fails if the
/// connection is still open after [`PATIENCE`].
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("connection still open after {PATIENCE:?}")
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn served(server: &TestServer) -> bool {
    server.get_json("/v2/health/live").0 == 200
}

#[test]
fn a_connection_that_never_sends_is_closed() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |_| {});
    let mut silent = connect(server.http);
    assert!(served(&server), "others are served meanwhile");
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(served(&server));
}

#[test]
fn a_kept_alive_connection_is_closed_after_its_last_request() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |_| {});
    let mut idle = connect(server.http);
    idle.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut idle)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_connection_in_steady_use_stays_open_past_every_timeout() {
    // Regression: the idle check used the deadline its timer was set with (at accept, the
    // header-read timeout), so a busy keep-alive connection was closed whenever that
    // timer fired between two of its requests; load generators saw "connection closed".
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |_| {});
    let mut client = connect(server.http);
    // Several header-read (500 ms) and idle (800 ms) timeouts; mostly between requests.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut answered = 0;
    while Instant::now() < until {
        let sent = client.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n");
        let answer = sent.ok().and_then(|()| read_response(&mut client));
        match answer {
            Some(head) => assert!(head.starts_with("HTTP/1.1 200"), "{head}"),
            None => panic!("the server closed a connection in use after {answered} requests"),
        }
        answered += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_grpc_connection_in_steady_use_is_not_replaced() {
    // The same regression over HTTP/2: the server sent GOAWAY to a busy connection and the
    // client had to reconnect. The channel counts the TCP connections it opens.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use mlpserve::api::grpc::proto::ServerLiveRequest;

    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |_| {});
    let addr = server.grpc;
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_with_connector(connector)
            .await
            .expect("connect");
        let mut client = GrpcInferenceServiceClient::new(channel);
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            client
                .server_live(ServerLiveRequest {})
                .await
                .expect("ServerLive");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        connects.load(Ordering::SeqCst),
        1,
        "the server closed a connection in use and the client reconnected"
    );
}

/// One response's head (its body, `Content-Length` bytes, is read and dropped); `None`
/// when the server closed the connection instead.
fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read failed: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; (head_end + length).saturating_sub(got.len())];
    stream.read_exact(&mut body).ok()?;
    Some(head)
}

#[test]
fn a_partial_header_is_closed() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |c| {
        // Only hyper's header timer may close it, not the idle rule.
        c.transport.idle_timeout = Duration::from_secs(3600);
        c.transport.header_read_timeout = Duration::from_millis(500);
    });
    let mut slow = connect(server.http);
    slow.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    assert!(served(&server));
    let answer = String::from_utf8_lossy(&read_until_closed(&mut slow)).to_string();
    assert!(!answer.contains(" 200 "), "{answer}");
}

#[test]
fn a_partial_body_fails_the_request_and_closes_the_connection() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |c| {
        c.transport.idle_timeout = Duration::from_secs(3600)
    });
    let mut slow = connect(server.http);
    slow.write_all(
        b"POST /v2/models/mlp_digits/infer HTTP/1.1\r\nHost: t\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\": [",
    )
    .unwrap();
    assert!(served(&server));
    let answer = String::from_utf8_lossy(&read_until_closed(&mut slow)).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body read timeout"), "{answer}");
}

#[test]
fn a_grpc_client_stuck_in_the_preface_is_closed() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |c| {
        c.transport.idle_timeout = Duration::from_secs(3600)
    });
    let mut slow = connect(server.grpc);
    slow.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    read_until_closed(&mut slow);
    assert!(served(&server));
}

#[test]
fn at_the_cap_the_longest_idle_connection_makes_room() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |c| {
        c.transport.max_connections = 2;
        c.transport.header_read_timeout = Duration::from_secs(3600);
        c.transport.idle_timeout = Duration::from_secs(3600);
    });
    // One accept loop takes them in connect order and stamps each with a later instant,
    // so `oldest` is the longer idle. (No scrape here: at this cap it would take a slot.)
    let mut oldest = connect(server.http);
    let mut younger = connect(server.http);
    assert!(served(&server), "a newcomer is served at the cap");
    assert!(
        read_until_closed(&mut oldest).is_empty(),
        "oldest idle shed"
    );
    // The younger one was not shed: it still answers.
    younger
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 12];
    younger.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}

#[test]
fn at_the_cap_with_every_connection_busy_newcomers_get_a_503_then_service_resumes() {
    let repo = ScratchRepo::digits("conn");
    let server = server(&repo, |c| {
        c.transport.max_connections = 2;
        c.transport.body_read_timeout = Duration::from_secs(3600);
        c.transport.idle_timeout = Duration::from_millis(300);
    });
    // Two requests whose bodies never finish keep both slots busy. A busy connection
    // whose headers the server has not parsed yet still counts as idle and may be shed
    // for the probe; then it is replaced and the probe repeated.
    let open_busy = || {
        let mut s = connect(server.http);
        s.write_all(
            b"POST /v2/models/mlp_digits/infer HTTP/1.1\r\nHost: t\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
        s
    };
    let mut busy: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let refusal = loop {
        busy.retain(still_open);
        while busy.len() < 2 {
            busy.push(open_busy());
        }
        let mut s = connect(server.http);
        let _ = s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n");
        let answer = String::from_utf8_lossy(&read_until_closed(&mut s)).to_string();
        if answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
    };
    assert!(refusal.starts_with("HTTP/1.1 503"), "{refusal}");
    // The whole answer, not only its status line: a client reads exactly Content-Length
    // bytes of body, so a length that disagrees with the body truncates or hangs it.
    let (head, body) = refusal
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {refusal}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert_eq!(header("retry-after").as_deref(), Some("1"), "{head}");
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json"),
        "{head}"
    );
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    assert_eq!(
        body.len(),
        length,
        "Content-Length vs the body sent: {body:?}"
    );
    let error: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|m| m.contains("connections")),
        "{error}"
    );
    drop(busy);
    let deadline = Instant::now() + PATIENCE;
    while !served(&server) {
        assert!(
            Instant::now() < deadline,
            "service resumes once busy clients leave"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        metrics_text(&server).contains("mlpserve_connections_closed_total{reason=\"refused\"}"),
        "refusals are counted"
    );
}

/// True while the server has not closed `s`.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let open = matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).expect("blocking");
    open
}

fn metrics_text(server: &TestServer) -> String {
    reqwest::blocking::get(server.url("/metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default()
}
