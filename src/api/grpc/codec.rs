//! `ModelInferRequest` / `ModelInferResponse` ↔ our [`Tensor`]s. Two forms carry tensor
//! data: typed `contents` (one repeated field per datatype family, `bytes_contents` for
//! BYTES; FP16/BF16 have none) and `raw_*_contents` (flattened little-endian bytes, BYTES
//! elements each with a 4-byte length, one entry per tensor, decoded by the binary codec in
//! [`crate::tensor`]). A request uses one form for all its inputs; the answer
//! is always raw, as Triton's is (code written against Triton reads `raw_output_contents`,
//! and one buffer per output is cheaper than a repeated field). Counts and lengths that do not add up are errors, never
//! over-reads. Nothing here knows about batching or ONNX Runtime; validation against the
//! model's spec and output selection are the [`crate::service`]'s job.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::api::DecodeError;
use crate::service::rank::Ranking;
use crate::spec::{ModelSpec, NamedTensor};
use crate::tensor::{decode_binary, element_count, encode_binary, DataType, Tensor, TensorData};

/// A decoded request: the inputs to run and how to answer.
pub struct Decoded {
    pub inputs: Vec<NamedTensor>,
    /// From the request's `timeout` parameter (microseconds; 0 or absent = none).
    pub timeout: Option<Duration>,
    /// The `top_k` and `rank_by` request parameters.
    pub ranking: Option<Ranking>,
    pub plan: ResponsePlan,
}

/// What the answer must contain.
pub struct ResponsePlan {
    /// Echoed back.
    pub id: String,
    /// Output names in the order the client asked for them; empty = every output.
    pub outputs: Vec<String>,
}

/// About the bytes [`decode`] builds for `request`'s tensors: its raw contents' bytes, or
/// its typed contents' elements at their in-memory sizes (strings with their offsets).
pub fn decoded_estimate(request: &ModelInferRequest) -> usize {
    let raw: usize = request.raw_input_contents.iter().map(Bytes::len).sum();
    let typed: usize = request
        .inputs
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .map(|c| {
            c.bool_contents.len()
                + 4 * (c.int_contents.len() + c.uint_contents.len() + c.fp32_contents.len())
                + 8 * (c.int64_contents.len() + c.uint64_contents.len() + c.fp64_contents.len())
                + c.bytes_contents
                    .iter()
                    .map(|b| b.len() + std::mem::size_of::<usize>())
                    .sum::<usize>()
        })
        .sum();
    raw + typed
}

