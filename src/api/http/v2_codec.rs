//! KServe V2 inference bodies over HTTP: JSON, plus Triton's binary-tensor extension
//! (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data[_output]`).
//! Lengths that do not add up are errors, never over-reads.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::lift::{self, Lifted, Resolver};
use super::v2_params::{capped, capped_option, capped_shape, Parameters};
use crate::api::DecodeError;
use crate::service::rank::Ranking;
use crate::spec::NamedTensor;
use crate::tensor::{
    check_depth, decode_array_expecting, decode_binary, element_count, DataType, JsonArrayError,
    Tensor, MAX_JSON_DEPTH,
};

/// Header giving the JSON part's length when binary tensors follow it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

mod encode;
mod raw;

pub use encode::{encode, EncodedResponse};
pub use raw::{decode_raw, is_raw};

#[derive(Deserialize)]
struct RequestBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    #[serde(deserialize_with = "capped")]
    inputs: Vec<InputBody>,
    #[serde(default, deserialize_with = "capped_option")]
    outputs: Option<Vec<OutputRequest>>,
}

#[derive(Deserialize)]
struct InputBody {
    name: String,
    #[serde(deserialize_with = "capped_shape")]
    shape: Vec<u64>,
    datatype: String,
    #[serde(default)]
    parameters: Parameters,
    /// Kept raw so decode errors can name the input they belong to.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct OutputRequest {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// A decoded inference request.
pub struct DecodedRequest {
    pub id: Option<String>,
    pub inputs: Vec<NamedTensor>,
    /// Requested output names, in order; empty = every output.
    pub outputs: Vec<String>,
    /// How each answered output is encoded.
    pub format: OutputFormat,
    pub timeout: Option<Duration>,
    /// The `top_k` and `rank_by` parameters.
    pub ranking: Option<Ranking>,
}

/// The request's `top_k` (an integer of at least 1) and `rank_by` (an output name);
/// `rank_by` alone is refused, as it would be silently ignored.
fn ranking(params: &Parameters) -> Result<Option<Ranking>, DecodeError> {
    let rank_by = match params.get("rank_by") {
        None => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => {
            return Err(DecodeError::Parameter(format!(
                "parameter 'rank_by' must be an output name (a string), got {other}"
            )))
        }
    };
    match params.get("top_k") {
        Some(v) => Ok(Some(Ranking {
            top_k: Ranking::top_k(v.as_i64(), v)?,
            rank_by,
        })),
        None if rank_by.is_some() => Err(DecodeError::Parameter(
            "parameter 'rank_by' needs 'top_k' (how many rows to return)".to_string(),
        )),
        None => Ok(None),
    }
}

/// Which answered outputs go as binary tensors instead of JSON.
#[derive(Debug, Clone, Default)]
pub struct OutputFormat {
    /// Per requested output, in request order (empty when none were named).
    pub binary: Vec<bool>,
    /// `binary_data_output`: the default for outputs that do not say.
    pub all_binary: bool,
}

impl OutputFormat {
    /// Binary for the `k`-th answered output?
    pub fn is_binary(&self, k: usize) -> bool {
        self.binary.get(k).copied().unwrap_or(self.all_binary)
    }
}

fn flag(params: &Parameters, key: &str) -> Option<bool> {
    params.get(key).and_then(Value::as_bool)
}

/// Decodes a V2 request (the caller answers an error as the model's 400); validation
/// against the model and output selection are the service's.
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<DecodedRequest, DecodeError> {
    let (json, binary) = match headers.get(HEADER_LENGTH) {
        Some(v) => {
            let len: usize = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    DecodeError::Body(format!("{HEADER_LENGTH} must be a byte count, got {v:?}"))
                })?;
            if len > body.len() {
                return Err(DecodeError::Body(format!(
                    "{HEADER_LENGTH} is {len} but the body has {} bytes",
                    body.len()
                )));
            }
            body.split_at(len)
        }
        None => (body, &[][..]),
    };
    let too_deep = |e| DecodeError::Body(format!("invalid inference request JSON: {e}"));
    #[cfg(feature = "json-compare")]
    if binary.is_empty() && super::v2_sonic::enabled() {
        check_depth(json).map_err(too_deep)?;
        if let Some(request) = super::v2_sonic::decode(json) {
            return Ok(request);
        }
    }
    // Every input's `data` array is read by the tensor walker alone: serde parses the rest
    // (see `lift`), and words its errors at the body's own positions.
    let lifted = lift::lift(json, lift::Strings::Decode, is_input_data);
    // The lift measured the body's nesting while reading it; without a lift (or over the
    // limit, for the message) the depth check reads it.
    if lifted.as_ref().is_none_or(|l| l.deepest > MAX_JSON_DEPTH) {
        check_depth(json).map_err(too_deep)?;
    }
    match lifted {
        Some(lifted) => decode_json(&lifted.skeleton, Some(&lifted), binary),
        None => decode_json(json, None, binary),
    }
}

