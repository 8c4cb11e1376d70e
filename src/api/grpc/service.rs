//! The RPC handlers of `inference.GRPCInferenceService`: thin adapters around the
//! [`Service`], as the HTTP handlers are. Inference: resolve the model, decode (`codec`),
//! [`Service::infer`], encode. Descriptive RPCs render the service's views through
//! `config`. Errors leave through `status`. No batching or ONNX Runtime logic here.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::repository_index_response::ModelIndex;
use super::proto::*;
use super::{admission, codec, config, payload, repository, status};
use crate::error::Error;
use crate::service::budget::{tensor_bytes, Charge, Hold};
use crate::service::{InferCall, ModelRef, Service};
use crate::telemetry::{self, HeaderSource, RequestTrace};

/// Stream requests in flight at once per `ModelStreamInfer` call. They run concurrently
/// (so they batch together) and are answered in the order they arrived.
const STREAM_CONCURRENCY: usize = 64;

/// Bytes one `ModelStreamInfer` stream may hold (messages read and not yet answered) before
/// it stops reading: one largest message, and never more than half the in-flight budget.
fn stream_hold_bytes(config: &crate::config::ServerConfig) -> usize {
    config
        .max_body_bytes
        .min(config.max_inflight_bytes / 2)
        .max(1)
}

/// The request messages of one stream, read only while the stream holds less than `hold`
/// bytes of the in-flight budget (or nothing is in flight). Each message comes with the
/// [`Hold`] of its bytes (given back once it is decoded) and its [`InFlight`] mark. Ends
/// after the first error.
struct Gated {
    inner: Streaming<ModelInferRequest>,
    charge: Option<Arc<Charge>>,
    hold: usize,
    in_flight: Arc<AtomicUsize>,
    /// `charge.received()` when the last message was read.
    seen: usize,
    done: bool,
}

/// One stream message in flight (read, not yet answered); counted down on drop.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Stream for Gated {
    type Item = Result<(ModelInferRequest, Hold, InFlight), Status>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(charge) = &this.charge {
            // No waker is needed: something is in flight, and `buffered` polls it next;
            // its answer wakes the stream, which then asks again.
            if this.in_flight.load(Ordering::Acquire) > 0 && charge.taken() >= this.hold {
                return Poll::Pending;
            }
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                this.done = true;
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(Some(Ok(request))) => {
                // The bytes read since the last message are this message's.
                let bytes = this.charge.as_ref().map_or(0, |c| {
                    let received = c.received();
                    let bytes = received - this.seen;
                    this.seen = received;
                    bytes
                });
                this.in_flight.fetch_add(1, Ordering::AcqRel);
                let message = Hold::taken(this.charge.clone(), bytes);
                let mark = InFlight(this.in_flight.clone());
                Poll::Ready(Some(Ok((request, message, mark))))
            }
        }
    }
}

/// The gRPC service; cheap to share, all state is in the [`Service`].
pub struct InferenceService {
    service: Arc<Service>,
}

impl InferenceService {
    pub fn new(service: Arc<Service>) -> InferenceService {
        InferenceService { service }
    }
}

/// One inference, shared by `ModelInfer` and `ModelStreamInfer`. `deadline` is the client's
/// gRPC deadline, if any; the tighter of it and the `timeout` parameter applies. The span
/// is DEBUG (at INFO its fields cost ~5% of small-request throughput); failures on the
/// server's side are logged as over HTTP. `message` holds the request's bytes on the
/// in-flight budget; the answer comes with the [`Hold`] of its bytes on the same charge.
#[tracing::instrument(level = "debug", name = "grpc_infer", skip_all, fields(model = %request.model_name, version = %request.model_version, id = %request.id))]
async fn infer(
    service: &Service,
    request: ModelInferRequest,
    message: Hold,
    deadline: Option<Duration>,
    caller: Option<&Option<telemetry::Caller>>,
    metadata: Option<&MetadataMap>,
) -> Result<(ModelInferResponse, Hold), Error> {
    let started = std::time::Instant::now();
    let capture = payload::begin(service, &request, metadata);
    // A captured request keeps a copy of the message: its bytes stay charged till the end.
    let (message, kept) = match &capture {
        Some(_) => (Hold::new(None), Some(message)),
        None => (message, None),
    };
    // Most clients send no id; only a present one costs a copy.
    let id: Option<Arc<str>> = (!request.id.is_empty()).then(|| request.id.as_str().into());
    let mut trace = RequestTrace::start(caller, "grpc", &request.id);
    let work = trace.scope(infer_unlogged(service, request, message, deadline));
    let result = match &id {
        Some(id) => crate::logging::with_request_id(id.clone(), work).await,
        None => work.await,
    };
    drop(kept);
    if trace.is_on() {
        trace.finish(match &result {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = Status::from(e.clone()).code();
                Err((format!("{code:?}"), e.client_message()))
            }
        });
    }
    if let Some(capture) = capture {
        capture.finish(result.as_ref().map(|(r, _)| r));
    }
    if let Err(e) = &result {
        if e.is_logged_per_request() {
            tracing::error!(
                error = %e,
                request_id = id.as_deref().unwrap_or(""),
                latency_ms = started.elapsed().as_secs_f64() * 1e3,
                "gRPC inference failed"
            );
        }
    }
    result
}

