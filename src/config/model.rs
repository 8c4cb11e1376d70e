//! Per-model `config.toml`: batching, threading and padding knobs. Every key is optional;
//! unknown keys are errors naming the key, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// What `<repo>/<model>/config.toml` may say. Defaults suit a small MLP on a small machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Most rows one ORT run may take; larger requests are split into chunks of this size.
    pub max_batch_size: usize,
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
    /// Largest request accepted, in rows; above it the request is refused with 413.
    pub max_request_rows: usize,
    /// Most tensor elements one batch may hold after padding (all inputs, every row at its
    /// padding bucket's length); requests are chunked and batches cut to stay under it.
    pub max_batch_elements: usize,
    /// Per-input settings, keyed by input name.
    pub inputs: BTreeMap<String, InputConfig>,
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
            max_batch_size: 128,
            instances: 1,
            intra_op_threads: None,
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
            default_timeout_ms: 0,
            max_request_rows: 1 << 20,
            max_batch_elements: 1 << 24,
            inputs: BTreeMap::new(),
        }
    }
}

impl ModelConfig {
    /// Reads `path` if it exists; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<ModelConfig, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => ModelConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ModelConfig::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Parses and checks the values that must be positive.
    pub fn parse(text: &str) -> Result<ModelConfig, String> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.max_batch_size == 0 || config.instances == 0 || config.max_queue_size == 0 {
            return Err("max_batch_size, instances and max_queue_size must be at least 1".into());
        }
        if let Some(&p) = config
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > config.max_batch_size)
        {
            return Err(format!(
                "preferred batch size {p} must be between 1 and max_batch_size ({})",
                config.max_batch_size
            ));
        }
        Ok(config)
    }

    pub fn max_queue_delay(&self) -> Duration {
        Duration::from_micros(self.max_queue_delay_us)
    }

    pub fn default_timeout(&self) -> Option<Duration> {
        (self.default_timeout_ms > 0).then(|| Duration::from_millis(self.default_timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(ModelConfig::parse("").unwrap(), ModelConfig::default());
    }

    #[test]
    fn unknown_keys_name_the_key() {
        let err = ModelConfig::parse("max_batch = 4").unwrap_err();
        assert!(err.contains("max_batch"), "{err}");
        let err = ModelConfig::parse("[inputs.x]\npad_axis = [1]").unwrap_err();
        assert!(err.contains("pad_axis"), "{err}");
    }

    #[test]
    fn padding_and_limits_parse() {
        let c = ModelConfig::parse(
            "max_batch_size = 8\npreferred_batch_sizes = [4, 8]\n[inputs.hist]\npad_axes = [1]\npad_value = 0",
        )
        .unwrap();
        assert_eq!(c.inputs["hist"].pad_axes, vec![1]);
        assert!(ModelConfig::parse("max_batch_size = 4\npreferred_batch_sizes = [8]").is_err());
        assert!(ModelConfig::parse("instances = 0").is_err());
    }
}