/// Decodes `request`; the caller answers an error as the model's INVALID_ARGUMENT.
pub fn decode(request: ModelInferRequest) -> Result<Decoded, DecodeError> {
    let ModelInferRequest {
        id,
        parameters,
        inputs,
        outputs,
        raw_input_contents,
        ..
    } = request;
    check_parameters(&parameters, "the request")?;
    for i in &inputs {
        check_parameters(&i.parameters, &format!("input '{}'", i.name))?;
    }
    for o in &outputs {
        check_parameters(&o.parameters, &format!("output '{}'", o.name))?;
    }
    let raw = !raw_input_contents.is_empty();
    if raw && raw_input_contents.len() != inputs.len() {
        return Err(DecodeError::Body(format!(
            "raw_input_contents has {} entries but the request has {} inputs; give one entry per input, in the order of inputs",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raw_contents = raw_input_contents.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        tensors.push(decode_input(input, raw_contents.next())?);
    }
    Ok(Decoded {
        inputs: tensors,
        timeout: timeout(&parameters)?,
        ranking: ranking(&parameters)?,
        plan: ResponsePlan {
            id,
            outputs: outputs.into_iter().map(|o| o.name).collect(),
        },
    })
}

/// Most entries one `parameters` map may have (as for HTTP): the protocol defines a
/// handful, and each costs a map entry beyond its bytes on the wire.
pub const MAX_PARAMETERS: usize = 64;

fn check_parameters(
    parameters: &HashMap<String, InferParameter>,
    of: &str,
) -> Result<(), DecodeError> {
    if parameters.len() > MAX_PARAMETERS {
        return Err(DecodeError::Body(format!(
            "{of} has {} parameters, more than {MAX_PARAMETERS}",
            parameters.len()
        )));
    }
    Ok(())
}

/// Triton's `timeout` request parameter: int64 microseconds, 0 = no timeout.
fn timeout(parameters: &HashMap<String, InferParameter>) -> Result<Option<Duration>, DecodeError> {
    let Some(p) = parameters.get("timeout") else {
        return Ok(None);
    };
    let micros = match p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) if v >= 0 => v as u64,
        Some(ParameterChoice::Uint64Param(v)) => v,
        ref other => {
            return Err(DecodeError::Parameter(format!(
                "parameter 'timeout' must be a non-negative int64 (microseconds), got {other:?}"
            )))
        }
    };
    Ok((micros > 0).then(|| Duration::from_micros(micros)))
}

/// The `top_k` (int64 or uint64, at least 1) and `rank_by` (string) request parameters;
/// `rank_by` alone is refused, as it would be silently ignored.
fn ranking(parameters: &HashMap<String, InferParameter>) -> Result<Option<Ranking>, DecodeError> {
    let rank_by = match parameters.get("rank_by").map(|p| &p.parameter_choice) {
        None => None,
        Some(Some(ParameterChoice::StringParam(name))) => Some(name.clone()),
        Some(other) => {
            return Err(DecodeError::Parameter(format!(
                "parameter 'rank_by' must be an output name (string_param), got {other:?}"
            )))
        }
    };
    let top_k = match parameters.get("top_k").map(|p| &p.parameter_choice) {
        None if rank_by.is_some() => {
            return Err(DecodeError::Parameter(
                "parameter 'rank_by' needs 'top_k' (how many rows to return)".into(),
            ))
        }
        None => return Ok(None),
        Some(Some(ParameterChoice::Int64Param(k))) => Ranking::top_k(Some(*k), k),
        Some(Some(ParameterChoice::Uint64Param(k))) => Ranking::top_k(i64::try_from(*k).ok(), k),
        Some(other) => Ranking::top_k(None, format_args!("{other:?}")),
    }?;
    Ok(Some(Ranking { top_k, rank_by }))
}

fn decode_input(input: InferInputTensor, raw: Option<Bytes>) -> Result<NamedTensor, DecodeError> {
    let InferInputTensor {
        name,
        datatype,
        shape,
        contents,
        ..
    } = input;
    let dtype = DataType::from_name(&datatype).ok_or_else(|| {
        DecodeError::input(&name, format_args!("unsupported datatype '{datatype}'"))
    })?;
    let shape: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            DecodeError::input(
                &name,
                format_args!("shape {shape:?} has a negative dimension"),
            )
        })?;
    let contents = contents.filter(|c| filled_fields(c).next().is_some());
    let tensor = match (raw, contents) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::Body(format!(
                "input '{name}' sets contents while the request uses raw_input_contents; use one form for all inputs"
            )))
        }
        (Some(bytes), None) => {
            decode_binary(dtype, &shape, &bytes).map_err(|e| DecodeError::input(&name, e))?
        }
        (None, Some(contents)) => typed_data(dtype, contents)
            .map_err(|e| DecodeError::input(&name, e))
            .and_then(|data| Tensor::new(shape, data).map_err(|e| DecodeError::input(&name, e)))?,
        // An empty tensor has nothing to send; validation then names the empty axis.
        (None, None) if element_count(&shape) == 0 => Tensor {
            shape,
            data: TensorData::with_capacity(dtype, 0),
        },
        (None, None) => {
            let why = match typed_field(dtype) {
                Some(field) => format!("no data: set contents.{field} or raw_input_contents"),
                None => format!("no data: {dtype} tensors must be sent in raw_input_contents"),
            };
            return Err(DecodeError::input(&name, why));
        }
    };
    Ok(NamedTensor { name, tensor })
}

/// The `InferTensorContents` field that carries `dtype`; `None` for FP16/BF16 (raw only).
fn typed_field(dtype: DataType) -> Option<&'static str> {
    use DataType as D;
    Some(match dtype {
        D::Bool => "bool_contents",
        D::I8 | D::I16 | D::I32 => "int_contents",
        D::I64 => "int64_contents",
        D::U8 | D::U16 | D::U32 => "uint_contents",
        D::U64 => "uint64_contents",
        D::F32 => "fp32_contents",
        D::F64 => "fp64_contents",
        D::Bytes => "bytes_contents",
        D::F16 | D::BF16 => return None,
    })
}

