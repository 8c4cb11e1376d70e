//! `POST /predict`: the application-friendly form. Inputs are nested arrays keyed by input
//! name (or a bare nested array for a single-input model); shapes come from the nesting and
//! datatypes from the model. Outputs come back as nested arrays keyed by output name.
//! Rows may come instead as `"instances": [{"name": value, ...}, ...]` (TF Serving's row
//! form), turned into the same columns. A model with `[features]` also takes its raw fields
//! by name, one value per row: strings, integers or numbers, typed by what the JSON holds.
//! A ranking request sends `"context"` (one row of the broadcast inputs or fields) and
//! `"candidates"` (N rows, as columns or as row objects), and `"top_k"` answers the best
//! rows beside every row's outputs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::lift::{self, Lifted, Resolver};
use super::v2::Holding;
use super::{
    body_or_error, check_json_output, off_runtime_if, v2::timing_headers, OFF_RUNTIME_BYTES,
};
use crate::api::DecodeError;
use crate::error::{Error, Result};
use crate::service::budget::{tensor_bytes, Charge};
use crate::service::rank::Ranking;
use crate::service::Model;
use crate::service::{InferCall, ModelRef, Service};
use crate::spec::{ModelSpec, NamedTensor, TOP_K_INDICES, TOP_K_SCORES};
use serde_json::value::RawValue;

use crate::tensor::{check_depth, decode_array, decode_column, JsonArrayError, Nested, Tensor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictBody<'a> {
    model: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(borrow, default)]
    inputs: Option<PredictInputs<'a>>,
    /// Rows: one object of name to value per row (the alternative to `inputs`).
    #[serde(borrow, default)]
    instances: Option<&'a RawValue>,
    /// Deadline in milliseconds; overrides the model's default.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// Output names to return; all when absent.
    #[serde(default)]
    outputs: Option<Vec<String>>,
    /// One row of the broadcast inputs and fields, by name (with `candidates`).
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    /// N rows: columns (an object of name to array) or rows (an array of objects).
    #[serde(borrow, default)]
    candidates: Option<&'a RawValue>,
    /// Answer the best rows too (an integer of at least 1).
    #[serde(default)]
    top_k: Option<serde_json::Value>,
    /// The output `top_k` ranks by; the model's default when absent.
    #[serde(default)]
    rank_by: Option<serde_json::Value>,
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
            // A bare array, or the placeholder of one lifted out of the body.
            Some(b'[') => Ok(PredictInputs::Single(raw)),
            Some(b'"') if lift::placeholder(raw.get()).is_some() => Ok(PredictInputs::Single(raw)),
            _ => Err(de::Error::custom(
                "inputs must be an object of input name to nested array, or a nested array",
            )),
        }
    }
}

/// The answer: outputs as nested arrays in the order requested, and for a ranking request
/// `"top_k": {"indices": [...], "scores": [...]}`.
struct PredictResponse<'a> {
    model: &'a str,
    version: &'a str,
    outputs: Vec<(&'a str, &'a Tensor)>,
    top_k: Option<(&'a Tensor, &'a Tensor)>,
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
        let mut map = s.serialize_map(Some(3 + usize::from(self.top_k.is_some())))?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("version", self.version)?;
        map.serialize_entry("outputs", &Outputs(&self.outputs))?;
        if let Some((indices, scores)) = self.top_k {
            let ranked = [("indices", indices), ("scores", scores)];
            map.serialize_entry("top_k", &Outputs(&ranked))?;
        }
        map.end()
    }
}

/// Application-friendly inference
///
/// Inputs are nested arrays keyed by input name (or one bare nested array for a
/// single-input model); shapes come from the nesting and datatypes from the model.
#[utoipa::path(post, path = "/predict", operation_id = "predict", tag = "inference",
    request_body(content(
        (super::contract::PredictRequest = "application/json", examples(
            ("named" = (value = json!({"model": "mlp_digits", "inputs": {"pixels": [vec![0.0; 64]]}}))),
            ("bare" = (value = json!({"model": "fastkan_cancer", "inputs": [vec![0.5; 30]], "timeout_ms": 1000}))),
        )),
    )),
    responses(
        (status = 200, description = "Outputs as nested arrays keyed by output name, in the order requested.",
            body = super::contract::PredictResponse,
            headers(
                ("x-queue-time-us" = u64, description = "Microseconds the request waited in the model's queue."),
                ("x-compute-time-us" = u64, description = "Microseconds of ONNX Runtime time for the batch that ran the request."),
                ("x-batch-rows" = u64, description = "Rows in the batch that ran the request."),
            )),
        super::contract::InferenceErrors,
    ))]
