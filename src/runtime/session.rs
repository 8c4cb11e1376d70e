//! Building one ORT session with our threading policy, and reading its serving contract.

use std::collections::BTreeMap;
use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;

use super::value::{data_type, to_ort_value};
use crate::config::{BatchSize, ExecutionProvider, ModelConfig, Placement, ProviderFallback};
use crate::spec::{ModelSpec, TensorSpec};
use crate::tensor::{dispatch_dtype, DataType, Element, FromJson, JsonNumber, Tensor, TensorData};

/// One ONNX Runtime session of `model.onnx`, with the session of its context graph for a
/// model that has one (`[context]`): both belong to one instance and run on its worker
/// thread. Only `runtime` looks inside, so no other module depends on ORT's types.
pub struct Session {
    pub(super) graph: ort::session::Session,
    pub(super) context: Option<ort::session::Session>,
}

impl Session {
    /// The ORT session, for the load generator's ceiling (a bare `run` with nothing of
    /// ours around it). The server's own modules go through `runtime`'s functions.
    pub fn ort(&mut self) -> &mut ort::session::Session {
        &mut self.graph
    }

    /// Makes `context` (a session of the context graph, built with the same options) this
    /// instance's context session.
    pub fn attach_context(&mut self, context: Session) {
        self.context = Some(context.graph);
    }

    fn of(graph: ort::session::Session) -> Session {
        Session {
            graph,
            context: None,
        }
    }
}

/// Why a version's sessions cannot be built or cannot serve. The cause decides how a
/// failed load is answered: a model that cannot work is the request's problem, a server
/// without the provider the model asks for is the server's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// The execution provider asked for cannot be used here and no fallback is allowed.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// ONNX Runtime refused the graph, or it cannot serve as configured (an input that is
    /// not a tensor, a config setting the graph contradicts, a failed warm-up run).
    #[error("{0}")]
    Unservable(String),
}

/// How to build a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads; 1 keeps one run on one core so instances scale across cores.
    pub intra_op_threads: usize,
    pub execution_provider: ExecutionProvider,
    pub fallback: ProviderFallback,
    /// The GPU for CUDA.
    pub device_id: i32,
}

/// Builds a session for `path` on the provider `options` asks for, and says where it
/// runs. Spinning is off: spinning threads burn the cores that the HTTP side and the other
/// instances need, which costs more than it wins on small MLPs.
///
/// CUDA that cannot be used is an error naming the provider, what this ONNX Runtime
/// build offers and how to get a GPU build, unless the fallback is `cpu`: then the
/// session is built on the CPU and the caller logs a warning.
pub fn build_session(
    env: &ort::environment::Environment,
    path: &Path,
    options: &SessionOptions,
) -> Result<(Session, Placement), SessionError> {
    let cpu = || -> Result<Session, SessionError> {
        let build = || -> ort::Result<Session> {
            Ok(Session::of(builder(env, options)?.commit_from_file(path)?))
        };
        build().map_err(|e| SessionError::Unservable(e.to_string()))
    };
    if options.execution_provider == ExecutionProvider::Cpu {
        return Ok((cpu()?, Placement::CPU));
    }
    let placement = Placement {
        provider: ExecutionProvider::Cuda,
        device_id: options.device_id,
    };
    let cuda = || -> Result<Session, CudaError> {
        use ort::ep::ExecutionProvider as _;
        if !ort::ep::CUDA::is_available().unwrap_or(false) {
            return Err(CudaError::NotBuilt {
                offers: available_providers().join(", "),
            });
        }
        let ep = ort::ep::CUDA::default()
            .with_device_id(options.device_id)
            .build()
            .error_on_failure();
        let build = || -> ort::Result<Session> {
            Ok(Session::of(
                builder(env, options)?
                    .with_execution_providers([ep])?
                    .commit_from_file(path)?,
            ))
        };
        build().map_err(|e| CudaError::Failed {
            device: options.device_id,
            reason: e.to_string(),
        })
    };
    match (cuda(), options.fallback) {
        (Ok(session), _) => Ok((session, placement)),
        (Err(e), ProviderFallback::Error) => Err(SessionError::ProviderUnavailable(format!(
            "{e} (set fallback = \"cpu\" in config.toml or --execution-provider-fallback cpu to run on the CPU instead)"
        ))),
        (Err(e), ProviderFallback::Cpu) => {
            tracing::warn!(model = %path.display(), reason = %e, "CUDA unavailable: running on the CPU (fallback = cpu)");
            Ok((cpu()?, Placement::CPU))
        }
    }
}

