//! KServe V2 inference bodies over HTTP: JSON, plus Triton's binary-tensor extension
//! (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data[_output]`).
//! Lengths that do not add up are errors, never over-reads.

use std::time::Duration;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lift::{self, Lifted, Resolver};
use super::v2_params::{capped, capped_option, capped_shape, Parameters};
use crate::api::DecodeError;
use crate::service::rank::Ranking;
use crate::spec::{ModelSpec, NamedTensor};
use crate::tensor::{
    check_depth, decode_array_expecting, decode_binary, decode_strings, element_count,
    encode_binary, DataType, Flat, JsonArrayError, Tensor,
};

/// Header giving the JSON part's length when binary tensors follow it.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

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
    check_depth(json)
        .map_err(|e| DecodeError::Body(format!("invalid inference request JSON: {e}")))?;
    #[cfg(feature = "json-compare")]
    if binary.is_empty() && super::v2_sonic::enabled() {
        if let Some(request) = super::v2_sonic::decode(json) {
            return Ok(request);
        }
    }
    // Every input's `data` array is read by the tensor walker alone: serde parses the rest
    // (see `lift`), and words its errors at the body's own positions.
    match lift::lift(json, is_input_data) {
        Some(lifted) => decode_json(&lifted.skeleton, Some(&lifted), binary),
        None => decode_json(json, None, binary),
    }
}

