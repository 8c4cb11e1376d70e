//! Settings of the two observers of requests: OpenTelemetry traces (`--otlp-*`,
//! `--trace-sample-ratio`) and payload logging (`--payload-log*`). Resolved and checked
//! here once; the `telemetry` and `payload_log` modules only read them.

use std::path::PathBuf;

use super::ConfigError;
use serde::{Deserialize, Serialize};

/// Share of new traces (those without a sampled caller) that are recorded, when
/// `--trace-sample-ratio` is not given: every request, as the OpenTelemetry SDKs default to.
pub const DEFAULT_TRACE_SAMPLE_RATIO: f64 = 1.0;
/// Service name spans carry when `--otlp-service-name` is not given.
pub const DEFAULT_SERVICE_NAME: &str = "mlpserve";
/// Share of inference requests the payload log records, when neither
/// `--payload-log-sample` nor a model's `payload_log_sample` is given: all of them.
pub const DEFAULT_PAYLOAD_LOG_SAMPLE: f64 = 1.0;
/// A payload log file is rotated when it reaches this many bytes.
pub const DEFAULT_PAYLOAD_LOG_FILE_BYTES: u64 = 100 << 20;
/// Rotated payload log files kept besides the one being written.
pub const DEFAULT_PAYLOAD_LOG_FILES: usize = 10;

/// The name a value of a flag's enum has on the command line (as `--help` shows it).
pub fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// OTLP transport: OTLP/gRPC (port 4317 by convention) or OTLP/HTTP with protobuf bodies
/// (port 4318, path `/v1/traces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
pub enum OtlpProtocol {
    #[default]
    #[value(name = "grpc")]
    #[serde(rename = "grpc")]
    Grpc,
    #[value(name = "http/protobuf")]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Where and how spans are exported; absent when no `--otlp-endpoint` is set (tracing off).
#[derive(Debug, Clone, Serialize)]
pub struct TraceConfig {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    /// Parent-based: a caller's sampled flag is followed; new traces are kept at this ratio.
    pub sample_ratio: f64,
}

/// What a payload record holds: the request, the response, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadLogMode {
    Request,
    Response,
    #[default]
    All,
}

/// Where payload records go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PayloadSink {
    /// JSON Lines files in this directory, rotated by size.
    Files(PathBuf),
    /// CloudEvents (binary content mode) POSTed to this http:// URL.
    Http(String),
}

/// Payload logging; absent when no `--payload-log` is set.
#[derive(Debug, Clone, Serialize)]
pub struct PayloadLogConfig {
    pub sink: PayloadSink,
    /// Share of requests logged (a model's `payload_log_sample` overrides it).
    pub sample: f64,
    pub mode: PayloadLogMode,
    /// Request headers copied into records (lower case); credentials never are.
    pub headers: Vec<String>,
    pub max_file_bytes: u64,
    pub max_files: usize,
}

/// Headers never copied into a record, whatever the allow-list says: credentials and
/// client certificate material.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-client-cert",
    "x-forwarded-client-cert",
    "ssl-client-cert",
];

/// Whether a header may never be logged: a listed one, or one whose name says it holds a
/// secret (`…token…`, `…secret…`, `…password…`, `…api-key…`).
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str())
        || ["token", "secret", "password", "api-key", "apikey", "auth"]
            .iter()
            .any(|s| name.contains(s))
}

/// The flags' raw values, as `ServerArgs` holds them.
pub struct ObserveArgs {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<OtlpProtocol>,
    pub otlp_service_name: Option<String>,
    pub trace_sample_ratio: Option<f64>,
    pub payload_log: Option<String>,
    pub payload_log_sample: Option<f64>,
    pub payload_log_mode: Option<PayloadLogMode>,
    pub payload_log_headers: Option<Vec<String>>,
    pub payload_log_max_file_bytes: Option<u64>,
    pub payload_log_max_files: Option<usize>,
}

/// A ratio setting in 0..=1, or an error naming the key and the value.
fn ratio(key: &str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid(format!(
            "{key} = {value} is out of range: allowed 0.0..=1.0"
        )))
    }
}

