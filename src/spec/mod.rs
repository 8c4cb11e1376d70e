//! `ModelSpec`: what a model version takes and gives (names, dtypes, shapes, padding), and
//! the validation rules of requests against it (inputs and output selection), shared by
//! every transport. Built by `runtime` from the ONNX graph and the model's config; this
//! module never touches ONNX Runtime, batching or a transport. This file holds the
//! contract itself and what it says of batching and outputs; `validate` checks requests
//! against it, `work` estimates what a request costs to run and how requests group into
//! batches, and `context` describes models of two graphs.

mod context;
mod validate;
mod work;

use std::collections::BTreeMap;

use crate::config::{ModelConfig, Placement};
use crate::error::Error;
use crate::tensor::{DataType, Tensor};

pub use context::{ContextSpec, Feed};
pub use work::{
    pad_bucket, Footprint, Work, FALLBACK_BYTES_PER_ELEMENT, LARGE_RUN_BYTES, PAD_BUCKET_FLOOR,
};

/// One input or output of the graph. Dynamic dims are `-1`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<i64>,
    /// The graph's name for each dim ("" when unnamed). Inputs whose dynamic dims share a
    /// name must agree on their size, or ONNX Runtime would fail on them.
    pub symbols: Vec<String>,
    /// Non-batch axes that batches pad, and the pad value (inputs only).
    pub pad_axes: Vec<usize>,
    pub pad_value: f64,
    /// A request may send this input with one row while the others have N; the batch
    /// assembly repeats it to N (inputs only; `[inputs.NAME] broadcast`).
    pub broadcast: bool,
}

impl TensorSpec {
    /// Triton's config dims: without the batch axis when the model batches
    /// (`max_batch_size > 0` implies a leading batch dim); dynamic dims stay -1.
    pub fn triton_dims(&self, batched: bool) -> &[i64] {
        if batched {
            self.shape.get(1..).unwrap_or(&[])
        } else {
            &self.shape
        }
    }

    /// `FP32 [-1, 64]`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {:?}", self.dtype, self.shape)
    }
}

/// The serving contract of one model version.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub version: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Every input and output has a dynamic first axis, so requests can be stacked.
    pub batched: bool,
    /// ONNX `metadata_props` (model card facts such as family, paper, metric).
    pub properties: BTreeMap<String, String>,
    pub config: ModelConfig,
    /// Where each instance actually runs (after any provider fallback).
    pub placements: Vec<Placement>,
    /// Rows one run may take on a batched graph: the configured `max_batch_size`, or the
    /// size measured at load for `"auto"` (see `runtime::calibrate`).
    pub max_batch: usize,
    /// Most rows a request may have to run inline when the server is otherwise empty: the
    /// largest batch measured at load within `inline_run_us` (0 = never inline).
    pub inline_rows: usize,
    /// The raw fields a client may send instead of some inputs (`[features]`), built once
    /// at load; `None` for a model that takes tensors only.
    pub features: Option<std::sync::Arc<crate::features::FeatureSet>>,
    /// Most padded elements a request may have to run inline: `inline_run_us` over the
    /// time per element measured at load (0 = never inline). Rows alone cannot tell: one
    /// row of a long history costs as much as thousands of short ones.
    pub inline_elements: usize,
    /// ORT's working memory per padded element, measured at load.
    pub footprint: Footprint,
    /// Most bytes one batch's estimated working memory may reach (a share of the server's
    /// in-flight budget): batches are cut, and requests split by rows, to stay under it.
    pub max_batch_work_bytes: usize,
    /// The context graph (`[context]`) and how its outputs feed the graph's inputs; `None`
    /// for a model of one graph. With it, [`ModelSpec::inputs`] are what clients send: the
    /// context graph's inputs (broadcast) and the graph's inputs it does not feed.
    pub context: Option<ContextSpec>,
}

/// The extra output a ranking request (`top_k`) is answered with: the best rows' indices,
/// INT64 `[k]`. Answers index it as output `outputs.len()` ([`ModelSpec::output_name`]).
pub const TOP_K_INDICES: &str = "top_k_indices";
/// The best rows' scores, in the ranked output's datatype, `[k]`; output `outputs.len() + 1`.
pub const TOP_K_SCORES: &str = "top_k_scores";

/// Whether a tensor of `shape` (a spec's, `-1` dynamic, or a tensor's) can hold one value
/// per row: `[N]` or `[N, 1]`, where a dynamic second dim may turn out to be 1.
pub fn one_value_per_row(shape: &[i64]) -> bool {
    matches!(shape, [_] | [_, 1] | [_, -1])
}

