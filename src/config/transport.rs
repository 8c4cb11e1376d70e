//! The resolved transport settings: connection bounds, TLS files and API keys. Read from
//! the flags in `server.rs` (their block "connections, TLS, API keys"), checked here once.
//! This module only reads files and limits; it never opens a socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use serde::Serialize;

/// What `--max-connections` may not exceed: the open-file limit minus this share of it
/// (at least [`MIN_FD_RESERVE`]) stays free for model files, logs and sockets being closed.
const FD_RESERVE_SHARE: u64 = 8;
const MIN_FD_RESERVE: u64 = 64;

/// Connection bounds, TLS and API keys, as both ports use them.
#[derive(Debug, Clone, Serialize)]
pub struct TransportConfig {
    /// A connection must deliver a request's headers (and, on a fresh connection, its TLS
    /// handshake and first request) within this time. HTTP/1.1 also applies it to the wait
    /// for the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest silence while a request body is being read (HTTP port).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (gracefully: HTTP/2
    /// gets a GOAWAY).
    pub idle_timeout: Duration,
    /// Most open client connections over all ports together.
    pub max_connections: usize,
    /// HTTP/2 PING interval (gRPC and HTTP/2 on the HTTP port); `None` = no pings.
    pub http2_keepalive_interval: Option<Duration>,
    /// A PING not acknowledged within this time closes the connection.
    pub http2_keepalive_timeout: Duration,
    /// TCP keep-alive idle time on accepted sockets; `None` = off.
    pub tcp_keepalive: Option<Duration>,
    /// Serve TLS on both ports with these files.
    pub tls: Option<TlsFiles>,
    /// How often the certificate files are checked for changes (SIGHUP reloads at once).
    pub tls_reload_interval: Duration,
    /// Keys accepted as `Authorization: Bearer <key>`; empty = no authentication.
    pub api_keys: ApiKeys,
    /// Health probes need a key too (default: open, so orchestrators can probe).
    pub auth_health: bool,
    /// `/metrics` needs a key too (default: open, so scrapers need no secret).
    pub auth_metrics: bool,
}

/// PEM files of the server's TLS identity.
#[derive(Debug, Clone, Serialize)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; `Some` = mTLS required.
    pub client_ca: Option<PathBuf>,
}

/// API keys. `Debug` and `Serialize` print only how many there are, so the resolved-config
/// log line and error messages can never carry a key.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    pub fn new(keys: Vec<String>) -> ApiKeys {
        ApiKeys(keys)
    }

    /// The keys themselves; only `api::auth` should need them.
    pub fn expose(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted>", self.0.len())
    }
}

impl Serialize for ApiKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<{} redacted>", self.0.len()))
    }
}

/// The transport flags as given (all optional), before defaults and checks.
#[derive(Debug, Clone, Default)]
pub struct TransportArgs {
    pub header_read_timeout_secs: Option<u64>,
    pub body_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub http2_keepalive_interval_secs: Option<u64>,
    pub http2_keepalive_timeout_secs: Option<u64>,
    pub tcp_keepalive_secs: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_reload_interval_secs: Option<u64>,
    pub api_key: Option<Vec<String>>,
    pub api_key_file: Option<PathBuf>,
    pub auth_health: Option<bool>,
    pub auth_metrics: Option<bool>,
}