/// Why the CUDA execution provider cannot run a session here: an error with the fallback
/// `error`, a warning with `cpu`.
#[derive(Debug, thiserror::Error)]
enum CudaError {
    #[error("this ONNX Runtime build has no CUDA execution provider (it offers: {offers}); fetch the GPU build with `ORT_FLAVOR=gpu scripts/fetch-onnxruntime.sh` and put the CUDA 13 and cuDNN 9 libraries on the loader path")]
    NotBuilt { offers: String },
    #[error("the CUDA execution provider failed on device {device}: {reason}")]
    Failed { device: i32, reason: String },
}

fn builder(
    env: &ort::environment::Environment,
    options: &SessionOptions,
) -> ort::Result<ort::session::builder::SessionBuilder> {
    Ok(ort::session::Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(options.intra_op_threads)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .with_inter_op_spinning(false)?)
}

/// Which of the providers we can drive this ONNX Runtime build was compiled with.
fn available_providers() -> Vec<&'static str> {
    use ort::ep::{self, ExecutionProvider as _};
    let known = [
        (ep::CPU::NAME, ep::CPU::is_available()),
        (ep::CUDA::NAME, ep::CUDA::is_available()),
    ];
    known
        .into_iter()
        .filter(|(_, available)| matches!(available, Ok(true)))
        .map(|(name, _)| name)
        .collect()
}

