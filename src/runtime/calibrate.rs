//! `max_batch_size = "auto"`: measure, at load, how long one run takes at growing batch
//! sizes and pick the largest batch whose run stays within the model's latency budget
//! (`max_batch_latency_ms`). A request is split only when it exceeds that size, so
//! batches are bounded by cost, not by a fixed row count. Separate from `warm_up`, which
//! it follows; it only runs all-zeros inputs and never touches requests or threads.

use std::time::{Duration, Instant};

use super::gate::Measuring;
use super::value::to_ort_value;
use super::{RunError, Session};
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
/// beyond it. Once run time is clearly linear in rows (see [`extrapolate`]) and runs
/// already exceed `floor`, the doubling stops: the size where the line meets the budget is
/// measured instead, and kept when it is within budget (an over-budget result, measured
/// twice, only bounds the doubling, which goes on below it). Sizes up to
/// the first over `floor` are always measured, so whatever is read off the samples below
/// `floor` (the inline rows) is as before. Other loads are held off ([`Measuring`]): their
/// work on the cores would slow the runs. Err when a run fails (e.g. a graph that rejects
/// all-zeros inputs); the caller then keeps [`UNMEASURED`].
pub fn calibrate(
    session: &mut Session,
    spec: &ModelSpec,
    budget: Duration,
    floor: Duration,
    cap: usize,
    _quiet: &Measuring,
) -> Result<Calibration, RunError> {
    search(budget, floor, cap, |rows, settle| {
        time_size(session, spec, rows, budget, settle)
    })
}

/// [`calibrate`]'s search, `time(rows, settle)` timing one size (see [`time_size`]).
fn search(
    budget: Duration,
    floor: Duration,
    cap: usize,
    mut time: impl FnMut(usize, bool) -> Result<Duration, RunError>,
) -> Result<Calibration, RunError> {
    let cap = cap.max(1);
    let mut samples: Vec<(usize, Duration)> = Vec::new();
    // An extrapolated size found over budget: the doubling goes on below it, so the
    // interpolation spans one doubling at most, as without the extrapolation.
    let mut beyond: Option<usize> = None;
    let mut batch = 1;
    loop {
        let t = time(batch, false)?;
        samples.push((batch, t));
        if t > budget || batch >= cap {
            break;
        }
        if beyond.is_none() && t > floor {
            if let Some(rows) = extrapolate(&samples, budget, cap) {
                let t = time(rows, true)?;
                samples.push((rows, t));
                if t <= budget {
                    break;
                }
                beyond = Some(rows);
            }
        }
        batch = (batch * 2).min(cap);
        if beyond.is_some_and(|rows| batch >= rows) {
            break;
        }
    }
    samples.sort_unstable_by_key(|&(rows, _)| rows);
    Ok(Calibration {
        max_batch: choose(&samples, budget, cap),
        samples,
    })
}

/// Smallest and largest time ratio of a doubling taken as linear growth: 2x ± 10%.
const LINEAR_RATIO: (f64, f64) = (1.8, 2.2);
/// An extrapolation aims this far into the budget. Run time grows a little faster than
/// the line once a batch outgrows the caches (mlp_digits: 2.2-2.3x per doubling above 512
/// rows), and timing noise adds a few percent: a size aimed at the budget itself comes out
/// over it, is measured twice and sends the doubling on below it, the costliest path.
/// Aimed at 80%, the size lands within budget, one run settles it, and the batch chosen is
/// within a few percent of the interpolated one.
const AIM: f64 = 0.8;