pub async fn predict(
    State(service): State<Arc<Service>>,
    charge: Option<Extension<Arc<Charge>>>,
    headers: axum::http::HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let charge = charge.map(|Extension(c)| c);
    let Some(log) = &service.payload_log else {
        let holding = Holding::freeing_body(charge);
        return predict_unlogged(service.clone(), holding, body).await;
    };
    let kept = body.as_ref().ok().cloned();
    let sent = super::payload::Sent::of(log, &headers);
    // The log keeps the body: its bytes stay charged.
    let handler = predict_unlogged(service.clone(), Holding::new(charge), body);
    let overload = service.config.overload_status;
    super::payload::logged(log, overload, None, sent, kept, handler).await
}

async fn predict_unlogged(
    service: Arc<Service>,
    mut holding: Holding,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let body = body_or_error(body, service.config.max_body_bytes)?;
    let body_len = body.len();
    // Decoded tensors take about what the body took: reserved before they are built.
    holding.hold.estimate(body_len)?;
    let large = body.len() > OFF_RUNTIME_BYTES;
    // The arrays are borrowed from the body until the model (and so each input's
    // datatype) is known, so parsing, lookup and decoding happen in one step.
    let lookup = service.clone();
    let (model, outputs, timeout_ms, ranking, inputs) = off_runtime_if(large, move || {
        check_depth(&body)
            .map_err(|e| Error::InvalidInput(format!("invalid /predict JSON: {e}")))?;
        // The inputs' arrays are read by the tensor walker alone: serde parses the rest
        // (see `lift`), and words its errors at the body's own positions.
        let lifted = lift::lift(&body, lift::Strings::Skip, is_input);
        let json = lifted.as_ref().map_or(&body[..], |l| &l.skeleton);
        parse(&lookup, json, lifted.as_ref())?.into_parts()
    })
    .await??;
    holding
        .hold
        .set(tensor_bytes(inputs.iter().map(|i| &i.tensor)))?;
    holding.body_freed(body_len);
    let spec = &model.spec;
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs,
                // A listed selection still gets the ranking outputs this answer shows.
                outputs: match (outputs, ranking.is_some()) {
                    (Some(mut listed), true) => {
                        listed.extend([TOP_K_INDICES.to_string(), TOP_K_SCORES.to_string()]);
                        listed
                    }
                    (listed, _) => listed.unwrap_or_default(),
                },
                timeout: timeout_ms.map(Duration::from_millis),
                ranking,
            },
        )
        .await?;
    // The inputs are gone; the answer's tensors are held, and 16 bytes of JSON per
    // number are reserved for its text (at most 9 significant digits, a sign, a point, an
    // exponent and a comma).
    let tensors = tensor_bytes(answer.outputs.iter().map(|(_, t)| t));
    holding.hold.set(tensors)?;
    let numbers: usize = answer.outputs.iter().map(|(_, t)| t.data.len()).sum();
    holding
        .hold
        .estimate(tensors.saturating_add(numbers.saturating_mul(16)))?;
    for (i, t) in &answer.outputs {
        check_json_output(spec, spec.output_name(*i), t)?;
    }
    let graph_outputs = spec.outputs.len();
    let outputs = answer
        .outputs
        .iter()
        .filter(|(i, _)| *i < graph_outputs)
        .map(|(i, t)| (spec.output_name(*i), t))
        .collect();
    let ranked = |index: usize| {
        answer
            .outputs
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, t)| t)
    };
    let body = PredictResponse {
        model: &spec.name,
        version: &spec.version,
        outputs,
        top_k: ranked(graph_outputs).zip(ranked(graph_outputs + 1)),
    };
    let mut response = Json(body).into_response();
    // Only the encoded answer is left once this returns, held until it is written.
    let written = hyper::body::Body::size_hint(response.body())
        .exact()
        .map_or(0, |n| n as usize);
    holding.hold.set(tensors.saturating_add(written))?;
    holding.hold.resize(written).ok();
    holding.hold.keep();
    timing_headers(response.headers_mut(), &answer);
    response.extensions_mut().insert(super::Compressible);
    Ok(response)
}