/// Where the body keeps tensor data: `data` in an object of the `inputs` list.
fn is_input_data(place: lift::Place) -> bool {
    place.top == b"inputs" && place.depth == 2 && place.key == b"data"
}

/// Decodes the JSON part (`json`: the body, or its skeleton with `lifted` arrays) and the
/// binary tensors after it.
fn decode_json(
    json: &[u8],
    lifted: Option<&Lifted>,
    mut binary: &[u8],
) -> Result<DecodedRequest, DecodeError> {
    let request: RequestBody = serde_json::from_slice(json).map_err(|e| {
        let e = lifted.map_or_else(|| e.to_string(), |l| l.error(&e));
        DecodeError::Body(format!("invalid inference request JSON: {e}"))
    })?;
    let mut texts = Resolver::new(lifted);
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let name = input.name;
        let dtype = DataType::from_name(&input.datatype).ok_or_else(|| {
            DecodeError::input(
                &name,
                format_args!("unsupported datatype '{}'", input.datatype),
            )
        })?;
        let shape: Vec<usize> = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect();
        let tensor = match (input.parameters.get("binary_data_size"), input.data) {
            (Some(_), Some(_)) => {
                return Err(DecodeError::Body(format!(
                    "input '{name}' has both data and binary_data_size; send one or the other"
                )))
            }
            (Some(size), None) => {
                let size = size
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| {
                        DecodeError::input(&name, "binary_data_size must be a non-negative integer")
                    })?;
                if size > binary.len() {
                    return Err(DecodeError::input(
                        &name,
                        format_args!(
                            "binary_data_size is {size} but only {} bytes of binary data remain",
                            binary.len()
                        ),
                    ));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(dtype, &shape, bytes).map_err(|e| DecodeError::input(&name, e))?
            }
            (None, Some(raw)) => {
                let resolved = texts
                    .resolve(raw.get())
                    .map_err(|e| DecodeError::Body(e.to_string()))?;
                let array = match resolved {
                    // Strings the lift decoded already, as the line below would.
                    (_, Some(decoded)) if dtype == DataType::Bytes => Ok(decoded),
                    (text, _) => decode_array_expecting(text, dtype, element_count(&shape)),
                };
                let array = array.map_err(|e| match e {
                    JsonArrayError::Invalid(e) => {
                        DecodeError::input(&name, format_args!("invalid data: {e}"))
                    }
                    JsonArrayError::Element(e) => DecodeError::input(&name, e),
                })?;
                Tensor::new(shape, array.data).map_err(|e| DecodeError::input(&name, e))?
            }
            (None, None) => {
                return Err(DecodeError::Body(format!(
                    "input '{name}' has neither data nor binary_data_size"
                )))
            }
        };
        inputs.push(NamedTensor { name, tensor });
    }
    // Only inputs' `data` is lifted, so every placeholder is claimed by now.
    if !texts.all_resolved() {
        return Err(DecodeError::Body(
            "a lifted array is not an input's data (a decoder inconsistency)".to_string(),
        ));
    }
    if !binary.is_empty() {
        return Err(DecodeError::Body(format!(
            "{} bytes of binary data follow the last binary input",
            binary.len()
        )));
    }
    let all_binary = flag(&request.parameters, "binary_data_output").unwrap_or(false);
    let mut format = OutputFormat {
        binary: Vec::new(),
        all_binary,
    };
    let mut outputs = Vec::new();
    for o in request.outputs.unwrap_or_default() {
        format
            .binary
            .push(flag(&o.parameters, "binary_data").unwrap_or(all_binary));
        outputs.push(o.name);
    }
    let timeout = match request.parameters.get("timeout") {
        None => None,
        Some(v) => Some(Duration::from_micros(v.as_u64().ok_or_else(|| {
            DecodeError::Parameter(format!(
                "parameter 'timeout' must be microseconds as a non-negative integer, got {v}"
            ))
        })?)),
    };
    Ok(DecodedRequest {
        id: request.id,
        ranking: ranking(&request.parameters)?,
        inputs,
        outputs,
        format,
        timeout,
    })
}

#[cfg(test)]
mod tests;