/// Reads the serving contract from the graph: names, dtypes, shapes (`-1` for dynamic
/// dims), `metadata_props`, plus padding from the model's config (checked against the graph).
pub fn read_spec(
    session: &Session,
    name: &str,
    version: &str,
    config: ModelConfig,
) -> Result<ModelSpec, SessionError> {
    let tensor_spec = |outlet: &ort::value::Outlet| -> Result<TensorSpec, SessionError> {
        let ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } = outlet.dtype()
        else {
            return Err(SessionError::Unservable(format!(
                "'{}' is a {}, only tensors are served",
                outlet.name(),
                outlet.dtype()
            )));
        };
        let dtype = data_type(*ty).ok_or_else(|| {
            SessionError::Unservable(format!(
                "'{}' has element type {ty}, which is not served",
                outlet.name()
            ))
        })?;
        Ok(TensorSpec {
            name: outlet.name().to_string(),
            dtype,
            shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
            symbols: dimension_symbols.iter().cloned().collect(),
            pad_axes: Vec::new(),
            pad_value: 0.0,
            broadcast: false,
        })
    };
    let graph_inputs = session
        .graph
        .inputs()
        .iter()
        .map(tensor_spec)
        .collect::<Result<Vec<_>, _>>()?;
    if graph_inputs.is_empty() {
        return Err(SessionError::Unservable(
            "the graph has no inputs; a served model takes at least one".to_string(),
        ));
    }
    let outputs = session
        .graph
        .outputs()
        .iter()
        .map(tensor_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let graph = match (&session.context, &config.context) {
        (Some(context), Some(c)) => {
            let context_inputs = context
                .inputs()
                .iter()
                .map(tensor_spec)
                .collect::<Result<Vec<_>, _>>()?;
            let context_outputs = context
                .outputs()
                .iter()
                .map(tensor_spec)
                .collect::<Result<Vec<_>, _>>()?;
            super::context::join(
                name,
                &c.model,
                context_inputs,
                context_outputs,
                graph_inputs,
            )?
        }
        _ => super::context::Joined::single(graph_inputs),
    };
    let mut inputs = graph.inputs;
    let names: Vec<String> = inputs.iter().map(|s| format!("'{}'", s.name)).collect();
    for (input_name, c) in &config.inputs {
        if let Some(why) = graph.fed.iter().find(|f| f.as_str() == input_name) {
            return Err(SessionError::Unservable(format!(
                "model '{name}' config.toml: inputs.{why}: the context graph ({}) feeds this input of model.onnx; clients never send it, so it takes no settings",
                config.context.as_ref().map_or("", |c| c.model.as_str())
            )));
        }
        let spec = inputs
            .iter_mut()
            .find(|s| &s.name == input_name)
            .ok_or_else(|| {
                SessionError::Unservable(format!(
                    "config.toml: inputs.{input_name}: the graph has no input '{input_name}' (it has {})",
                    names.join(", ")
                ))
            })?;
        for &axis in &c.pad_axes {
            if axis == 0 || axis >= spec.shape.len() || spec.shape[axis] >= 0 {
                return Err(SessionError::Unservable(format!(
                    "config.toml: inputs.{input_name}.pad_axes: cannot pad axis {axis}: only dynamic non-batch axes of {:?} can be padded",
                    spec.shape
                )));
            }
        }
        check_pad_value(input_name, spec.dtype, c.pad_value)?;
        spec.pad_axes = c.pad_axes.clone();
        spec.pad_value = c.pad_value;
        // A context graph's input is sent once per request whatever the config says.
        spec.broadcast = spec.broadcast || c.broadcast;
    }
    let context = graph.context.map(|plan| plan.finish(&inputs));
    let batched = inputs
        .iter()
        .chain(&outputs)
        .chain(
            context
                .iter()
                .flat_map(|c| c.scorer_inputs.iter().chain(&c.outputs)),
        )
        .all(|s| s.shape.first() == Some(&-1));
    let mut properties = BTreeMap::new();
    if let Ok(meta) = session.graph.metadata() {
        for key in meta.custom_keys().unwrap_or_default() {
            if let Some(value) = meta.custom(&key) {
                properties.insert(key, value);
            }
        }
    }
    Ok(ModelSpec {
        name: name.to_string(),
        version: version.to_string(),
        inputs,
        outputs,
        batched,
        properties,
        max_batch: match config.max_batch_size {
            BatchSize::Fixed(n) => n,
            BatchSize::Auto => super::calibrate::UNMEASURED,
        },
        config,
        placements: Vec::new(),
        inline_rows: 0,
        features: None,
        inline_elements: 0,
        footprint: crate::spec::Footprint::default(),
        max_batch_work_bytes: usize::MAX,
        context,
    })
}

/// Warms one session up before its version is marked ready, so the first real request
/// does not pay for ORT's lazy initialisation and first-size allocations: one run per batch
/// size in {1, `max_batch_size`, preferred sizes} (one run for a model that cannot batch),
/// zeros for the first run and ones for the others (empty strings for string inputs), dynamic
/// non-batch dims = 1. A failing
/// run fails the load: a version that cannot run these inputs is not ready to serve.
///
/// A context model warms both graphs up at the same sizes: a batch of context-once
/// requests runs the context graph on fewer rows, of repeated ones on as many.
pub fn warm_up(session: &mut Session, spec: &ModelSpec) -> Result<(), SessionError> {
    let mut sizes = vec![1];
    if spec.batched {
        sizes.push(spec.max_batch_size());
        sizes.extend(&spec.config.preferred_batch_sizes);
    }
    sizes.sort_unstable();
    sizes.dedup();
    if let (Some(context), Some(graph)) = (&spec.context, session.context.as_mut()) {
        warm_up_graph(graph, &context.input_specs, spec.batched, &sizes).map_err(|e| {
            SessionError::Unservable(format!("context graph {}: {e}", context.file))
        })?;
    }
    warm_up_graph(
        &mut session.graph,
        spec.graph_inputs(),
        spec.batched,
        &sizes,
    )
}