async fn infer_unlogged(
    service: &Service,
    request: ModelInferRequest,
    message: Hold,
    deadline: Option<Duration>,
) -> Result<(ModelInferResponse, Hold), Error> {
    let _busy = service.activity.begin();
    let trace = RequestTrace::current();
    let decode_started = trace.now();
    let model_ref = ModelRef::new(request.model_name.as_str(), Some(&request.model_version));
    let model = service.model_for_inference(&model_ref)?;
    let spec = &model.spec;
    // The decoded tensors are held on the message's charge: reserved before they are
    // built, then set to what they take; the message's own bytes go with the message.
    let mut hold = Hold::new(message.charge());
    hold.estimate(codec::decoded_estimate(&request))?;
    let decoded = codec::decode(request).map_err(|e| model.refuse(e.for_model(spec)))?;
    hold.set(tensor_bytes(decoded.inputs.iter().map(|i| &i.tensor)))?;
    drop(message);
    trace.child("decode", decode_started);
    let timeout = match (decoded.timeout, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let answer = service
        .infer(
            &model,
            InferCall {
                inputs: decoded.inputs,
                outputs: decoded.plan.outputs.clone(),
                timeout,
                ranking: decoded.ranking,
            },
        )
        .await?;
    // The inputs are gone; the answer's tensors are held, then its message.
    hold.set(tensor_bytes(answer.outputs.iter().map(|(_, t)| t)))?;
    let encode_started = trace.now();
    let encoded = codec::encode(spec, decoded.plan, answer.outputs);
    trace.child("encode", encode_started);
    // Encoding moved the tensors' buffers into the message; tonic copies it once more
    // as it writes it, and that copy is what stays held.
    hold.resize(prost::Message::encoded_len(&encoded)).ok();
    Ok((encoded, hold))
}

/// The client's deadline from the `grpc-timeout` header (`<= 8 digits><unit>`), if valid.
fn grpc_deadline(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type StreamInferResult = Result<ModelStreamInferResponse, Status>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.service.is_ready(),
        }))
    }

    /// The service's readiness rule; an unknown model or version is `ready = false`
    /// (Triton answers so, and Triton clients turn an error here into an exception).
    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let ready = self
            .service
            .model_readiness(&ModelRef::new(r.name, Some(&r.version)))
            .unwrap_or(false);
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        let m = self.service.server_metadata();
        Ok(Response::new(ServerMetadataResponse {
            name: m.name.to_string(),
            version: m.version.to_string(),
            extensions: m.extensions.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let view = self
            .service
            .model_metadata(&ModelRef::new(r.name, Some(&r.version)))?;
        Ok(Response::new(config::metadata(view)))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let deadline = grpc_deadline(request.metadata());
        let caller = telemetry::caller_context(HeaderSource::Grpc(request.metadata()));
        // No timing metadata (unlike HTTP's headers): values that change on every response
        // defeat HPACK's table and cost more than the rest of the header block.
        let overload = self.service.config.overload_status;
        let (metadata, extensions, message) = request.into_parts();
        // The whole message is read: what the call's charge holds now is its bytes.
        let charge = extensions.get::<Arc<Charge>>().cloned();
        let bytes = charge.as_ref().map_or(0, |c| c.taken());
        let (answer, hold) = infer(
            &self.service,
            message,
            Hold::taken(charge.clone(), bytes),
            deadline,
            caller.as_ref(),
            Some(&metadata),
        )
        .await
        .map_err(|e| {
            // What decoding or answering could not take of the budget is refused as the
            // message itself would have been.
            match charge.as_ref().and_then(|c| c.refused().map(|r| (c, r))) {
                Some((charge, refusal)) => admission::status(charge.budget(), refusal),
                None => status::infer_status(e, overload),
            }
        })?;
        // Held on the call's charge until the answer is written.
        hold.keep();
        Ok(Response::new(answer))
    }

    type ModelStreamInferStream = Pin<Box<dyn Stream<Item = StreamInferResult> + Send + 'static>>;

    /// Each request is answered by one stream message; failures travel in `error_message`
    /// (Triton's convention) and the stream goes on. A broken request stream ends it, with
    /// its status when it broke on the in-flight budget. The stream reads its next message
    /// only while the messages it holds (read, not yet answered) stay under
    /// [`stream_hold_bytes`], so one stream never holds more than that plus one message.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let service = self.service.clone();
        let charge = request.extensions().get::<Arc<Charge>>().cloned();
        // Every message of the stream continues the trace the stream was opened in.
        let caller = telemetry::caller_context(HeaderSource::Grpc(request.metadata()));
        // The stream's headers, for the payload log's allow-list (only while it is on).
        let metadata = service
            .payload_log
            .as_ref()
            .map(|_| Arc::new(request.metadata().clone()));
        let gated = Gated {
            inner: request.into_inner(),
            charge,
            hold: stream_hold_bytes(&service.config),
            in_flight: Arc::new(AtomicUsize::new(0)),
            seen: 0,
            done: false,
        };
        let responses = gated
            .map(move |item| {
                let service = service.clone();
                let caller = caller.clone();
                let metadata = metadata.clone();
                async move {
                    let (req, message, mark) = item?;
                    let echo = ModelInferResponse {
                        model_name: req.model_name.clone(),
                        model_version: req.model_version.clone(),
                        id: req.id.clone(),
                        ..Default::default()
                    };
                    let answer = infer(
                        &service,
                        req,
                        message,
                        None,
                        caller.as_ref(),
                        metadata.as_deref(),
                    )
                    .await;
                    drop(mark);
                    Ok(match answer {
                        Ok((response, hold)) => (
                            ModelStreamInferResponse {
                                error_message: String::new(),
                                infer_response: Some(response),
                            },
                            hold,
                        ),
                        Err(e) => (
                            ModelStreamInferResponse {
                                error_message: e.client_message(),
                                infer_response: Some(echo),
                            },
                            Hold::new(None),
                        ),
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY)
            // An answer stays held while it waits for earlier ones, until tonic takes it
            // to write.
            .map(|answer: Result<(ModelStreamInferResponse, Hold), Status>| {
                answer.map(|(response, _written)| response)
            });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let view = self
            .service
            .model_config(&ModelRef::new(r.name, Some(&r.version)))?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(config::model_config(view)),
        }))
    }

    /// Triton semantics: no name = every model version; a name = every loaded version of
    /// it; a name and a version = that version. Unknown names and versions are NOT_FOUND.
    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let model_stats = self
            .service
            .statistics(Some(&r.name), Some(&r.version))?
            .into_iter()
            .map(config::statistics)
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    /// The repository index (every mode): each model and version with its state and reason.
    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.authorize(request.metadata())?;
        let models = self
            .service
            .repository_index(request.into_inner().ready)
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state.to_string(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    /// Loads (or reloads what changed of) a model; answers when done. Explicit mode only.
    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.authorize(request.metadata())?;
        let r = request.into_inner();
        let load = repository::load_request(r.parameters)?;
        self.service.load_model(&r.model_name, load).await?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    /// Unloads a model; admitted requests finish on it. Explicit mode only.
    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.authorize(request.metadata())?;
        let r = request.into_inner();
        self.service.unload_model(&r.model_name).await?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}

impl InferenceService {
    fn authorize(&self, metadata: &MetadataMap) -> Result<(), Error> {
        let header = metadata.get("authorization").map(|v| v.as_bytes());
        self.service.authorize_admin(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses_every_unit() {
        let parse = |v: &str| {
            let mut m = MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_deadline(&m)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("123456789S"), None);
        assert_eq!(parse("S"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(grpc_deadline(&MetadataMap::new()), None);
    }
}
