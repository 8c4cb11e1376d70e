//! The command line of `mlpserve-bench`: what to load, how hard, and what to compare.

use std::path::PathBuf;
use std::time::Duration;

use crate::payload::Api;

/// Options of `mlpserve-bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server base URL (ignored with --model-repository).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Start the server in-process on this model repository (same config path as `serve`,
    /// loopback, ephemeral port) instead of using --url.
    #[arg(long)]
    pub model_repository: Option<PathBuf>,
    /// Server config file for the in-process server (as `serve --config`).
    #[arg(long)]
    pub server_config: Option<PathBuf>,
    /// Intra-op threads of the in-process server and of the ceiling's session (a model's
    /// config.toml wins, as in the server) [default: the server's default, 1].
    #[arg(long)]
    pub intra_op_threads: Option<usize>,
    /// Async threads of the in-process server [default: the server's default, the cores
    /// left after --intra-op-threads]. The load generator's thread comes on top.
    #[arg(long)]
    pub async_threads: Option<usize>,
    /// Path to libonnxruntime.so (in-process server and ceiling).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// Model to load.
    #[arg(long)]
    pub model: String,
    /// Model version [default: the one the server serves by default].
    #[arg(long)]
    pub model_version: Option<String>,
    /// Which API to call.
    #[arg(long, value_enum, default_value = "v2")]
    pub api: Api,
    /// `host:port` of an external server's gRPC port, for --api grpc (an in-process
    /// server's own port is used with --model-repository).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub grpc_addr: String,
    /// Request body file: a V2 infer body (--api v2) or a /predict body (--api predict).
    /// Without it a random request of --rows rows is built from the model's V2 metadata.
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// Rows per generated request.
    #[arg(long, default_value_t = 1)]
    pub rows: usize,
    /// Send generated V2 requests as binary tensors (and ask for binary outputs).
    #[arg(long)]
    pub binary: bool,
    /// Inputs of a generated request that form a ranking context (comma-separated): drawn
    /// once per request (one row) and repeated on every row, the same request a client
    /// without broadcast inputs sends.
    #[arg(long, value_delimiter = ',')]
    pub context: Vec<String>,
    /// Send the --context inputs once, with first dimension 1 (the model must declare them
    /// `broadcast`), the other inputs with --rows rows.
    #[arg(long)]
    pub context_once: bool,
    /// Measure both forms of the --context request (repeated on every row, and once) in
    /// alternating rounds at every level, and print context-once ÷ repeated rows/s and
    /// context-once ÷ the ceiling at the batch size the server ran.
    #[arg(long)]
    pub compare_context: bool,
    /// Rounds of --compare-context; each measures both forms at every level.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Concurrent clients per level; levels run in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Measured time per level (e.g. 10s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured load before each level's window.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Also measure the in-process ceiling (bare `session.run` on the same model file).
    #[arg(long)]
    pub ceiling: bool,
    /// Batch sizes the ceiling runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128,256")]
    pub ceiling_batches: Vec<usize>,
    /// Measured time per ceiling batch size (measured twice: before and after the load).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub ceiling_duration: Duration,
    /// Model file for the ceiling when the server is external [default: from --model-repository].
    #[arg(long)]
    pub model_file: Option<PathBuf>,
    /// Threads of the load generator's runtime (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Generated integers are drawn from [0, N).
    #[arg(long, default_value_t = 1000)]
    pub int_range: u64,
    /// Seed of the generated inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also run every level against the transport floor (axum + the V2 decoder with a
    /// canned answer, on the server's runtime; V2 only) and print server ÷ floor.
    #[arg(long)]
    pub floor: bool,
    /// Check the options and the --server-config file, print what would run and exit
    /// without loading ONNX Runtime or starting anything (so a prepared command line can be
    /// checked on a machine that cannot run it).
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `10s`, `500ms`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 10s, 500ms, 2m)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("'{text}' is not a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