fn warm_up_graph(
    graph: &mut ort::session::Session,
    inputs: &[TensorSpec],
    batched: bool,
    sizes: &[usize],
) -> Result<(), SessionError> {
    for (run, &rows) in sizes.iter().enumerate() {
        let fill = if run == 0 { 0.0 } else { 1.0 };
        let mut values = Vec::with_capacity(inputs.len());
        for s in inputs {
            let shape: Vec<usize> = s
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &d)| match (axis, d) {
                    (0, _) if batched => rows,
                    (_, d) => d.max(1) as usize,
                })
                .collect();
            let count = crate::tensor::element_count(&shape);
            // String inputs get "" in every run: there is no "one" string.
            let data = dispatch_dtype!(s.dtype, T => <T as Element>::wrap(vec![<T as FromJson>::from_json(JsonNumber::Float(fill)).unwrap_or_default(); count]),
                bytes => TensorData::zeros(DataType::Bytes, count));
            let value = to_ort_value(Tensor { shape, data }).map_err(|e| {
                SessionError::Unservable(format!("warm-up input '{}': {e}", s.name))
            })?;
            values.push((s.name.as_str(), value));
        }
        graph.run(values).map_err(|e| {
            SessionError::Unservable(format!("warm-up run with {rows} row(s) failed: {e}"))
        })?;
    }
    Ok(())
}

/// A `pad_value` must be a value of its input's datatype: integral and in range for
/// integers, 0 or 1 for booleans, finite and in range for floats, unset (0) for strings,
/// which pad with "". Checked at load, so a
/// wrong value never turns into a silently coerced pad (or a failed batch) later.
fn check_pad_value(input: &str, dtype: DataType, v: f64) -> Result<(), SessionError> {
    use DataType as D;
    let two = |bits: i32| 2f64.powi(bits);
    let (range, fits) = match dtype {
        D::Bool => ("0 or 1".to_string(), v == 0.0 || v == 1.0),
        D::F16 => (
            "finite, |v| <= 65504".to_string(),
            v.is_finite() && v.abs() <= 65504.0,
        ),
        D::BF16 | D::F32 => (
            format!("finite, |v| <= {:e}", f32::MAX),
            v.is_finite() && v.abs() <= f32::MAX as f64,
        ),
        D::F64 => ("finite".to_string(), v.is_finite()),
        // Strings always pad with "": a number other than the default means a mistake.
        D::Bytes => (
            "0 (string inputs pad with the empty string)".to_string(),
            v == 0.0,
        ),
        D::I8 | D::I16 | D::I32 | D::I64 | D::U8 | D::U16 | D::U32 | D::U64 => {
            let (signed, bits) = match dtype {
                D::I8 => (true, 8),
                D::I16 => (true, 16),
                D::I32 => (true, 32),
                D::I64 => (true, 64),
                D::U8 => (false, 8),
                D::U16 => (false, 16),
                D::U32 => (false, 32),
                _ => (false, 64),
            };
            let (lo, hi) = if signed {
                (-two(bits - 1), two(bits - 1))
            } else {
                (0.0, two(bits))
            };
            (
                format!("an integer from {lo} to {}", hi - 1.0),
                v.is_finite() && v.fract() == 0.0 && v >= lo && v < hi,
            )
        }
        #[allow(unreachable_patterns)]
        _ => return Ok(()),
    };
    if fits {
        Ok(())
    } else {
        Err(SessionError::Unservable(format!(
            "config.toml: [inputs.{input}] pad_value = {v} is not a value of the input's datatype {dtype} ({range})"
        )))
    }
}
