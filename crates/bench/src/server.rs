//! The server side of a bench run: start `mlpserve` in-process (same config path as
//! `serve`, loopback, ephemeral ports) or talk to one at `--url`; read its model metadata;
//! and snapshot its per-model counters (the Triton statistics endpoint, else `/metrics`)
//! so the mean executed batch size of a level can be derived.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::shared::{ServerArgs, ServerConfig};

/// A server started by the bench. Stop it with [`InProcess::stop`].
pub struct InProcess {
    /// `host:port` of its HTTP listener.
    pub addr: String,
    /// `host:port` of its gRPC listener.
    pub grpc_addr: String,
    pub config: ServerConfig,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), crate::shared::ServeError>>,
}

/// Starts a server on the current tokio runtime, resolved like `mlpserve serve` from
/// `args` (ports forced to 0 on 127.0.0.1), and waits until it is ready.
pub async fn start(mut args: ServerArgs) -> Result<InProcess, String> {
    args.host = Some("127.0.0.1".into());
    args.http_port = Some(0);
    args.grpc_port = Some(0);
    args.metrics_port = None;
    let config = ServerConfig::resolve(args).map_err(|e| e.to_string())?;
    let listeners = crate::shared::Listeners::bind(&config)
        .await
        .map_err(|e| format!("cannot bind: {e}"))?;
    let address = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string());
    let addr = address(&listeners.http).map_err(|e| e.to_string())?;
    let grpc_addr = address(&listeners.grpc).map_err(|e| e.to_string())?;
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(crate::shared::run(config.clone(), listeners, async {
        let _ = stop_rx.await;
    }));
    let server = InProcess {
        addr,
        grpc_addr,
        config,
        stop,
        task,
    };
    match wait_ready(&server).await {
        Ok(()) => Ok(server),
        // The server's own error says why (a missing ONNX Runtime library, a bad config).
        Err(_) if server.task.is_finished() => Err(match server.task.await {
            Ok(Err(why)) => format!("the in-process server stopped while starting: {why}"),
            Ok(Ok(())) => "the in-process server stopped while starting".to_string(),
            Err(e) => format!("the in-process server failed while starting: {e}"),
        }),
        Err(e) => Err(e),
    }
}

async fn wait_ready(server: &InProcess) -> Result<(), String> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/v2/health/ready", server.addr);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if server.task.is_finished() {
            return Err("the in-process server stopped while starting".into());
        }
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("the in-process server was not ready after 120 s".into())
}

impl InProcess {
    /// Graceful shutdown; returns the server's own result.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| format!("server task failed: {e}"))?
            .map_err(|e| e.to_string())
    }
}

/// The model file a repository serves for `model` (the highest version unless `version`).
pub fn model_file(
    repository: &std::path::Path,
    model: &str,
    version: Option<&str>,
) -> Result<PathBuf, String> {
    let dir = repository.join(model);
    let version = match version {
        Some(v) => v.to_string(),
        None => std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|v| dir.join(v.to_string()).join("model.onnx").is_file())
            .max()
            .ok_or_else(|| format!("no <version>/model.onnx under {}", dir.display()))?
            .to_string(),
    };
    Ok(dir.join(version).join("model.onnx"))
}

/// Cumulative counters of one model, read at the start and end of a level.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Rows inferred (Triton's `inference_count`).
    pub rows: u64,
    /// ORT executions (batches).
    pub executions: u64,
    /// Total queue time of successful requests, when the stats endpoint reports it.
    pub queue_ns: Option<u64>,
    pub success: Option<u64>,
}

impl Counters {
    /// Mean rows per execution between `self` (earlier) and `later`.
    pub fn mean_batch(&self, later: &Counters) -> Option<f64> {
        let execs = later.executions.checked_sub(self.executions)?;
        let rows = later.rows.checked_sub(self.rows)?;
        (execs > 0).then(|| rows as f64 / execs as f64)
    }

    /// Mean queue time per successful request between `self` and `later`, in µs.
    pub fn mean_queue_us(&self, later: &Counters) -> Option<f64> {
        let n = later.success?.checked_sub(self.success?)?;
        let ns = later.queue_ns?.checked_sub(self.queue_ns?)?;
        (n > 0).then(|| ns as f64 / n as f64 / 1e3)
    }
}