/// Where the body keeps tensor data: `data` in an object of the `inputs` list.
fn is_input_data(place: lift::Place) -> bool {
    place.top == b"inputs" && place.depth == 2 && place.key == b"data"
}

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
                let text = texts
                    .text(raw.get())
                    .map_err(|e| DecodeError::Body(e.to_string()))?;
                let array = decode_array_expecting(text, dtype, element_count(&shape));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    /// A `data` array large enough to be lifted: `n` FP32 values with one replaced by `odd`.
    fn data(n: usize, odd: Option<(usize, &str)>) -> String {
        let values: Vec<String> = (0..n)
            .map(|i| match odd {
                Some((at, text)) if at == i => text.to_string(),
                _ => format!("{}", (i as f32 * 0.37) - 5.0),
            })
            .collect();
        format!("[{}]", values.join(","))
    }

    /// Decodes `body` with and without lifting: the answers must be identical.
    fn both_ways(body: &str) -> Result<Vec<(String, Tensor)>, DecodeError> {
        let pairs = |r: DecodedRequest| -> Vec<(String, Tensor)> {
            r.inputs.into_iter().map(|t| (t.name, t.tensor)).collect()
        };
        assert!(
            lift::lift(body.as_bytes(), is_input_data).is_some(),
            "{body}"
        );
        let lifted = decode(&HeaderMap::new(), body.as_bytes()).map(pairs);
        let plain = decode_json(body.as_bytes(), None, &[]).map(pairs);
        assert_eq!(lifted, plain, "{body}");
        plain
    }

    fn input(name: &str, datatype: &str, shape: &str, data: &str) -> String {
        format!(r#"{{"name":"{name}","datatype":"{datatype}","shape":{shape},"data":{data}}}"#)
    }

    #[test]
    fn lifted_arrays_decode_exactly_like_the_plain_path() {
        let good = data(200, None);
        let body = format!(
            r#"{{"inputs":[{},{}]}}"#,
            input("x", "FP32", "[200]", &good),
            input("y", "FP32", "[2, 100]", &good)
        );
        let inputs = both_ways(&body).expect("valid");
        assert_eq!(inputs[1].1.shape, vec![2, 100]);
        // Nested, and next to a small array.
        let nested = format!("[{good},{good}]");
        both_ways(&format!(
            r#"{{"inputs":[{},{}]}}"#,
            input("x", "FP32", "[2, 200]", &nested),
            input("y", "INT64", "[2]", "[1, 2]")
        ))
        .expect("valid");
        // A parameter named `data` keeps its array.
        let body = format!(
            r#"{{"parameters":{{"data":{good}}},"inputs":[{}]}}"#,
            input("x", "FP32", "[200]", &good)
        );
        both_ways(&body).expect("valid");
    }

    #[test]
    fn errors_inside_data_arrays_are_the_walkers_naming_the_input() {
        for (odd, datatype, want) in [
            ("null", "FP32", "input 'x': element 150 is null, which is not a valid FP32"),
            ("1e400", "FP32", "input 'x': invalid data: number 1e400 at line 1 column "),
            ("true", "FP32", "input 'x': element 150 is true, which is not a valid FP32"),
            // The first misfit is named: the data's own -4.63 comes before the odd value.
            ("1.5", "INT32", "input 'x': element 1 is -4.63, which is not a valid INT32"),
            ("01", "FP32", "input 'x': invalid data: invalid number 01 at line 1 column "),
            ("1,", "FP32", "input 'x': invalid data: expected a number, true, false or an array at line 1 column "),
            ("[1]", "FP32", "input 'x': invalid data: ragged nested array: an array appears where a number was expected"),
        ] {
            for data in [data(200, Some((150, odd))), data(151, Some((150, odd)))] {
                let body = format!(r#"{{"inputs":[{}]}}"#, input("x", datatype, "[200]", &data));
                let err = decode(&HeaderMap::new(), body.as_bytes()).err().expect(odd).to_string();
                assert!(err.starts_with(want), "{odd}: {err}");
            }
        }
        // Syntax errors around the array, or a wrong shape: the same message and position.
        let good = data(200, None);
        for body in [
            format!(r#"{{"inputs":[{}]"#, input("x", "FP32", "[200]", &good)),
            format!(r#"{{"inputs":[{}],}}"#, input("x", "FP32", "[200]", &good)),
            format!(
                r#"{{"inputs":[{}, 7]}}"#,
                input("x", "FP32", "[200]", &good)
            ),
            format!(r#"{{"inputs":[{}]}}"#, input("x", "FP32", "[3, 3]", &good)),
            format!(r#"{{"inputs":[{}]}}"#, input("x", "BYTES", "[200]", &good)),
        ] {
            both_ways(&body).expect_err("invalid");
        }
    }

    #[test]
    fn lifted_string_arrays_decode_and_fail_naming_the_input() {
        let strings = |odd: Option<(usize, &str)>| -> String {
            let items: Vec<String> = (0..200)
                .map(|i| match odd {
                    Some((at, text)) if at == i => text.to_string(),
                    _ => format!(r#""u{i} \"q\" \u00e9""#),
                })
                .collect();
            format!("[{}]", items.join(","))
        };
        let body = format!(
            r#"{{"inputs":[{}]}}"#,
            input("s", "BYTES", "[200]", &strings(None))
        );
        let inputs = both_ways(&body).expect("valid");
        let TensorData::Bytes(s) = &inputs[0].1.data else {
            panic!("BYTES")
        };
        assert_eq!(s.get(7), Some("u7 \"q\" é".as_bytes()));
        for (odd, want) in [
            (
                "7",
                "input 's': element 150 is 7, which is not a valid BYTES element",
            ),
            ("null", "input 's': element 150 is null"),
            (
                r#""\ud800""#,
                "input 's': invalid data: invalid string at line 1 column ",
            ),
            (
                r#""\x""#,
                "input 's': invalid data: invalid string at line 1 column ",
            ),
            ("[\"a\"]", "input 's': invalid data: ragged nested array"),
        ] {
            let body = format!(
                r#"{{"inputs":[{}]}}"#,
                input("s", "BYTES", "[200]", &strings(Some((150, odd))))
            );
            let err = decode(&HeaderMap::new(), body.as_bytes())
                .err()
                .expect(odd)
                .to_string();
            assert!(err.starts_with(want), "{odd}: {err}");
        }
    }

    fn spec(inputs: &[(&str, DataType, &[i64])]) -> ModelSpec {
        let tensor = |(name, dtype, shape): &(&str, DataType, &[i64])| crate::spec::TensorSpec {
            name: name.to_string(),
            dtype: *dtype,
            shape: shape.to_vec(),
            symbols: vec![String::new(); shape.len()],
            pad_axes: Vec::new(),
            pad_value: 0.0,
            broadcast: false,
        };
        ModelSpec {
            name: "m".into(),
            version: "1".into(),
            inputs: inputs.iter().map(tensor).collect(),
            outputs: Vec::new(),
            batched: true,
            properties: Default::default(),
            config: Default::default(),
            placements: Vec::new(),
            max_batch: 8,
            inline_rows: 0,
            features: None,
            inline_elements: 0,
            footprint: crate::spec::Footprint::default(),
            max_batch_work_bytes: usize::MAX,
            context: None,
        }
    }

    #[test]
    fn raw_bodies_deduce_one_variable_axis_and_refuse_what_cannot_be_deduced() {
        let bytes = |n: usize| vec![0u8; n];
        // Batch 1 and the one other variable axis from the byte count.
        let one = spec(&[("x", DataType::F32, &[-1, -1, 3])]);
        let r = decode_raw(&one, &bytes(4 * 3 * 5)).expect("deduced");
        assert_eq!(r.inputs[0].tensor.shape, vec![1, 5, 3]);
        assert!(r.format.is_binary(0));
        let fixed = spec(&[("x", DataType::I64, &[-1, 2])]);
        assert_eq!(
            decode_raw(&fixed, &bytes(16)).expect("fits").inputs[0]
                .tensor
                .shape,
            vec![1, 2]
        );
        for (s, n, needles) in [
            (
                &one,
                4 * 3 * 5 + 1,
                &["'x'", "61 bytes", "multiple of 12"][..],
            ),
            (&fixed, 24, &["'x'", "24 bytes", "16"]),
            (
                &spec(&[("x", DataType::F32, &[-1, -1, -1])]),
                16,
                &["cannot be deduced", "2 variable"],
            ),
            (
                &spec(&[
                    ("a", DataType::F32, &[-1, 1]),
                    ("b", DataType::F32, &[-1, 1]),
                ]),
                4,
                &["one input", "2 (a, b)"],
            ),
        ] {
            let err = decode_raw(s, &bytes(n)).err().expect("refused").to_string();
            for needle in needles {
                assert!(err.contains(needle), "{err:?} lacks {needle:?}");
            }
        }
    }

    /// The declared shape only sizes the first buffer, capped by what the text can hold: a
    /// client declaring 4·10^12 elements next to a few numbers gets the shape error, and
    /// the server no 16 TB allocation (which would abort the process).
    #[test]
    fn a_declared_shape_cannot_make_the_decoder_allocate_more_than_the_text_holds() {
        let huge = "[4000000000000]";
        for data in ["[1.5, 2.5]".to_string(), data(300, None)] {
            let body = format!(r#"{{"inputs":[{}]}}"#, input("x", "FP32", huge, &data));
            let err = both_ways(&body)
                .expect_err("shape and data disagree")
                .to_string();
            assert!(err.contains("input 'x'"), "{err}");
        }
    }
}