/// A named tensor as a transport decoded it, before validation.
pub struct NamedTensor {
    pub name: String,
    pub tensor: Tensor,
}

impl ModelSpec {
    /// Why requests to this graph cannot be stacked into batches: the first input or
    /// output whose first axis is not dynamic (`None` when the graph batches).
    pub fn batch_blocker(&self) -> Option<String> {
        let context_fed = self.context.iter().flat_map(|c| {
            c.scorer_inputs
                .iter()
                .zip(&c.feeds)
                .filter(|(_, f)| matches!(f, Feed::Context(_)))
                .map(|(s, _)| ("input of model.onnx", s))
        });
        let fixed = self
            .inputs
            .iter()
            .map(|s| ("input", s))
            .chain(context_fed)
            .chain(self.outputs.iter().map(|s| ("output", s)))
            .find(|(_, s)| s.shape.first() != Some(&-1))?;
        let (kind, s) = fixed;
        Some(match s.shape.first() {
            Some(d) => format!(
                "{kind} '{}' has a fixed first axis ({d}, shape {:?}); a batch axis must be dynamic",
                s.name, s.shape
            ),
            None => format!("{kind} '{}' is a scalar (no batch axis)", s.name),
        })
    }

    /// Settings of `config.toml` that ask for batching on a graph that cannot batch, and so
    /// have no effect: (key, why). Logged at load, reported by `mlpserve check`.
    pub fn ignored_settings(&self) -> Vec<(&'static str, String)> {
        let Some(blocker) = self.batch_blocker() else {
            return Vec::new();
        };
        let c = &self.config;
        let mut keys = Vec::new();
        if matches!(c.max_batch_size, crate::config::BatchSize::Fixed(n) if n > 1) {
            keys.push("max_batch_size");
        }
        if !c.preferred_batch_sizes.is_empty() {
            keys.push("preferred_batch_sizes");
        }
        if c.max_queue_delay_us > 0 {
            keys.push("max_queue_delay_us");
        }
        keys.into_iter()
            .map(|key| {
                (
                    key,
                    format!("asks for batching, but the graph cannot batch: {blocker}"),
                )
            })
            .collect()
    }

    /// Rows one run may take: `max_batch_size` for batched graphs, 1 otherwise.
    pub fn max_batch_size(&self) -> usize {
        if self.batched {
            self.max_batch
        } else {
            1
        }
    }

    /// Where the batch size in force came from: `"auto"` (measured at load) or `"config"`.
    pub fn max_batch_size_source(&self) -> &'static str {
        match self.config.max_batch_size {
            crate::config::BatchSize::Auto => "auto",
            crate::config::BatchSize::Fixed(_) => "config",
        }
    }

    /// Triton's `max_batch_size`: 0 for a model that cannot batch.
    pub fn triton_max_batch_size(&self) -> usize {
        if self.batched {
            self.max_batch
        } else {
            0
        }
    }

    /// The output ranking requests sort by when they name none: `rank_by` of the config,
    /// else the only output of a model that has one, if it can hold one value per row.
    pub fn rank_by(&self) -> Option<&TensorSpec> {
        match &self.config.rank_by {
            Some(name) => self.outputs.iter().find(|o| &o.name == name),
            None if self.outputs.len() == 1 => {
                self.outputs.first().filter(|o| one_value_per_row(&o.shape))
            }
            None => None,
        }
    }

    /// The name of answered output `index`: a graph output, or past them the ranking
    /// outputs ([`TOP_K_INDICES`], [`TOP_K_SCORES`]).
    pub fn output_name(&self, index: usize) -> &str {
        match self.outputs.get(index) {
            Some(o) => &o.name,
            None if index == self.outputs.len() => TOP_K_INDICES,
            None => TOP_K_SCORES,
        }
    }

    /// The inputs of `model.onnx` itself, in its order: [`ModelSpec::inputs`] for a model of
    /// one graph, the scorer's inputs (some fed by the context graph) for a context model.
    pub fn graph_inputs(&self) -> &[TensorSpec] {
        match &self.context {
            Some(context) => &context.scorer_inputs,
            None => &self.inputs,
        }
    }

    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    fn input_names(&self) -> String {
        let names: Vec<String> = self
            .inputs
            .iter()
            .map(|s| format!("'{}' ({})", s.name, s.describe()))
            .collect();
        names.join(", ")
    }

    /// A request error naming this model and version; every decoder words its errors so.
    pub fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::InvalidInput(format!(
            "model '{}' version {}: {msg}",
            self.name, self.version
        ))
    }
}
