//! One raw field's transform: what `[features]` in `config.toml` declares for it, checked
//! and built once at load ([`Transform::from_config`]), then applied to each value of each
//! request ([`Transform::apply`]) without allocating.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::fingerprint64;

/// What `[features]` may say for one field. Exactly one transform key (or none: the number
/// passes through unchanged); unknown keys are errors naming the key.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// `tf.keras.layers.Hashing(num_bins = n)`: Fingerprint64 of the text modulo n.
    pub hash_buckets: Option<u64>,
    /// `tf.keras.layers.StringLookup`: a file beside `config.toml`, one token per line.
    pub vocabulary: Option<PathBuf>,
    /// `num_oov_indices` of the lookup (Keras's default: 1); 0 refuses unknown tokens.
    pub oov_buckets: Option<u64>,
    /// `tf.keras.layers.Discretization(bin_boundaries = …)`.
    pub boundaries: Option<Vec<f64>>,
    /// Standardisation `(x - mean) / std`; both keys together.
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// `ln(1 + x)`.
    pub log1p: Option<bool>,
    /// The value used when a request leaves the field out; without it the field is required.
    pub default: Option<OwnedValue>,
    /// Sent once per request (one value) while per-row fields have N: the graph input it
    /// feeds is broadcast (see `[inputs.NAME] broadcast`). All fields of one input agree.
    #[serde(default)]
    pub broadcast: bool,
}

/// A field's value as a request sends it, borrowed from the decoded body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
}

/// A field's value owned by the configuration (a `default`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OwnedValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl OwnedValue {
    pub fn borrow(&self) -> FieldValue<'_> {
        match self {
            OwnedValue::Int(v) => FieldValue::Int(*v),
            OwnedValue::Float(v) => FieldValue::Float(*v),
            OwnedValue::Text(v) => FieldValue::Text(v),
        }
    }
}

/// What a transform gives: an id (an INT64 column of the graph input) or a number (FP32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TransformOutput {
    Id(i64),
    Number(f64),
}

/// A vocabulary: token → id. foldhash rather than SipHash: the keys are fixed at load (a
/// client can only look up, not insert, so collision flooding does not apply) and a
/// lookup of a short token costs a fraction of SipHash's.
pub type Vocabulary = std::collections::HashMap<String, i64, foldhash::fast::RandomState>;

/// A field's transform, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    Hash {
        buckets: u64,
    },
    Lookup {
        /// Token → its id (`oov + line`).
        ids: Vocabulary,
        oov: u64,
    },
    Bucketize {
        boundaries: Vec<f64>,
    },
    Standardize {
        mean: f64,
        std: f64,
    },
    Log1p,
    /// A number used as it is.
    Identity,
}

/// Why a field's configuration or a value sent for it was refused; every message names the
/// field and what came.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("feature '{field}': {problem}")]
    Config { field: String, problem: String },
    #[error("field '{field}' takes {expected}, got {got}")]
    WrongKind {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("field '{field}': token {token:?} is not in the vocabulary (oov_buckets = 0)")]
    UnknownToken { field: String, token: String },
    #[error("field '{field}': {value} is outside the transform's domain ({why})")]
    OutOfDomain {
        field: String,
        value: f64,
        why: &'static str,
    },
    #[error("missing field '{field}' ({takes})")]
    Missing { field: String, takes: String },
    #[error("field '{field}' {problem}")]
    Request { field: String, problem: String },
    /// `[inputs.NAME] from` lists, `[features]` and the graph's inputs that do not fit
    /// together; the message names the input or field.
    #[error("{0}")]
    Wiring(String),
}

