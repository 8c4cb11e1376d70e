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
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::{body_or_error, v2::timing_headers};
use crate::error::{Error, Result};
use crate::service::{InferCall, ModelRef, Service};
use crate::spec::{ModelSpec, NamedTensor};
use crate::tensor::{FlatJson, Nested, Tensor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody {
    model: String,
    #[serde(default)]
    version: Option<String>,
    inputs: PredictInputs,
    /// Deadline in milliseconds; overrides the model's default.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Output names to return; all when absent.
    #[serde(default)]
    outputs: Option<Vec<String>>,
}

/// `{"name": array, ...}` or a bare array for a single-input model.
enum PredictInputs {
    Named(Vec<(String, FlatJson)>),
    Single(FlatJson),
}

impl<'de> Deserialize<'de> for PredictInputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PredictInputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of input name to nested array, or a nested array")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<PredictInputs, A::Error> {
                let mut named = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, FlatJson>()? {
                    named.push((k, v));
                }
                Ok(PredictInputs::Named(named))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<PredictInputs, A::Error> {
                FlatJson::from_seq(seq).map(PredictInputs::Single)
            }
        }
        d.deserialize_any(V)
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
    let request: PredictBody = serde_json::from_slice(&body)
        .map_err(|e| Error::InvalidInput(format!("invalid /predict JSON: {e}")))?;
    let model = service.model_for_inference(&ModelRef::new(
        request.model.as_str(),
        request.version.as_deref(),
    ))?;
    let spec = &model.spec;
    let inputs = decode_inputs(spec, request.inputs).map_err(|e| model.refuse(e))?;
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs,
                outputs: request.outputs.unwrap_or_default(),
                timeout: request.timeout_ms.map(Duration::from_millis),
            },
        )
        .await?;
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
    Ok(response)
}

/// Parses a `/predict` body down to its inputs as flattened arrays, without a model (a
/// single bare array gets the empty name). The decoding a client reaches before any model
/// is involved; the fuzz targets drive it.
pub fn parse_inputs(body: &[u8]) -> std::result::Result<Vec<(String, FlatJson)>, String> {
    let request: PredictBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(match request.inputs {
        PredictInputs::Named(named) => named,
        PredictInputs::Single(flat) => vec![(String::new(), flat)],
    })
}

/// Nested arrays to tensors, with dtypes from the model's inputs. Unknown names are left
/// to validation, which reports them with the full list of inputs.
fn decode_inputs(spec: &ModelSpec, inputs: PredictInputs) -> Result<Vec<NamedTensor>> {
    let invalid = |msg: String| {
        Error::InvalidInput(format!(
            "model '{}' version {}: {msg}",
            spec.name, spec.version
        ))
    };
    let named = match inputs {
        PredictInputs::Named(named) => named,
        PredictInputs::Single(flat) if spec.inputs.len() == 1 => {
            vec![(spec.inputs[0].name.clone(), flat)]
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
    for (name, flat) in named {
        let dtype = spec
            .input(&name)
            .map(|s| s.dtype)
            .unwrap_or(crate::tensor::DataType::F32);
        let data = flat
            .to_data(dtype)
            .map_err(|e| invalid(format!("input '{name}': {e}")))?;
        let tensor =
            Tensor::new(flat.shape, data).map_err(|e| invalid(format!("input '{name}': {e}")))?;
        tensors.push(NamedTensor { name, tensor });
    }
    Ok(tensors)
}
