//! The descriptive views both transports render: server and model metadata, Triton's model
//! configuration and statistics. Each number is computed once here; HTTP serializes these
//! structs as JSON (field names are the protocol's), gRPC copies them into protobuf
//! messages field by field. Pure functions of a spec and a stats snapshot.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::ExecutionProvider;
use crate::metrics::ModelStats;
use crate::spec::{ModelSpec, TensorSpec};

/// The platform every mlpserve model reports (Triton's name for ONNX Runtime models).
pub const PLATFORM: &str = "onnxruntime_onnx";

/// `GET /v2`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerMetadata {
    #[schema(value_type = String, pattern = "^mlpserve$")]
    pub name: &'static str,
    #[schema(value_type = String)]
    pub version: &'static str,
    /// `binary_tensor_data`, `model_configuration`, `statistics`.
    #[schema(value_type = Vec<String>)]
    pub extensions: &'static [&'static str],
}

/// The V2 datatypes, as the document names them (the views carry the names as strings).
#[derive(ToSchema)]
#[allow(clippy::upper_case_acronyms, dead_code)]
pub enum Datatype {
    BOOL,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    INT8,
    INT16,
    INT32,
    INT64,
    FP16,
    BF16,
    FP32,
    FP64,
    BYTES,
}

/// One tensor of the V2 model metadata.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = MetadataTensor)]
pub struct TensorMetadata {
    pub name: String,
    #[schema(value_type = Datatype)]
    pub datatype: &'static str,
    /// `-1` marks a dynamic dimension.
    #[schema(minimum = -1)]
    pub shape: Vec<i64>,
    /// An extension key, present (`true`) only on a broadcast input: it may be sent with
    /// first dimension 1 while the other inputs have N rows. The gRPC message has no such
    /// field; it reads the model configuration's `broadcast_inputs` parameter instead.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
}

/// The V2 model metadata. `parameters` holds the card facts from the ONNX
/// `metadata_props` and `execution_provider`, where each instance runs (`cpu`, `cuda:0`,
/// comma-separated); the gRPC message has no such field.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    #[schema(value_type = String, pattern = "^onnxruntime_onnx$")]
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    /// Model card facts from the ONNX `metadata_props` (family, paper, data, metric,
    /// description) and `execution_provider`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// The raw fields of a model with `[features]` (also listed among `inputs`, where they
    /// replace the graph inputs they build); the gRPC message has no such field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FieldMetadata>,
}

/// One raw field: what a client sends, the transform, and the graph input columns it fills.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = FeatureField)]
pub struct FieldMetadata {
    pub name: String,
    /// BYTES for text fields (integers accepted too), FP32 for numbers (any integer or
    /// float datatype accepted).
    #[schema(value_type = String)]
    pub datatype: &'static str,
    /// The transform as config.toml declares it.
    pub transform: String,
    /// The value used when a request leaves the field out; present when the field may be
    /// left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = string_or_number)]
    pub default: Option<serde_json::Value>,
    pub feeds: Vec<FieldColumn>,
    /// Present (`true`) on a field sent once per request (see docs/ranking.md).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub broadcast: bool,
}

/// A field's default: a string or a number.
fn string_or_number() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Number]))
        .build()
}

/// A column of a graph input built from fields.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldColumn {
    pub input: String,
    pub column: usize,
}

/// The fields of `spec`, in name order.
fn field_metadata(spec: &ModelSpec) -> Vec<FieldMetadata> {
    let Some(features) = &spec.features else {
        return Vec::new();
    };
    features
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| FieldMetadata {
            name: field.name.clone(),
            datatype: field.datatype(),
            transform: field.transform.describe(),
            default: field.default.as_ref().map(|d| match d {
                crate::features::OwnedValue::Int(v) => (*v).into(),
                crate::features::OwnedValue::Float(v) => (*v).into(),
                crate::features::OwnedValue::Text(v) => v.clone().into(),
            }),
            feeds: features
                .built()
                .iter()
                .flat_map(|b| {
                    b.columns
                        .iter()
                        .enumerate()
                        .filter(|(_, &f)| f == index)
                        .map(|(column, _)| FieldColumn {
                            input: b.name.clone(),
                            column,
                        })
                })
                .collect(),
            broadcast: field.broadcast,
        })
        .collect()
}

/// The inputs a client sends: the graph inputs not built from fields, then the fields.
fn client_inputs(spec: &ModelSpec) -> impl Iterator<Item = &TensorSpec> + '_ {
    spec.inputs
        .iter()
        .filter(|s| !spec.features.as_ref().is_some_and(|f| f.builds(&s.name)))
}

