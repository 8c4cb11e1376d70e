//! `mlpserve inspect PATH`: what a model takes and gives and how the server would serve it,
//! before it is deployed: inputs and outputs with datatypes and shapes, whether (and why
//! not) requests can be batched, axes that could be padded, external data, opset and
//! producer, the batch size `"auto"` picks on this machine, and ready example requests.
//! Loads the model with the server's own code (`repository::prepare`) and times batches
//! with `runtime::calibrate`; serves nothing.

mod example;
mod onnx;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{BatchSize, ConfigError, ModelConfig};
use crate::repository::{prepare, scan_model, LoadOptions, VersionToLoad};
use crate::runtime::{self, Runtime};
use crate::spec::{ModelSpec, TensorSpec};
pub use example::Examples;
pub use onnx::{ExternalFile, OnnxFacts, Opset};

/// An input or output as the graph declares it.
#[derive(Debug, Clone, Serialize)]
pub struct Tensor {
    pub name: String,
    pub datatype: String,
    /// Dims, `-1` where dynamic.
    pub shape: Vec<i64>,
    /// The graph's name of each dim (`""` when unnamed).
    pub dim_names: Vec<String>,
}

/// Whether requests can be stacked into one run, and the batch sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Batching {
    pub batched: bool,
    pub why: String,
    /// What `max_batch_size = "auto"` picks here (within `max_batch_latency_ms`).
    pub auto_max_batch_size: Option<usize>,
    /// (rows, microseconds of the fastest run) for every size timed.
    pub timed: Vec<(usize, u128)>,
    /// Why nothing could be timed, if so (the server then uses 128).
    pub timing_error: Option<String>,
    pub max_batch_latency_ms: f64,
    /// `max_batch_size` from `config.toml`, when it pins one.
    pub configured_max_batch_size: Option<usize>,
}

/// A dynamic non-batch axis, which `pad_axes` could declare so requests of different
/// lengths batch together.
#[derive(Debug, Clone, Serialize)]
pub struct PadCandidate {
    pub input: String,
    pub axis: usize,
    pub dim_name: String,
    /// Already listed in the input's `pad_axes`.
    pub configured: bool,
}

/// Everything `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The name requests use (the model directory's name).
    pub model: String,
    pub version: Option<u64>,
    pub file: String,
    pub file_bytes: u64,
    /// The `config.toml` applied, if any.
    pub config_file: Option<String>,
    pub onnx: Option<OnnxFacts>,
    /// ONNX `metadata_props`.
    pub properties: BTreeMap<String, String>,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    pub batching: Option<Batching>,
    pub pad_candidates: Vec<PadCandidate>,
    pub examples: Option<Examples>,
    /// Why the server could not serve this model as it is, or settings it would ignore.
    pub problems: Vec<String>,
}

/// Why no model file can be found where `mlpserve inspect` was pointed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InspectError {
    /// The path does not exist or cannot be read.
    #[error("{}: {reason}", path.display())]
    Missing { path: PathBuf, reason: String },
    /// A model directory whose `config.toml` does not parse or check.
    #[error("{0} (`mlpserve check` names the key and the fix)")]
    DirConfig(ConfigError),
    /// The `config.toml` of the version's model directory does not parse or check.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A model directory with no version to serve; the reason says why.
    #[error("{0}")]
    NoVersion(String),
}

/// The model file, its name and version, and the config that applies.
struct Located {
    model: String,
    version: Option<u64>,
    file: PathBuf,
    config: ModelConfig,
    config_file: Option<PathBuf>,
}

/// Finds the model file `path` names: a `model.onnx`, a version directory holding one, or
/// a model directory (the highest version its `config.toml`'s version policy serves).
fn locate(path: &Path, name: Option<&str>) -> Result<Located, InspectError> {
    let meta = std::fs::metadata(path).map_err(|e| InspectError::Missing {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dir_name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    if meta.is_dir() && !path.join("model.onnx").is_file() {
        let scan = scan_model(path, None);
        let config = scan.config.map_err(InspectError::DirConfig)?;
        let on_disk: Vec<u64> = scan.versions.keys().copied().collect();
        let version = config
            .version_policy
            .select(&on_disk)
            .last()
            .copied()
            .ok_or_else(|| {
                InspectError::NoVersion(scan.error.map_or_else(
                    || "version_policy selects no version on disk".to_string(),
                    |e| e.to_string(),
                ))
            })?;
        let config_file = Some(path.join("config.toml")).filter(|p| p.is_file());
        return Ok(Located {
            model: name
                .map(str::to_string)
                .or_else(|| dir_name(Some(path)))
                .unwrap_or_else(|| "model".to_string()),
            version: Some(version),
            file: scan.versions[&version].model_file.clone(),
            config,
            config_file,
        });
    }
    let file = if meta.is_dir() {
        path.join("model.onnx")
    } else {
        path.to_path_buf()
    };
    let parent = file.parent();
    let version = dir_name(parent).and_then(|n| n.parse::<u64>().ok());
    // <model>/<version>/model.onnx: the model directory's config applies.
    let model_dir = version.and_then(|_| parent.and_then(Path::parent));
    let config_file = model_dir
        .map(|d| d.join("config.toml"))
        .filter(|p| p.is_file());
    let config = match &config_file {
        Some(p) => ModelConfig::load(p)?,
        None => ModelConfig::default(),
    };
    let model = name
        .map(str::to_string)
        .or_else(|| dir_name(model_dir))
        .or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| s != "model")
        })
        .or_else(|| dir_name(parent))
        .unwrap_or_else(|| "model".to_string());
    Ok(Located {
        model,
        version,
        file,
        config,
        config_file,
    })
}

