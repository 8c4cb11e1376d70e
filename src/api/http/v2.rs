//! KServe V2 model endpoints: metadata, readiness and inference. Thin adapters: decode,
//! call the [`Service`], encode.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::contract::{
    BinaryHeader, InferRequest, InferResponse, InferenceErrors, ModelErrors, ModelPath, ModelReady,
    NotFound,
};

use super::{
    body_or_error, check_json_output, off_runtime_if, payload, v2_codec, OFF_RUNTIME_BYTES,
};
use crate::error::Result;
use crate::service::budget::{tensor_bytes, Charge, Hold};
use crate::service::{InferAnswer, InferCall, ModelMetadata, ModelRef, Service};
use crate::telemetry::RequestTrace;

/// Model metadata (the newest loaded version)
#[utoipa::path(get, path = "/v2/models/{name}", operation_id = "modelMetadata", tag = "models",
    params(ModelPath),
    responses(
        (status = 200, description = "Model metadata; the model card's facts are in `parameters`.", body = ModelMetadata),
        ModelErrors,
    ))]
pub async fn model_metadata(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<ModelMetadata>> {
    Ok(Json(service.model_metadata(&model)?))
}

/// Model readiness (the newest loaded version)
///
/// 200 when ready; the service's error (404) for an unknown model or version; 503 while
/// shutting down.
#[utoipa::path(get, path = "/v2/models/{name}/ready", operation_id = "modelReady", tag = "models",
    params(ModelPath),
    responses(
        (status = 200, description = "The model is ready.", body = ModelReady),
        (status = 404, response = NotFound),
        (status = 503, description = "The server is shutting down: `{\"name\": ..., \"ready\": false}`.", body = ModelReady),
    ))]
pub async fn model_ready(State(service): State<Arc<Service>>, model: ModelRef) -> Result<Response> {
    let ready = service.model_readiness(&model)?;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let name = model.name;
    Ok((status, Json(ModelReady { name, ready })).into_response())
}

/// KServe V2 inference (the newest loaded version)
///
/// Inputs as JSON (`data`) or, with Triton's binary tensor extension, as raw little-endian
/// row-major bytes after the JSON (`binary_data_size` per input,
/// `Inference-Header-Content-Length` giving the JSON length). Raw requests without a JSON
/// header (`Inference-Header-Content-Length: 0`) are not supported.
#[utoipa::path(post, path = "/v2/models/{name}/infer", operation_id = "modelInfer", tag = "inference",
    params(ModelPath, BinaryHeader),
    request_body(content(
        (InferRequest = "application/json", examples(
            ("json" = (value = json!({"id": "42", "inputs": [
                {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![0.0; 64]}]}))),
            ("withOutputs" = (value = json!({"inputs": [
                {"name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": [vec![0.5; 64], vec![1.0; 64]]}],
                "outputs": [{"name": "logits"}], "parameters": {"timeout": 1_000_000}}))),
        )),
        (String = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "The outputs. `application/json` unless an output was asked for as binary (`binary_data`, `binary_data_output`); then `application/octet-stream`: the JSON response (its length in `Inference-Header-Content-Length`) followed by the binary outputs in the order of the JSON `outputs`.",
            content((InferResponse = "application/json"), (String = "application/octet-stream")),
            headers(
                ("x-queue-time-us" = u64, description = "Microseconds the request waited in the model's queue."),
                ("x-compute-time-us" = u64, description = "Microseconds of ONNX Runtime time for the batch that ran the request."),
                ("x-batch-rows" = u64, description = "Rows in the batch that ran the request."),
                ("Inference-Header-Content-Length" = u64, description = "Length of the JSON part of a binary response."),
            )),
        InferenceErrors,
    ))]
pub async fn infer(
    State(service): State<Arc<Service>>,
    model_ref: ModelRef,
    charge: Option<Extension<Arc<Charge>>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let charge = charge.map(|Extension(c)| c);
    let Some(log) = &service.payload_log else {
        let holding = Holding::freeing_body(charge);
        return infer_unlogged(&service, model_ref, holding, headers, body).await;
    };
    let (name, sent) = (model_ref.name.clone(), payload::Sent::of(log, &headers));
    let kept = body.as_ref().ok().cloned();
    // The log keeps the body: its bytes stay charged.
    let handler = infer_unlogged(&service, model_ref, Holding::new(charge), headers, body);
    let overload = service.config.overload_status;
    payload::logged(log, overload, Some(&name), sent, kept, handler).await
}

/// What a request holds of the in-flight budget past its body (see `admission`).
pub(super) struct Holding {
    /// The decoded tensors, then the answer.
    pub hold: Hold,
    /// The body's charge, given back once decoding dropped the body; `None` when something
    /// else keeps the body (the payload log) or nothing charges it.
    body: Option<Arc<Charge>>,
}

