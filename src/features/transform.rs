//! One raw field's transform: what `[features]` in `config.toml` declares for it, checked
//! and built once at load ([`Transform::from_config`]), then applied to each value of each
//! request without allocating: [`Transform::apply`] for one value, [`Transform::specialise`]
//! for a column of them (the choice of transform made once per column, not per value).

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

/// `n % d` for a divisor fixed at load, by multiplications instead of a 64-bit division
/// (which costs tens of cycles on every hashed value): Lemire, Kaser and Kurz's "fastmod"
/// (Faster remainder by direct computation, 2019), exact for every `n` and `d >= 1` with a
/// 128-bit multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modulus {
    d: u64,
    /// `ceil(2^128 / d)`, wrapped to 0 for `d = 1` (which then gives 0, as `n % 1` does).
    m: u128,
}

impl Modulus {
    /// The remainder modulo `d`; `d = 0` (no OOV buckets) gives 0 and is left to callers.
    pub fn new(d: u64) -> Modulus {
        let m = match d {
            0 => 0,
            d => (u128::MAX / u128::from(d)).wrapping_add(1),
        };
        Modulus { d, m }
    }

    /// The divisor.
    pub fn get(self) -> u64 {
        self.d
    }

    /// `n % d`.
    #[inline(always)]
    pub fn of(self, n: u64) -> u64 {
        let low = self.m.wrapping_mul(u128::from(n));
        // The high 64 bits of the 192-bit product `low * d`.
        let d = u128::from(self.d);
        let below = (u128::from(low as u64) * d) >> 64;
        (((low >> 64) * d + below) >> 64) as u64
    }
}

/// A field's transform, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    Hash {
        buckets: Modulus,
    },
    Lookup {
        /// Token → its id (`oov + line`).
        ids: Vocabulary,
        oov: Modulus,
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
            Transform::Hash {
                buckets: Modulus::new(buckets),
            }
        } else if let Some(path) = &config.vocabulary {
            let oov = config.oov_buckets.unwrap_or(1);
            Transform::Lookup {
                ids: read_vocabulary(field, &dir.join(path), oov)?,
                oov: Modulus::new(oov),
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
            Transform::Hash { buckets } => format!("hash_buckets = {}", buckets.get()),
            Transform::Lookup { ids, oov } => {
                format!(
                    "vocabulary of {} tokens, oov_buckets = {}",
                    ids.len(),
                    oov.get()
                )
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

    /// Transforms one value of `field`; a refused value gets an error naming the field
    /// and what came.
    #[inline]
    pub fn apply(
        &self,
        field: &str,
        value: FieldValue<'_>,
    ) -> Result<TransformOutput, FeatureError> {
        self.try_apply(value)
            .ok_or_else(|| self.refusal(field, value))
    }

    /// Transforms one value; `None` when it is refused ([`Transform::refusal`] says why).
    #[inline(always)]
    pub fn try_apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        match self {
            Transform::Hash { buckets } => hash(*buckets, value),
            Transform::Lookup { ids, oov } => lookup(ids, *oov, value),
            Transform::Bucketize { boundaries } => bucketize(boundaries, value),
            Transform::Standardize { mean, std } => standardize(*mean, *std, value),
            Transform::Log1p => log1p(value),
            Transform::Identity => identity(value),
        }
    }

    /// Runs `column` with this transform's one-value function, specialised to it: a
    /// column's values then go through straight-line code for its transform, with the
    /// choice among transforms made once. The function gives `None` exactly where
    /// [`Transform::try_apply`] does.
    #[inline]
    pub fn specialise<C: ColumnLoop>(&self, column: C) -> C::Output {
        match self {
            Transform::Hash { buckets } => column.run(HashKernel(*buckets)),
            Transform::Lookup { ids, oov } => column.run(LookupKernel(ids, *oov)),
            Transform::Bucketize { boundaries } => column.run(BucketizeKernel(boundaries)),
            Transform::Standardize { mean, std } => column.run(StandardizeKernel(*mean, *std)),
            Transform::Log1p => column.run(Log1pKernel),
            Transform::Identity => column.run(IdentityKernel),
        }
    }

    /// Why `value` is refused (for a value [`Transform::try_apply`] gives `None` for).
    #[cold]
    #[inline(never)]
    pub fn refusal(&self, field: &str, value: FieldValue<'_>) -> FeatureError {
        let takes_text = matches!(self, Transform::Hash { .. } | Transform::Lookup { .. });
        match value {
            FieldValue::Float(v) if takes_text => wrong_kind(
                field,
                "a string or an integer",
                format_args!("the number {v}"),
            ),
            FieldValue::Text(text) if !takes_text => wrong_kind(
                field,
                "a number",
                format_args!("the string {:?}", shorten(text)),
            ),
            FieldValue::Int(_) | FieldValue::Text(_) if takes_text => unknown_token(field, value),
            _ => {
                let x = match value {
                    FieldValue::Int(v) => v as f64,
                    FieldValue::Float(v) => v,
                    FieldValue::Text(_) => f64::NAN,
                };
                if !x.is_finite() {
                    out_of_domain(field, x, "not finite")
                } else {
                    out_of_domain(field, x, "log1p needs x > -1")
                }
            }
        }
    }
}

/// A loop over a column of values that [`Transform::specialise`] gives the transform's
/// one-value function (a generic method: one copy of the loop per transform).
pub trait ColumnLoop {
    type Output;
    fn run<K: Kernel>(self, kernel: K) -> Self::Output;
}

/// One transform's one-value function. The implementations are `#[inline(always)]`, so a
/// column loop holds the transform's code itself rather than a call per value.
pub trait Kernel {
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput>;
}

struct HashKernel(Modulus);
struct LookupKernel<'a>(&'a Vocabulary, Modulus);
struct BucketizeKernel<'a>(&'a [f64]);
struct StandardizeKernel(f64, f64);
struct Log1pKernel;
struct IdentityKernel;