fn tensor(s: &TensorSpec) -> Tensor {
    Tensor {
        name: s.name.clone(),
        datatype: s.dtype.name().to_string(),
        shape: s.shape.clone(),
        dim_names: s.symbols.clone(),
    }
}

/// Inspects the model `path` names as `options` would load it; `name` overrides the name
/// the examples use. Err only when no model file can be found; a model that does not load
/// comes back with its problems.
pub fn inspect(
    path: &Path,
    runtime: &Runtime,
    options: &LoadOptions,
    name: Option<&str>,
) -> Result<Inspection, InspectError> {
    let found = locate(path, name)?;
    let mut out = Inspection {
        model: found.model.clone(),
        version: found.version,
        file: found.file.display().to_string(),
        file_bytes: std::fs::metadata(&found.file).map_or(0, |m| m.len()),
        config_file: found.config_file.as_ref().map(|p| p.display().to_string()),
        onnx: None,
        properties: BTreeMap::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        batching: None,
        pad_candidates: Vec::new(),
        examples: None,
        problems: Vec::new(),
    };
    match onnx::read(&found.file) {
        Ok(facts) => {
            for f in facts.external_data.iter().filter(|f| f.bytes.is_none()) {
                out.problems.push(format!(
                    "external data file {} is missing (it must sit beside model.onnx)",
                    f.location
                ));
            }
            out.onnx = Some(facts);
        }
        Err(e) => {
            out.problems.push(e.to_string());
            return Ok(out);
        }
    }
    let to_load = VersionToLoad {
        name: found.model.clone(),
        version: found.version.unwrap_or(1),
        model_file: found.file.clone(),
        config: found.config.clone(),
    };
    let (mut sessions, spec) = match prepare(runtime, &options.session, &to_load, false) {
        Ok(loaded) => loaded,
        Err(e) => {
            out.problems.push(format!("the server cannot load it: {e}"));
            return Ok(out);
        }
    };
    out.properties = spec.properties.clone();
    out.inputs = spec.inputs.iter().map(tensor).collect();
    out.outputs = spec.outputs.iter().map(tensor).collect();
    out.problems.extend(
        spec.ignored_settings()
            .into_iter()
            .map(|(key, why)| format!("config.toml: {key} {why}")),
    );
    out.batching = Some(batching(&mut sessions[0], &spec));
    if spec.batched {
        for s in &spec.inputs {
            for (axis, &d) in s.shape.iter().enumerate().skip(1) {
                if d == -1 {
                    out.pad_candidates.push(PadCandidate {
                        input: s.name.clone(),
                        axis,
                        dim_name: s.symbols.get(axis).cloned().unwrap_or_default(),
                        configured: s.pad_axes.contains(&axis),
                    });
                }
            }
        }
    }
    out.examples = Some(example::examples(&spec, &found.model));
    Ok(out)
}

/// Batching facts, with the batch size `"auto"` picks timed as the server times it.
fn batching(session: &mut runtime::Session, spec: &ModelSpec) -> Batching {
    let c = &spec.config;
    let mut b = Batching {
        batched: spec.batched,
        why: spec
            .batch_blocker()
            .unwrap_or_else(|| "every input and output has a dynamic first axis".to_string()),
        auto_max_batch_size: None,
        timed: Vec::new(),
        timing_error: None,
        max_batch_latency_ms: c.max_batch_latency_ms,
        configured_max_batch_size: match c.max_batch_size {
            BatchSize::Fixed(n) => Some(n),
            BatchSize::Auto => None,
        },
    };
    if !spec.batched {
        return b;
    }
    let budget =
        Duration::from_secs_f64(c.max_batch_latency_ms / 1000.0).max(c.inline_run_budget());
    let quiet = runtime::gate::measuring();
    let floor = c.inline_run_budget();
    match runtime::calibrate(session, spec, budget, floor, runtime::AUTO_CAP, &quiet) {
        Ok(cal) => {
            b.auto_max_batch_size = Some(cal.max_batch);
            b.timed = cal
                .samples
                .iter()
                .map(|&(rows, t)| (rows, t.as_micros()))
                .collect();
        }
        Err(e) => b.timing_error = Some(e.to_string()),
    }
    b
}

