//! Per-model `config.toml`: batching, threading and padding knobs. Every key is optional;
//! unknown keys are errors naming the key, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ExecutionProvider, ProviderFallback};
use crate::features::FieldConfig;

/// What `<repo>/<model>/config.toml` may say. Defaults suit a small MLP on a small machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Most rows one ORT run may take; larger requests are split into chunks of this size.
    /// `"auto"` (the default): measured at load as the largest batch whose run stays
    /// within `max_batch_latency_ms` (see `runtime::calibrate`).
    pub max_batch_size: BatchSize,
    /// Run-time budget of one batch for `max_batch_size = "auto"`, in milliseconds.
    pub max_batch_latency_ms: f64,
    /// A request that finds the server with no other request in it runs on the thread that
    /// received it (no hand-off to the batcher and a worker) when a run of its size was
    /// measured at load to take at most this many microseconds; 0 = always hand off.
    /// Off for a model with `max_queue_delay_us` (it asked to wait for company).
    pub inline_run_us: u64,
    /// Worker threads, each owning its own ORT session.
    pub instances: usize,
    /// ORT intra-op threads per instance; unset = the server-wide value.
    pub intra_op_threads: Option<usize>,
    /// How long the oldest request may wait for a fuller batch (0 = never wait; Triton semantics).
    pub max_queue_delay_us: u64,
    /// Batch sizes worth waiting for (up to `max_queue_delay_us`).
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests waiting beyond this are refused with 429 at once.
    pub max_queue_size: usize,
    /// Deadline for a request that names none (0 = no deadline).
    pub default_timeout_ms: u64,
    /// Most tensor elements one batch may hold after padding (all inputs, every row at its
    /// padding bucket's length); requests are chunked and batches cut to stay under it.
    pub max_batch_elements: usize,
    /// Largest request accepted, in rows; above it the request is refused with 413.
    pub max_request_rows: usize,
    /// Execution provider for this model; unset = the server-wide value.
    pub execution_provider: Option<ExecutionProvider>,
    /// When that provider cannot be used; unset = the server-wide value.
    pub fallback: Option<ProviderFallback>,
    /// GPUs for the instances (instance i runs on `device_ids[i % len]`); empty = GPU 0.
    pub device_ids: Vec<i32>,
    /// Per-input settings, keyed by input name.
    pub inputs: BTreeMap<String, InputConfig>,
    /// Raw request fields and their transforms (`[features]`), keyed by field name. Graph
    /// inputs name the fields they are built from with `from`; empty = tensors only.
    pub features: BTreeMap<String, FieldConfig>,
    // Lifecycle: which versions serve and how requests choose among them. Changing these
    // keys re-routes on the next poll or load without rebuilding sessions.
    /// Which versions on disk are served (Triton's version policy).
    pub version_policy: VersionPolicy,
    /// Names that address a served version (`stable = 3`), usable wherever a version is.
    pub labels: BTreeMap<String, u64>,
    /// Weights per version (`"3" = 90`) for requests that name no version.
    pub traffic: BTreeMap<String, u32>,
    /// Share of this model's requests the payload log keeps (0..1), instead of the
    /// server's `--payload-log-sample`.
    pub payload_log_sample: Option<f64>,
    /// The output ranking requests (`top_k`) sort by when they name none; unset = the only
    /// output of a model that has exactly one.
    pub rank_by: Option<String>,
    /// A second graph that runs once per request on the request's context (`[context]`):
    /// its outputs feed inputs of `model.onnx` of the same names.
    pub context: Option<ContextConfig>,
}

/// `[context]`: the context graph of a version, a file in the version folder beside
/// `model.onnx`. Its inputs are client inputs sent once per request (broadcast); each of
/// its outputs feeds the input of `model.onnx` with the same name, datatype and trailing
/// shape, which clients then never send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextConfig {
    /// The context graph's file name in the version folder (`context.onnx`).
    pub model: String,
}

