//! Server configuration. One struct, `ServerArgs`, is both the CLI/env layer (clap) and the
//! file layer (serde, unknown keys rejected); every field is optional there. Layers merge
//! field by field (CLI/env over file), then defaults fill the rest into `ServerConfig`.
//! The process environment is only read (clap's `env`), never written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::observe::{
    self, ObserveArgs, OtlpProtocol, PayloadLogConfig, PayloadLogMode, TraceConfig,
};
use super::transport::{TransportArgs, TransportConfig};
use super::{ConfigError, ExecutionProvider, ProviderFallback};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

macro_rules! server_layer {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty, $env:literal ;)*) => {
        /// Options of `mlpserve serve`. Each can also come from the environment variable
        /// shown and from the `--config` TOML file (same names, snake_case).
        #[derive(Debug, Clone, Default, Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ServerArgs {
            /// TOML file with any of these options (lowest precedence after defaults).
            #[arg(long, env = "MLPSERVE_CONFIG")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $( $(#[$doc])* #[arg(long, env = $env)] pub $field: Option<$ty>, )*
        }

        impl ServerArgs {
            /// Field by field: `self` where set, else `lower`.
            fn over(self, lower: ServerArgs) -> ServerArgs {
                ServerArgs { config: self.config.or(lower.config), $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

server_layer! {
    /// Model repository: <dir>/<model>/<version>/model.onnx [default: models]
    model_repository: PathBuf, "MLPSERVE_MODEL_REPOSITORY";
    /// Address to listen on [default: 0.0.0.0]
    host: String, "MLPSERVE_HOST";
    /// HTTP port (KServe V2 REST, /predict, /metrics) [default: 8000]
    http_port: u16, "MLPSERVE_HTTP_PORT";
    /// gRPC port (KServe V2 gRPC) [default: 8001]
    grpc_port: u16, "MLPSERVE_GRPC_PORT";
    /// Also serve /metrics on this port [default: none]
    metrics_port: u16, "MLPSERVE_METRICS_PORT";
    /// Path to libonnxruntime.so [default: ORT_DYLIB_PATH, .onnxruntime/, next to the binary]
    ort_lib: PathBuf, "MLPSERVE_ORT_LIB";
    /// ONNX Runtime intra-op threads per model instance (a model's config.toml may override) [default: 1]
    intra_op_threads: usize, "MLPSERVE_INTRA_OP_THREADS";
    /// Async threads that serve connections, decode, batch and answer [default: the cores left after --intra-op-threads, at least 1]
    async_threads: usize, "MLPSERVE_ASYNC_THREADS";
    /// Execution provider for sessions [default: cpu]
    #[arg(value_enum)]
    execution_provider: ExecutionProvider, "MLPSERVE_EXECUTION_PROVIDER";
    /// When the execution provider cannot be used: error (the model fails to load) or cpu (load on the CPU with a warning) [default: error]
    #[arg(value_enum)]
    execution_provider_fallback: ProviderFallback, "MLPSERVE_EXECUTION_PROVIDER_FALLBACK";
    /// Largest accepted request body in bytes [default: 67108864]
    max_body_bytes: usize, "MLPSERVE_MAX_BODY_BYTES";
    /// Log format [default: text]
    #[arg(value_enum)]
    log_format: LogFormat, "MLPSERVE_LOG_FORMAT";
    /// Log level or filter, e.g. info or mlpserve=debug; RUST_LOG wins when set [default: info]
    log_level: String, "MLPSERVE_LOG_LEVEL";
    /// Seconds to let in-flight requests finish after SIGTERM/Ctrl-C [default: 30]
    shutdown_timeout: u64, "MLPSERVE_SHUTDOWN_TIMEOUT";
    // -- model lifecycle --
    /// none: load every model at start; poll: also rescan the repository; explicit: load only --load-model, then the repository API decides [default: none]
    #[arg(value_enum)]
    model_control_mode: ControlMode, "MLPSERVE_MODEL_CONTROL_MODE";
    /// Seconds between repository scans in poll mode [default: 15]
    repository_poll_secs: u64, "MLPSERVE_REPOSITORY_POLL_SECS";
    /// Model to load at start in explicit mode; repeatable, `*` = all [default: none]
    #[arg(value_delimiter = ',')]
    load_model: Vec<String>, "MLPSERVE_LOAD_MODEL";
    /// Fail start-up when any model fails to load (default: serve the others) [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    exit_on_error: bool, "MLPSERVE_EXIT_ON_ERROR";
    /// Readiness needs every model that should be loaded to be READY (false: the server is up) [default: true]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    strict_readiness: bool, "MLPSERVE_STRICT_READINESS";
    /// Bearer token the repository endpoints require (index, load, unload) [default: none]
    admin_token: String, "MLPSERVE_ADMIN_TOKEN";
    // --- connections, TLS, API keys (see config/transport.rs) ---
    /// Seconds a client has to send a request's headers; also bounds the TLS handshake and the first request on a new connection, and (HTTP/1.1) the wait for the next request [default: 10]
    header_read_timeout_secs: u64, "MLPSERVE_HEADER_READ_TIMEOUT_SECS";
    /// Longest silence in seconds while a request body is read (HTTP port); then 408 and close [default: 30]
    body_read_timeout_secs: u64, "MLPSERVE_BODY_READ_TIMEOUT_SECS";
    /// Seconds a connection may stay open with no request in flight [default: 60]
    idle_timeout_secs: u64, "MLPSERVE_IDLE_TIMEOUT_SECS";
    /// Most open client connections (all ports); at the cap the longest-idle one is closed for a newcomer, with none idle newcomers are refused [default: open-file limit minus 1/8]
    max_connections: usize, "MLPSERVE_MAX_CONNECTIONS";
    /// Seconds between HTTP/2 keep-alive PINGs (gRPC, HTTP/2); 0 = none [default: 30]
    http2_keepalive_interval_secs: u64, "MLPSERVE_HTTP2_KEEPALIVE_INTERVAL_SECS";
    /// Seconds to wait for a PING acknowledgement before closing [default: 20]
    http2_keepalive_timeout_secs: u64, "MLPSERVE_HTTP2_KEEPALIVE_TIMEOUT_SECS";
    /// TCP keep-alive idle seconds on accepted sockets; 0 = off [default: 60]
    tcp_keepalive_secs: u64, "MLPSERVE_TCP_KEEPALIVE_SECS";
    /// PEM certificate chain; with --tls-key both ports serve TLS only [default: none]
    tls_cert: PathBuf, "MLPSERVE_TLS_CERT";
    /// PEM private key of --tls-cert [default: none]
    tls_key: PathBuf, "MLPSERVE_TLS_KEY";
    /// PEM CA certificates; clients must present a certificate they signed (mTLS) [default: none]
    tls_client_ca: PathBuf, "MLPSERVE_TLS_CLIENT_CA";
    /// Seconds between checks of the certificate files for changes; SIGHUP reloads at once [default: 5]
    tls_reload_interval_secs: u64, "MLPSERVE_TLS_RELOAD_INTERVAL_SECS";
    /// API key required as `Authorization: Bearer <key>` (repeatable; the env variable takes a comma-separated list) [default: none, no authentication]
    #[arg(value_delimiter = ',')]
    api_key: Vec<String>, "MLPSERVE_API_KEYS";
    /// File with API keys, one per line (# comments) [default: none]
    api_key_file: PathBuf, "MLPSERVE_API_KEY_FILE";
    /// Health probes need an API key too [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    auth_health: bool, "MLPSERVE_AUTH_HEALTH";
    /// /metrics needs an API key too [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    auth_metrics: bool, "MLPSERVE_AUTH_METRICS";
    // --- admission (what a client can make the server pay) and shutdown ---
    /// Request body bytes all HTTP requests together may hold while being read and served;
    /// over it new requests get 503 + Retry-After [default: a quarter of the container's memory limit (cgroup) or else of RAM, at most 16 GiB, at least --max-body-bytes]
    max_inflight_bytes: usize, "MLPSERVE_MAX_INFLIGHT_BYTES";
    /// Seconds to keep serving with readiness 503 after SIGTERM before closing listeners, so load balancers stop routing here first [default: 0]
    shutdown_delay: u64, "MLPSERVE_SHUTDOWN_DELAY";
    /// Status of a request refused because its model's queue is full: 429 (HTTP 429 / gRPC RESOURCE_EXHAUSTED) or 503 (HTTP 503 / gRPC UNAVAILABLE, as Triton answers) [default: 429]
    overload_status: u16, "MLPSERVE_OVERLOAD_STATUS";
    /// Longest string element (BYTES tensor element, string feature) a request may send, in bytes; longer ones are refused with 400 [default: 4096]
    max_string_bytes: usize, "MLPSERVE_MAX_STRING_BYTES";
    // --- observing requests: OpenTelemetry traces and payload logging (config/observe.rs) ---
    /// OTLP collector URL, e.g. http://collector:4317; tracing is off without it [default: none]
    otlp_endpoint: String, "MLPSERVE_OTLP_ENDPOINT";
    // The observing flags' defaults are written once, in config/observe.rs; their help
    // texts print them from there.
    #[arg(value_enum, help = format!(
        "OTLP transport: grpc, or http/protobuf (a URL without a path gets /v1/traces) [default: {}]",
        observe::value_name(OtlpProtocol::default())
    ))]
    otlp_protocol: OtlpProtocol, "MLPSERVE_OTLP_PROTOCOL";
    #[arg(help = format!("service.name of the spans [default: {}]", observe::DEFAULT_SERVICE_NAME))]
    otlp_service_name: String, "MLPSERVE_OTLP_SERVICE_NAME";
    #[arg(help = format!(
        "Share of new traces recorded, 0..1; a caller's sampled flag (traceparent) is always followed [default: {:?}]",
        observe::DEFAULT_TRACE_SAMPLE_RATIO
    ))]
    trace_sample_ratio: f64, "MLPSERVE_TRACE_SAMPLE_RATIO";
    /// Payload log destination: file:DIR (JSON Lines, rotated) or an http:// URL (CloudEvents) [default: none, off]
    payload_log: String, "MLPSERVE_PAYLOAD_LOG";
    #[arg(help = format!(
        "Share of inference requests logged, 0..1 (a model's payload_log_sample overrides it) [default: {:?}]",
        observe::DEFAULT_PAYLOAD_LOG_SAMPLE
    ))]
    payload_log_sample: f64, "MLPSERVE_PAYLOAD_LOG_SAMPLE";
    #[arg(value_enum, help = format!(
        "What is logged: request, response or all [default: {}]",
        observe::value_name(PayloadLogMode::default())
    ))]
    payload_log_mode: PayloadLogMode, "MLPSERVE_PAYLOAD_LOG_MODE";
    /// Request headers copied into payload records (comma-separated); credentials never are [default: none]
    #[arg(value_delimiter = ',')]
    payload_log_headers: Vec<String>, "MLPSERVE_PAYLOAD_LOG_HEADERS";
    #[arg(help = format!(
        "A payload log file is rotated at this size [default: {}]",
        observe::DEFAULT_PAYLOAD_LOG_FILE_BYTES
    ))]
    payload_log_max_file_bytes: u64, "MLPSERVE_PAYLOAD_LOG_MAX_FILE_BYTES";
    #[arg(help = format!(
        "Rotated payload log files kept (older ones are deleted) [default: {}]",
        observe::DEFAULT_PAYLOAD_LOG_FILES
    ))]
    payload_log_max_files: usize, "MLPSERVE_PAYLOAD_LOG_MAX_FILES";
}