/// Reads the model's counters: `/v2/models/{m}/stats` first, `/metrics` as the fallback.
/// `None` when neither has them (an older or foreign server).
pub async fn counters(client: &reqwest::Client, base: &str, model: &str) -> Option<Counters> {
    let stats = async {
        let r = client
            .get(format!("{base}/v2/models/{model}/stats"))
            .send()
            .await
            .ok()?;
        let v: Value = r.error_for_status().ok()?.json().await.ok()?;
        from_stats(&v, model)
    };
    if let Some(c) = stats.await {
        return Some(c);
    }
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    from_metrics(&text, model)
}

fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// Sums Triton's `model_stats` entries of `model` (every version).
fn from_stats(v: &Value, model: &str) -> Option<Counters> {
    let entries = v["model_stats"].as_array()?;
    let mut c = Counters {
        queue_ns: Some(0),
        success: Some(0),
        ..Counters::default()
    };
    let mut found = false;
    for e in entries.iter().filter(|e| e["name"] == model) {
        found = true;
        c.rows += count(&e["inference_count"])?;
        c.executions += count(&e["execution_count"])?;
        let stats = &e["inference_stats"];
        c.queue_ns = c
            .queue_ns
            .zip(count(&stats["queue"]["ns"]))
            .map(|(a, b)| a + b);
        c.success = c
            .success
            .zip(count(&stats["success"]["count"]))
            .map(|(a, b)| a + b);
    }
    found.then_some(c)
}

/// Sums `mlpserve_inference_rows_total` and `mlpserve_executions_total` of `model`.
fn from_metrics(text: &str, model: &str) -> Option<Counters> {
    let label = format!("model=\"{model}\"");
    let sum = |metric: &str| -> Option<u64> {
        let prefix = format!("{metric}{{");
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    Some(Counters {
        rows: sum("mlpserve_inference_rows_total")?,
        executions: sum("mlpserve_executions_total")?,
        queue_ns: None,
        success: None,
    })
}

/// The V2 metadata of `model` (`GET /v2/models/{m}[/versions/{v}]`).
pub async fn metadata(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    version: Option<&str>,
) -> Result<Value, String> {
    let url = match version {
        Some(v) => format!("{base}/v2/models/{model}/versions/{v}"),
        None => format!("{base}/v2/models/{model}"),
    };
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_sum_versions_of_the_model() {
        let v = serde_json::json!({ "model_stats": [
            { "name": "m", "version": "1", "inference_count": 10, "execution_count": 2,
              "inference_stats": { "success": { "count": 10, "ns": 5 }, "queue": { "count": 10, "ns": 1000 } } },
            { "name": "m", "version": "2", "inference_count": "6", "execution_count": "1",
              "inference_stats": { "success": { "count": 6, "ns": 5 }, "queue": { "count": 6, "ns": 600 } } },
            { "name": "other", "version": "1", "inference_count": 99, "execution_count": 1 },
        ]});
        let c = from_stats(&v, "m").unwrap();
        assert_eq!(
            (c.rows, c.executions, c.queue_ns, c.success),
            (16, 3, Some(1600), Some(16))
        );
        assert!(from_stats(&v, "absent").is_none());
        let before = Counters {
            rows: 4,
            executions: 1,
            queue_ns: Some(0),
            success: Some(6),
        };
        assert_eq!(before.mean_batch(&c), Some(6.0));
        assert_eq!(before.mean_queue_us(&c), Some(0.16));
    }

    #[test]
    fn metrics_fallback_reads_the_model_lines() {
        let text = "# HELP x\nmlpserve_inference_rows_total{model=\"m\",version=\"1\"} 128\n\
                    mlpserve_inference_rows_total{model=\"n\",version=\"1\"} 5\n\
                    mlpserve_executions_total{model=\"m\",version=\"1\"} 4\n";
        let c = from_metrics(text, "m").unwrap();
        assert_eq!((c.rows, c.executions), (128, 4));
        assert!(from_metrics(text, "zzz").is_none());
    }
}
