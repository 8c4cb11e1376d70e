//! Ranking answers: the `top_k` rows of a request by one output's score, best first. Pure
//! code run on the request's own task after its outputs came back (never on a worker);
//! it knows no transport. Transports parse the `top_k` and `rank_by` parameters into a
//! [`Ranking`]; the service checks it against the model before the queue and answers it
//! as two extra outputs ([`crate::spec::TOP_K_INDICES`], [`crate::spec::TOP_K_SCORES`]).

use std::cmp::Ordering;

use crate::spec::{one_value_per_row, ModelSpec};
use crate::tensor::{with_tensor_data, DataType, Element, Tensor, TensorData};

/// Why a ranking cannot be done: a `top_k` parameter out of range, or a `rank_by` output
/// the model does not give or that holds no one number per row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RankError {
    #[error("parameter 'top_k' is too large: {0}")]
    TopKTooLarge(i64),
    /// Not an integer, or less than 1; the text is what came.
    #[error("parameter 'top_k' must be an integer of at least 1, got {0}")]
    TopKNotPositive(String),
    /// `top_k` without `rank_by`, on a model with no default output to rank by.
    #[error("top_k needs the output to rank by: name it with the parameter 'rank_by' (the model gives {outputs}; none is its default, config.toml rank_by)")]
    NoRankBy { outputs: String },
    #[error("rank_by names output '{name}', which the model does not give; it gives {outputs}")]
    UnknownOutput { name: String, outputs: String },
    /// The model declares the output with more than one value per row.
    #[error("rank_by output '{name}' has shape {shape:?}; ranking needs one value per row ([-1] or [-1, 1])")]
    DeclaredShape { name: String, shape: Vec<i64> },
    /// The run gave the output with more than one value per row.
    #[error("rank_by output '{name}' has shape {shape:?}; ranking needs one value per row ([N] or [N, 1])")]
    Shape { name: String, shape: Vec<usize> },
    #[error("rank_by output '{name}' is {dtype}; ranking needs numbers")]
    NotNumeric { name: String, dtype: DataType },
}

/// What a request asks to be ranked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// How many rows to return (at least 1; more than the request has returns them all).
    pub top_k: usize,
    /// The output to sort by; `None`: the model's default (`ModelSpec::rank_by`).
    pub rank_by: Option<String>,
}

impl Ranking {
    /// The `top_k` parameter as a transport read it: an integer of at least 1. `what`
    /// shows what came when it is anything else.
    pub fn top_k(value: Option<i64>, what: impl std::fmt::Display) -> Result<usize, RankError> {
        match value {
            Some(k) if k >= 1 => usize::try_from(k).map_err(|_| RankError::TopKTooLarge(k)),
            _ => Err(RankError::TopKNotPositive(what.to_string())),
        }
    }

    /// The index of the output to sort by, checked against the model: it exists and can
    /// hold one value per row. Messages name the output and what the model has.
    pub fn output(&self, spec: &ModelSpec) -> Result<usize, RankError> {
        let outputs = || {
            let names: Vec<String> = spec
                .outputs
                .iter()
                .map(|o| format!("'{}'", o.name))
                .collect();
            names.join(", ")
        };
        let name = match (&self.rank_by, spec.rank_by()) {
            (Some(name), _) => name.as_str(),
            (None, Some(default)) => default.name.as_str(),
            (None, None) => return Err(RankError::NoRankBy { outputs: outputs() }),
        };
        let index = spec
            .outputs
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| RankError::UnknownOutput {
                name: name.to_string(),
                outputs: outputs(),
            })?;
        let shape = &spec.outputs[index].shape;
        if !one_value_per_row(shape) {
            return Err(RankError::DeclaredShape {
                name: name.to_string(),
                shape: shape.clone(),
            });
        }
        Ok(index)
    }
}

