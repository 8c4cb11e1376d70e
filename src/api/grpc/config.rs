//! Renders what the repository and the metrics already know as the protobuf messages of the
//! descriptive RPCs: model metadata, Triton's model configuration and statistics. Pure
//! functions of a spec and a stats snapshot; the same conventions as the HTTP transport's
//! `/config` and `/stats` so both transports always agree.

use super::proto::model_config::SchedulingChoice;
use super::proto::model_instance_group::Kind;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    DataType as ProtoDataType, InferStatistics, ModelConfig, ModelDynamicBatching, ModelInput,
    ModelInstanceGroup, ModelMetadataResponse, ModelOutput, ModelQueuePolicy, ModelStatistics,
    StatisticDuration,
};
use crate::metrics::ModelStats;
use crate::repository::{ModelSpec, TensorSpec};
use crate::tensor::DataType;

/// The platform every mlpserve model reports (Triton's name for ONNX Runtime models).
pub const PLATFORM: &str = "onnxruntime_onnx";

/// The KServe V2 model metadata of `spec`; `versions` lists every loaded version.
pub fn metadata(spec: &ModelSpec, versions: Vec<String>) -> ModelMetadataResponse {
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorMetadata {
                name: s.name.clone(),
                datatype: s.dtype.name().to_string(),
                shape: s.shape.clone(),
            })
            .collect()
    };
    ModelMetadataResponse {
        name: spec.name.clone(),
        versions,
        platform: PLATFORM.to_string(),
        inputs: tensors(&spec.inputs),
        outputs: tensors(&spec.outputs),
    }
}

/// `model_config.proto`'s enum value for `dtype`.
fn data_type(dtype: DataType) -> i32 {
    ProtoDataType::from_str_name(dtype.triton_name()).unwrap_or(ProtoDataType::TypeInvalid) as i32
}

/// Triton's model configuration of one model version. Load tools (perf_analyzer) read
/// `max_batch_size` and the per-row dims from it.
pub fn model_config(spec: &ModelSpec) -> ModelConfig {
    let c = &spec.config;
    let batched = spec.batched;
    // Triton rejects `dynamic_batching` on a model that cannot batch; so do we.
    let scheduling = batched.then(|| {
        SchedulingChoice::DynamicBatching(ModelDynamicBatching {
            preferred_batch_size: c
                .preferred_batch_sizes
                .iter()
                .map(|&p| clamp_i32(p))
                .collect(),
            max_queue_delay_microseconds: c.max_queue_delay_us,
            default_queue_policy: Some(ModelQueuePolicy {
                default_timeout_microseconds: c.default_timeout_ms.saturating_mul(1000),
                allow_timeout_override: true,
                max_queue_size: u32::try_from(c.max_queue_size).unwrap_or(u32::MAX),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    ModelConfig {
        name: spec.name.clone(),
        platform: PLATFORM.to_string(),
        backend: "onnxruntime".to_string(),
        max_batch_size: clamp_i32(spec.triton_max_batch_size()),
        input: spec
            .inputs
            .iter()
            .map(|s| ModelInput {
                name: s.name.clone(),
                data_type: data_type(s.dtype),
                dims: s.triton_dims(batched).to_vec(),
                ..Default::default()
            })
            .collect(),
        output: spec
            .outputs
            .iter()
            .map(|s| ModelOutput {
                name: s.name.clone(),
                data_type: data_type(s.dtype),
                dims: s.triton_dims(batched).to_vec(),
                ..Default::default()
            })
            .collect(),
        instance_group: vec![ModelInstanceGroup {
            name: spec.name.clone(),
            count: clamp_i32(c.instances),
            kind: Kind::Cpu as i32,
            ..Default::default()
        }],
        default_model_filename: "model.onnx".to_string(),
        scheduling_choice: scheduling,
        ..Default::default()
    }
}

fn clamp_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn duration(count: u64, ns: u64) -> Option<StatisticDuration> {
    Some(StatisticDuration { count, ns })
}

/// One entry of Triton's `model_stats`.
///
/// Triton counts `queue` and `compute_*` per request (perf_analyzer divides every total by
/// the success count); see [`ModelStats::request_compute_ns`]. Failed requests are counted
/// but not timed; `last_inference` is not tracked (0); there is no response cache.
pub fn statistics(spec: &ModelSpec, stats: &ModelStats) -> ModelStatistics {
    ModelStatistics {
        name: spec.name.clone(),
        version: spec.version.clone(),
        last_inference: 0,
        inference_count: stats.inference_count,
        execution_count: stats.execution_count,
        inference_stats: Some(InferStatistics {
            success: duration(stats.success_count, stats.success_ns),
            fail: duration(stats.fail_count, 0),
            queue: duration(stats.success_count, stats.queue_ns),
            compute_input: duration(stats.success_count, 0),
            compute_infer: duration(stats.success_count, stats.request_compute_ns()),
            compute_output: duration(stats.success_count, 0),
            cache_hit: duration(0, 0),
            cache_miss: duration(0, 0),
        }),
        batch_stats: Vec::new(),
    }
}