impl ModelMetadata {
    pub fn new(spec: &ModelSpec, versions: Vec<String>) -> ModelMetadata {
        let tensors = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.dtype.name(),
                    shape: s.shape.clone(),
                    broadcast: false,
                })
                .collect()
        };
        let features = field_metadata(spec);
        let mut inputs: Vec<TensorMetadata> = client_inputs(spec)
            .map(|s| TensorMetadata {
                name: s.name.clone(),
                datatype: s.dtype.name(),
                shape: s.shape.clone(),
                broadcast: s.broadcast,
            })
            .collect();
        inputs.extend(features.iter().map(|f| TensorMetadata {
            name: f.name.clone(),
            datatype: f.datatype,
            shape: vec![-1],
            broadcast: f.broadcast,
        }));
        ModelMetadata {
            name: spec.name.clone(),
            versions,
            platform: PLATFORM,
            inputs,
            outputs: tensors(&spec.outputs),
            parameters: parameters(spec),
            features,
        }
    }
}

/// The model card facts, plus the batch size in force (measured at load when `"auto"`),
/// since the metadata is what clients read first.
fn parameters(spec: &ModelSpec) -> BTreeMap<String, String> {
    let mut parameters = spec.properties.clone();
    let placements: Vec<String> = spec.placements.iter().map(ToString::to_string).collect();
    parameters.insert("execution_provider".to_string(), placements.join(","));
    parameters.insert(
        "max_batch_size".to_string(),
        spec.triton_max_batch_size().to_string(),
    );
    parameters.insert(
        "max_batch_size_source".to_string(),
        spec.max_batch_size_source().to_string(),
    );
    parameters.extend(ranking_parameters(spec));
    parameters
}

/// What ranking requests need to know, as string parameters of the model metadata and of
/// Triton's model configuration (where gRPC clients find them): `broadcast_inputs`, the
/// inputs and fields that may be sent once per request (comma-separated), and `rank_by`,
/// the output `top_k` sorts by when a request names none. Each is left out when empty.
pub fn ranking_parameters(spec: &ModelSpec) -> Vec<(String, String)> {
    let mut broadcast: Vec<&str> = client_inputs(spec)
        .filter(|s| s.broadcast)
        .map(|s| s.name.as_str())
        .collect();
    if let Some(features) = &spec.features {
        broadcast.extend(
            features
                .fields()
                .iter()
                .filter(|f| f.broadcast)
                .map(|f| f.name.as_str()),
        );
    }
    let mut out = Vec::new();
    if !broadcast.is_empty() {
        out.push(("broadcast_inputs".to_string(), broadcast.join(",")));
    }
    if let Some(rank_by) = spec.rank_by() {
        out.push(("rank_by".to_string(), rank_by.name.clone()));
    }
    out
}

/// One `input`/`output` entry of Triton's model configuration.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ConfigTensor)]
pub struct TensorConfig {
    pub name: String,
    /// Triton's `TYPE_*` name.
    #[schema(value_type = String, pattern = "^TYPE_")]
    pub data_type: &'static str,
    /// Per-row dims for batched models (the batch axis left out); `-1` is dynamic.
    #[schema(minimum = -1)]
    pub dims: Vec<i64>,
    /// Triton's `reshape`: a raw field is declared `dims: [1]` and used as one value per
    /// row (shape `[]` after the batch axis), so `[N]` and `[N, 1]` both fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reshape: Option<Reshape>,
}

/// Triton's `ModelTensorReshape`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

/// Triton's `instance_group` entry: instances that run on the same kind of device.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InstanceGroup {
    pub name: String,
    #[schema(minimum = 1)]
    pub count: i32,
    /// `KIND_CPU` or `KIND_GPU`: where the instances actually run, after any fallback.
    #[schema(value_type = String, pattern = "^KIND_(CPU|GPU)$")]
    pub kind: &'static str,
    /// GPU ordinals of a `KIND_GPU` group.
    /// The GPUs of a `KIND_GPU` group (one entry per instance).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<i32>,
}

/// Triton's `default_queue_policy`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueuePolicy {
    pub default_timeout_microseconds: u64,
    pub allow_timeout_override: bool,
    pub max_queue_size: u32,
}

/// Triton's `dynamic_batching`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    pub max_queue_delay_microseconds: u64,
    pub default_queue_policy: QueuePolicy,
}

/// Triton's model configuration (`model_config.proto`) of one model version. Load tools
/// (perf_analyzer) read `max_batch_size` and the per-row dims from it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ModelConfig)]
pub struct TritonConfig {
    pub name: String,
    #[schema(value_type = String)]
    pub platform: &'static str,
    #[schema(value_type = String)]
    pub backend: &'static str,
    /// 0 for a model that cannot batch (Triton's convention).
    #[schema(minimum = 0)]
    pub max_batch_size: i32,
    pub input: Vec<TensorConfig>,
    pub output: Vec<TensorConfig>,
    #[schema(value_type = String)]
    pub default_model_filename: &'static str,
    pub instance_group: Vec<InstanceGroup>,
    /// Left out for a model that cannot batch: Triton rejects it there, and so do we.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub dynamic_batching: Option<DynamicBatching>,
    /// The raw fields (as in the model metadata); gRPC carries them in `parameters`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FieldMetadata>,
    /// Triton's string parameters: `broadcast_inputs` (comma-separated inputs and fields
    /// that may be sent once per request) and `rank_by` (the output `top_k` sorts by),
    /// each present when set ([`ranking_parameters`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, StringParameter>,
}