impl TransportConfig {
    /// Defaults, range checks (messages name the flag, the value and the allowed range),
    /// and the key file.
    pub fn resolve(a: TransportArgs) -> Result<TransportConfig, ConfigError> {
        let secs = |name: &str, v: Option<u64>, default: u64, min: u64| {
            let v = v.unwrap_or(default);
            if !(min..=86_400).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {v} is out of range {min}..=86400"
                )));
            }
            Ok(Duration::from_secs(v))
        };
        let optional = |v: Duration| (!v.is_zero()).then_some(v);
        let ceiling = max_connections_ceiling();
        let max_connections = a.max_connections.unwrap_or(ceiling as usize);
        if max_connections == 0 || max_connections as u64 > ceiling {
            return Err(ConfigError::Invalid(format!(
                "max_connections = {max_connections} is out of range 1..={ceiling} \
                 (the open-file limit {} minus a reserve)",
                fd_limit()
            )));
        }
        let tls = match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: a.tls_client_ca,
            }),
            (None, None) if a.tls_client_ca.is_some() => {
                return Err(ConfigError::Invalid(
                    "tls_client_ca needs tls_cert and tls_key".to_string(),
                ))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key must be given together".to_string(),
                ))
            }
        };
        let mut keys = a.api_key.unwrap_or_default();
        if let Some(file) = &a.api_key_file {
            keys.extend(read_key_file(file)?);
        }
        if keys.iter().any(|k| k.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "api_key: empty keys are not allowed".to_string(),
            ));
        }
        Ok(TransportConfig {
            header_read_timeout: secs(
                "header_read_timeout_secs",
                a.header_read_timeout_secs,
                10,
                1,
            )?,
            body_read_timeout: secs("body_read_timeout_secs", a.body_read_timeout_secs, 30, 1)?,
            idle_timeout: secs("idle_timeout_secs", a.idle_timeout_secs, 60, 1)?,
            max_connections,
            http2_keepalive_interval: optional(secs(
                "http2_keepalive_interval_secs",
                a.http2_keepalive_interval_secs,
                30,
                0,
            )?),
            http2_keepalive_timeout: secs(
                "http2_keepalive_timeout_secs",
                a.http2_keepalive_timeout_secs,
                20,
                1,
            )?,
            tcp_keepalive: optional(secs("tcp_keepalive_secs", a.tcp_keepalive_secs, 60, 0)?),
            tls,
            tls_reload_interval: secs(
                "tls_reload_interval_secs",
                a.tls_reload_interval_secs,
                5,
                1,
            )?,
            api_keys: ApiKeys(keys.into_iter().map(|k| k.trim().to_string()).collect()),
            auth_health: a.auth_health.unwrap_or(false),
            auth_metrics: a.auth_metrics.unwrap_or(false),
        })
    }
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`); 1024 when it cannot be read.
pub fn fd_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// The largest `max_connections` allowed, and its default: the fd limit minus a reserve.
pub fn max_connections_ceiling() -> u64 {
    let limit = fd_limit().min(1 << 24);
    let reserve = (limit / FD_RESERVE_SHARE).max(MIN_FD_RESERVE);
    limit.saturating_sub(reserve).max(1)
}

/// Raises the soft open-file limit to the hard one (what a server wants; done once at start).
pub fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
}

/// One key per line; blank lines and lines starting with `#` are skipped.
fn read_key_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Unreadable(format!("cannot read api_key_file {}: {e}", path.display()))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_in_debug_or_serialized_output() {
        let keys = ApiKeys::new(vec!["s3cret-key".to_string()]);
        assert!(!format!("{keys:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&keys).unwrap().contains("s3cret"));
    }

    #[test]
    fn max_connections_above_the_fd_budget_is_named() {
        let err = TransportConfig::resolve(TransportArgs {
            max_connections: Some(usize::MAX),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn tls_needs_both_files() {
        let err = TransportConfig::resolve(TransportArgs {
            tls_cert: Some("cert.pem".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("together"), "{err}");
    }

    #[test]
    fn key_file_skips_comments_and_blank_lines() {
        let dir = std::env::temp_dir().join(format!("mlpserve-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys");
        std::fs::write(&file, "# team a\nkey-one\n\n  key-two  \n").unwrap();
        let c = TransportConfig::resolve(TransportArgs {
            api_key: Some(vec!["cli-key".into()]),
            api_key_file: Some(file),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.api_keys.expose(), ["cli-key", "key-one", "key-two"]);
    }
}