/// Default of `max_string_bytes`: the longest string element a request may send.
pub const DEFAULT_MAX_STRING_BYTES: usize = 4096;

/// How a request refused for a full queue is answered; written as its HTTP status, the
/// form `--overload-status` and the config file take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverloadStatus {
    /// HTTP 429 Too Many Requests / gRPC RESOURCE_EXHAUSTED: the request may be retried.
    #[default]
    TooManyRequests,
    /// HTTP 503 Service Unavailable / gRPC UNAVAILABLE, Triton's answer, which retry
    /// policies written for Triton (and Envoy's defaults) look for.
    Unavailable,
}

impl Serialize for OverloadStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(match self {
            OverloadStatus::TooManyRequests => 429,
            OverloadStatus::Unavailable => 503,
        })
    }
}

impl OverloadStatus {
    fn from_code(code: u16) -> Result<OverloadStatus, ConfigError> {
        match code {
            429 => Ok(OverloadStatus::TooManyRequests),
            503 => Ok(OverloadStatus::Unavailable),
            other => Err(ConfigError::Invalid(format!(
                "overload_status = {other} is not allowed: 429 (the default) or 503 (Triton's)"
            ))),
        }
    }
}

/// How the set of served models changes after start-up (Triton's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    /// Load everything at start; nothing changes afterwards.
    None,
    /// Load everything at start, then rescan the repository periodically.
    Poll,
    /// Load only `--load-model` at start; the repository API loads and unloads.
    Explicit,
}