/// Where the body keeps tensor data: `inputs` itself (a bare array) or a value in it.
fn is_input(place: lift::Place) -> bool {
    place.top == b"inputs" && place.depth <= 2
}

/// A parsed request with its model; the inputs' decoding may still have failed.
struct Parsed {
    model: Arc<Model>,
    outputs: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    ranking: Option<Ranking>,
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
        Option<Ranking>,
        Vec<NamedTensor>,
    )> {
        let inputs = self.inputs.map_err(|e| self.model.refuse(e))?;
        Ok((
            self.model,
            self.outputs,
            self.timeout_ms,
            self.ranking,
            inputs,
        ))
    }
}

/// Parses `json` (the body, or its skeleton with `lifted` arrays), finds the model and
/// decodes the inputs with its datatypes.
fn parse(service: &Service, json: &[u8], lifted: Option<&Lifted>) -> Result<Parsed> {
    let request: PredictBody = serde_json::from_slice(json).map_err(|e| {
        let e = lifted.map_or_else(|| e.to_string(), |l| l.error(&e));
        Error::InvalidInput(format!("invalid /predict JSON: {e}"))
    })?;
    let model = service.model_for_inference(&ModelRef::new(
        request.model.as_str(),
        request.version.as_deref(),
    ))?;
    let spec = &model.spec;
    let ranking =
        ranking(request.top_k.as_ref(), request.rank_by.as_ref()).map_err(|e| e.for_model(spec));
    let inputs = match (
        request.inputs,
        request.instances,
        request.candidates,
        request.context,
    ) {
        _ if ranking.is_err() => ranking.clone().map(|_| Vec::new()),
        (Some(inputs), None, None, None) => decode_inputs(spec, inputs, lifted),
        (None, Some(rows), None, None) => {
            instances_to_columns(spec, rows, lifted).and_then(|columns| {
                let named = columns.iter().map(|(n, raw)| (n.clone(), &**raw)).collect();
                decode_inputs(spec, PredictInputs::Named(named), None)
            })
        }
        (None, None, Some(candidates), context) => {
            super::predict_rank::context_and_candidates(spec, context, candidates, lifted)
                .and_then(|columns| {
                    let named = columns.iter().map(|(n, raw)| (n.clone(), &**raw)).collect();
                    decode_inputs(spec, PredictInputs::Named(named), None)
                })
        }
        _ => Err(Error::InvalidInput(
            "invalid /predict JSON: give one of \"inputs\" (columns), \"instances\" (rows), or \"candidates\" (with \"context\" for a ranking request)"
                .to_string(),
        )),
    };
    Ok(Parsed {
        outputs: request.outputs,
        timeout_ms: request.timeout_ms,
        ranking: ranking.ok().flatten(),
        inputs,
        model,
    })
}

/// The `top_k` and `rank_by` keys: an integer of at least 1 and an output name; `rank_by`
/// alone is refused, as it would be silently ignored.
fn ranking(
    top_k: Option<&serde_json::Value>,
    rank_by: Option<&serde_json::Value>,
) -> std::result::Result<Option<Ranking>, DecodeError> {
    let rank_by = match rank_by {
        None => None,
        Some(serde_json::Value::String(name)) => Some(name.clone()),
        Some(other) => {
            return Err(DecodeError::Parameter(format!(
                "\"rank_by\" must be an output name (a string), got {other}"
            )))
        }
    };
    match top_k {
        Some(v) => Ok(Some(Ranking {
            // A body key, not a request parameter as V2 names it.
            top_k: Ranking::top_k(v.as_i64(), v)
                .map_err(|e| DecodeError::Parameter(e.to_string().replace("parameter ", "")))?,
            rank_by,
        })),
        None if rank_by.is_some() => Err(DecodeError::Parameter(
            "'rank_by' needs 'top_k' (how many rows to return)".to_string(),
        )),
        None => Ok(None),
    }
}

/// The body's inputs as (name, raw JSON text of the array), without a model: what the
/// handler feeds to [`crate::tensor::decode_array`] once the model gives the datatype.
/// For the fuzz targets; a bare array gets the name "".
pub fn parse_inputs(body: &[u8]) -> std::result::Result<Vec<(String, String)>, serde_json::Error> {
    let request: PredictBody = serde_json::from_slice(body)?;
    Ok(match request.inputs {
        Some(PredictInputs::Named(named)) => named
            .into_iter()
            .map(|(name, raw)| (name, raw.get().to_string()))
            .collect(),
        Some(PredictInputs::Single(raw)) => vec![(String::new(), raw.get().to_string())],
        None => Vec::new(),
    })
}