fn config_error(field: &str, problem: impl Into<String>) -> FeatureError {
    FeatureError::Config {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

impl Transform {
    /// Checks `config` and builds the transform of `field`; a vocabulary path is relative to
    /// `dir` (the model's directory). Every problem names the field.
    pub fn from_config(
        field: &str,
        config: &FieldConfig,
        dir: &Path,
    ) -> Result<Self, FeatureError> {
        let chosen: Vec<&str> = [
            ("hash_buckets", config.hash_buckets.is_some()),
            ("vocabulary", config.vocabulary.is_some()),
            ("boundaries", config.boundaries.is_some()),
            ("mean/std", config.mean.is_some() || config.std.is_some()),
            ("log1p", config.log1p == Some(true)),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            return Err(config_error(
                field,
                format!("one transform per field, found {}", chosen.join(" and ")),
            ));
        }
        if config.oov_buckets.is_some() && config.vocabulary.is_none() {
            return Err(config_error(field, "oov_buckets needs a vocabulary"));
        }
        let transform = if let Some(buckets) = config.hash_buckets {
            if buckets == 0 {
                return Err(config_error(field, "hash_buckets must be at least 1"));
            }
            Transform::Hash { buckets }
        } else if let Some(path) = &config.vocabulary {
            let oov = config.oov_buckets.unwrap_or(1);
            Transform::Lookup {
                ids: read_vocabulary(field, &dir.join(path), oov)?,
                oov,
            }
        } else if let Some(boundaries) = &config.boundaries {
            check_boundaries(field, boundaries)?;
            Transform::Bucketize {
                boundaries: boundaries.clone(),
            }
        } else if config.mean.is_some() || config.std.is_some() {
            let (Some(mean), Some(std)) = (config.mean, config.std) else {
                return Err(config_error(field, "mean and std go together"));
            };
            if !mean.is_finite() || !std.is_finite() || std <= 0.0 {
                return Err(config_error(
                    field,
                    format!(
                        "mean must be finite and std finite and > 0, got mean {mean}, std {std}"
                    ),
                ));
            }
            Transform::Standardize { mean, std }
        } else if config.log1p == Some(true) {
            Transform::Log1p
        } else {
            Transform::Identity
        };
        if let Some(default) = &config.default {
            transform.apply(field, default.borrow()).map_err(|e| {
                config_error(
                    field,
                    format!("the default {default:?} does not apply: {e}"),
                )
            })?;
        }
        Ok(transform)
    }

    /// The transform as `config.toml` declares it, for metadata and messages.
    pub fn describe(&self) -> String {
        match self {
            Transform::Hash { buckets } => format!("hash_buckets = {buckets}"),
            Transform::Lookup { ids, oov } => {
                format!("vocabulary of {} tokens, oov_buckets = {oov}", ids.len())
            }
            Transform::Bucketize { boundaries } => format!("boundaries = {boundaries:?}"),
            Transform::Standardize { mean, std } => format!("mean = {mean}, std = {std}"),
            Transform::Log1p => "log1p = true".to_string(),
            Transform::Identity => "a number used as it is".to_string(),
        }
    }

    /// Whether the transform gives ids (INT64 columns) rather than numbers (FP32 columns).
    pub fn gives_ids(&self) -> bool {
        matches!(
            self,
            Transform::Hash { .. } | Transform::Lookup { .. } | Transform::Bucketize { .. }
        )
    }

    /// Transforms one value of `field`. Inlined into each caller's per-value loop; the
    /// errors are built out of line (`#[cold]`), so the loop carries only the checks.
    #[inline]
    pub fn apply(
        &self,
        field: &str,
        value: FieldValue<'_>,
    ) -> Result<TransformOutput, FeatureError> {
        match self {
            Transform::Hash { buckets } => {
                let id = with_text(field, value, |text| fingerprint64(text) % buckets)?;
                Ok(TransformOutput::Id(id as i64))
            }
            Transform::Lookup { ids, oov } => {
                let found = match value {
                    FieldValue::Text(token) => ids.get(token).copied(),
                    // An integer is looked up as its decimal text, which is ASCII.
                    _ => with_text(field, value, |text| {
                        std::str::from_utf8(text)
                            .ok()
                            .and_then(|t| ids.get(t).copied())
                    })?,
                };
                match (found, *oov) {
                    (Some(id), _) => Ok(TransformOutput::Id(id)),
                    (None, 0) => Err(unknown_token(field, value)),
                    (None, 1) => Ok(TransformOutput::Id(0)),
                    (None, k) => {
                        let bucket = with_text(field, value, |text| fingerprint64(text) % k)?;
                        Ok(TransformOutput::Id(bucket as i64))
                    }
                }
            }
            Transform::Bucketize { boundaries } => {
                let x = number(field, value)?;
                // Keras's `Discretization`: the number of boundaries at or below x.
                Ok(TransformOutput::Id(
                    boundaries.partition_point(|b| *b <= x) as i64
                ))
            }
            Transform::Standardize { mean, std } => Ok(TransformOutput::Number(
                (number(field, value)? - mean) / std,
            )),
            Transform::Log1p => {
                let x = number(field, value)?;
                if x <= -1.0 {
                    return Err(out_of_domain(field, x, "log1p needs x > -1"));
                }
                Ok(TransformOutput::Number(x.ln_1p()))
            }
            Transform::Identity => Ok(TransformOutput::Number(number(field, value)?)),
        }
    }
}

/// Runs `f` on the UTF-8 text of a string, or on the decimal text of an integer (what Keras
/// hashes for an integer input), formatted on the stack.
#[inline]
fn with_text<T>(
    field: &str,
    value: FieldValue<'_>,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T, FeatureError> {
    match value {
        FieldValue::Text(text) => Ok(f(text.as_bytes())),
        FieldValue::Int(v) => {
            let mut buf = [0u8; 20];
            let mut cursor = &mut buf[..];
            // 20 bytes hold any i64 in decimal ("-9223372036854775808").
            let _ = write!(cursor, "{v}");
            let len = 20 - cursor.len();
            Ok(f(&buf[..len]))
        }
        FieldValue::Float(v) => Err(wrong_kind(
            field,
            "a string or an integer",
            format_args!("the number {v}"),
        )),
    }
}

/// A finite number from an integer or a float; text and non-finite values are refused.
#[inline]
fn number(field: &str, value: FieldValue<'_>) -> Result<f64, FeatureError> {
    let x = match value {
        FieldValue::Int(v) => v as f64,
        FieldValue::Float(v) => v,
        FieldValue::Text(text) => {
            return Err(wrong_kind(
                field,
                "a number",
                format_args!("the string {:?}", shorten(text)),
            ))
        }
    };
    if !x.is_finite() {
        return Err(out_of_domain(field, x, "not finite"));
    }
    Ok(x)
}

#[cold]
fn wrong_kind(field: &str, expected: &'static str, got: std::fmt::Arguments<'_>) -> FeatureError {
    FeatureError::WrongKind {
        field: field.to_owned(),
        expected,
        got: got.to_string(),
    }
}

#[cold]
fn out_of_domain(field: &str, value: f64, why: &'static str) -> FeatureError {
    FeatureError::OutOfDomain {
        field: field.to_owned(),
        value,
        why,
    }
}

#[cold]
fn unknown_token(field: &str, value: FieldValue<'_>) -> FeatureError {
    FeatureError::UnknownToken {
        field: field.to_owned(),
        token: shorten(&display_text(value)),
    }
}

fn display_text(value: FieldValue<'_>) -> String {
    match value {
        FieldValue::Text(t) => t.to_owned(),
        FieldValue::Int(v) => v.to_string(),
        FieldValue::Float(v) => v.to_string(),
    }
}

/// Echoed values are cut to 64 characters: an error message never repeats a whole body.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn check_boundaries(field: &str, boundaries: &[f64]) -> Result<(), FeatureError> {
    if boundaries.is_empty() {
        return Err(config_error(field, "boundaries is empty"));
    }
    if let Some(b) = boundaries.iter().find(|b| !b.is_finite()) {
        return Err(config_error(field, format!("boundary {b} is not finite")));
    }
    if let Some(w) = boundaries.windows(2).find(|w| w[0] >= w[1]) {
        return Err(config_error(
            field,
            format!(
                "boundaries must increase strictly, but {} is followed by {}",
                w[0], w[1]
            ),
        ));
    }
    Ok(())
}

/// Reads a vocabulary file (one token per line, `\n` or `\r\n`): the token on line i
/// (0-based) gets id `oov + i`, as `StringLookup` numbers them after its OOV indices.
fn read_vocabulary(field: &str, path: &Path, oov: u64) -> Result<Vocabulary, FeatureError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(
            field,
            format!("cannot read the vocabulary {}: {e}", path.display()),
        )
    })?;
    let mut ids = Vocabulary::default();
    for (line, token) in text.lines().enumerate() {
        if token.is_empty() {
            return Err(config_error(
                field,
                format!("{} line {} is empty", path.display(), line + 1),
            ));
        }
        let id = oov as i64 + line as i64;
        if let Some(first) = ids.insert(token.to_owned(), id) {
            return Err(config_error(
                field,
                format!(
                    "{}: token {:?} on line {} repeats line {}",
                    path.display(),
                    shorten(token),
                    line + 1,
                    first - oov as i64 + 1
                ),
            ));
        }
    }
    if ids.is_empty() {
        return Err(config_error(field, format!("{} is empty", path.display())));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
