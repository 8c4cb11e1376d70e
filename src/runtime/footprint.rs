//! How much memory and time ONNX Runtime needs per padded input element of one model,
//! measured at load on the throwaway calibration session. The batcher turns the figures
//! into limits (a batch's estimated peak, the inline gate) and admission charges a
//! request's estimate to the in-flight budget. Only runs all-ones inputs; never touches
//! requests, queues or threads.
//!
//! Memory is read from the kernel: `echo 5 > /proc/self/clear_refs` resets the process's
//! peak resident size (`VmHWM`) to its current one, one probe run follows, and the peak
//! minus the resident size before the run is what the run needed. The probe uses inputs
//! long enough (about a million padded elements) that fixed costs are small beside the
//! per-element ones. Where the kernel cannot tell (not Linux, `/proc` read-only) the cost
//! falls back to [`FALLBACK_BYTES_PER_ELEMENT`] and the log says so.

use std::time::{Duration, Instant};

use super::gate::Measuring;
use super::value::to_ort_value;
use super::{RunError, Session};
use crate::spec::{Footprint, ModelSpec, TensorSpec, FALLBACK_BYTES_PER_ELEMENT};
use crate::tensor::{
    dispatch_dtype, element_count, DataType, Element, FromJson, JsonNumber, Tensor, TensorData,
};

/// Padded elements of the first, small probe run; it sizes the second.
const FIRST_PROBE_ELEMENTS: usize = 1 << 12;
/// Working memory the second probe run aims at: large enough that ORT's per-element memory
/// dominates its fixed costs and the noise of other threads, small enough for load time
/// and a small container.
const PROBE_TARGET_BYTES: usize = 32 << 20;
/// Run time the second probe run aims at, at most: compute-heavy graphs get a smaller
/// probe (their memory per element is then known less precisely, and errs high).
const PROBE_TARGET_TIME: Duration = Duration::from_millis(20);
/// The second probe run never exceeds this many padded elements (however cheap each is).
const MAX_PROBE_ELEMENTS: usize = 1 << 22;
/// Length the probe gives dynamic non-batch axes (a padding bucket, so padded = given).
const PROBE_LENGTH: usize = 4096;

/// Measures `spec`'s footprint on `session`, which should be fresh so the runs allocate
/// instead of reusing arena memory: a small run sizes a second one that needs about
/// [`PROBE_TARGET_BYTES`] or runs about [`PROBE_TARGET_TIME`], whichever is smaller; the
/// cost per element is the peak growth of both runs over the second run's elements (the
/// second may reuse what the first left in ORT's arena, so counting both errs high, by at
/// most the small run's share). Dynamic non-batch axes are at [`PROBE_LENGTH`] (at most
/// the input's `max_pad_length`); only then is the second run repeated for its time, which
/// the inline gate needs for such models alone. `clear_refs` resets one process-wide peak,
/// so the caller holds off other loads ([`Measuring`]): their allocations would count as
/// the probe's. Err when a run fails; the caller keeps the fallback.
pub fn measure(
    session: &mut Session,
    spec: &ModelSpec,
    _quiet: &Measuring,
) -> Result<Footprint, RunError> {
    let dims: Vec<Vec<usize>> = spec
        .graph_inputs()
        .iter()
        .map(|s| probe_dims(spec, s))
        .collect();
    let width: usize = dims.iter().map(|d| element_count(d)).sum::<usize>().max(1);
    let variable = spec.graph_inputs().iter().any(|s| {
        s.shape
            .iter()
            .skip(usize::from(spec.batched))
            .any(|&d| d < 0)
    });
    let small = probe(session, spec, &dims, width, FIRST_PROBE_ELEMENTS)?;
    let guess = small
        .grown
        .map_or(FALLBACK_BYTES_PER_ELEMENT, |b| b / small.elements)
        .max(largest_element(spec));
    let by_time = PROBE_TARGET_TIME.as_nanos() as f64 * small.elements as f64
        / small.time.as_nanos().max(1) as f64;
    let target = (PROBE_TARGET_BYTES / guess)
        .min(by_time as usize)
        .clamp(small.elements, MAX_PROBE_ELEMENTS);
    let large = probe(session, spec, &dims, width, target)?;
    let nanos_per_element = if variable {
        // Timed apart from the measured run (which allocates).
        let again = probe(session, spec, &dims, width, target)?;
        again.time.min(large.time).as_nanos() as f64 / large.elements.max(1) as f64
    } else {
        0.0
    };
    Ok(match (small.grown, large.grown) {
        (Some(first), Some(second)) => Footprint {
            // At least the input itself: a run never needs less than what it reads.
            bytes_per_element: ((first + second) / large.elements).max(largest_element(spec)),
            measured: true,
            nanos_per_element,
        },
        _ => Footprint {
            nanos_per_element,
            ..Footprint::default()
        },
    })
}

