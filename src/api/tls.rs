//! TLS for both ports (rustls with the `ring` provider). One [`CertStore`] holds the
//! current certificate and key; both ports' rustls configs resolve through it, so a reload
//! (SIGHUP, or the files' modification time changing) reaches every new handshake while
//! open connections keep the session they negotiated. A reload that fails to parse keeps
//! the old identity and logs why. The client CA (mTLS) is read once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// The TLS side of the server: acceptors for each port and the store they share.
pub struct Tls {
    pub store: Arc<CertStore>,
    /// ALPN `h2` and `http/1.1`.
    pub http: TlsAcceptor,
    /// ALPN `h2` only (gRPC).
    pub grpc: TlsAcceptor,
}

/// Why the TLS files cannot serve; every message names the file (and the setting that
/// names it) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A key or CA file that does not parse, or a CA certificate rustls refuses.
    #[error("{setting} {}: {reason}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A certificate file that cannot be read or is no PEM.
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: no PEM certificate found", .0.display())]
    NoCertificate(PathBuf),
    #[error("tls_key {} does not fit tls_cert {}: {reason}", key.display(), cert.display())]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    /// rustls refused the protocol versions or the client verifier's settings.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The certificate new handshakes get; swapped whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// Reads `files` again and, if they parse and match, serves them from now on.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), TlsError> {
        let key = load_certified_key(files, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }
}

impl Tls {
    /// Loads the files and builds the acceptors; errors name the file and the problem.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let store = Arc::new(CertStore {
            current: ArcSwap::from_pointee(load_certified_key(files, &provider)?),
            provider: provider.clone(),
        });
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            let builder = match &files.client_ca {
                Some(ca) => builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(
                        Arc::new(read_roots(ca)?),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| TlsError::File {
                        setting: "tls_client_ca",
                        path: ca.clone(),
                        reason: e.to_string(),
                    })?,
                ),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_cert_resolver(store.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(Tls {
            http: config(&[b"h2", b"http/1.1"])?,
            grpc: config(&[b"h2"])?,
            store,
        })
    }
}

/// Reloads the certificate on SIGHUP and whenever the files' modification times change
/// (checked every `interval`), until `stop` completes.
pub async fn watch(
    store: Arc<CertStore>,
    files: TlsFiles,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).ok();
    let hangup = async |hup: &mut Option<Signal>| match hup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    };
    let mut seen = stamps(&files);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        let reason = tokio::select! {
            () = &mut stop => return,
            () = hangup(&mut hup) => "SIGHUP",
            _ = tick.tick() => {
                let now = stamps(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "files changed"
            }
        };
        match store.reload(&files) {
            Ok(()) => {
                tracing::info!(reason, cert = %files.cert.display(), "TLS certificate reloaded")
            }
            Err(e) => {
                tracing::warn!(reason, error = %e, "TLS certificate reload failed; keeping the previous one")
            }
        }
    }
}

/// Modification times of the certificate and key (`None` where unreadable).
fn stamps(files: &TlsFiles) -> [Option<SystemTime>; 2] {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [mtime(&files.cert), mtime(&files.key)]
}

fn load_certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        setting: "tls_key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::KeyMismatch {
        key: files.key.clone(),
        cert: files.cert.clone(),
        reason: e.to_string(),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            setting: "tls_client_ca",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}
