//! The service's descriptive views as the protobuf messages of the descriptive RPCs: model
//! metadata, Triton's model configuration and statistics. Field-by-field copies; every
//! number is computed once in [`crate::service`], so both transports always agree.

use super::proto::model_config::SchedulingChoice;
use super::proto::model_instance_group::Kind;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    DataType as ProtoDataType, InferStatistics, ModelConfig, ModelDynamicBatching, ModelInput,
    ModelInstanceGroup, ModelMetadataResponse, ModelOutput, ModelParameter, ModelQueuePolicy,
    ModelStatistics, ModelTensorReshape, StatisticDuration,
};
use crate::service::{self, StatDuration};

/// The KServe V2 model metadata.
pub fn metadata(view: service::ModelMetadata) -> ModelMetadataResponse {
    let tensors = |specs: Vec<service::TensorMetadata>| {
        specs
            .into_iter()
            .map(|s| TensorMetadata {
                name: s.name,
                datatype: s.datatype.to_string(),
                shape: s.shape,
            })
            .collect()
    };
    ModelMetadataResponse {
        name: view.name,
        versions: view.versions,
        platform: view.platform.to_string(),
        inputs: tensors(view.inputs),
        outputs: tensors(view.outputs),
    }
}

/// `model_config.proto`'s enum value for a `TYPE_*` name.
fn data_type(name: &str) -> i32 {
    ProtoDataType::from_str_name(name).unwrap_or(ProtoDataType::TypeInvalid) as i32
}

/// Triton's model configuration.
pub fn model_config(view: service::TritonConfig) -> ModelConfig {
    let scheduling = view.dynamic_batching.map(|b| {
        SchedulingChoice::DynamicBatching(ModelDynamicBatching {
            preferred_batch_size: b.preferred_batch_size,
            max_queue_delay_microseconds: b.max_queue_delay_microseconds,
            default_queue_policy: Some(ModelQueuePolicy {
                default_timeout_microseconds: b.default_queue_policy.default_timeout_microseconds,
                allow_timeout_override: b.default_queue_policy.allow_timeout_override,
                max_queue_size: b.default_queue_policy.max_queue_size,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    ModelConfig {
        name: view.name,
        platform: view.platform.to_string(),
        backend: view.backend.to_string(),
        max_batch_size: view.max_batch_size,
        input: view
            .input
            .into_iter()
            .map(|s| ModelInput {
                name: s.name,
                data_type: data_type(s.data_type),
                dims: s.dims,
                reshape: s.reshape.map(|r| ModelTensorReshape { shape: r.shape }),
                ..Default::default()
            })
            .collect(),
        output: view
            .output
            .into_iter()
            .map(|s| ModelOutput {
                name: s.name,
                data_type: data_type(s.data_type),
                dims: s.dims,
                ..Default::default()
            })
            .collect(),
        instance_group: view
            .instance_group
            .into_iter()
            .map(|g| ModelInstanceGroup {
                name: g.name,
                count: g.count,
                kind: Kind::from_str_name(g.kind).unwrap_or(Kind::Auto) as i32,
                gpus: g.gpus,
            })
            .collect(),
        default_model_filename: view.default_model_filename.to_string(),
        scheduling_choice: scheduling,
        // The raw fields, one parameter each: `feature:<name>` = its JSON description;
        // then the ranking facts (`broadcast_inputs`, `rank_by`).
        parameters: view
            .features
            .iter()
            .map(|f| {
                let text = serde_json::to_string(f).unwrap_or_default();
                (
                    format!("feature:{}", f.name),
                    ModelParameter { string_value: text },
                )
            })
            .chain(view.parameters.into_iter().map(|(k, v)| {
                (
                    k,
                    ModelParameter {
                        string_value: v.string_value,
                    },
                )
            }))
            .collect(),
        ..Default::default()
    }
}

fn duration(d: StatDuration) -> Option<StatisticDuration> {
    Some(StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

/// One entry of Triton's `model_stats`.
pub fn statistics(view: service::ModelStatistics) -> ModelStatistics {
    let s = view.inference_stats;
    ModelStatistics {
        name: view.name,
        version: view.version,
        last_inference: view.last_inference,
        inference_count: view.inference_count,
        execution_count: view.execution_count,
        inference_stats: Some(InferStatistics {
            success: duration(s.success),
            fail: duration(s.fail),
            queue: duration(s.queue),
            compute_input: duration(s.compute_input),
            compute_infer: duration(s.compute_infer),
            compute_output: duration(s.compute_output),
            cache_hit: duration(s.cache_hit),
            cache_miss: duration(s.cache_miss),
        }),
        batch_stats: Vec::new(),
    }
}