/// What one probe run found.
struct Probe {
    /// Growth of the process's peak resident size in bytes; None where the kernel cannot tell.
    grown: Option<usize>,
    /// Padded elements the run really had.
    elements: usize,
    time: Duration,
}

/// One run of about `elements` padded elements.
fn probe(
    session: &mut Session,
    spec: &ModelSpec,
    dims: &[Vec<usize>],
    width: usize,
    elements: usize,
) -> Result<Probe, RunError> {
    // More rows than a served batch may hold is fine: only the cost per element counts.
    let rows = if spec.batched {
        (elements / width).max(1)
    } else {
        1
    };
    let mut values = Vec::with_capacity(spec.graph_inputs().len());
    for (s, d) in spec.graph_inputs().iter().zip(dims) {
        let t = ones(s, rows, d, spec.batched);
        values.push((s.name.as_str(), to_ort_value(t)?));
    }
    // The inputs exist before the reset: only what the run itself allocates counts.
    let before = reset_peak();
    let started = Instant::now();
    let outputs = session.graph.run(values)?;
    let time = started.elapsed();
    let peak = read_status("VmHWM:");
    drop(outputs);
    Ok(Probe {
        grown: before.zip(peak).map(|(b, p)| p.saturating_sub(b)),
        elements: rows * width,
        time,
    })
}

/// Non-batch dims for the probe: fixed dims as the graph says, dynamic ones at the probe
/// length (at most the input's `max_pad_length` when it pads).
fn probe_dims(spec: &ModelSpec, s: &TensorSpec) -> Vec<usize> {
    let cap = spec
        .config
        .inputs
        .get(&s.name)
        .map_or(PROBE_LENGTH, |c| c.max_pad_length.max(1));
    s.shape
        .iter()
        .enumerate()
        .skip(usize::from(spec.batched))
        .map(|(_, &d)| {
            if d >= 0 {
                d as usize
            } else {
                PROBE_LENGTH.min(cap)
            }
        })
        .collect()
}

/// An all-ones input (ones, not zeros: index inputs such as item ids stay in range, and
/// masks are on, so attention runs over the whole length).
fn ones(s: &TensorSpec, rows: usize, dims: &[usize], batched: bool) -> Tensor {
    let mut shape = Vec::with_capacity(dims.len() + 1);
    if batched {
        shape.push(rows);
    }
    shape.extend_from_slice(dims);
    let count = element_count(&shape);
    let data = dispatch_dtype!(s.dtype, T => <T as Element>::wrap(vec![<T as FromJson>::from_json(JsonNumber::Float(1.0)).unwrap_or_default(); count]),
        bytes => TensorData::zeros(DataType::Bytes, count));
    Tensor { shape, data }
}

fn largest_element(spec: &ModelSpec) -> usize {
    spec.graph_inputs()
        .iter()
        .map(|s| s.dtype.fixed_size().unwrap_or(1))
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Resets the process's peak resident size to the current one and returns that, in bytes;
/// None where the kernel offers no reset.
fn reset_peak() -> Option<usize> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    read_status("VmRSS:")
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn read_status(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: usize = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_after_a_reset_counts_what_was_touched_since() {
        let _quiet = super::super::gate::measuring();
        let before = reset_peak().expect("Linux resets the peak through clear_refs");
        let block = vec![1u8; 64 << 20];
        let peak = read_status("VmHWM:").expect("VmHWM");
        drop(std::hint::black_box(block));
        assert!(
            peak.saturating_sub(before) >= 60 << 20,
            "64 MiB touched, peak grew by {} bytes",
            peak.saturating_sub(before)
        );
    }
}