/// Where run time, once linear, reaches `budget` ([`AIM`] of it): when the last two
/// doublings each about doubled the time (2x ± 10%), the line through the last two samples
/// is followed that far, rounded down to a multiple of 8 and capped. None while the growth is not yet
/// linear (fixed per-run costs dominate small batches) or when the next doubling would
/// reach the size anyway.
fn extrapolate(samples: &[(usize, Duration)], budget: Duration, cap: usize) -> Option<usize> {
    let [(b0, t0), (b1, t1), (b2, t2)] = samples.get(samples.len().checked_sub(3)?..)? else {
        return None;
    };
    let doubled = |(lo, t_lo): (usize, Duration), (hi, t_hi): (usize, Duration)| {
        let ratio = t_hi.as_secs_f64() / t_lo.as_secs_f64().max(f64::MIN_POSITIVE);
        hi == 2 * lo && (LINEAR_RATIO.0..=LINEAR_RATIO.1).contains(&ratio)
    };
    if !doubled((*b0, *t0), (*b1, *t1)) || !doubled((*b1, *t1), (*b2, *t2)) {
        return None;
    }
    let per_row = t2.saturating_sub(*t1).as_secs_f64() / (b2 - b1) as f64;
    let room = budget.mul_f64(AIM).checked_sub(*t2)?.as_secs_f64();
    let rows = b2 + (room / per_row) as usize;
    let rows = if rows > 8 { rows / 8 * 8 } else { rows };
    let rows = rows.min(cap);
    // Within one doubling of the last size, doubling measures no more than this would.
    (rows > *b2 && rows != 2 * b2).then_some(rows)
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

/// The fastest of [`RUNS`] timed runs of `rows` rows (after one untimed run: a new batch
/// size makes ORT allocate). A result over `budget` decides where the search stops, so it
/// is measured once more, and the faster counts: a run slowed by other work on the machine
/// does not shrink the batch size for good. With `settle`, only the verdict against
/// `budget` is wanted: the first run within budget (the untimed one included, which can
/// only be slower) ends the measurement.
fn time_size(
    session: &mut Session,
    spec: &ModelSpec,
    rows: usize,
    budget: Duration,
    settle: bool,
) -> Result<Duration, RunError> {
    let stop = settle.then_some(budget);
    let time = time_runs(session, spec, rows, stop)?;
    if time <= budget {
        return Ok(time);
    }
    Ok(time.min(time_runs(session, spec, rows, stop)?))
}

fn time_runs(
    session: &mut Session,
    spec: &ModelSpec,
    rows: usize,
    stop_within: Option<Duration>,
) -> Result<Duration, RunError> {
    let inputs: Vec<Tensor> = spec.graph_inputs().iter().map(|s| zeros(s, rows)).collect();
    let mut best = Duration::MAX;
    for i in 0..=RUNS {
        let mut values = Vec::with_capacity(inputs.len());
        for (s, t) in spec.graph_inputs().iter().zip(&inputs) {
            values.push((s.name.as_str(), to_ort_value(t.clone())?));
        }
        let started = Instant::now();
        session.graph.run(values)?;
        let time = started.elapsed();
        if i > 0 || stop_within.is_some() {
            best = best.min(time);
        }
        if stop_within.is_some_and(|limit| best <= limit) {
            break;
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

    #[test]
    fn follows_a_linear_growth_to_the_budget() {
        let budget = us(5000);
        // Fixed cost 20 µs, then 2.6 µs per row: linear from 128 rows on.
        let time = |rows: u64| us(20 + rows * 26 / 10);
        let samples: Vec<_> = [64, 128, 256, 512]
            .iter()
            .map(|&b| (b as usize, time(b)))
            .collect();
        // The line through 256 and 512 rows meets 80% of 5 ms at about 1530 rows: 1528,
        // a multiple of 8.
        assert_eq!(extrapolate(&samples, budget, 4096), Some(1528));
        // Capped; at twice the last size doubling measures the same.
        assert_eq!(extrapolate(&samples, budget, 1000), Some(1000));
        assert_eq!(extrapolate(&samples, budget, 1024), None);
        // Measured and within budget: that size is chosen, nothing beyond it.
        let mut verified = samples.clone();
        verified.push((1528, time(1528)));
        assert_eq!(choose(&verified, budget, 4096), 1528);
        // Measured over budget: the interpolation stays below it.
        let mut over = samples.clone();
        over.push((1528, us(5600)));
        let chosen = choose(&over, budget, 4096);
        assert!((512..1528).contains(&chosen), "{chosen}");
    }

    #[test]
    fn keeps_doubling_until_the_growth_is_linear() {
        let budget = us(5000);
        // Fixed costs dominate: doubling the rows adds far less than double the time.
        let flat = [(1, us(21)), (2, us(22)), (4, us(25))];
        assert_eq!(extrapolate(&flat, budget, 4096), None);
        // One doubling linear, the one before not.
        let once = [(64, us(100)), (128, us(150)), (256, us(300))];
        assert_eq!(extrapolate(&once, budget, 4096), None);
        // Faster than linear growth (a cache overflowing) is no line to follow either.
        let steep = [(256, us(600)), (512, us(1500)), (1024, us(3500))];
        assert_eq!(extrapolate(&steep, budget, 4096), None);
        // Too few samples.
        assert_eq!(extrapolate(&[(1, us(10)), (2, us(20))], budget, 4096), None);
        // Already over budget: nothing to extrapolate to.
        let over = [(256, us(1400)), (512, us(2800)), (1024, us(5600))];
        assert_eq!(extrapolate(&over, budget, 4096), None);
    }

    /// Runs [`search`] on a model whose run of `rows` takes `time(rows)`; the sizes it
    /// measured, in order, and what it chose.
    fn searched(floor: u64, cap: usize, time: impl Fn(usize) -> Duration) -> (Vec<usize>, usize) {
        let mut measured = Vec::new();
        let c = search(us(5000), us(floor), cap, |rows, _| {
            measured.push(rows);
            Ok(time(rows))
        })
        .unwrap();
        (measured, c.max_batch)
    }

    #[test]
    fn a_linear_model_is_measured_up_to_the_floor_and_then_at_the_budget() {
        // 20 µs per run, then 2.6 µs per row (mlp_digits on this machine, roughly).
        let linear = |rows: usize| us(20 + rows as u64 * 26 / 10);
        let (measured, chosen) = searched(500, 4096, linear);
        assert_eq!(measured, [1, 2, 4, 8, 16, 32, 64, 128, 256, 1528]);
        assert_eq!(chosen, 1528);
        // Without a floor the line is followed as soon as it is one.
        let (measured, chosen) = searched(0, 4096, linear);
        assert_eq!(measured.last(), Some(&1528));
        assert!(measured.len() < 10, "{measured:?}");
        assert_eq!(chosen, 1528);
        // Everything fits: the cap, measured.
        let (measured, chosen) = searched(500, 1024, linear);
        assert_eq!(measured, [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024]);
        assert_eq!(chosen, 1024);
    }

    #[test]
    fn a_size_past_the_line_over_budget_falls_back_to_doubling_below_it() {
        // Linear up to 1024 rows, then four times slower per row (a cache overflowing):
        // the line from below promises 1528 rows, which take 7.9 ms.
        let kinked = |rows: usize| {
            let r = rows as u64;
            us(20 + r.min(1024) * 26 / 10 + r.saturating_sub(1024) * 104 / 10)
        };
        let (measured, chosen) = searched(500, 4096, kinked);
        assert_eq!(
            measured,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 1528, 512, 1024]
        );
        // Between 1024 (2.7 ms) and 1528 (7.9 ms), as the line through both says.
        assert!((1024..1528).contains(&chosen), "{chosen}");
        assert!(kinked(chosen) <= us(5000) + us(1000), "{chosen}");
    }

    #[test]
    fn a_model_that_never_grows_linearly_is_doubled_as_before() {
        // Time grows by up to 2.8x per doubling: no line to follow.
        let steep = |rows: usize| us((rows as f64).powf(1.5) as u64 + 10);
        let (measured, _) = searched(500, 4096, steep);
        let doublings: Vec<usize> = (0..measured.len()).map(|i| 1 << i).collect();
        assert_eq!(measured, doublings);
        assert!(steep(*measured.last().unwrap()) > us(5000));
    }
}
