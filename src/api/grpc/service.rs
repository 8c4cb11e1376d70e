//! The RPC handlers of `inference.GRPCInferenceService`. Inference takes the same path as
//! HTTP: resolve the model, decode (`codec`), [`Model::infer`], encode. Descriptive RPCs
//! render through `config`. Errors leave as [`Error`] → [`Status`], one table for both
//! transports. No batching or ONNX Runtime logic here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::repository_index_response::ModelIndex;
use super::proto::*;
use super::{codec, config};
use crate::error::Error;
use crate::repository::{InferRequest, Model};
use crate::AppState;

/// Stream requests in flight at once per `ModelStreamInfer` call. They run concurrently
/// (so they batch together) and are answered in the order they arrived.
const STREAM_CONCURRENCY: usize = 64;

/// The service; cheap to share, all state is in [`AppState`].
pub struct InferenceService {
    state: Arc<AppState>,
}

impl InferenceService {
    pub fn new(state: Arc<AppState>) -> InferenceService {
        InferenceService { state }
    }
}

/// One inference, shared by `ModelInfer` and `ModelStreamInfer`. `deadline` is the client's
/// gRPC deadline, if any; the tighter of it and the `timeout` parameter applies.
#[tracing::instrument(name = "grpc_infer", skip_all, fields(model = %request.model_name, version = %request.model_version, id = %request.id))]
async fn infer(
    state: &AppState,
    request: ModelInferRequest,
    deadline: Option<Duration>,
) -> Result<ModelInferResponse, Error> {
    let version = Some(request.model_version.as_str());
    let model = state
        .repository
        .get_for_inference(&request.model_name, version)?;
    let spec = &model.spec;
    let decoded = codec::decode(request, spec).map_err(|e| {
        model.refuse(Error::InvalidInput(format!(
            "model '{}' version {}: {e}",
            spec.name, spec.version
        )))
    })?;
    let timeout = match (decoded.timeout, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let out = model
        .infer(InferRequest {
            inputs: decoded.inputs,
            timeout,
        })
        .await?;
    codec::encode(spec, decoded.plan, out.outputs).map_err(|e| {
        Error::Internal(format!(
            "model '{}' version {}: {e}",
            spec.name, spec.version
        ))
    })
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

fn version_arg(version: &str) -> Option<&str> {
    Some(version).filter(|v| !v.is_empty())
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
            ready: self.state.repository.is_ready(),
        }))
    }

    /// An unknown model or version is simply not ready (Triton answers so, and Triton
    /// clients turn an error here into an exception instead of `false`).
    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let repository = &self.state.repository;
        let known = repository.get(&r.name, version_arg(&r.version)).is_ok();
        Ok(Response::new(ModelReadyResponse {
            ready: known && repository.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mlpserve".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: crate::api::EXTENSIONS
                .iter()
                .map(|e| e.to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let model = self
            .state
            .repository
            .get(&r.name, version_arg(&r.version))?;
        Ok(Response::new(config::metadata(
            &model.spec,
            self.state.repository.versions(&r.name),
        )))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let deadline = grpc_deadline(request.metadata());
        // No timing metadata (unlike HTTP's headers): values that change on every response
        // defeat HPACK's table and cost more than the rest of the header block.
        Ok(Response::new(
            infer(&self.state, request.into_inner(), deadline).await?,
        ))
    }

    type ModelStreamInferStream = Pin<Box<dyn Stream<Item = StreamInferResult> + Send + 'static>>;

    /// Each request is answered by one stream message; failures travel in `error_message`
    /// (Triton's convention) and the stream goes on. A broken request stream ends it.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let state = self.state.clone();
        let responses = request
            .into_inner()
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .map(move |req| {
                let state = state.clone();
                async move {
                    let echo = ModelInferResponse {
                        model_name: req.model_name.clone(),
                        model_version: req.model_version.clone(),
                        id: req.id.clone(),
                        ..Default::default()
                    };
                    Ok(match infer(&state, req, None).await {
                        Ok(response) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(e) => ModelStreamInferResponse {
                            error_message: e.to_string(),
                            infer_response: Some(echo),
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(responses)))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let model = self
            .state
            .repository
            .get(&r.name, version_arg(&r.version))?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(config::model_config(&model.spec)),
        }))
    }

    /// Triton semantics: no name = every model version; a name = every loaded version of
    /// it; a name and a version = that version. Unknown names and versions are NOT_FOUND.
    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let repository = &self.state.repository;
        let models: Vec<Arc<Model>> = match (r.name.as_str(), version_arg(&r.version)) {
            ("", _) => repository.all().cloned().collect(),
            (name, None) => repository.all_versions(name)?,
            (name, Some(version)) => vec![repository.get(name, Some(version))?],
        };
        let model_stats = models
            .iter()
            .map(|m| config::statistics(&m.spec, &m.metrics.stats()))
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    /// Every loaded model version; all are READY until shutdown starts (then UNAVAILABLE,
    /// and left out when only ready ones are asked for).
    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let only_ready = request.into_inner().ready;
        let ready = self.state.repository.is_ready();
        let (state, reason) = if ready {
            ("READY", "")
        } else {
            ("UNAVAILABLE", "server is shutting down")
        };
        let models = self
            .state
            .repository
            .all()
            .filter(|_| ready || !only_ready)
            .map(|m| ModelIndex {
                name: m.spec.name.clone(),
                version: m.spec.version.clone(),
                state: state.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
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