/// Nested arrays to tensors, with dtypes from the model's inputs. Unknown names are left
/// to validation, which reports them with the full list of inputs.
fn decode_inputs(
    spec: &ModelSpec,
    inputs: PredictInputs<'_>,
    lifted: Option<&Lifted>,
) -> Result<Vec<NamedTensor>> {
    let invalid = |msg: String| spec.invalid(msg);
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
        if spec.input(&name).is_none()
            && spec
                .features
                .as_ref()
                .is_some_and(|f| f.field(&name).is_some())
        {
            let text = texts.text(raw.get()).map_err(|e| invalid(e.to_string()))?;
            let tensor = decode_field(&name, text).map_err(|e| invalid(e.to_string()))?;
            tensors.push(NamedTensor { name, tensor });
            continue;
        }
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
    // Only inputs are lifted, so every placeholder is claimed by now.
    if !texts.all_resolved() {
        return Err(invalid(
            "a lifted array is not an input (a decoder inconsistency)".to_string(),
        ));
    }
    Ok(tensors)
}

/// `instances` (rows) to columns: for each name any row gives, the JSON text of the array
/// of that name's values in row order (a field a row leaves out takes its `default`). The
/// arrays are then decoded exactly as `inputs` columns are.
pub(super) fn instances_to_columns(
    spec: &ModelSpec,
    rows: &RawValue,
    lifted: Option<&Lifted>,
) -> Result<Vec<(String, Box<RawValue>)>> {
    let invalid = |msg: String| spec.invalid(msg);
    if lifted.is_some() {
        // Rows are small objects: a lifted array inside one cannot be resolved by name.
        return Err(invalid("rows are decoded without lifting".to_string()));
    }
    let rows: Vec<Vec<(String, &RawValue)>> = serde_json::from_str::<Vec<Row>>(rows.get())
        .map_err(|e| {
            invalid(format!(
                "\"instances\" must be an array of objects of name to value: {e}"
            ))
        })?
        .into_iter()
        .map(|r| r.0)
        .collect();
    if rows.is_empty() {
        return Err(invalid(
            "\"instances\" is empty; at least one row is required".to_string(),
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for row in &rows {
        for (name, _) in row {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        let default = spec
            .features
            .as_ref()
            .and_then(|f| f.field(name))
            .and_then(|f| f.default.as_ref());
        let mut text = String::from("[");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            match (row.iter().find(|(n, _)| n == name), default) {
                (Some((_, value)), _) => text.push_str(value.get()),
                (None, Some(default)) => text.push_str(&default_json(default)),
                (None, None) => {
                    return Err(invalid(format!(
                        "instance {index} has no '{name}', which other instances give (and it has no default)"
                    )))
                }
            }
        }
        text.push(']');
        let raw = RawValue::from_string(text)
            .map_err(|e| invalid(format!("instances: '{name}': {e}")))?;
        columns.push((name.to_string(), raw));
    }
    Ok(columns)
}

/// One row of `instances` (or a ranking request's context or candidate): names in the
/// order given, values as raw JSON.
pub(super) struct Row<'a>(pub(super) Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Row<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of name to value")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut row = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    row.push((k, v));
                }
                Ok(Row(row))
            }
        }
        d.deserialize_map(V)
    }
}

fn default_json(value: &crate::features::OwnedValue) -> String {
    use crate::features::OwnedValue;
    match value {
        OwnedValue::Int(v) => v.to_string(),
        OwnedValue::Float(v) => serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
        OwnedValue::Text(v) => serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
    }
}

/// Decodes the JSON array `text` of one raw field into a tensor of shape `[N]`: strings
/// (BYTES), integers (INT64) or numbers (FP64), as [`decode_column`] types them.
fn decode_field(name: &str, text: &[u8]) -> std::result::Result<Tensor, DecodeError> {
    let field = |why: String| DecodeError::Body(format!("field '{name}' {why}"));
    let data = decode_column(text).map_err(|e| match e {
        JsonArrayError::Invalid(e) => field(format!("takes an array of one value per row: {e}")),
        JsonArrayError::Element(e) => field(e),
    })?;
    Tensor::new(vec![data.len()], data).map_err(|e| field(e.to_string()))
}
