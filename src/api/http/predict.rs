//! `POST /predict`: the application-friendly form. Inputs are nested arrays keyed by input
//! name (or a bare nested array for a single-input model); shapes come from the nesting and
//! datatypes from the model. Outputs come back as nested arrays keyed by output name.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::lift::{self, Lifted, Resolver};
use super::{
    body_or_error, check_json_output, off_runtime_if, v2::timing_headers, OFF_RUNTIME_BYTES,
};
use crate::error::{Error, Result};
use crate::service::Model;
use crate::service::{InferCall, ModelRef, Service};
use crate::spec::{ModelSpec, NamedTensor};
use serde_json::value::RawValue;

use crate::tensor::{check_depth, decode_array, JsonArrayError, Nested, Tensor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody<'a> {
    model: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(borrow)]
    inputs: PredictInputs<'a>,
    /// Deadline in milliseconds; overrides the model's default.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Output names to return; all when absent.
    #[serde(default)]
    outputs: Option<Vec<String>>,
}

/// `{"name": array, ...}` or a bare array for a single-input model. The arrays stay raw
/// text (borrowed from the body) until the model is known, so they are decoded once,
/// straight into the input's datatype.
enum PredictInputs<'a> {
    Named(Vec<(String, &'a RawValue)>),
    Single(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for PredictInputs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<(String, &'de RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of input name to nested array, or a nested array")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut named = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    named.push((k, v));
                }
                Ok(named)
            }
        }
        let raw = <&'de RawValue>::deserialize(d)?;
        match raw.get().as_bytes().first() {
            Some(b'{') => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                de.deserialize_map(V)
                    .map(PredictInputs::Named)
                    .map_err(de::Error::custom)
            }
            Some(b'[') => Ok(PredictInputs::Single(raw)),
            _ => Err(de::Error::custom(
                "inputs must be an object of input name to nested array, or a nested array",
            )),
        }
    }
}

/// The answer: outputs as nested arrays in the order requested.
struct PredictResponse<'a> {
    model: &'a str,
    version: &'a str,
    outputs: Vec<(&'a str, &'a Tensor)>,
}

impl Serialize for PredictResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        struct Outputs<'b>(&'b [(&'b str, &'b Tensor)]);
        impl Serialize for Outputs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (name, t) in self.0 {
                    map.serialize_entry(
                        name,
                        &Nested {
                            shape: &t.shape,
                            data: &t.data,
                        },
                    )?;
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("version", self.version)?;
        map.serialize_entry("outputs", &Outputs(&self.outputs))?;
        map.end()
    }
}

pub async fn predict(
    State(service): State<Arc<Service>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_or_error(body, service.config.max_body_bytes)?;
    let large = body.len() > OFF_RUNTIME_BYTES;
    // The arrays are borrowed from the body until the model (and so each input's
    // datatype) is known, so parsing, lookup and decoding happen in one step.
    let lookup = service.clone();
    let (model, outputs, timeout_ms, inputs) = off_runtime_if(large, move || {
        check_depth(&body)
            .map_err(|e| Error::InvalidInput(format!("invalid /predict JSON: {e}")))?;
        // Large arrays under input names skip serde's scan of every number (see `lift`;
        // a bare array under `inputs` stays, or `inputs` would turn into a string); the
        // plain parse decides every failure, so messages and counts do not depend on it.
        if let Some(lifted) = lift::lift(&body, |key| key != b"inputs") {
            if let Ok(parsed @ Parsed { inputs: Ok(_), .. }) =
                parse(&lookup, &lifted.skeleton, Some(&lifted))
            {
                return parsed.into_parts();
            }
        }
        parse(&lookup, &body, None)?.into_parts()
    })
    .await??;
    let spec = &model.spec;
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs,
                outputs: outputs.unwrap_or_default(),
                timeout: timeout_ms.map(Duration::from_millis),
            },
        )
        .await?;
    for (i, t) in &answer.outputs {
        check_json_output(spec, &spec.outputs[*i].name, t)?;
    }
    let outputs = answer
        .outputs
        .iter()
        .map(|(i, t)| (spec.outputs[*i].name.as_str(), t))
        .collect();
    let body = PredictResponse {
        model: &spec.name,
        version: &spec.version,
        outputs,
    };
    let mut response = Json(body).into_response();
    timing_headers(response.headers_mut(), &answer);
    response.extensions_mut().insert(super::Compressible);
    Ok(response)
}