/// Never logs the admin token, only whether one is set.
fn redact<S: serde::Serializer>(token: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if token.is_some() { "<set>" } else { "<none>" })
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub model_repository: PathBuf,
    pub host: String,
    pub http_port: u16,
    pub grpc_port: u16,
    pub metrics_port: Option<u16>,
    pub ort_lib: Option<PathBuf>,
    pub intra_op_threads: usize,
    /// Threads of the async runtime (the process builds its runtime with this many).
    pub async_threads: usize,
    pub execution_provider: ExecutionProvider,
    pub execution_provider_fallback: ProviderFallback,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub log_level: String,
    pub shutdown_timeout: Duration,
    // -- model lifecycle --
    pub model_control_mode: ControlMode,
    pub repository_poll: Duration,
    pub load_model: Vec<String>,
    pub exit_on_error: bool,
    pub strict_readiness: bool,
    #[serde(serialize_with = "redact")]
    pub admin_token: Option<String>,
    /// Connection bounds, TLS, API keys.
    pub transport: TransportConfig,
    // --- admission (what a client can make the server pay) and shutdown ---
    pub max_inflight_bytes: usize,
    /// Where `max_inflight_bytes` came from: the setting, or the memory limit it was
    /// derived from (container cgroup or host).
    pub max_inflight_bytes_from: String,
    pub shutdown_delay: Duration,
    /// The answer to a request refused for a full queue.
    pub overload_status: OverloadStatus,
    /// OpenTelemetry export; `None`: tracing off.
    pub traces: Option<TraceConfig>,
    /// Payload logging; `None`: off.
    pub payload_log: Option<PayloadLogConfig>,
    /// Longest string element a request may send, in bytes.
    pub max_string_bytes: usize,
}

