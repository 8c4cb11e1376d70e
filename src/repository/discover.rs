//! Reading the repository on disk: which model directories exist, which version
//! directories of a model hold a loadable `model.onnx`, and a fingerprint of each version's
//! files (sizes and modification times) to tell a finished copy from one in progress.
//! Loads nothing. Every path that looks like a model or a version and is skipped comes
//! back with the reason, for the caller to log at WARN (nothing is dropped silently).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{ConfigError, ModelConfig};

/// The files of a version directory: (relative path, size, modification time), sorted.
/// Two equal fingerprints taken a poll interval apart mean nobody wrote meanwhile.
pub type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

/// Why a directory of the repository could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    /// A directory that cannot be listed (the root, or one inside a version).
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// An entry of a listed directory that cannot be read.
    #[error("cannot list {}: {reason}", path.display())]
    Unlistable { path: PathBuf, reason: String },
    /// More entries under a version directory than a model's files could be.
    #[error("version directory has too many entries")]
    TooManyEntries,
}

impl DiscoverError {
    fn unreadable(path: &Path, e: std::io::Error) -> DiscoverError {
        DiscoverError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// A path that was skipped, with the reason (logged at WARN by the caller).
pub type Skipped = (PathBuf, String);

/// A model directory under the repository root.
pub struct ModelDir {
    pub name: String,
}

/// A version directory with a regular `model.onnx` in it.
#[derive(Clone)]
pub struct FoundVersion {
    pub model_file: PathBuf,
    pub fingerprint: Fingerprint,
}

/// What one model directory holds.
pub struct ModelScan {
    /// `config.toml` (defaults when absent), or why it cannot be used.
    pub config: Result<ModelConfig, ConfigError>,
    /// Loadable versions by number.
    pub versions: BTreeMap<u64, FoundVersion>,
    /// Paths skipped, each with the reason (to log at WARN).
    pub skipped: Vec<Skipped>,
    /// A problem that makes the whole model unusable (e.g. two directories for one version).
    pub error: Option<ScanError>,
}

/// What makes a whole model directory unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read model directory: {0}")]
    Unreadable(String),
    #[error("directories '{other}' and '{name}' are both version {version}; remove one")]
    DuplicateVersion {
        other: String,
        name: String,
        version: u64,
    },
    #[error("no loadable version (expected <version>/model.onnx)")]
    NoVersion,
}

/// The model directories under `root`. Hidden entries, plain files and directories that
/// hold only plain files other than `config.toml`/`model.onnx` (e.g. a `train/` folder of
/// scripts) are not models. Unreadable entries come back in `skipped`.
pub fn model_dirs(root: &Path) -> Result<(Vec<ModelDir>, Vec<Skipped>), DiscoverError> {
    let entries = std::fs::read_dir(root).map_err(|e| DiscoverError::unreadable(root, e))?;
    let mut dirs = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                skipped.push((root.to_path_buf(), format!("cannot list an entry: {e}")));
                continue;
            }
        };
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            skipped.push((path, "model directory name is not UTF-8".to_string()));
            continue;
        };
        if is_by_product(&name) {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => match looks_like_model(&path) {
                Ok(true) => dirs.push(ModelDir { name }),
                Ok(false) => tracing::debug!(path = %path.display(), "not a model directory"),
                Err(e) => skipped.push((path, format!("cannot be read: {e}"))),
            },
            Ok(_) => {}
            Err(e) => skipped.push((path, format!("cannot be read: {e}"))),
        }
    }
    dirs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((dirs, skipped))
}

