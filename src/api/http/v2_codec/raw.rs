//! Triton's raw binary request: `Inference-Header-Content-Length: 0` and the bytes of the
//! model's one input as the whole body, its shape deduced from their count.

use axum::http::HeaderMap;

use super::{DecodedRequest, OutputFormat, HEADER_LENGTH};
use crate::api::DecodeError;
use crate::spec::{ModelSpec, NamedTensor};
use crate::tensor::{decode_binary, decode_strings};

/// A raw binary request: `Inference-Header-Content-Length: 0`, the body is the bytes of
/// the model's one input, and there is no JSON at all.
pub fn is_raw(headers: &HeaderMap) -> bool {
    headers
        .get(HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

/// Decodes a raw binary request (Triton's rules): the model must have exactly one input;
/// its shape is the model's with the batch axis 1 and at most one other variable axis,
/// deduced from the byte count; every output is answered as binary data.
pub fn decode_raw(spec: &ModelSpec, body: &[u8]) -> Result<DecodedRequest, DecodeError> {
    let input = match spec.inputs.as_slice() {
        [one] => one,
        many => {
            let names: Vec<&str> = many.iter().map(|t| t.name.as_str()).collect();
            return Err(DecodeError::Body(format!(
                "a raw binary request ({HEADER_LENGTH}: 0) carries one input, but the model has {} ({}); send a JSON header describing each input",
                many.len(),
                names.join(", ")
            )));
        }
    };
    let name = &input.name;
    let dims = input.triton_dims(spec.batched);
    let variable = dims.iter().filter(|&&d| d < 0).count();
    if variable > 1 {
        return Err(DecodeError::Body(format!(
            "the shape of input '{name}' ({}) cannot be deduced from a raw binary request: it has {variable} variable dimensions besides the batch; send a JSON header with the shape",
            input.describe()
        )));
    }
    let known: usize = dims
        .iter()
        .filter(|&&d| d >= 0)
        .map(|&d| d as usize)
        .product();
    // What the body holds and what one row takes, in bytes for fixed-size types and in
    // elements for BYTES (whose elements each carry a 4-byte length).
    let (held, row, unit) = match input.dtype.fixed_size() {
        Some(size) => (body.len(), known.saturating_mul(size), "bytes"),
        None => {
            let strings = decode_strings(body, None).map_err(|e| {
                DecodeError::Body(format!("input '{name}' (raw binary BYTES data): {e}"))
            })?;
            (strings.len(), known, "length-prefixed elements")
        }
    };
    let deduced = match variable {
        0 if held == row => None,
        1 if row > 0 && held.is_multiple_of(row) => Some(held / row),
        _ => {
            return Err(DecodeError::Body(format!(
                "input '{name}' ({}) cannot take {held} {unit} of raw binary data: the size must be {} {unit} of {}",
                input.describe(),
                if variable == 0 { row.to_string() } else { format!("a multiple of {row}") },
                input.dtype
            )))
        }
    };
    let mut shape: Vec<usize> = dims
        .iter()
        .map(|&d| {
            if d < 0 {
                deduced.unwrap_or(0)
            } else {
                d as usize
            }
        })
        .collect();
    if spec.batched {
        shape.insert(0, 1);
    }
    let tensor =
        decode_binary(input.dtype, &shape, body).map_err(|e| DecodeError::input(name, e))?;
    Ok(DecodedRequest {
        id: None,
        inputs: vec![NamedTensor {
            name: name.clone(),
            tensor,
        }],
        outputs: Vec::new(),
        ranking: None,
        format: OutputFormat {
            binary: Vec::new(),
            all_binary: true,
        },
        timeout: None,
    })
}