/// The best `k` rows of `scores` (output `name`, one value per row): their indices (INT64
/// `[k']`) and scores (the output's datatype, `[k']`), k' = min(k, rows). Best = largest
/// first, ties to the lower index, NaN last.
pub fn top_k(name: &str, scores: &Tensor, k: usize) -> Result<(Tensor, Tensor), RankError> {
    let rows = scores.rows();
    let per_row = matches!(scores.shape.as_slice(), [_] | [_, 1]);
    if !per_row {
        return Err(RankError::Shape {
            name: name.to_string(),
            shape: scores.shape.clone(),
        });
    }
    let not_numeric = || RankError::NotNumeric {
        name: name.to_string(),
        dtype: scores.dtype(),
    };
    let values = as_f64(&scores.data).ok_or_else(not_numeric)?;
    let order = |a: &usize, b: &usize| -> Ordering {
        let (x, y) = (values[*a], values[*b]);
        let by_score = match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
        };
        by_score.then(a.cmp(b))
    };
    let k = k.min(rows);
    let mut best: Vec<usize> = (0..rows).collect();
    // A total order (score, then index): selecting the k best and sorting only those
    // gives what a stable sort of all rows would, in O(N + k log k).
    if k < rows {
        best.select_nth_unstable_by(k, order);
        best.truncate(k);
    }
    best.sort_unstable_by(order);
    let picked = with_tensor_data!(&scores.data,
        v => Ok(gather(v, &best)),
        bytes _s => Err(not_numeric()))?;
    let indices: Vec<i64> = best.iter().map(|&i| i as i64).collect();
    Ok((
        Tensor {
            shape: vec![k],
            data: TensorData::I64(indices),
        },
        Tensor {
            shape: vec![k],
            data: picked,
        },
    ))
}

fn gather<T: Element>(values: &[T], at: &[usize]) -> TensorData {
    T::wrap(at.iter().map(|&i| values[i]).collect())
}

/// The values of a numeric buffer as `f64` for comparison; `None` for strings and
/// booleans, which rank nothing.
fn as_f64(data: &TensorData) -> Option<Vec<f64>> {
    fn all<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
        Some(v.iter().map(|&x| f(x)).collect())
    }
    match data {
        TensorData::F32(v) => all(v, f64::from),
        TensorData::F64(v) => all(v, |x| x),
        TensorData::F16(v) => all(v, |x| x.to_f64()),
        TensorData::BF16(v) => all(v, |x| x.to_f64()),
        TensorData::I8(v) => all(v, f64::from),
        TensorData::I16(v) => all(v, f64::from),
        TensorData::I32(v) => all(v, f64::from),
        TensorData::I64(v) => all(v, |x| x as f64),
        TensorData::U8(v) => all(v, f64::from),
        TensorData::U16(v) => all(v, f64::from),
        TensorData::U32(v) => all(v, f64::from),
        TensorData::U64(v) => all(v, |x| x as f64),
        TensorData::Bool(_) | TensorData::Bytes(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(shape, TensorData::F32(v)).unwrap()
    }

    fn ranked(t: &Tensor, k: usize) -> (Vec<i64>, TensorData) {
        let (indices, scores) = top_k("score", t, k).unwrap();
        let TensorData::I64(indices) = indices.data else {
            panic!("indices are INT64")
        };
        (indices, scores.data)
    }

    #[test]
    fn best_first_ties_to_the_lower_index_nan_last() {
        let t = f32s(vec![6, 1], vec![0.5, f32::NAN, 0.9, 0.5, 0.1, 0.9]);
        let (indices, scores) = ranked(&t, 6);
        assert_eq!(indices, [2, 5, 0, 3, 4, 1]);
        let TensorData::F32(s) = scores else { panic!() };
        assert_eq!(&s[..5], [0.9, 0.9, 0.5, 0.5, 0.1]);
        assert!(s[5].is_nan());
        // Fewer than all: the same prefix, also when the cut falls inside a tie.
        assert_eq!(ranked(&t, 3).0, [2, 5, 0]);
        assert_eq!(ranked(&t, 1).0, [2]);
        // More than the rows: all of them.
        assert_eq!(ranked(&t, 100).0.len(), 6);
    }

    #[test]
    fn any_numeric_datatype_ranks_and_keeps_its_datatype() {
        let t = Tensor::new(vec![4], TensorData::I32(vec![3, -1, 7, 3])).unwrap();
        let (indices, scores) = ranked(&t, 2);
        assert_eq!(indices, [2, 0]);
        assert_eq!(scores, TensorData::I32(vec![7, 3]));
    }

    #[test]
    fn the_ranked_output_has_one_numeric_value_per_row() {
        let wide = f32s(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let err = top_k("logits", &wide, 1).unwrap_err().to_string();
        assert!(err.contains("'logits'") && err.contains("[2, 2]"), "{err}");
        let words = Tensor::new(vec![1], TensorData::Bytes(["a"].into_iter().collect())).unwrap();
        let err = top_k("w", &words, 1).unwrap_err();
        assert!(err.to_string().contains("BYTES"), "{err}");
    }

    #[test]
    fn top_k_is_an_integer_of_at_least_one() {
        assert_eq!(Ranking::top_k(Some(3), 3), Ok(3));
        for (value, shown) in [(Some(0), "0"), (Some(-2), "-2"), (None, "\"5\"")] {
            let err = Ranking::top_k(value, shown).unwrap_err().to_string();
            assert!(err.contains("'top_k'") && err.contains(shown), "{err}");
        }
    }
}
