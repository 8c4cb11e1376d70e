//! What a request costs to run and which requests batch together: padding buckets,
//! padded elements per row, ONNX Runtime's working memory per element measured at load,
//! and the batch limits they set.

use super::{ModelSpec, NamedTensor, TensorSpec};
use crate::tensor::Tensor;

/// A run estimated to need more working memory than this is large: ORT's arena gives it
/// back afterwards (see `runtime::execute`), and admission charges it to the in-flight
/// budget. Smaller runs reuse the arena each instance keeps anyway (its size is set by
/// warm-up at `max_batch_size`), which is no memory in flight.
pub const LARGE_RUN_BYTES: usize = 32 << 20;

/// What one request is estimated to need of ORT's working memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub rows: usize,
    /// Padded elements per row.
    pub width: usize,
    /// Estimated peak bytes while it runs: a batch's worth at most, as larger requests are
    /// split into batches that run one after another.
    pub bytes: usize,
}

/// Bytes per padded element assumed when nothing could be measured: enough for the input,
/// a cast copy, an output and a few intermediates of 4-byte elements. A guess, logged as one.
pub const FALLBACK_BYTES_PER_ELEMENT: usize = 64;
/// What one model needs per padded input element ([`ModelSpec::padded_row_elements`]),
/// measured at load (`runtime::footprint`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Peak bytes of working memory per padded element of a run.
    pub bytes_per_element: usize,
    /// How `bytes_per_element` was found: measured from the kernel's peak RSS or assumed.
    pub measured: bool,
    /// Run time per padded element at the probe's length, in nanoseconds; zero when not
    /// measured.
    pub nanos_per_element: f64,
}

impl Default for Footprint {
    fn default() -> Footprint {
        Footprint {
            bytes_per_element: FALLBACK_BYTES_PER_ELEMENT,
            measured: false,
            nanos_per_element: 0.0,
        }
    }
}

impl Footprint {
    /// Estimated peak bytes of a run of `elements` padded elements.
    pub fn bytes(&self, elements: usize) -> usize {
        elements.saturating_mul(self.bytes_per_element)
    }
}

/// Padded axes up to this length share one bucket: padding short histories to 64 costs
/// little and lets them batch together.
pub const PAD_BUCKET_FLOOR: usize = 64;

/// The padding bucket of an axis of length `len`: lengths up to [`PAD_BUCKET_FLOOR`] share
/// one bucket, longer ones are grouped by the next power of two, (2^(k-1), 2^k]. Requests
/// batch only within a bucket, so padding at most doubles an axis longer than the floor.
pub fn pad_bucket(len: usize) -> usize {
    len.max(PAD_BUCKET_FLOOR)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

impl ModelSpec {
    /// Requests batch together only when this key is equal: the non-batch dims of every
    /// input, with each paddable axis replaced by its length bucket ([`pad_bucket`]), so a
    /// short request is never padded to a much longer one.
    pub fn shape_class(&self, tensors: &[Tensor]) -> Vec<usize> {
        let mut key = Vec::new();
        for (spec, t) in self.inputs.iter().zip(tensors) {
            key.push(t.shape.len());
            for (axis, &d) in t.shape.iter().enumerate().skip(1) {
                key.push(if spec.pad_axes.contains(&axis) {
                    pad_bucket(d)
                } else {
                    d
                });
            }
        }
        key
    }

    /// Elements one row of these inputs can take in a batch of its shape class: every
    /// input's non-batch dims with padded axes at their bucket's upper bound. Equal for all
    /// requests of one class, and never below what padding really allocates.
    /// For a context model: the scorer's row plus the request's share of its context rows
    /// (see [`ContextSpec`]), which may differ between requests of one class by that share.
    pub fn padded_row_elements(&self, tensors: &[Tensor]) -> usize {
        if let Some(context) = &self.context {
            let given: Vec<Option<&Tensor>> = tensors.iter().map(Some).collect();
            let rows = tensors.iter().map(Tensor::rows).max().unwrap_or(1);
            return context.row_elements(self, &given, rows);
        }
        self.inputs
            .iter()
            .zip(tensors)
            .map(|(spec, t)| self.padded_elements(spec, t))
            .fold(0usize, usize::saturating_add)
    }

    /// Elements of one row of input `t` once its padded axes are at their bucket's length.
    pub(crate) fn padded_elements(&self, spec: &TensorSpec, t: &Tensor) -> usize {
        t.shape
            .iter()
            .enumerate()
            .skip(1)
            .map(|(axis, &d)| {
                if spec.pad_axes.contains(&axis) {
                    pad_bucket(d)
                } else {
                    d
                }
            })
            .fold(1usize, usize::saturating_mul)
    }

    /// Most padded elements one batch may hold: `max_batch_elements`, lowered so the
    /// batch's estimated working memory stays within `max_batch_work_bytes`.
    pub fn batch_element_limit(&self) -> usize {
        let by_memory = self.max_batch_work_bytes / self.footprint.bytes_per_element.max(1);
        self.config.max_batch_elements.min(by_memory).max(1)
    }

    /// Rows one batch of rows `width` padded elements wide may hold (at least one).
    pub fn batch_rows_limit(&self, width: usize) -> usize {
        self.max_batch_size()
            .min(self.batch_element_limit() / width.max(1))
            .max(1)
    }

    /// The estimated working memory of a request as a transport decoded it (before
    /// validation: inputs it does not name count as absent, validation refuses them later).
    pub fn work(&self, given: &[NamedTensor]) -> Work {
        let mut rows = None;
        let mut width = 0usize;
        for spec in &self.inputs {
            let Some(t) = given.iter().find(|g| g.name == spec.name) else {
                continue;
            };
            // A broadcast input's one row is repeated to the others' rows in the batch.
            rows = rows.max(Some(t.tensor.rows().max(1)));
            width = width.saturating_add(self.padded_elements(spec, &t.tensor));
        }
        let rows = rows.unwrap_or(1);
        if let Some(context) = &self.context {
            let tensors: Vec<Option<&Tensor>> = self
                .inputs
                .iter()
                .map(|spec| {
                    given
                        .iter()
                        .find(|g| g.name == spec.name)
                        .map(|g| &g.tensor)
                })
                .collect();
            width = context.row_elements(self, &tensors, rows);
        }
        // A graph that cannot batch runs the request whole (its first axis is no batch).
        let per_batch = if self.batched {
            rows.min(self.batch_rows_limit(width))
        } else {
            rows
        };
        Work {
            rows,
            width,
            bytes: self.footprint.bytes(per_batch.saturating_mul(width)),
        }
    }
}