/// Triton's `ModelParameter`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StringParameter {
    pub string_value: String,
}

/// One group per kind of device, from where the instances actually run.
fn instance_groups(spec: &ModelSpec) -> Vec<InstanceGroup> {
    let gpus: Vec<i32> = spec
        .placements
        .iter()
        .filter(|p| p.provider == ExecutionProvider::Cuda)
        .map(|p| p.device_id)
        .collect();
    let cpus = spec.placements.len() - gpus.len();
    let mut groups = Vec::new();
    if cpus > 0 {
        groups.push(InstanceGroup {
            name: spec.name.clone(),
            count: clamp_i32(cpus),
            kind: "KIND_CPU",
            gpus: Vec::new(),
        });
    }
    if !gpus.is_empty() {
        groups.push(InstanceGroup {
            name: format!("{}_gpu", spec.name),
            count: clamp_i32(gpus.len()),
            kind: "KIND_GPU",
            gpus,
        });
    }
    groups
}

fn clamp_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TritonConfig {
    pub fn new(spec: &ModelSpec) -> TritonConfig {
        let c = &spec.config;
        let batched = spec.batched;
        let tensors = |specs: &[TensorSpec]| {
            specs
                .iter()
                .map(|s| TensorConfig {
                    name: s.name.clone(),
                    data_type: s.dtype.triton_name(),
                    dims: s.triton_dims(batched).to_vec(),
                    reshape: None,
                })
                .collect::<Vec<_>>()
        };
        let features = field_metadata(spec);
        let mut input = tensors(&client_inputs(spec).cloned().collect::<Vec<_>>());
        input.extend(features.iter().map(|f| TensorConfig {
            name: f.name.clone(),
            data_type: if f.datatype == "BYTES" {
                "TYPE_STRING"
            } else {
                "TYPE_FP32"
            },
            dims: vec![1],
            reshape: Some(Reshape { shape: Vec::new() }),
        }));
        TritonConfig {
            name: spec.name.clone(),
            platform: PLATFORM,
            backend: "onnxruntime",
            max_batch_size: clamp_i32(spec.triton_max_batch_size()),
            input,
            output: tensors(&spec.outputs),
            default_model_filename: "model.onnx",
            instance_group: instance_groups(spec),
            dynamic_batching: batched.then(|| DynamicBatching {
                preferred_batch_size: c
                    .preferred_batch_sizes
                    .iter()
                    .map(|&p| clamp_i32(p))
                    .collect(),
                max_queue_delay_microseconds: c.max_queue_delay_us,
                default_queue_policy: QueuePolicy {
                    default_timeout_microseconds: c.default_timeout_ms.saturating_mul(1000),
                    allow_timeout_override: true,
                    max_queue_size: u32::try_from(c.max_queue_size).unwrap_or(u32::MAX),
                },
            }),
            features,
            parameters: ranking_parameters(spec)
                .into_iter()
                .map(|(k, v)| (k, StringParameter { string_value: v }))
                .collect(),
        }
    }
}

/// A count and a total duration, Triton's `StatisticDuration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct StatDuration {
    pub count: u64,
    pub ns: u64,
}

fn duration(count: u64, ns: u64) -> StatDuration {
    StatDuration { count, ns }
}

/// Triton's `InferStatistics`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InferStatistics {
    pub success: StatDuration,
    pub fail: StatDuration,
    pub queue: StatDuration,
    pub compute_input: StatDuration,
    pub compute_infer: StatDuration,
    pub compute_output: StatDuration,
    pub cache_hit: StatDuration,
    pub cache_miss: StatDuration,
}

/// One entry of Triton's `model_stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ModelStats)]
pub struct ModelStatistics {
    pub name: String,
    pub version: String,
    /// Not tracked: always 0.
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    /// Not tracked: always empty.
    #[schema(value_type = Vec<Object>)]
    pub batch_stats: Vec<()>,
}

impl ModelStatistics {
    /// Triton counts `queue` and `compute_*` per request (perf_analyzer divides every
    /// total by the success count); see [`ModelStats::request_compute_ns`]. Failed
    /// requests are counted but not timed; there is no response cache, so `cache_*` are 0.
    pub fn new(spec: &ModelSpec, stats: &ModelStats) -> ModelStatistics {
        let ok = stats.success_count;
        ModelStatistics {
            name: spec.name.clone(),
            version: spec.version.clone(),
            last_inference: 0,
            inference_count: stats.inference_count,
            execution_count: stats.execution_count,
            inference_stats: InferStatistics {
                success: duration(ok, stats.success_ns),
                fail: duration(stats.fail_count, 0),
                queue: duration(ok, stats.queue_ns),
                compute_input: duration(ok, 0),
                compute_infer: duration(ok, stats.request_compute_ns()),
                compute_output: duration(ok, 0),
                cache_hit: duration(0, 0),
                cache_miss: duration(0, 0),
            },
            batch_stats: Vec::new(),
        }
    }
}
