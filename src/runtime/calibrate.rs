//! `max_batch_size = "auto"`: measure, at load, how long one run takes at growing batch
//! sizes and pick the largest batch whose run stays within the model's latency budget
//! (`max_batch_latency_ms`). A request is split only when it exceeds that size, so
//! batches are bounded by cost, not by a fixed row count. Separate from `warm_up`, which
//! it follows; it only runs all-zeros inputs and never touches requests or threads.

use std::time::{Duration, Instant};

use super::value::to_ort_value;
use super::Session;
use crate::spec::{ModelSpec, TensorSpec};
use crate::tensor::{element_count, Tensor, TensorData};

/// The size used before (or instead of) a measurement: the old fixed default.
pub const UNMEASURED: usize = 128;
/// No automatic batch exceeds this many rows, however cheap the model.
pub const AUTO_CAP: usize = 4096;
/// Timed runs per batch size; the fastest counts (the least disturbed by other work).
const RUNS: usize = 3;

/// What the measurement found.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// The chosen `max_batch_size`.
    pub max_batch: usize,
    /// (batch size, fastest run) for every size measured, ascending.
    pub samples: Vec<(usize, Duration)>,
}

/// Measures batches of 1, 2, 4, … rows until a run exceeds `budget` in two measurements (or
/// `cap` is reached), then interpolates between the last size within budget and the first
/// beyond it. Err when a run fails (e.g. a graph that rejects all-zeros inputs); the
/// caller then keeps [`UNMEASURED`].
pub fn calibrate(
    session: &mut Session,
    spec: &ModelSpec,
    budget: Duration,
    cap: usize,
) -> Result<Calibration, String> {
    let cap = cap.max(1);
    let mut samples: Vec<(usize, Duration)> = Vec::new();
    let mut batch = 1;
    loop {
        let mut time = time_runs(session, spec, batch)?;
        if time > budget {
            // Over budget decides where we stop: measure once more, so a run slowed by
            // other work on the machine does not shrink the batch size for good.
            time = time.min(time_runs(session, spec, batch)?);
        }
        samples.push((batch, time));
        if time > budget || batch >= cap {
            break;
        }
        batch = (batch * 2).min(cap);
    }
    Ok(Calibration {
        max_batch: choose(&samples, budget, cap),
        samples,
    })
}

/// The largest size within budget, interpolating linearly towards the first size over it
/// (run time grows about linearly with rows once a batch fills the core).
fn choose(samples: &[(usize, Duration)], budget: Duration, cap: usize) -> usize {
    let within = samples.iter().rev().find(|(_, t)| *t <= budget).copied();
    let over = samples.iter().find(|(_, t)| *t > budget).copied();
    let chosen = match (within, over) {
        // Even one row is over budget: run one row at a time.
        (None, _) => 1,
        (Some((b, _)), None) => b,
        (Some((lo, t_lo)), Some((hi, t_hi))) => {
            let span = t_hi.saturating_sub(t_lo).as_secs_f64();
            let room = budget.saturating_sub(t_lo).as_secs_f64();
            let extra = if span > 0.0 {
                ((hi - lo) as f64 * room / span) as usize
            } else {
                0
            };
            // Round down to a multiple of 8 above 8 rows: nicer numbers, same cost.
            let b = lo + extra.min(hi - lo - 1);
            if b > 8 {
                b / 8 * 8
            } else {
                b
            }
        }
    };
    chosen.clamp(1, cap)
}

fn time_runs(session: &mut Session, spec: &ModelSpec, rows: usize) -> Result<Duration, String> {
    let inputs: Vec<Tensor> = spec.graph_inputs().iter().map(|s| zeros(s, rows)).collect();
    let mut best = Duration::MAX;
    // One untimed run first: a new batch size makes ORT allocate.
    for i in 0..=RUNS {
        let mut values = Vec::with_capacity(inputs.len());
        for (s, t) in spec.graph_inputs().iter().zip(&inputs) {
            values.push((
                s.name.as_str(),
                to_ort_value(t.clone()).map_err(|e| e.to_string())?,
            ));
        }
        let started = Instant::now();
        session.graph.run(values).map_err(|e| e.to_string())?;
        if i > 0 {
            best = best.min(started.elapsed());
        }
    }
    Ok(best)
}

/// An all-zeros (empty-string) input of `rows` rows (other dynamic dims = 1).
fn zeros(s: &TensorSpec, rows: usize) -> Tensor {
    let mut shape: Vec<usize> = s.shape.iter().map(|&d| d.max(1) as usize).collect();
    if let (Some(first), Some(-1)) = (shape.first_mut(), s.shape.first()) {
        *first = rows;
    }
    let count = element_count(&shape);
    let data = TensorData::zeros(s.dtype, count);
    Tensor { shape, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn picks_the_largest_batch_within_budget() {
        let budget = us(5000);
        // Linear model: 10 µs per row; 500 rows fit.
        let samples: Vec<_> = (0..10).map(|i| (1 << i, us(10 << i))).collect();
        assert_eq!(choose(&samples, budget, 4096), 496);
        // Everything fits: the largest measured (the cap).
        assert_eq!(choose(&[(1, us(1)), (2, us(2))], budget, 2), 2);
        // One row is already over budget.
        assert_eq!(choose(&[(1, us(9000))], budget, 4096), 1);
        // Small sizes are not rounded.
        assert_eq!(choose(&[(4, us(4000)), (8, us(6000))], budget, 4096), 6);
    }
}
