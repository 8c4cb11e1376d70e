//! Payload logging of gRPC inference (`ModelInfer`, each `ModelStreamInfer` message): the
//! request and answer messages in their protobuf wire form, as a client sent and got them.
//! The sampling decision comes first (with the model's own ratio), so a request left out
//! costs one model lookup and nothing is encoded for it.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use prost::Message;
use tonic::metadata::MetadataMap;

use super::proto::{ModelInferRequest, ModelInferResponse};
use crate::error::Error;
use crate::payload_log::{self, Payload, PayloadLog, Record};
use crate::service::{ModelRef, Service};

/// Content type of a logged message: protobuf, naming the message type.
const REQUEST_TYPE: &str = "application/x-protobuf; messageType=inference.ModelInferRequest";
const RESPONSE_TYPE: &str = "application/x-protobuf; messageType=inference.ModelInferResponse";

/// A sampled request, held until its answer is known.
pub struct Capture<'a> {
    log: &'a PayloadLog,
    started: Instant,
    time: SystemTime,
    id: String,
    model: String,
    version: String,
    headers: Vec<(String, String)>,
    request: Option<Payload>,
}

/// Starts a record of `request` when the payload log is on and samples it.
pub fn begin<'a>(
    service: &'a Service,
    request: &ModelInferRequest,
    metadata: Option<&MetadataMap>,
) -> Option<Capture<'a>> {
    let log = service.payload_log.as_ref()?;
    let model_ref = ModelRef::new(request.model_name.as_str(), Some(&request.model_version));
    let model = service.model(&model_ref).ok();
    if !log.sampled(
        model
            .as_ref()
            .and_then(|m| m.spec.config.payload_log_sample),
    ) {
        return None;
    }
    Some(Capture {
        log,
        started: Instant::now(),
        time: SystemTime::now(),
        id: if request.id.is_empty() {
            payload_log::fallback_id()
        } else {
            request.id.clone()
        },
        model: request.model_name.clone(),
        version: model.map_or_else(|| request.model_version.clone(), |m| m.spec.version.clone()),
        headers: metadata.map(|m| log.copy_metadata(m)).unwrap_or_default(),
        request: log.keeps_request().then(|| Payload {
            content_type: REQUEST_TYPE.into(),
            body: Bytes::from(request.encode_to_vec()),
            whole_json: false,
        }),
    })
}

impl Capture<'_> {
    /// Hands the record with `answer` to the log.
    pub fn finish(self, answer: Result<&ModelInferResponse, &Error>) {
        let (status, response) = match answer {
            Ok(r) => (
                200,
                Payload {
                    content_type: RESPONSE_TYPE.into(),
                    body: Bytes::from(r.encode_to_vec()),
                    whole_json: false,
                },
            ),
            Err(e) => (
                crate::api::http::status(e).as_u16(),
                Payload {
                    content_type: "application/json".into(),
                    body: Bytes::from(
                        serde_json::json!({ "error": e.client_message() }).to_string(),
                    ),
                    whole_json: true,
                },
            ),
        };
        self.log.submit(Record {
            time: self.time,
            id: self.id,
            model: self.model,
            version: self.version,
            status,
            latency: self.started.elapsed(),
            headers: self.headers,
            request: self.request,
            response: self.log.keeps_response().then_some(response),
        });
    }
}