impl ServerConfig {
    /// Merges the CLI/env layer over the file it names (if any) over the defaults.
    pub fn resolve(cli: ServerArgs) -> Result<ServerConfig, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => ServerArgs::default(),
        };
        let a = cli.over(file);
        let inflight = match a.max_inflight_bytes {
            Some(bytes) => (bytes, "max_inflight_bytes setting".to_string()),
            None => default_inflight_bytes(a.max_body_bytes.unwrap_or(64 << 20)),
        };
        let transport = TransportConfig::resolve(TransportArgs {
            header_read_timeout_secs: a.header_read_timeout_secs,
            body_read_timeout_secs: a.body_read_timeout_secs,
            idle_timeout_secs: a.idle_timeout_secs,
            max_connections: a.max_connections,
            http2_keepalive_interval_secs: a.http2_keepalive_interval_secs,
            http2_keepalive_timeout_secs: a.http2_keepalive_timeout_secs,
            tcp_keepalive_secs: a.tcp_keepalive_secs,
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            tls_client_ca: a.tls_client_ca.clone(),
            tls_reload_interval_secs: a.tls_reload_interval_secs,
            api_key: a.api_key.clone(),
            api_key_file: a.api_key_file.clone(),
            auth_health: a.auth_health,
            auth_metrics: a.auth_metrics,
        })?;
        let (traces, payload_log) = ObserveArgs {
            otlp_endpoint: a.otlp_endpoint.clone(),
            otlp_protocol: a.otlp_protocol,
            otlp_service_name: a.otlp_service_name.clone(),
            trace_sample_ratio: a.trace_sample_ratio,
            payload_log: a.payload_log.clone(),
            payload_log_sample: a.payload_log_sample,
            payload_log_mode: a.payload_log_mode,
            payload_log_headers: a.payload_log_headers.clone(),
            payload_log_max_file_bytes: a.payload_log_max_file_bytes,
            payload_log_max_files: a.payload_log_max_files,
        }
        .resolve()?;
        let config = ServerConfig {
            model_repository: a
                .model_repository
                .unwrap_or_else(|| PathBuf::from("models")),
            host: a.host.unwrap_or_else(|| "0.0.0.0".to_string()),
            http_port: a.http_port.unwrap_or(8000),
            grpc_port: a.grpc_port.unwrap_or(8001),
            metrics_port: a.metrics_port,
            ort_lib: a.ort_lib,
            intra_op_threads: a.intra_op_threads.unwrap_or(1),
            async_threads: a
                .async_threads
                .unwrap_or_else(|| default_async_threads(a.intra_op_threads.unwrap_or(1))),
            execution_provider: a.execution_provider.unwrap_or(ExecutionProvider::Cpu),
            execution_provider_fallback: a.execution_provider_fallback.unwrap_or_default(),
            max_body_bytes: a.max_body_bytes.unwrap_or(64 << 20),
            log_format: a.log_format.unwrap_or(LogFormat::Text),
            log_level: a.log_level.unwrap_or_else(|| "info".to_string()),
            shutdown_timeout: Duration::from_secs(a.shutdown_timeout.unwrap_or(30)),
            model_control_mode: a.model_control_mode.unwrap_or(ControlMode::None),
            repository_poll: Duration::from_secs(a.repository_poll_secs.unwrap_or(15)),
            load_model: a.load_model.unwrap_or_default(),
            exit_on_error: a.exit_on_error.unwrap_or(false),
            strict_readiness: a.strict_readiness.unwrap_or(true),
            admin_token: a.admin_token.filter(|t| !t.is_empty()),
            transport,
            // --- admission (what a client can make the server pay) and shutdown ---
            max_inflight_bytes: inflight.0,
            max_inflight_bytes_from: inflight.1,
            shutdown_delay: Duration::from_secs(a.shutdown_delay.unwrap_or(0)),
            overload_status: OverloadStatus::from_code(a.overload_status.unwrap_or(429))?,
            traces,
            payload_log,
            max_string_bytes: a.max_string_bytes.unwrap_or(DEFAULT_MAX_STRING_BYTES),
        };
        if config.repository_poll.is_zero() {
            return Err(ConfigError::Invalid(
                "repository_poll_secs must be at least 1".to_string(),
            ));
        }
        if config.intra_op_threads == 0 {
            return Err(ConfigError::Invalid(
                "intra_op_threads must be at least 1".to_string(),
            ));
        }
        config.check_ranges()?;
        Ok(config)
    }

    /// Range checks at start, so a mistyped value fails at once instead of misbehaving under
    /// load: errors name the key, its value and the range.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let threads = super::max_threads() as u64;
        let checks = [
            (
                "intra_op_threads",
                self.intra_op_threads as u64,
                1,
                threads,
                " (4 per core)",
            ),
            (
                "async_threads",
                self.async_threads as u64,
                1,
                threads,
                " (4 per core)",
            ),
            ("max_body_bytes", self.max_body_bytes as u64, 1, 1 << 32, ""),
            (
                "max_string_bytes",
                self.max_string_bytes as u64,
                1,
                u64::from(u32::MAX),
                " (a BYTES element's length is 4 bytes on the wire)",
            ),
            (
                "max_inflight_bytes",
                self.max_inflight_bytes as u64,
                self.max_body_bytes as u64,
                u64::MAX,
                " (at least max_body_bytes, so one maximal body fits)",
            ),
            (
                "shutdown_timeout",
                self.shutdown_timeout.as_secs(),
                0,
                3600,
                " seconds",
            ),
            (
                "shutdown_delay",
                self.shutdown_delay.as_secs(),
                0,
                3600,
                " seconds",
            ),
        ];
        for (key, value, min, max, note) in checks {
            if value < min || value > max {
                return Err(ConfigError::Invalid(format!(
                    "{key} = {value} is out of range: allowed {min}..={max}{note}"
                )));
            }
        }
        Ok(())
    }

    /// Defaults for a server on loopback with ephemeral ports, used by tests and benches.
    pub fn for_tests(model_repository: &Path) -> ServerConfig {
        let mut c = ServerConfig::resolve(ServerArgs::default()).expect("defaults are valid");
        c.model_repository = model_repository.to_path_buf();
        c.host = "127.0.0.1".to_string();
        c.http_port = 0;
        c.grpc_port = 0;
        // The same on every machine; tests of one async thread ask for it.
        c.async_threads = 2;
        c
    }
}