/// Which of the versions on disk are served. Default: the highest one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionPolicy {
    /// The `n` highest versions.
    Latest(usize),
    /// Every version.
    All,
    /// Exactly these versions (those present).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions of `on_disk` (any order) this policy serves, ascending.
    pub fn select(&self, on_disk: &[u64]) -> Vec<u64> {
        let mut all: Vec<u64> = on_disk.to_vec();
        all.sort_unstable();
        all.dedup();
        match self {
            VersionPolicy::Latest(n) => all.split_off(all.len().saturating_sub(*n)),
            VersionPolicy::All => all,
            VersionPolicy::Specific(wanted) => {
                all.retain(|v| wanted.contains(v));
                all
            }
        }
    }
}

/// `max_batch_size`: a pinned row count, or measured at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Auto,
    Fixed(usize),
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive row count or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<BatchSize, E> {
                usize::try_from(v)
                    .map(BatchSize::Fixed)
                    .map_err(|_| E::custom(format!("max_batch_size must be at least 1, got {v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<BatchSize, E> {
                usize::try_from(v)
                    .map(BatchSize::Fixed)
                    .map_err(|_| E::custom(format!("max_batch_size {v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BatchSize, E> {
                match v {
                    "auto" => Ok(BatchSize::Auto),
                    _ => Err(E::custom(format!(
                        "max_batch_size must be a row count or \"auto\", got \"{v}\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Per-input settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Non-batch axes that may differ between requests; batches pad them to the longest.
    #[serde(default)]
    pub pad_axes: Vec<usize>,
    /// Value written into padding (cast to the input's datatype).
    #[serde(default)]
    pub pad_value: f64,
    /// Longest accepted length of a padded axis; longer requests are refused with 413.
    #[serde(default = "default_max_pad_length")]
    pub max_pad_length: usize,
    /// The `[features]` fields this input's columns are built from, in column order; empty
    /// = the input is sent as a tensor.
    #[serde(default)]
    pub from: Vec<String>,
    /// A request may send this input with one row while the others have N: the row is
    /// repeated to N when the batch is assembled (ranking: one user, N candidates). An
    /// input built `from` fields is broadcast also when all its fields are.
    #[serde(default)]
    pub broadcast: bool,
}

/// Default cap on a padded axis: 2^17, well above real histories, far below what would
/// let one request dominate memory.
pub const DEFAULT_MAX_PAD_LENGTH: usize = 1 << 17;

fn default_max_pad_length() -> usize {
    DEFAULT_MAX_PAD_LENGTH
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            max_batch_size: BatchSize::Auto,
            max_batch_latency_ms: 5.0,
            inline_run_us: 500,
            instances: 1,
            intra_op_threads: None,
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
            default_timeout_ms: 0,
            max_request_rows: 1 << 20,
            max_batch_elements: 1 << 24,
            execution_provider: None,
            fallback: None,
            device_ids: Vec::new(),
            inputs: BTreeMap::new(),
            features: BTreeMap::new(),
            version_policy: VersionPolicy::default(),
            labels: BTreeMap::new(),
            traffic: BTreeMap::new(),
            payload_log_sample: None,
            rank_by: None,
            context: None,
        }
    }
}

/// Why a configuration (a model's or the server's) was refused; the message names the file or key, the value
/// and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `config.toml` exists but cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// Not TOML (or JSON) of the known keys and types.
    #[error("{0}")]
    Syntax(String),
    /// A value out of its range, or values that contradict each other.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// The same cause with its message rewritten by `f` (to say which file or request).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> ConfigError {
        match self {
            ConfigError::Unreadable(m) => ConfigError::Unreadable(f(m)),
            ConfigError::Syntax(m) => ConfigError::Syntax(f(m)),
            ConfigError::Invalid(m) => ConfigError::Invalid(f(m)),
        }
    }
}

impl ModelConfig {
    /// Reads `path` if it exists; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<ModelConfig, ConfigError> {
        let at = |m: String| format!("{}: {m}", path.display());
        match std::fs::read_to_string(path) {
            Ok(text) => ModelConfig::parse(&text).map_err(|e| e.map_message(at)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
            Err(e) => Err(ConfigError::Unreadable(at(e.to_string()))),
        }
    }

    /// Parses and range-checks every value; errors name the key, its value and the range.
    pub fn parse(text: &str) -> Result<ModelConfig, ConfigError> {
        let config: ModelConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Every range and every agreement between values.
    fn check(&self) -> Result<(), ConfigError> {
        let config = self;
        config.check_ranges()?;
        let limit = match config.max_batch_size {
            BatchSize::Fixed(n) => n,
            // Checked against the measured size at load (the queue ignores larger ones).
            BatchSize::Auto => usize::MAX,
        };
        if let Some(&p) = config
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > limit)
        {
            return Err(ConfigError::Invalid(format!(
                "preferred_batch_sizes: {p} must be between 1 and max_batch_size ({limit})"
            )));
        }
        if let Some(s) = config
            .payload_log_sample
            .filter(|s| !(0.0..=1.0).contains(s))
        {
            return Err(ConfigError::Invalid(format!(
                "payload_log_sample = {s} is out of range: allowed 0.0..=1.0"
            )));
        }
        if let Some(&d) = config.device_ids.iter().find(|&&d| d < 0) {
            return Err(ConfigError::Invalid(format!(
                "device_ids: {d} is not a GPU ordinal (0 or more)"
            )));
        }
        config.check_routing()?;
        config.check_features()?;
        config.check_context()
    }

    /// `[context] model` names a file of the version folder: a plain file name, not a path
    /// that could leave the folder.
    fn check_context(&self) -> Result<(), ConfigError> {
        let Some(context) = &self.context else {
            return Ok(());
        };
        let name = context.model.as_str();
        let plain = Path::new(name)
            .file_name()
            .is_some_and(|f| f == std::ffi::OsStr::new(name));
        if !plain || name == "model.onnx" {
            return Err(ConfigError::Invalid(format!(
                "[context] model = \"{name}\" must be the file name of the context graph in the version folder (e.g. \"context.onnx\"), not a path and not model.onnx"
            )));
        }
        Ok(())
    }

    /// What `[features]` and `from` must satisfy without the graph or the files: every
    /// field named in a `from` is declared, once per input, and every declared field feeds
    /// some input. The transforms themselves, the vocabularies and the graph's widths are
    /// checked at load (`features::FeatureSet::build`).
    fn check_features(&self) -> Result<(), ConfigError> {
        for (name, input) in &self.inputs {
            if input.from.is_empty() {
                continue;
            }
            if !input.pad_axes.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "inputs.{name}: an input built from features has no axes to pad"
                )));
            }
            for (i, field) in input.from.iter().enumerate() {
                if !self.features.contains_key(field) {
                    return Err(ConfigError::Invalid(format!(
                        "inputs.{name}.from names field '{field}', which [features] does not declare"
                    )));
                }
                if input.from[..i].contains(field) {
                    return Err(ConfigError::Invalid(format!(
                        "inputs.{name}.from names field '{field}' twice"
                    )));
                }
            }
        }
        if let Some(unused) = self
            .features
            .keys()
            .find(|f| !self.inputs.values().any(|i| i.from.contains(f)))
        {
            return Err(ConfigError::Invalid(format!(
                "feature '{unused}' is used by no input: name it in some [inputs.NAME] from = [...]"
            )));
        }
        if let Some(clash) = self.features.keys().find(|f| self.inputs.contains_key(*f)) {
            return Err(ConfigError::Invalid(format!(
                "feature '{clash}' has the name of a graph input; a field and an input need different names"
            )));
        }
        Ok(())
    }

    /// Parses a load request's `parameters.config` override: a JSON object with the same
    /// keys as `config.toml`, or Triton's model config in protobuf's JSON form (numbers as
    /// strings, `dynamic_batching`, `instance_group`, `version_policy`; see
    /// [`super::triton_json`]). Returns the config and the keys it ignored (Triton's
    /// descriptive keys such as `name` or `input`, and settings with no meaning here).
    pub fn parse_json(text: &str) -> Result<(ModelConfig, Vec<String>), ConfigError> {
        let syntax = |e: String| ConfigError::Syntax(format!("config override: {e}"));
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let (value, ignored) = super::triton_json::translate(value)
            .map_err(|e| e.map_message(|m| format!("config override: {m}")))?;
        let toml_text = toml::to_string(&value).map_err(|e| syntax(e.to_string()))?;
        let config = ModelConfig::parse(&toml_text)
            .map_err(|e| e.map_message(|m| format!("config override: {m}")))?;
        Ok((config, ignored))
    }

    fn check_routing(&self) -> Result<(), ConfigError> {
        if let VersionPolicy::Latest(0) = self.version_policy {
            return Err(ConfigError::Invalid(
                "version_policy latest must be at least 1".into(),
            ));
        }
        if let Some(label) = self
            .labels
            .keys()
            .find(|l| l.is_empty() || l.parse::<u64>().is_ok())
        {
            return Err(ConfigError::Invalid(format!(
                "labels: '{label}' must be a non-empty name that is not a number"
            )));
        }
        if let Some(v) = self.traffic.keys().find(|v| v.parse::<u64>().is_err()) {
            return Err(ConfigError::Invalid(format!(
                "traffic: key '{v}' must be a version number"
            )));
        }
        Ok(())
    }

    /// The GPU that instance `index` runs on.
    pub fn device_id(&self, index: usize) -> i32 {
        match self.device_ids.len() {
            0 => 0,
            n => self.device_ids[index % n],
        }
    }

    /// This config without the routing keys: two versions whose serving parts are equal
    /// need no new sessions when only routing changed.
    pub fn serving_part(&self) -> ModelConfig {
        ModelConfig {
            version_policy: VersionPolicy::default(),
            labels: BTreeMap::new(),
            traffic: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Values that parse but could not work (a worker per core times four at most, delays
    /// and deadlines a client could still wait for) are refused at start.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let threads = super::max_threads();
        let u = |v: usize| v as u64;
        let mut checks = vec![
            (
                "instances",
                u(self.instances),
                1,
                u(threads),
                " (4 per core)",
            ),
            (
                "max_queue_delay_us",
                self.max_queue_delay_us,
                0,
                10_000_000,
                " (10 s)",
            ),
            ("max_queue_size", u(self.max_queue_size), 1, 1 << 20, ""),
            ("inline_run_us", self.inline_run_us, 0, 10_000, " (10 ms)"),
            (
                "default_timeout_ms",
                self.default_timeout_ms,
                0,
                86_400_000,
                " (1 day; 0 = no deadline)",
            ),
            ("max_request_rows", u(self.max_request_rows), 1, 1 << 30, ""),
            (
                "max_batch_elements",
                u(self.max_batch_elements),
                1,
                1 << 36,
                "",
            ),
        ];
        if let BatchSize::Fixed(n) = self.max_batch_size {
            checks.push(("max_batch_size", u(n), 1, 1 << 20, ""));
        }
        if !(self.max_batch_latency_ms > 0.0 && self.max_batch_latency_ms <= 60_000.0) {
            return Err(ConfigError::Invalid(format!(
                "max_batch_latency_ms = {} is out of range: allowed above 0 up to 60000 (1 min)",
                self.max_batch_latency_ms
            )));
        }
        if let Some(t) = self.intra_op_threads {
            checks.push(("intra_op_threads", u(t), 1, u(threads), " (4 per core)"));
        }
        for (key, value, min, max, note) in checks {
            if value < min || value > max {
                return Err(ConfigError::Invalid(format!(
                    "{key} = {value} is out of range: allowed {min}..={max}{note}"
                )));
            }
        }
        for (name, input) in &self.inputs {
            if input.max_pad_length == 0 || input.max_pad_length > 1 << 24 {
                return Err(ConfigError::Invalid(format!(
                    "inputs.{name}.max_pad_length = {} is out of range: allowed 1..={}",
                    input.max_pad_length,
                    1 << 24
                )));
            }
        }
        Ok(())
    }

    pub fn inline_run_budget(&self) -> Duration {
        Duration::from_micros(self.inline_run_us)
    }

    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_us)
    }

    pub fn default_timeout(&self) -> Option<Duration> {
        (self.default_timeout_ms > 0).then(|| Duration::from_millis(self.default_timeout_ms))
    }
}

#[cfg(test)]
mod tests;