impl Inspection {
    /// True when the server would serve the model as it is, with nothing ignored.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report for a terminal.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let version = self
            .version
            .map_or(String::new(), |v| format!(" version {v}"));
        o += &format!(
            "{}{version}: {} ({} bytes)\n",
            self.model, self.file, self.file_bytes
        );
        o += &format!(
            "config: {}\n",
            self.config_file
                .as_deref()
                .unwrap_or("none (every key at its default)")
        );
        if let Some(f) = &self.onnx {
            let opsets: Vec<String> = f
                .opsets
                .iter()
                .map(|o| format!("{} {}", o.domain, o.version))
                .collect();
            let producer = format!("{} {}", f.producer_name, f.producer_version);
            o += &format!(
                "onnx: IR {}, opset {}, producer {}, graph '{}' ({} nodes, {} initializers)\n",
                f.ir_version,
                opsets.join(", "),
                if producer.trim().is_empty() {
                    "(not recorded)"
                } else {
                    producer.trim()
                },
                f.graph_name,
                f.nodes,
                f.initializers
            );
            if f.external_data.is_empty() {
                o += "external data: none (every weight is inside the file)\n";
            } else {
                o += "external data:\n";
                for e in &f.external_data {
                    let size = e
                        .bytes
                        .map_or("MISSING".to_string(), |b| format!("{b} bytes"));
                    o += &format!("  {} ({} tensors, {size})\n", e.location, e.tensors);
                }
            }
        }
        if !self.properties.is_empty() {
            o += "metadata:\n";
            for (k, v) in &self.properties {
                o += &format!("  {k}: {v}\n");
            }
        }
        let list = |title: &str, tensors: &[Tensor]| {
            let mut s = format!("{title}:\n");
            for t in tensors {
                let dims: Vec<String> = t
                    .shape
                    .iter()
                    .zip(t.dim_names.iter().chain(std::iter::repeat(&String::new())))
                    .map(|(&d, n)| match (d, n.is_empty()) {
                        (-1, false) => n.clone(),
                        (-1, true) => "?".to_string(),
                        (d, _) => d.to_string(),
                    })
                    .collect();
                s += &format!(
                    "  {} {} {:?} (dims: [{}])\n",
                    t.name,
                    t.datatype,
                    t.shape,
                    dims.join(", ")
                );
            }
            s
        };
        if !self.inputs.is_empty() {
            o += &list("inputs", &self.inputs);
            o += &list("outputs", &self.outputs);
        }
        if let Some(b) = &self.batching {
            o += &format!(
                "batching: {} ({})\n",
                if b.batched {
                    "yes"
                } else {
                    "no, one request per run"
                },
                b.why
            );
            if let Some(n) = b.auto_max_batch_size {
                let timed: Vec<String> = b
                    .timed
                    .iter()
                    .map(|(rows, us)| format!("{rows}:{us}us"))
                    .collect();
                o += &format!(
                    "max_batch_size \"auto\" here: {n} rows within max_batch_latency_ms = {} (timed {})\n",
                    b.max_batch_latency_ms,
                    timed.join(" ")
                );
            }
            if let Some(e) = &b.timing_error {
                o += &format!("max_batch_size \"auto\" here: 128 (runs could not be timed: {e})\n");
            }
            if let Some(n) = b.configured_max_batch_size {
                o += &format!("max_batch_size in config.toml: {n}\n");
            }
        }
        if self.batching.as_ref().is_some_and(|b| b.batched) {
            if self.pad_candidates.is_empty() {
                o += "paddable axes: none (no input has a dynamic axis besides the batch axis)\n";
            } else {
                o += "paddable axes (requests whose lengths differ there batch together once declared):\n";
                for p in &self.pad_candidates {
                    let state = if p.configured {
                        "declared in config.toml".to_string()
                    } else {
                        format!("config.toml: [inputs.{}] pad_axes = [{}]", p.input, p.axis)
                    };
                    let name = if p.dim_name.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", p.dim_name)
                    };
                    o += &format!("  {} axis {}{name}: {state}\n", p.input, p.axis);
                }
            }
        }
        if let Some(e) = &self.examples {
            o += &format!(
                "\n/predict:\n{}\n\nKServe V2 over HTTP:\n{}\n\ntritonclient (Python, gRPC):\n{}",
                e.predict_curl, e.v2_curl, e.tritonclient_python
            );
        }
        if !self.problems.is_empty() {
            o += "\nproblems:\n";
            for p in &self.problems {
                o += &format!("  {p}\n");
            }
        }
        o
    }
}
