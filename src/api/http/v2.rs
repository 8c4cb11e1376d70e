//! KServe V2 model endpoints: metadata, readiness and inference. Thin adapters: decode,
//! call the [`Service`], encode.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{
    body_or_error, check_json_output, off_runtime_if, payload, v2_codec, OFF_RUNTIME_BYTES,
};
use crate::error::{Error, Result};
use crate::service::{InferAnswer, InferCall, ModelMetadata, ModelRef, Service};
use crate::telemetry::RequestTrace;

pub async fn model_metadata(
    State(service): State<Arc<Service>>,
    model: ModelRef,
) -> Result<Json<ModelMetadata>> {
    Ok(Json(service.model_metadata(&model)?))
}

/// 200 when ready; the service's error (404) for an unknown model or version; 503 while
/// shutting down.
pub async fn model_ready(State(service): State<Arc<Service>>, model: ModelRef) -> Result<Response> {
    let ready = service.model_readiness(&model)?;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(json!({ "name": model.name, "ready": ready }))).into_response())
}

pub async fn infer(
    State(service): State<Arc<Service>>,
    model_ref: ModelRef,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let Some(log) = &service.payload_log else {
        return infer_unlogged(&service, model_ref, headers, body).await;
    };
    let (name, sent) = (model_ref.name.clone(), headers.clone());
    let kept = body.as_ref().ok().cloned();
    let handler = infer_unlogged(&service, model_ref, headers, body);
    payload::logged(log, Some(&name), &sent, kept, handler).await
}

async fn infer_unlogged(
    service: &Service,
    model_ref: ModelRef,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let trace = RequestTrace::current();
    let decode_started = Instant::now();
    let model = service.model_for_inference(&model_ref)?;
    let spec = model.spec.clone();
    let decoded = match body_or_error(body, service.config.max_body_bytes) {
        Ok(body) => {
            let large = body.len() > OFF_RUNTIME_BYTES;
            let spec = spec.clone();
            off_runtime_if(large, move || {
                let decoded = if v2_codec::is_raw(&headers) {
                    v2_codec::decode_raw(&spec, &body)
                } else {
                    v2_codec::decode(&headers, &body)
                };
                decoded.map_err(|e| {
                    Error::InvalidInput(format!(
                        "model '{}' version {}: {e}",
                        spec.name, spec.version
                    ))
                })
            })
            .await
            .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    let decoded = decoded.map_err(|e| model.refuse(e))?;
    trace.child("decode", decode_started, Instant::now());
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs: decoded.inputs,
                outputs: decoded.outputs,
                timeout: decoded.timeout,
            },
        )
        .await?;
    for (k, (i, t)) in answer.outputs.iter().enumerate() {
        if !decoded.format.is_binary(k) {
            check_json_output(&spec, &spec.outputs[*i].name, t)?;
        }
    }
    let large = answer
        .outputs
        .iter()
        .map(|(_, t)| t.data.len())
        .sum::<usize>()
        // JSON numbers take about 8 bytes or more each.
        .saturating_mul(8)
        > OFF_RUNTIME_BYTES;
    let (id, format, outputs) = (decoded.id, decoded.format, answer.outputs);
    let encode_spec = spec.clone();
    let encode_started = Instant::now();
    let (encoded, outputs) = off_runtime_if(large, move || {
        let encoded = v2_codec::encode(&encode_spec, id.as_deref(), &outputs, &format);
        (encoded, outputs)
    })
    .await?;
    trace.child("encode", encode_started, Instant::now());
    let answer = InferAnswer { outputs, ..answer };
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