impl ObserveArgs {
    /// Checks and fills defaults: (traces, payload log), each `None` when off.
    pub fn resolve(self) -> Result<(Option<TraceConfig>, Option<PayloadLogConfig>), ConfigError> {
        let sample_ratio = ratio(
            "trace_sample_ratio",
            self.trace_sample_ratio
                .unwrap_or(DEFAULT_TRACE_SAMPLE_RATIO),
        )?;
        let traces = match self.otlp_endpoint.filter(|e| !e.is_empty()) {
            None => None,
            Some(endpoint) => {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(ConfigError::Invalid(format!(
                        "otlp_endpoint = {endpoint:?} is not a URL: expected http://host:port (e.g. http://collector:4317 for OTLP/gRPC)"
                    )));
                }
                Some(TraceConfig {
                    endpoint,
                    protocol: self.otlp_protocol.unwrap_or_default(),
                    service_name: self
                        .otlp_service_name
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string()),
                    sample_ratio,
                })
            }
        };
        let sample = ratio(
            "payload_log_sample",
            self.payload_log_sample
                .unwrap_or(DEFAULT_PAYLOAD_LOG_SAMPLE),
        )?;
        let payload = match self.payload_log.filter(|d| !d.is_empty()) {
            None => None,
            Some(dest) => {
                let sink = if let Some(dir) = dest.strip_prefix("file:") {
                    if dir.is_empty() {
                        return Err(ConfigError::Invalid(
                            "payload_log = \"file:\" names no directory: expected file:DIR"
                                .to_string(),
                        ));
                    }
                    PayloadSink::Files(PathBuf::from(dir))
                } else if dest.starts_with("http://") || dest.starts_with("https://") {
                    PayloadSink::Http(dest)
                } else {
                    return Err(ConfigError::Invalid(format!(
                        "payload_log = {dest:?} is not a destination: expected file:DIR or an http(s):// URL"
                    )));
                };
                let headers = self.payload_log_headers.unwrap_or_default();
                if let Some(secret) = headers.iter().find(|h| is_secret_header(h)) {
                    return Err(ConfigError::Invalid(format!(
                        "payload_log_headers names {secret:?}, which carries credentials and is never logged"
                    )));
                }
                let max_file_bytes = self
                    .payload_log_max_file_bytes
                    .unwrap_or(DEFAULT_PAYLOAD_LOG_FILE_BYTES);
                if max_file_bytes < 1024 {
                    return Err(ConfigError::Invalid(format!(
                        "payload_log_max_file_bytes = {max_file_bytes} is out of range: allowed 1024..="
                    )));
                }
                Some(PayloadLogConfig {
                    sink,
                    sample,
                    mode: self.payload_log_mode.unwrap_or_default(),
                    headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    max_file_bytes,
                    max_files: self
                        .payload_log_max_files
                        .unwrap_or(DEFAULT_PAYLOAD_LOG_FILES),
                })
            }
        };
        Ok((traces, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ObserveArgs {
        ObserveArgs {
            otlp_endpoint: None,
            otlp_protocol: None,
            otlp_service_name: None,
            trace_sample_ratio: None,
            payload_log: None,
            payload_log_sample: None,
            payload_log_mode: None,
            payload_log_headers: None,
            payload_log_max_file_bytes: None,
            payload_log_max_files: None,
        }
    }

    #[test]
    fn both_are_off_without_a_destination() {
        let (t, p) = args().resolve().unwrap();
        assert!(t.is_none() && p.is_none());
    }

    #[test]
    fn an_endpoint_turns_tracing_on_with_the_documented_defaults() {
        let (t, _) = ObserveArgs {
            otlp_endpoint: Some("http://collector:4317".into()),
            ..args()
        }
        .resolve()
        .unwrap();
        let t = t.unwrap();
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.service_name, "mlpserve");
        assert_eq!(t.sample_ratio, DEFAULT_TRACE_SAMPLE_RATIO);
    }

    #[test]
    fn mistakes_name_the_key_and_what_was_expected() {
        let cases = [
            (
                ObserveArgs {
                    trace_sample_ratio: Some(1.5),
                    ..args()
                },
                "trace_sample_ratio = 1.5 is out of range",
            ),
            (
                ObserveArgs {
                    otlp_endpoint: Some("collector:4317".into()),
                    ..args()
                },
                "is not a URL",
            ),
            (
                ObserveArgs {
                    payload_log: Some("/tmp/x".into()),
                    ..args()
                },
                "expected file:DIR or an http(s):// URL",
            ),
            (
                ObserveArgs {
                    payload_log: Some("file:/tmp/x".into()),
                    payload_log_headers: Some(vec!["Authorization".into()]),
                    ..args()
                },
                "carries credentials",
            ),
            (
                ObserveArgs {
                    payload_log: Some("file:/tmp/x".into()),
                    payload_log_sample: Some(-0.1),
                    ..args()
                },
                "payload_log_sample = -0.1 is out of range",
            ),
        ];
        for (a, expected) in cases {
            let err = a.resolve().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn credential_headers_are_recognised() {
        for h in [
            "authorization",
            "X-Api-Key",
            "x-auth-token",
            "cookie",
            "x-forwarded-client-cert",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in ["x-request-id", "user-agent", "x-tenant"] {
            assert!(!is_secret_header(h), "{h}");
        }
    }
}
