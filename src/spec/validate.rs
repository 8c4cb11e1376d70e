//! A request checked against its model's contract: the inputs' names, datatypes, shapes,
//! rows, padded lengths and strings, and the outputs it asked for. The messages name the
//! model, the input, what was expected and what came.

use super::{ModelSpec, NamedTensor, TensorSpec};
use crate::config::DEFAULT_MAX_PAD_LENGTH;
use crate::error::{Error, Result};
use crate::tensor::{DataType, Tensor};

impl ModelSpec {
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

    /// The cap on padded axes of input `name` (`max_pad_length` in config.toml).
    fn max_pad_length(&self, name: &str) -> usize {
        self.config
            .inputs
            .get(name)
            .map_or(DEFAULT_MAX_PAD_LENGTH, |c| c.max_pad_length)
    }
}