impl Kernel for HashKernel {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        hash(self.0, value)
    }
}

impl Kernel for LookupKernel<'_> {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        lookup(self.0, self.1, value)
    }
}

impl Kernel for BucketizeKernel<'_> {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        bucketize(self.0, value)
    }
}

impl Kernel for StandardizeKernel {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        standardize(self.0, self.1, value)
    }
}

impl Kernel for Log1pKernel {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        log1p(value)
    }
}

impl Kernel for IdentityKernel {
    #[inline(always)]
    fn apply(&self, value: FieldValue<'_>) -> Option<TransformOutput> {
        identity(value)
    }
}

/// `tf.keras.layers.Hashing`: Fingerprint64 of the text modulo the buckets.
#[inline(always)]
fn hash(buckets: Modulus, value: FieldValue<'_>) -> Option<TransformOutput> {
    let id = with_text(value, |text| buckets.of(fingerprint64(text)))?;
    Some(TransformOutput::Id(id as i64))
}

/// `tf.keras.layers.StringLookup`: the token's id, or an OOV bucket.
#[inline(always)]
fn lookup(ids: &Vocabulary, oov: Modulus, value: FieldValue<'_>) -> Option<TransformOutput> {
    let found = match value {
        FieldValue::Text(token) => ids.get(token).copied(),
        // An integer is looked up as its decimal text, which is ASCII.
        _ => with_text(value, |text| {
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| ids.get(t).copied())
        })?,
    };
    let id = match (found, oov.get()) {
        (Some(id), _) => id,
        (None, 0) => return None,
        (None, 1) => 0,
        (None, _) => with_text(value, |text| oov.of(fingerprint64(text)))? as i64,
    };
    Some(TransformOutput::Id(id))
}

/// Keras's `Discretization`: the number of boundaries at or below x.
#[inline(always)]
fn bucketize(boundaries: &[f64], value: FieldValue<'_>) -> Option<TransformOutput> {
    let x = number(value)?;
    Some(TransformOutput::Id(
        boundaries.partition_point(|b| *b <= x) as i64
    ))
}

#[inline(always)]
fn standardize(mean: f64, std: f64, value: FieldValue<'_>) -> Option<TransformOutput> {
    Some(TransformOutput::Number((number(value)? - mean) / std))
}

#[inline(always)]
fn log1p(value: FieldValue<'_>) -> Option<TransformOutput> {
    let x = number(value)?;
    if x <= -1.0 {
        return None;
    }
    Some(TransformOutput::Number(x.ln_1p()))
}

#[inline(always)]
fn identity(value: FieldValue<'_>) -> Option<TransformOutput> {
    Some(TransformOutput::Number(number(value)?))
}

/// Runs `f` on the UTF-8 text of a string, or on the decimal text of an integer (what Keras
/// hashes for an integer input), formatted on the stack; `None` for a float.
#[inline(always)]
fn with_text<T>(value: FieldValue<'_>, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    match value {
        FieldValue::Text(text) => Some(f(text.as_bytes())),
        FieldValue::Int(v) => {
            let mut buf = [0u8; 20];
            let mut cursor = &mut buf[..];
            // 20 bytes hold any i64 in decimal ("-9223372036854775808").
            let _ = write!(cursor, "{v}");
            let len = 20 - cursor.len();
            Some(f(&buf[..len]))
        }
        FieldValue::Float(_) => None,
    }
}

/// A finite number from an integer or a float; `None` for text and non-finite values.
#[inline(always)]
fn number(value: FieldValue<'_>) -> Option<f64> {
    let x = match value {
        FieldValue::Int(v) => v as f64,
        FieldValue::Float(v) => v,
        FieldValue::Text(_) => return None,
    };
    x.is_finite().then_some(x)
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