impl Holding {
    pub fn new(charge: Option<Arc<Charge>>) -> Holding {
        Holding {
            hold: Hold::new(charge),
            body: None,
        }
    }

    /// A request whose body is dropped once decoded, so its bytes are given back then.
    pub fn freeing_body(charge: Option<Arc<Charge>>) -> Holding {
        Holding {
            hold: Hold::new(charge.clone()),
            body: charge,
        }
    }

    /// The body of `len` bytes was decoded and dropped.
    pub fn body_freed(&mut self, len: usize) {
        if let Some(charge) = self.body.take() {
            charge.give(len);
        }
    }
}

async fn infer_unlogged(
    service: &Service,
    model_ref: ModelRef,
    mut holding: Holding,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let trace = RequestTrace::current();
    let decode_started = trace.now();
    let model = service.model_for_inference(&model_ref)?;
    let spec = model.spec.clone();
    let mut body_len = 0;
    let decoded = match body_or_error(body, service.config.max_body_bytes) {
        Ok(body) => {
            body_len = body.len();
            // Decoded tensors take about what the body took (JSON numbers a few bytes
            // each, binary ones the same): reserved before they are built.
            holding.hold.estimate(body_len)?;
            let large = body.len() > OFF_RUNTIME_BYTES;
            let spec = spec.clone();
            off_runtime_if(large, move || {
                let decoded = if v2_codec::is_raw(&headers) {
                    v2_codec::decode_raw(&spec, &body)
                } else {
                    v2_codec::decode(&headers, &body)
                };
                decoded.map_err(|e| e.for_model(&spec))
            })
            .await
            .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    let decoded = decoded.map_err(|e| model.refuse(e))?;
    holding
        .hold
        .set(tensor_bytes(decoded.inputs.iter().map(|i| &i.tensor)))?;
    holding.body_freed(body_len);
    trace.child("decode", decode_started);
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs: decoded.inputs,
                outputs: decoded.outputs,
                timeout: decoded.timeout,
                ranking: decoded.ranking,
            },
        )
        .await?;
    // The inputs are gone; the answer's tensors are held.
    holding
        .hold
        .set(tensor_bytes(answer.outputs.iter().map(|(_, t)| t)))?;
    for (k, (i, t)) in answer.outputs.iter().enumerate() {
        if !decoded.format.is_binary(k) {
            check_json_output(&spec, spec.output_name(*i), t)?;
        }
    }
    // JSON numbers take about 8 bytes or more each (reserved at 16: at most 9 significant
    // digits, a sign, a point, an exponent and a comma); binary ones at most 8.
    let numbers = |binary| {
        answer
            .outputs
            .iter()
            .enumerate()
            .filter(|(k, _)| decoded.format.is_binary(*k) == binary)
            .map(|(_, (_, t))| t.data.len())
            .sum::<usize>()
    };
    let large = numbers(false).saturating_mul(8) > OFF_RUNTIME_BYTES;
    let encoded_estimate = numbers(false)
        .saturating_mul(16)
        .saturating_add(numbers(true).saturating_mul(8));
    holding
        .hold
        .estimate(holding.hold.bytes().saturating_add(encoded_estimate))?;
    let (id, format, outputs) = (decoded.id, decoded.format, answer.outputs);
    let encode_spec = spec.clone();
    let encode_started = trace.now();
    let (encoded, outputs) = off_runtime_if(large, move || {
        let encoded = v2_codec::encode(&encode_spec, id.as_deref(), &outputs, &format);
        (encoded, outputs)
    })
    .await?;
    trace.child("encode", encode_started);
    drop(outputs);
    let answer = InferAnswer {
        outputs: Vec::new(),
        ..answer
    };
    // Only the encoded answer is left, held until it is written.
    holding.hold.set(encoded.body.len())?;
    holding.hold.keep();
    let mut response = Response::new(Body::from(encoded.body));
    let h = response.headers_mut();
    match encoded.json_len {
        Some(len) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(v2_codec::HEADER_LENGTH, HeaderValue::from(len));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    timing_headers(h, &answer);
    response.extensions_mut().insert(super::Compressible);
    Ok(response)
}

/// Queue and compute time of the request, for clients that measure where time goes.
pub fn timing_headers(h: &mut HeaderMap, answer: &InferAnswer) {
    h.insert(
        "x-queue-time-us",
        HeaderValue::from(answer.queue_time.as_micros() as u64),
    );
    h.insert(
        "x-compute-time-us",
        HeaderValue::from(answer.compute_time.as_micros() as u64),
    );
    h.insert("x-batch-rows", HeaderValue::from(answer.batch_rows));
}
