//! The in-process ceiling: the same model file in an ORT session built exactly as the
//! server builds its sessions (`runtime::build_session`, same intra-op threads), run in a
//! tight loop on pre-built random inputs at several batch sizes. Its best rows/s is what
//! one instance could do with zero serving overhead; its batch-1 latency is the floor
//! under the server's low-load latency.
//!
//! A context model (`[context]` in its config.toml) is measured as the server runs it:
//! each run is its context graph on one row per request of the batch (`batch ÷ rows per
//! request`, rounded up) followed by model.onnx on the batch's rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::cpu;
use super::payload::{concrete_shape, random_tensor, InputDesc, RandomSpec, Rng};
use crate::shared::{
    build_session, read_spec, to_ort_value, ExecutionProvider, ModelConfig, Runtime, SessionOptions,
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct CeilingConfig {
    pub model_file: PathBuf,
    pub ort_lib: Option<PathBuf>,
    pub intra_op_threads: usize,
    pub execution_provider: ExecutionProvider,
    pub batch_sizes: Vec<usize>,
    /// Measured time per batch size (after a short warm-up).
    pub duration: Duration,
    pub random: RandomSpec,
    /// The context graph of a context model, run before the scorer in every run.
    pub context_file: Option<PathBuf>,
    /// Rows per request of the load: a run's context rows are its batch ÷ this.
    pub rows_per_request: usize,
}

/// One batch size's result.
#[derive(Debug, Clone)]
pub struct CeilingPoint {
    pub batch: usize,
    pub runs: u64,
    pub rows_per_s: f64,
    /// `session.run` latency percentiles, in µs.
    pub p50_us: f64,
    pub p99_us: f64,
    /// p50 of runs that each follow an idle gap ([`IDLE_GAP`]), in µs: what a run costs a
    /// server at low load, whose thread sleeps between requests (on a VM the first run
    /// after a sleep pays for cold caches and a halted vCPU).
    pub idle_p50_us: f64,
    /// The same after a gap the thread spends spinning (the vCPU never halts): tells the
    /// cost of the halt from that of the time that passed (other work on the host's
    /// shared caches).
    pub spin_p50_us: f64,
    /// Cores the process used while measuring (1.0 = one core, as intra_op_threads 1
    /// should get; less means the machine was busy with something else).
    pub cores: f64,
    /// (after − before) ÷ mean rows/s when measured before and after the load: how much
    /// the machine's speed changed meanwhile (0 for a single measurement).
    pub drift: f64,
    /// Rows of the context graph each run ran first (0: the model has none).
    pub context_rows: usize,
}

/// Sleep before each run of the idle-gap measurement: about what a server spends between
/// one client's requests at low load (HTTP, codecs, the client's own turn).
pub const IDLE_GAP: Duration = Duration::from_micros(500);
/// Most runs of the idle-gap measurement per batch size.
const IDLE_RUNS: u64 = 300;

/// Averages the measurements taken before (`a`) and after (`b`) the load, batch by batch.
pub fn combine(a: Vec<CeilingPoint>, b: Vec<CeilingPoint>) -> Result<Vec<CeilingPoint>, String> {
    if a.len() != b.len() {
        return Err("the two ceiling measurements cover different batch sizes".into());
    }
    Ok(a.into_iter()
        .zip(b)
        .map(|(a, b)| {
            let mean = (a.rows_per_s + b.rows_per_s) / 2.0;
            CeilingPoint {
                batch: a.batch,
                runs: a.runs + b.runs,
                rows_per_s: mean,
                p50_us: (a.p50_us + b.p50_us) / 2.0,
                p99_us: a.p99_us.max(b.p99_us),
                idle_p50_us: (a.idle_p50_us + b.idle_p50_us) / 2.0,
                spin_p50_us: (a.spin_p50_us + b.spin_p50_us) / 2.0,
                cores: (a.cores + b.cores) / 2.0,
                drift: (b.rows_per_s - a.rows_per_s) / mean.max(1e-9),
                context_rows: a.context_rows,
            }
        })
        .collect())
}

/// Runs the ceiling. Batch sizes a non-batched graph cannot take are skipped.
pub fn measure(config: &CeilingConfig) -> Result<Vec<CeilingPoint>, String> {
    let runtime = Runtime::load(config.ort_lib.as_deref()).map_err(|e| e.to_string())?;
    let options = SessionOptions {
        intra_op_threads: config.intra_op_threads,
        execution_provider: config.execution_provider,
        fallback: mlpserve::config::ProviderFallback::Error,
        device_id: 0,
    };
    let file = &config.model_file;
    let mut graph = Graph::load(&runtime, file, &options)?;
    let mut context = match &config.context_file {
        Some(file) => Some(Graph::load(&runtime, file, &options)?),
        None => None,
    };
    let mut rng = Rng::new(config.random.seed);
    let mut points = Vec::new();
    for &batch in &config.batch_sizes {
        if !graph.batched && batch != 1 {
            continue;
        }
        let context_rows = batch.div_ceil(config.rows_per_request.max(1)).max(1);
        let values = graph.values(batch, &mut rng, config.random)?;
        let context_values = match &context {
            Some(c) => Some(c.values(context_rows, &mut rng, config.random)?),
            None => None,
        };
        let mut run = || -> Result<Duration, String> {
            let t = Instant::now();
            if let (Some(c), Some(v)) = (context.as_mut(), context_values.as_ref()) {
                c.run(v)
                    .map_err(|e| format!("context graph at {context_rows} rows: {e}"))?;
            }
            graph
                .run(&values)
                .map_err(|e| format!("session.run at batch {batch}: {e}"))?;
            Ok(t.elapsed())
        };
        // Warm-up: ORT plans memory per shape on first use.
        let warm = Instant::now();
        while warm.elapsed() < config.duration / 10 {
            run()?;
        }
        let mut latency = Histogram::<u64>::new_with_bounds(100, 600_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        let mut runs = 0u64;
        let cpu_before = cpu::snapshot();
        let start = Instant::now();
        while start.elapsed() < config.duration || runs < 3 {
            let took = run()?;
            runs += 1;
            let _ = latency.record(took.as_nanos() as u64);
        }
        let elapsed = start.elapsed();
        let cores = cpu::cores(&cpu_before, &cpu::snapshot(), elapsed)
            .values()
            .sum();
        let wall = elapsed.as_secs_f64();
        let mut idle = Histogram::<u64>::new_with_bounds(100, 600_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?;
        let mut spin = idle.clone();
        let idle_start = Instant::now();
        while idle.len() < 3
            || (idle.len() < IDLE_RUNS && idle_start.elapsed() < config.duration / 2)
        {
            std::thread::sleep(IDLE_GAP);
            let took = run()?;
            let _ = idle.record(took.as_nanos() as u64);
            let gap = Instant::now();
            while gap.elapsed() < IDLE_GAP {
                std::hint::spin_loop();
            }
            let took = run()?;
            let _ = spin.record(took.as_nanos() as u64);
        }
        points.push(CeilingPoint {
            batch,
            runs,
            rows_per_s: (runs as usize * batch) as f64 / wall,
            p50_us: latency.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: latency.value_at_quantile(0.99) as f64 / 1e3,
            idle_p50_us: idle.value_at_quantile(0.5) as f64 / 1e3,
            spin_p50_us: spin.value_at_quantile(0.5) as f64 / 1e3,
            cores,
            drift: 0.0,
            context_rows: if context.is_some() { context_rows } else { 0 },
        });
    }
    Ok(points)
}

/// One graph of the ceiling: its session and the inputs it takes.
struct Graph {
    session: mlpserve::runtime::Session,
    inputs: Vec<InputDesc>,
    batched: bool,
}

impl Graph {
    fn load(
        runtime: &Runtime,
        file: &std::path::Path,
        options: &SessionOptions,
    ) -> Result<Graph, String> {
        let (session, _) = build_session(runtime.env(), file, options)
            .map_err(|e| format!("cannot load {} for the ceiling: {e}", file.display()))?;
        let spec = read_spec(&session, "ceiling", "1", ModelConfig::default())
            .map_err(|e| e.to_string())?;
        let inputs = spec
            .inputs
            .iter()
            .map(|s| InputDesc {
                name: s.name.clone(),
                dtype: s.dtype,
                shape: s.shape.clone(),
            })
            .collect();
        Ok(Graph {
            session,
            inputs,
            batched: spec.batched,
        })
    }

    /// Random inputs of `rows` rows, built once before the timed runs.
    fn values(
        &self,
        rows: usize,
        rng: &mut Rng,
        random: RandomSpec,
    ) -> Result<Vec<ort::value::DynValue>, String> {
        let mut values = Vec::with_capacity(self.inputs.len());
        for i in &self.inputs {
            let t = random_tensor(i.dtype, concrete_shape(i, rows), rng, random);
            values.push(to_ort_value(t).map_err(|e| format!("input '{}': {e}", i.name))?);
        }
        Ok(values)
    }

    fn run(&mut self, values: &[ort::value::DynValue]) -> Result<(), String> {
        let feed: Vec<(&str, &ort::value::DynValue)> = self
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .zip(values.iter())
            .collect();
        let outputs = self.session.ort().run(feed).map_err(|e| e.to_string())?;
        drop(outputs);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(batch: usize, rows_per_s: f64) -> CeilingPoint {
        CeilingPoint {
            batch,
            runs: 10,
            rows_per_s,
            p50_us: 1.0,
            p99_us: 2.0,
            idle_p50_us: 1.0,
            spin_p50_us: 1.0,
            cores: 1.0,
            drift: 0.0,
            context_rows: 0,
        }
    }

    #[test]
    fn before_and_after_average_and_show_the_drift() {
        let c = combine(
            vec![point(1, 90.0), point(8, 800.0)],
            vec![point(1, 110.0), point(8, 800.0)],
        )
        .unwrap();
        assert_eq!((c[0].rows_per_s, c[0].runs, c[0].drift), (100.0, 20, 0.2));
        assert_eq!(c[1].drift, 0.0);
        assert!(combine(vec![point(1, 1.0)], vec![]).is_err());
    }
}