/// A model directory has a `config.toml`, a `model.onnx` or at least one subdirectory that
/// is not a tool's by-product.
fn looks_like_model(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_by_product(name) {
            continue;
        }
        if name == "config.toml"
            || name == "model.onnx"
            || std::fs::metadata(&path).is_ok_and(|m| m.is_dir())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Hidden entries and Python's byte-code cache: running a training script beside the models
/// leaves `__pycache__/`, which must not turn its folder into a model that cannot load.
fn is_by_product(name: &str) -> bool {
    name.starts_with('.') || name == "__pycache__"
}

/// Reads one model directory: its config (or `config_override`) and its versions.
pub fn scan_model(dir: &Path, config_override: Option<&ModelConfig>) -> ModelScan {
    let config = match config_override {
        Some(c) => Ok(c.clone()),
        None => ModelConfig::load(&dir.join("config.toml")),
    };
    let mut scan = ModelScan {
        config,
        versions: BTreeMap::new(),
        skipped: Vec::new(),
        error: None,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            scan.error = Some(ScanError::Unreadable(e.to_string()));
            return scan;
        }
    };
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                scan.skipped
                    .push((dir.to_path_buf(), format!("cannot list an entry: {e}")));
                continue;
            }
        };
        let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_by_product(name) || (!is_dir && name != "model.onnx") {
            continue; // config.toml, README.md, samples, hidden work directories, byte-code caches
        }
        if !is_dir {
            let why = "model.onnx belongs in a version directory (<model>/<version>/model.onnx)";
            scan.skipped.push((path, why.to_string()));
            continue;
        }
        let version = match parse_version(name) {
            Ok(v) => v,
            Err(why) => {
                scan.skipped.push((path, why.to_string()));
                continue;
            }
        };
        if let Some(other) = names.insert(version, name.to_string()) {
            scan.error = Some(ScanError::DuplicateVersion {
                other,
                name: name.to_string(),
                version,
            });
            continue;
        }
        match version_file(&path) {
            Ok(model_file) => match fingerprint(&path) {
                Ok(fingerprint) => {
                    scan.versions.insert(
                        version,
                        FoundVersion {
                            model_file,
                            fingerprint,
                        },
                    );
                }
                Err(why) => scan.skipped.push((path, why.to_string())),
            },
            Err(why) => scan.skipped.push((path, why.to_string())),
        }
    }
    if scan.error.is_some() {
        scan.versions.clear();
    } else if scan.versions.is_empty() {
        scan.error = Some(ScanError::NoVersion);
    }
    scan
}

/// Why a directory under a model is no version of it; it is skipped with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotAVersion {
    #[error("'{0}' is not a version number (versions are directories named by digits)")]
    NotDigits(String),
    #[error("version number '{0}' is too large (at most {max})", max = u64::MAX)]
    TooLarge(String),
    #[error("model.onnx is a directory, not a file")]
    ModelIsDirectory,
    #[error("model.onnx is a symlink that cannot be followed: {0}")]
    BrokenLink(String),
    #[error("version directory has no model.onnx")]
    NoModel,
    #[error("model.onnx cannot be read: {0}")]
    Unreadable(String),
}

/// A version directory's name as its number: ASCII digits that fit in a u64.
fn parse_version(name: &str) -> Result<u64, NotAVersion> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotAVersion::NotDigits(name.to_string()));
    }
    name.parse::<u64>()
        .map_err(|_| NotAVersion::TooLarge(name.to_string()))
}

/// `<version>/model.onnx` when it is a regular file (or a link to one).
fn version_file(dir: &Path) -> Result<PathBuf, NotAVersion> {
    let file = dir.join("model.onnx");
    match std::fs::metadata(&file) {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(NotAVersion::ModelIsDirectory),
        Err(e) => match std::fs::symlink_metadata(&file) {
            Ok(_) => Err(NotAVersion::BrokenLink(e.to_string())),
            Err(_) if e.kind() == std::io::ErrorKind::NotFound => Err(NotAVersion::NoModel),
            Err(_) => Err(NotAVersion::Unreadable(e.to_string())),
        },
    }
}

/// Sizes and modification times of every file under `dir` (following links).
fn fingerprint(dir: &Path) -> Result<Fingerprint, DiscoverError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| DiscoverError::unreadable(&d, e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| DiscoverError::Unlistable {
                    path: d.clone(),
                    reason: e.to_string(),
                })?
                .path();
            let meta = std::fs::metadata(&path).map_err(|e| DiscoverError::unreadable(&path, e))?;
            if meta.is_dir() {
                if stack.len() + out.len() > 10_000 {
                    return Err(DiscoverError::TooManyEntries);
                }
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_folder_with_a_bytecode_cache_is_no_model() {
        let root = std::env::temp_dir().join(format!("discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("train/__pycache__")).unwrap();
        std::fs::write(root.join("train/common.py"), "").unwrap();
        std::fs::create_dir_all(root.join("digits/1")).unwrap();
        std::fs::create_dir_all(root.join("digits/__pycache__")).unwrap();
        let (dirs, skipped) = model_dirs(&root).unwrap();
        let names: Vec<&str> = dirs.iter().map(|d| d.name.as_str()).collect();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(names, ["digits"]);
        assert!(skipped.is_empty(), "{skipped:?}");
    }

    #[test]
    fn version_names_are_digits_that_fit() {
        assert_eq!(parse_version("7"), Ok(7));
        assert_eq!(parse_version("007"), Ok(7));
        assert!(parse_version("v1")
            .unwrap_err()
            .to_string()
            .contains("not a version"));
        assert!(parse_version("-1").is_err());
        assert!(parse_version("99999999999999999999999")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }
}