/// Names of the non-empty fields of `c`.
fn filled_fields(c: &InferTensorContents) -> impl Iterator<Item = &'static str> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, len)| *len > 0)
    .map(|(name, _)| name)
}

/// Takes the field that carries `dtype` out of `c`, narrowing 32-bit wire integers to the
/// element type (out-of-range values are errors, never truncated).
fn typed_data(dtype: DataType, c: InferTensorContents) -> Result<TensorData, ContentsError> {
    let Some(field) = typed_field(dtype) else {
        return Err(ContentsError::NoField(dtype));
    };
    let filled: Vec<&str> = filled_fields(&c).collect();
    if filled != [field] {
        return Err(ContentsError::WrongField {
            dtype,
            field,
            filled: filled.join(", "),
        });
    }
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        values: Vec<S>,
        dtype: DataType,
    ) -> Result<Vec<T>, ContentsError> {
        values
            .into_iter()
            .map(|v| {
                T::try_from(v).map_err(|_| ContentsError::OutOfRange {
                    value: v.to_string(),
                    dtype,
                })
            })
            .collect()
    }
    use DataType as D;
    Ok(match dtype {
        D::Bool => TensorData::Bool(c.bool_contents),
        D::I8 => TensorData::I8(narrow(c.int_contents, dtype)?),
        D::I16 => TensorData::I16(narrow(c.int_contents, dtype)?),
        D::I32 => TensorData::I32(c.int_contents),
        D::I64 => TensorData::I64(c.int64_contents),
        D::U8 => TensorData::U8(narrow(c.uint_contents, dtype)?),
        D::U16 => TensorData::U16(narrow(c.uint_contents, dtype)?),
        D::U32 => TensorData::U32(c.uint_contents),
        D::U64 => TensorData::U64(c.uint64_contents),
        D::F32 => TensorData::F32(c.fp32_contents),
        D::F64 => TensorData::F64(c.fp64_contents),
        D::Bytes => TensorData::Bytes(c.bytes_contents.iter().collect()),
        // typed_field returned None for these above.
        D::F16 | D::BF16 => return Err(ContentsError::NoField(dtype)),
    })
}

/// Typed `contents` that cannot carry the input's datatype.
#[derive(Debug, thiserror::Error)]
enum ContentsError {
    /// FP16 and BF16 have no typed field.
    #[error("{0} has no typed contents field; send it in raw_input_contents")]
    NoField(DataType),
    #[error(
        "{dtype} data goes in contents.{field} (and only there), but the request set {filled}"
    )]
    WrongField {
        dtype: DataType,
        field: &'static str,
        filled: String,
    },
    /// A 32-bit wire integer that the narrower element type cannot hold.
    #[error("value {value} is out of range for {dtype}")]
    OutOfRange { value: String, dtype: DataType },
}

/// Builds the answer from the selected outputs (index into the spec's outputs, tensor),
/// every output in `raw_output_contents` whatever form the request used.
pub fn encode(
    spec: &ModelSpec,
    plan: ResponsePlan,
    outputs: Vec<(usize, Tensor)>,
) -> ModelInferResponse {
    let mut response = ModelInferResponse {
        model_name: spec.name.clone(),
        model_version: spec.version.clone(),
        id: plan.id,
        outputs: Vec::with_capacity(outputs.len()),
        raw_output_contents: Vec::with_capacity(outputs.len()),
        ..Default::default()
    };
    for (i, tensor) in outputs {
        response.outputs.push(InferOutputTensor {
            name: spec.output_name(i).to_string(),
            datatype: tensor.dtype().name().to_string(),
            shape: tensor.shape.iter().map(|&d| d as i64).collect(),
            ..Default::default()
        });
        let mut bytes = Vec::new();
        encode_binary(&tensor, &mut bytes);
        response.raw_output_contents.push(Bytes::from(bytes));
    }
    response
}

#[cfg(test)]
mod tests;
