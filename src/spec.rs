//! `ModelSpec`: what a model version takes and gives (names, dtypes, shapes, padding), and
//! the validation rules of requests against it (inputs and output selection), shared by
//! every transport. Built by `runtime` from the ONNX graph and the model's config; this
//! module never touches ONNX Runtime, batching or a transport.

use std::collections::BTreeMap;

use crate::config::{ModelConfig, Placement, DEFAULT_MAX_PAD_LENGTH};
use crate::error::{Error, Result};
use crate::tensor::{DataType, Tensor};

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

/// A model of two graphs: the context graph runs once per request on the request's
/// context rows, and its outputs feed `model.onnx` (the scorer) as broadcast inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextSpec {
    /// The context graph's file name in the version folder.
    pub file: String,
    /// The context graph's inputs, in its order, as indices into [`ModelSpec::inputs`].
    pub inputs: Vec<usize>,
    /// The same inputs' specs, in the context graph's order (for stacking).
    pub input_specs: Vec<TensorSpec>,
    /// The context graph's outputs.
    pub outputs: Vec<TensorSpec>,
    /// `model.onnx`'s inputs in its order; those the context graph feeds are broadcast.
    pub scorer_inputs: Vec<TensorSpec>,
    /// Where each of `scorer_inputs` comes from.
    pub feeds: Vec<Feed>,
}

/// What feeds one input of the scorer of a context model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The client input at this index of [`ModelSpec::inputs`].
    Client(usize),
    /// The context graph's output at this index of [`ContextSpec::outputs`].
    Context(usize),
}

