//! TLS and API keys on real sockets: 401/UNAUTHENTICATED without a
//! valid key, open health probes and `/metrics` by default, plain text on a TLS port
//! closed cleanly, ALPN on the HTTP port, mTLS, and certificate rotation reaching new
//! handshakes while an open connection keeps working. Certificates come from a CA made
//! here with rcgen. The real-client (tritonclient) versions are in tests/python.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{samples, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlpserve::api::grpc::proto::{ModelMetadataRequest, ServerLiveRequest};
use mlpserve::config::{ApiKeys, TlsFiles};
use mlpserve::ServerConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{client::TlsStream, TlsConnector};

const PATIENCE: Duration = Duration::from_secs(10);

// ---------- API keys ----------

fn keyed_server(repo: &ScratchRepo, edit: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.transport.api_keys = ApiKeys::new(vec!["key-one".into(), "key-two".into()]);
    edit(&mut config);
    TestServer::start_with(config)
}

fn get(server: &TestServer, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut r = reqwest::blocking::Client::new().get(server.url(path));
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    let r = r.send().expect("request");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn api_keys_guard_inference_and_metadata_but_not_probes_or_metrics() {
    let repo = ScratchRepo::digits("sec");
    let server = keyed_server(&repo, |_| {});
    for path in [
        "/v2",
        "/v2/models/mlp_digits",
        "/v2/models/mlp_digits/ready",
        "/v2/models/stats",
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic key-one"),
            Some("key-one"),
        ] {
            let (status, body) = get(&server, path, auth);
            assert_eq!(status, 401, "{path} with {auth:?}: {body}");
            assert!(
                !body.contains("key-one") && !body.contains("key-two"),
                "{body}"
            );
        }
        assert_eq!(get(&server, path, Some("Bearer key-two")).0, 200, "{path}");
    }
    let pixels = &samples("mlp_digits")["samples"][0]["inputs"]["pixels"];
    let sample = serde_json::json!({ "inputs": [{
        "name": "pixels",
        "datatype": pixels["datatype"],
        "shape": pixels["shape"],
        "data": pixels["data"],
    }]});
    let infer = |auth: Option<&str>| {
        let mut r = reqwest::blocking::Client::new()
            .post(server.url("/v2/models/mlp_digits/infer"))
            .json(&sample);
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        r.send().expect("request").status().as_u16()
    };
    assert_eq!(infer(None), 401);
    assert_eq!(infer(Some("Bearer key-one")), 200);
    for open in [
        "/v2/health/live",
        "/v2/health/ready",
        "/health/ready",
        "/metrics",
    ] {
        assert_eq!(get(&server, open, None).0, 200, "{open} is open by default");
    }
    let metrics = get(&server, "/metrics", None).1;
    assert!(
        metrics.contains("mlpserve_auth_failures_total{transport=\"http\"} 17"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("auth_failures"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn auth_health_and_auth_metrics_close_the_probes_and_metrics_too() {
    let repo = ScratchRepo::digits("sec");
    let server = keyed_server(&repo, |c| {
        c.transport.auth_health = true;
        c.transport.auth_metrics = true;
    });
    for path in ["/v2/health/live", "/v2/health/ready", "/metrics"] {
        assert_eq!(get(&server, path, None).0, 401, "{path}");
        assert_eq!(get(&server, path, Some("Bearer key-one")).0, 200, "{path}");
    }
}

#[test]
fn grpc_needs_the_key_in_metadata_except_for_liveness() {
    let repo = ScratchRepo::digits("sec");
    let server = keyed_server(&repo, |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(grpc_key_checks(&server));
    let metrics = get(&server, "/metrics", None).1;
    assert!(metrics.contains("mlpserve_auth_failures_total{transport=\"grpc\"} 2"));
}

async fn grpc_key_checks(server: &TestServer) {
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let metadata = |key: Option<&str>| {
        let mut r = tonic::Request::new(ModelMetadataRequest {
            name: "mlp_digits".into(),
            version: String::new(),
        });
        if let Some(k) = key {
            r.metadata_mut().insert("authorization", k.parse().unwrap());
        }
        r
    };
    for key in [None, Some("Bearer nope")] {
        let err = client.model_metadata(metadata(key)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{key:?}");
        assert!(!err.message().contains("key-one"));
    }
    client
        .model_metadata(metadata(Some("Bearer key-one")))
        .await
        .expect("a valid key passes");
    client
        .server_live(ServerLiveRequest {})
        .await
        .expect("liveness is open by default");
}

// ---------- TLS ----------

/// A CA and the files of one server identity signed by it.
struct Pki {
    dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_der: CertificateDer<'static>,
}

impl Pki {
    fn new(repo: &ScratchRepo, name: &str) -> Pki {
        let dir = repo.path.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mlpserve test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_der: ca.der().clone(),
            ca_key,
            ca_params,
        }
    }

    /// Writes `<name>.pem` and `<name>.key` for a leaf with `serial`; returns its DER.
    fn leaf(&self, name: &str, serial: u64) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        // Write the key first: the watcher must never pair a new cert with an old key
        // for long (a mismatch is rejected and retried on the next change).
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        cert.der().clone()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn client(&self, alpn: &[&[u8]], identity: Option<(&Path, &Path)>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

fn tls_server(repo: &ScratchRepo, pki: &Pki, client_ca: bool) -> TestServer {
    pki.leaf("server", 1);
    let mut config = ServerConfig::for_tests(&repo.path);
    config.transport.tls = Some(TlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        client_ca: client_ca.then(|| pki.path("ca.pem")),
    });
    config.transport.header_read_timeout = Duration::from_millis(500);
    config.transport.tls_reload_interval = Duration::from_millis(100);
    TestServer::start_with(config)
}

async fn handshake(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

/// One HTTP/1.1 GET on a kept-alive TLS stream: the status line and the body.
async fn get_tls(
    stream: &mut TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> std::io::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(format!("{}\n{body}", head.lines().next().unwrap_or("")));
            }
        }
    }
}

/// Polls readiness over TLS (the TestServer's own probe speaks plain HTTP).
async fn wait_ready_tls(connector: &TlsConnector, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = handshake(connector, addr).await {
            if get_tls(&mut s, "/v2/health/ready")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "TLS server not ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_on_a_tls_port_is_closed_never_answered_or_left_hanging() {
    let repo = ScratchRepo::digits("sec");
    let pki = Pki::new(&repo, "pki");
    let server = tls_server(&repo, &pki, false);
    wait_ready_tls(&pki.client(&[b"http/1.1"], None), server.http).await;
    for addr in [server.http, server.grpc] {
        let mut talker = TcpStream::connect(addr).unwrap();
        talker
            .write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let answer = read_until_closed(&mut talker);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        // A client that connects and says nothing is closed by the handshake timeout.
        let mut silent = TcpStream::connect(addr).unwrap();
        assert!(read_until_closed(&mut silent).is_empty());
    }
    let metrics = get_tls(
        &mut handshake(&pki.client(&[b"http/1.1"], None), server.http)
            .await
            .unwrap(),
        "/metrics",
    )
    .await
    .unwrap();
    assert!(
        metrics.contains("mlpserve_connections_closed_total{reason=\"handshake\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_offers_h2_and_http1_and_rotated_certificates_reach_new_handshakes() {
    let repo = ScratchRepo::digits("sec");
    let pki = Pki::new(&repo, "pki");
    let server = tls_server(&repo, &pki, false);
    let first = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let http1 = pki.client(&[b"http/1.1"], None);
    wait_ready_tls(&http1, server.http).await;

    let h2 = handshake(&pki.client(&[b"h2", b"http/1.1"], None), server.http)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let grpc = handshake(&pki.client(&[b"h2"], None), server.grpc)
        .await
        .unwrap();
    assert_eq!(grpc.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let mut old = handshake(&http1, server.http).await.unwrap();
    assert_eq!(old.get_ref().1.peer_certificates().unwrap()[0], first);
    assert!(get_tls(&mut old, "/v2/health/ready")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));

    let rotated = pki.leaf("server", 2);
    assert_ne!(rotated, first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let fresh = handshake(&http1, server.http).await.unwrap();
        if fresh.get_ref().1.peer_certificates().unwrap()[0] == rotated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the rotation keeps working.
    assert!(get_tls(&mut old, "/v2/health/ready")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let repo = ScratchRepo::digits("sec");
    let pki = Pki::new(&repo, "pki");
    let server = tls_server(&repo, &pki, true);
    pki.leaf("client", 7);
    let with_cert = pki.client(
        &[b"http/1.1"],
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    );
    wait_ready_tls(&with_cert, server.http).await;

    // Another CA's client certificate, and no certificate at all: refused (in TLS 1.3 the
    // refusal may surface at the first read rather than the handshake).
    let stranger = Pki::new(&repo, "stranger");
    stranger.leaf("client", 9);
    let foreign = pki.client(
        &[b"http/1.1"],
        Some((&stranger.path("client.pem"), &stranger.path("client.key"))),
    );
    for connector in [pki.client(&[b"http/1.1"], None), foreign] {
        let result = match handshake(&connector, server.http).await {
            Ok(mut s) => get_tls(&mut s, "/v2/health/ready").await,
            Err(e) => Err(e),
        };
        assert!(result.is_err(), "{result:?}");
    }
    let grpc_with_cert = pki.client(
        &[b"h2"],
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    );
    let mut ok = handshake(&grpc_with_cert, server.grpc).await.unwrap();
    assert_eq!(ok.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    ok.shutdown().await.ok();
}
