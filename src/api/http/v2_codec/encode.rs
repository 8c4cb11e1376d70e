//! The V2 answer: JSON outputs, or binary tensors after the JSON part (`binary_data_size`)
//! for the outputs the request asked so.

use serde::Serialize;

use super::OutputFormat;
use crate::spec::ModelSpec;
use crate::tensor::{encode_binary, Flat, Tensor};

#[derive(Serialize)]
struct ResponseBody<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputBody<'a>>,
}

#[derive(Serialize)]
struct OutputBody<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    // Only present for binary outputs: perf_analyzer rejects a `parameters` object that
    // lacks `binary_data_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Flat<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// An encoded response body; `json_len` is set when binary tensors follow the JSON.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

/// Encodes the answered `outputs` (index into the spec's outputs, tensor), in order.
pub fn encode(
    spec: &ModelSpec,
    id: Option<&str>,
    outputs: &[(usize, Tensor)],
    format: &OutputFormat,
) -> EncodedResponse {
    let mut binary = Vec::new();
    let mut bodies = Vec::with_capacity(outputs.len());
    let mut any_binary = false;
    for (k, (i, t)) in outputs.iter().enumerate() {
        let i = *i;
        let as_binary = format.is_binary(k);
        any_binary |= as_binary;
        let (parameters, data) = if as_binary {
            let before = binary.len();
            encode_binary(t, &mut binary);
            (
                Some(BinaryParameters {
                    binary_data_size: binary.len() - before,
                }),
                None,
            )
        } else {
            (None, Some(Flat(&t.data)))
        };
        bodies.push(OutputBody {
            name: spec.output_name(i),
            datatype: t.dtype().name(),
            shape: &t.shape,
            parameters,
            data,
        });
    }
    let response = ResponseBody {
        model_name: &spec.name,
        model_version: &spec.version,
        id,
        outputs: bodies,
    };
    // Serializing plain structs of numbers and strings into a Vec cannot fail.
    let mut body = serde_json::to_vec(&response).unwrap_or_default();
    if !any_binary {
        return EncodedResponse {
            body,
            json_len: None,
        };
    }
    let json_len = body.len();
    body.extend_from_slice(&binary);
    EncodedResponse {
        body,
        json_len: Some(json_len),
    }
}