impl ContextSpec {
    /// Padded elements of one row of the scorer, for a request's client `tensors`: its
    /// client inputs at their padding bucket's length, and each context-fed input's
    /// trailing dims (a dynamic one counted as 1).
    fn scorer_row_elements(&self, spec: &ModelSpec, tensors: &[Option<&Tensor>]) -> usize {
        self.feeds
            .iter()
            .map(|feed| match *feed {
                Feed::Client(i) => {
                    tensors[i].map_or(0, |t| spec.padded_elements(&spec.inputs[i], t))
                }
                Feed::Context(o) => self.outputs[o]
                    .shape
                    .iter()
                    .skip(1)
                    .map(|&d| d.max(1) as usize)
                    .fold(1usize, usize::saturating_mul),
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Padded elements of one context row of a request and the rows of context it sent (1
    /// when sent once, else the request's rows).
    fn context_elements(&self, spec: &ModelSpec, tensors: &[Option<&Tensor>]) -> (usize, usize) {
        let mut width = 0usize;
        let mut rows = 0usize;
        for &i in &self.inputs {
            if let Some(t) = tensors[i] {
                width = width.saturating_add(spec.padded_elements(&spec.inputs[i], t));
                rows = rows.max(t.rows());
            }
        }
        (width, rows.max(1))
    }

    /// Padded elements per row of a request of `rows` rows, counting what its batch will
    /// hold: the scorer's expanded row, plus the context rows it sent spread over its rows
    /// (one context row per request adds a rounded-up share; context repeated on every
    /// row adds the whole context width).
    fn row_elements(&self, spec: &ModelSpec, tensors: &[Option<&Tensor>], rows: usize) -> usize {
        let scorer = self.scorer_row_elements(spec, tensors);
        let (width, context_rows) = self.context_elements(spec, tensors);
        let context = width
            .saturating_mul(context_rows.min(rows.max(1)))
            .div_ceil(rows.max(1));
        scorer.saturating_add(context)
    }
}

/// A run estimated to need more working memory than this is large: ORT's arena gives it
/// back afterwards (see `runtime::execute`), and admission charges it to the in-flight
/// budget. Smaller runs reuse the arena each instance keeps anyway (its size is set by
/// warm-up at `max_batch_size`), which is no memory in flight.
pub const LARGE_RUN_BYTES: usize = 32 << 20;

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

    fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::InvalidInput(format!(
            "model '{}' version {}: {msg}",
            self.name, self.version
        ))
    }

    /// Checks names, dtypes and shapes and returns the tensors in the graph's input order,
    /// with the number of rows. The messages name the model, the input, what was expected
    /// and what came.
    pub fn validate(&self, given: Vec<NamedTensor>) -> Result<(Vec<Tensor>, usize)> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for NamedTensor { name, tensor } in given {
            let Some(index) = self.inputs.iter().position(|s| s.name == name) else {
                return Err(self.invalid(format_args!(
                    "unexpected input '{name}'; the model takes {}",
                    self.input_names()
                )));
            };
            if slots[index].is_some() {
                return Err(self.invalid(format_args!("input '{name}' given more than once")));
            }
            self.check_tensor(&self.inputs[index], &tensor)?;
            slots[index] = Some(tensor);
        }
        let mut tensors = Vec::with_capacity(slots.len());
        for (spec, slot) in self.inputs.iter().zip(slots) {
            match slot {
                Some(t) => tensors.push(t),
                None => {
                    return Err(self.invalid(format_args!(
                        "missing input '{}' ({})",
                        spec.name,
                        spec.describe()
                    )))
                }
            }
        }
        self.check_shared_dims(&tensors)?;
        let rows = if self.batched {
            self.request_rows(&tensors)?
        } else {
            1
        };
        Ok((tensors, rows))
    }

    /// The rows of a request: those of the inputs not declared broadcast (they agree), or
    /// the most any input has when all are broadcast. A broadcast input has one row (the
    /// batch assembly repeats it) or exactly those rows (sent repeated); any other count
    /// is refused, naming the inputs and their counts.
    fn request_rows(&self, tensors: &[Tensor]) -> Result<usize> {
        let inputs = || self.inputs.iter().zip(tensors);
        let per_row = inputs().find(|(s, _)| !s.broadcast);
        let (rows, by) = match per_row {
            Some((s, t)) => (t.rows(), s),
            None => {
                // `validate` refuses a request without every input, and a graph without
                // inputs is refused at load (`runtime::read_spec`).
                let (s, t) = inputs()
                    .max_by_key(|(_, t)| t.rows())
                    .ok_or_else(|| self.invalid("the model takes no inputs"))?;
                (t.rows(), s)
            }
        };
        for (spec, t) in inputs() {
            let n = t.rows();
            if n == rows || (spec.broadcast && n == 1) {
                continue;
            }
            let why = if rows == 1 || n == 1 {
                // One side has one row: the one not declared broadcast was likely meant
                // to be.
                let (one, other) = if n == 1 { (spec, by) } else { (by, spec) };
                format!(
                    "'{}' is not declared broadcast (config.toml: [inputs.{}] broadcast = true), so it must have as many rows as '{}'",
                    one.name, one.name, other.name
                )
            } else if spec.broadcast {
                format!(
                    "broadcast input '{}' must have 1 row or the request's {rows}",
                    spec.name
                )
            } else {
                "every input has one row per batch item".to_string()
            };
            return Err(self.invalid(format_args!(
                "inputs disagree on the batch size: '{}' has {rows} rows but '{}' has {n}; {why}",
                by.name, spec.name
            )));
        }
        Ok(rows)
    }

    /// Dynamic non-batch dims with the same symbolic name must have the same size.
    fn check_shared_dims(&self, tensors: &[Tensor]) -> Result<()> {
        let mut seen: Vec<(&str, &str, usize, usize)> = Vec::new();
        for (spec, t) in self.inputs.iter().zip(tensors) {
            for (axis, symbol) in spec.symbols.iter().enumerate().skip(1) {
                if symbol.is_empty() || spec.shape.get(axis) != Some(&-1) {
                    continue;
                }
                let size = t.shape[axis];
                match seen.iter().find(|(s, ..)| s == symbol) {
                    Some(&(_, other, other_axis, other_size)) if other_size != size => {
                        return Err(self.invalid(format_args!(
                            "input '{}' axis {axis} ({size}) must equal input '{other}' axis {other_axis} ({other_size}): both are dimension '{symbol}'",
                            spec.name
                        )))
                    }
                    Some(_) => {}
                    None => seen.push((symbol, &spec.name, axis, size)),
                }
            }
        }
        Ok(())
    }

    fn check_tensor(&self, spec: &TensorSpec, t: &Tensor) -> Result<()> {
        if t.dtype() != spec.dtype {
            return Err(self.invalid(format_args!(
                "input '{}' expects datatype {} but got {}",
                spec.name,
                spec.dtype,
                t.dtype()
            )));
        }
        let fits = t.shape.len() == spec.shape.len()
            && t.shape
                .iter()
                .zip(&spec.shape)
                .all(|(&d, &s)| s < 0 || d as i64 == s);
        if !fits {
            return Err(self.invalid(format_args!(
                "input '{}' expects shape {:?} (-1 = any) but got {:?}",
                spec.name, spec.shape, t.shape
            )));
        }
        if let Some((index, value)) = t.data.first_non_finite() {
            return Err(self.invalid(format_args!(
                "input '{}' element {index} is {value}: {} inputs must be finite (a JSON number beyond the datatype's range, e.g. over 3.4e38 for FP32 or 65504 for FP16, overflows to infinity)",
                spec.name, spec.dtype
            )));
        }
        let cap = self.max_pad_length(&spec.name);
        if let Some(&axis) = spec.pad_axes.iter().find(|&&a| t.shape[a] > cap) {
            return Err(Error::TooLarge(format!(
                "model '{}' version {}: input '{}' axis {axis} has length {}, more than its max_pad_length ({cap})",
                self.name, self.version, spec.name, t.shape[axis]
            )));
        }
        if let Some(axis) = t.shape.iter().position(|&d| d == 0) {
            let what = if axis == 0 && self.batched {
                "an empty batch (0 rows)".to_string()
            } else {
                format!("an empty axis {axis}")
            };
            return Err(self.invalid(format_args!(
                "input '{}' has {what} in shape {:?}; at least one element per axis is required",
                spec.name, t.shape
            )));
        }
        Ok(())
    }

    /// Checks every string element sent for a BYTES (ONNX string) input: at most
    /// `max_bytes` long (`max_string_bytes`), UTF-8 and free of NUL bytes, which ONNX
    /// Runtime's strings need. The message names the input, the element and what is wrong.
    /// Inputs of other datatypes, or unknown names, are left to [`ModelSpec::validate`].
    pub fn check_strings(&self, given: &[NamedTensor], max_bytes: usize) -> Result<()> {
        for NamedTensor { name, tensor } in given {
            let (Some(spec), Some(strings)) = (self.input(name), tensor.data.as_strings()) else {
                continue;
            };
            if spec.dtype != DataType::Bytes {
                continue;
            }
            if let Some((i, len)) = strings.first_longer_than(max_bytes) {
                return Err(self.invalid(format_args!(
                    "input '{name}' element {i} is {len} bytes long, more than the {max_bytes} bytes a string element may have (max_string_bytes)"
                )));
            }
            for (i, s) in strings.iter().enumerate() {
                if let Err(e) = std::str::from_utf8(s) {
                    return Err(self.invalid(format_args!(
                        "input '{name}' element {i} is not UTF-8 ({e}); string inputs of ONNX models take UTF-8 text"
                    )));
                }
                if let Some(at) = s.iter().position(|&b| b == 0) {
                    return Err(self.invalid(format_args!(
                        "input '{name}' element {i} has a NUL byte at offset {at}; string inputs of ONNX models cannot hold NUL"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The outputs a request asked for, as indices into [`ModelSpec::outputs`] in the order
    /// asked; every output in graph order when `requested` is empty. The one rule for all
    /// transports: an unknown or repeated name is an invalid request.
    pub fn select_outputs<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<usize>> {
        let mut selected = Vec::new();
        for wanted in requested {
            let index = self
                .outputs
                .iter()
                .position(|o| o.name == wanted)
                .ok_or_else(|| {
                    let names: Vec<String> = self
                        .outputs
                        .iter()
                        .map(|o| format!("'{}'", o.name))
                        .collect();
                    self.invalid(format_args!(
                        "unknown output '{wanted}'; the model gives {}",
                        names.join(", ")
                    ))
                })?;
            if selected.contains(&index) {
                return Err(
                    self.invalid(format_args!("output '{wanted}' requested more than once"))
                );
            }
            selected.push(index);
        }
        if selected.is_empty() {
            selected.extend(0..self.outputs.len());
        }
        Ok(selected)
    }

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

    /// The cap on padded axes of input `name` (`max_pad_length` in config.toml).
    fn max_pad_length(&self, name: &str) -> usize {
        self.config
            .inputs
            .get(name)
            .map_or(DEFAULT_MAX_PAD_LENGTH, |c| c.max_pad_length)
    }
}