/// A parsed request with its model; the inputs' decoding may still have failed.
struct Parsed {
    model: Arc<Model>,
    outputs: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    inputs: Result<Vec<NamedTensor>>,
}

impl Parsed {
    /// Counts a decoding failure in the model's metrics.
    #[allow(clippy::type_complexity)]
    fn into_parts(
        self,
    ) -> Result<(
        Arc<Model>,
        Option<Vec<String>>,
        Option<u64>,
        Vec<NamedTensor>,
    )> {
        let inputs = self.inputs.map_err(|e| self.model.refuse(e))?;
        Ok((self.model, self.outputs, self.timeout_ms, inputs))
    }
}

/// Parses `json` (the body, or its skeleton with `lifted` arrays), finds the model and
/// decodes the inputs with its datatypes.
fn parse(service: &Service, json: &[u8], lifted: Option<&Lifted>) -> Result<Parsed> {
    let request: PredictBody = serde_json::from_slice(json)
        .map_err(|e| Error::InvalidInput(format!("invalid /predict JSON: {e}")))?;
    let model = service.model_for_inference(&ModelRef::new(
        request.model.as_str(),
        request.version.as_deref(),
    ))?;
    let inputs = decode_inputs(&model.spec, request.inputs, lifted);
    Ok(Parsed {
        model,
        outputs: request.outputs,
        timeout_ms: request.timeout_ms,
        inputs,
    })
}

/// The body's inputs as (name, raw JSON text of the array), without a model: what the
/// handler feeds to [`crate::tensor::decode_array`] once the model gives the datatype.
/// For the fuzz targets; a bare array gets the name "".
pub fn parse_inputs(body: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
    let request: PredictBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(match request.inputs {
        PredictInputs::Named(named) => named
            .into_iter()
            .map(|(name, raw)| (name, raw.get().to_string()))
            .collect(),
        PredictInputs::Single(raw) => vec![(String::new(), raw.get().to_string())],
    })
}

/// Nested arrays to tensors, with dtypes from the model's inputs. Unknown names are left
/// to validation, which reports them with the full list of inputs.
fn decode_inputs(
    spec: &ModelSpec,
    inputs: PredictInputs<'_>,
    lifted: Option<&Lifted>,
) -> Result<Vec<NamedTensor>> {
    let invalid = |msg: String| {
        Error::InvalidInput(format!(
            "model '{}' version {}: {msg}",
            spec.name, spec.version
        ))
    };
    let named = match inputs {
        PredictInputs::Named(named) => named,
        PredictInputs::Single(raw) if spec.inputs.len() == 1 => {
            vec![(spec.inputs[0].name.clone(), raw)]
        }
        PredictInputs::Single(_) => {
            let names: Vec<&str> = spec.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(invalid(format!(
                "the model takes {} inputs ({}); pass \"inputs\" as an object keyed by input name",
                names.len(),
                names.join(", ")
            )));
        }
    };
    let mut tensors = Vec::with_capacity(named.len());
    let mut texts = Resolver::new(lifted);
    for (name, raw) in named {
        let dtype = spec
            .input(&name)
            .map(|s| s.dtype)
            .unwrap_or(crate::tensor::DataType::F32);
        let text = texts.text(raw.get()).map_err(|e| invalid(e.to_string()))?;
        let array = decode_array(text, dtype).map_err(|e| {
            invalid(match e {
                JsonArrayError::Invalid(e) => format!("input '{name}': invalid data: {e}"),
                JsonArrayError::Element(e) => format!("input '{name}': {e}"),
            })
        })?;
        let tensor = Tensor::new(array.shape, array.data)
            .map_err(|e| invalid(format!("input '{name}': {e}")))?;
        tensors.push(NamedTensor { name, tensor });
    }
    if !texts.all_resolved() {
        return Err(invalid("a lifted array is not an input".to_string()));
    }
    Ok(tensors)
}
