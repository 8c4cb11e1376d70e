//! Models of two graphs (`[context]`): the context graph runs once per request on the
//! request's context rows and feeds the scorer; what feeds each scorer input, and how many
//! padded elements a request's row holds once its context is counted.

use super::{ModelSpec, TensorSpec};
use crate::tensor::Tensor;

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
    pub(super) fn row_elements(
        &self,
        spec: &ModelSpec,
        tensors: &[Option<&Tensor>],
        rows: usize,
    ) -> usize {
        let scorer = self.scorer_row_elements(spec, tensors);
        let (width, context_rows) = self.context_elements(spec, tensors);
        let context = width
            .saturating_mul(context_rows.min(rows.max(1)))
            .div_ceil(rows.max(1));
        scorer.saturating_add(context)
    }
}