/// The cores one model instance's ORT threads leave free, at least one. An ORT thread
/// busy with a batch and more async threads than the remaining cores make the kernel
/// switch between them, and the runtime's threads wake and steal work from each other:
/// on 2 cores, 2 async threads cost ~25% more CPU per small request than 1 and slowed
/// a compute-bound model to 0.7 of its ceiling (1 thread: 0.8–0.9; scripts/BENCHMARKS.md).
fn default_async_threads(intra_op_threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(intra_op_threads).max(1)
}

/// A quarter of the memory the process may use (the container's limit, else the host's),
/// at most 16 GiB, and never below one maximal body; with where that figure came from.
fn default_inflight_bytes(max_body_bytes: usize) -> (usize, String) {
    let limit = super::MemoryLimit::detect();
    let bytes = usize::try_from(limit.bytes / 4)
        .unwrap_or(usize::MAX)
        .min(16 << 30)
        .max(max_body_bytes);
    (
        bytes,
        format!("a quarter of {} bytes, {}", limit.bytes, limit.source),
    )
}

fn read_file(path: &Path) -> Result<ServerArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Unreadable(format!("cannot read config file {}: {e}", path.display()))
    })?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::Syntax(format!("config file {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_wins_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("mlpserve-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(&file, "http_port = 9000\ngrpc_port = 9001\n").unwrap();
        let cli = ServerArgs {
            config: Some(file),
            http_port: Some(7000),
            ..Default::default()
        };
        let c = ServerConfig::resolve(cli).unwrap();
        assert_eq!(c.http_port, 7000);
        assert_eq!(c.grpc_port, 9001);
        assert_eq!(c.host, "0.0.0.0");
    }

    #[test]
    fn out_of_range_values_name_the_key_the_value_and_the_range() {
        let cases = [
            (
                ServerArgs {
                    intra_op_threads: Some(1_000_000),
                    ..Default::default()
                },
                "intra_op_threads = 1000000 is out of range: allowed 1..=",
            ),
            (
                ServerArgs {
                    max_body_bytes: Some(1000),
                    max_inflight_bytes: Some(999),
                    ..Default::default()
                },
                "max_inflight_bytes = 999 is out of range: allowed 1000..=",
            ),
            (
                ServerArgs {
                    shutdown_delay: Some(100_000),
                    ..Default::default()
                },
                "shutdown_delay = 100000 is out of range",
            ),
            (
                ServerArgs {
                    async_threads: Some(0),
                    ..Default::default()
                },
                "async_threads = 0 is out of range: allowed 1..=",
            ),
        ];
        for (args, expected) in cases {
            let err = ServerConfig::resolve(args).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn async_threads_default_to_the_cores_the_ort_threads_leave() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = |intra_op_threads| {
            ServerConfig::resolve(ServerArgs {
                intra_op_threads,
                ..Default::default()
            })
            .unwrap()
            .async_threads
        };
        assert_eq!(threads(None), cores.saturating_sub(1).max(1));
        assert_eq!(threads(Some(cores)), 1);
        let explicit = ServerConfig::resolve(ServerArgs {
            async_threads: Some(3),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(explicit.async_threads, 3);
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("mlpserve-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(&file, "http_prot = 9000\n").unwrap();
        let err = ServerConfig::resolve(ServerArgs {
            config: Some(file),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("http_prot"), "{err}");
    }
}
