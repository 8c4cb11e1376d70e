//! `mlpserve bench`: closed-loop HTTP load and the in-process ORT ceiling.

/// Options of `mlpserve bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
}

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> Result<(), String> {
    Err("not implemented yet".to_string())
}
