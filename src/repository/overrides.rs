//! A load request's overrides: `parameters.config` (a config in place of `config.toml`)
//! and `file:<version>/<path>` contents, written only inside that model's directory.
//! Paths are checked component by component before anything touches the disk: no `..`,
//! no absolute paths, no empty or hidden components, and the first one is a version number.

use std::path::{Component, Path, PathBuf};

use super::ControlError;
use crate::config::ModelConfig;

/// What a load request may carry besides the model name.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    /// Replaces `config.toml` for this load (kept until a load without one).
    pub config: Option<ModelConfig>,
    /// Keys of the config override that were ignored (reported when the load runs).
    pub ignored_keys: Vec<String>,
    /// (`<version>/<path>` relative to the model directory, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Reload even when nothing changed.
    pub force: bool,
}

/// `name` as a path inside a model directory, or why it is refused.
pub fn checked_path(name: &str) -> Result<PathBuf, ControlError> {
    let path = Path::new(name);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(s) if !s.starts_with('.') => parts.push(s),
                _ => return Err(ControlError::BadRequest(format!("file override '{name}': hidden or non-UTF-8 path component"))),
            },
            _ => {
                return Err(ControlError::BadRequest(format!(
                    "file override '{name}': only relative paths inside the model directory are allowed"
                )))
            }
        }
    }
    let first = parts.first().copied().unwrap_or_default();
    if parts.len() < 2
        || !first.bytes().all(|b| b.is_ascii_digit())
        || first.parse::<u64>().is_err()
    {
        return Err(ControlError::BadRequest(format!(
            "file override '{name}': expected <version>/<file>, e.g. 2/model.onnx"
        )));
    }
    Ok(parts.iter().collect())
}

/// Writes `files` under `model_dir` (each through a temporary file and a rename, so a
/// poller never sees half a file). A file whose contents are already there is left alone,
/// so a repeated identical load changes nothing on disk.
/// A path refused or a link in the way is the request's fault; a write that fails is the
/// server's.
pub fn write_files(model_dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), ControlError> {
    let checked = files
        .iter()
        .map(|(name, bytes)| Ok((checked_path(name)?, bytes)))
        .collect::<Result<Vec<_>, ControlError>>()?;
    for (rel, _) in &checked {
        refuse_links(model_dir, rel)?;
    }
    let failed = |what: &Path, e: std::io::Error| {
        ControlError::Internal(format!("cannot write {}: {e}", what.display()))
    };
    for (rel, bytes) in checked {
        let target = model_dir.join(&rel);
        if std::fs::read(&target).is_ok_and(|old| &old == bytes) {
            continue;
        }
        let parent = target.parent().unwrap_or(model_dir);
        std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
        let tmp = parent.join(format!(
            ".{}.part",
            rel.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        std::fs::write(&tmp, bytes).map_err(|e| failed(&tmp, e))?;
        std::fs::rename(&tmp, &target).map_err(|e| failed(&target, e))?;
    }
    Ok(())
}

/// Refuses `rel` when any part of it that exists below `model_dir` (the version folder,
/// a subfolder, the file) is a symbolic link: a write would land wherever the link points,
/// possibly outside the repository. The model directory itself may be a link (volume
/// mounts make them); what the request names inside it may not.
fn refuse_links(model_dir: &Path, rel: &Path) -> Result<(), ControlError> {
    let mut path = model_dir.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ControlError::BadRequest(format!(
                    "file override '{}': {} is a symbolic link; overrides are never written through links",
                    rel.display(),
                    path.display()
                )))
            }
            Ok(_) => {}
            // Nothing below a missing part exists either.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_a_version_are_accepted() {
        assert_eq!(
            checked_path("2/model.onnx").unwrap(),
            PathBuf::from("2/model.onnx")
        );
        assert_eq!(
            checked_path("2/sub/w.bin").unwrap(),
            PathBuf::from("2/sub/w.bin")
        );
        for bad in [
            "../x/1/model.onnx",
            "2/../../etc/passwd",
            "/etc/passwd",
            "model.onnx",
            "v2/model.onnx",
            "2/.hidden",
            "2",
            "",
            "99999999999999999999999/model.onnx",
        ] {
            assert!(checked_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn writes_stay_inside_and_identical_writes_are_skipped() {
        let dir = std::env::temp_dir().join(format!("mlpserve-ovr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = vec![("3/model.onnx".to_string(), b"abc".to_vec())];
        write_files(&dir, &files).unwrap();
        let mtime = std::fs::metadata(dir.join("3/model.onnx"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_files(&dir, &files).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("3/model.onnx"))
                .unwrap()
                .modified()
                .unwrap(),
            mtime
        );
        assert!(matches!(
            write_files(&dir, &[("../3/model.onnx".to_string(), vec![])]),
            Err(ControlError::BadRequest(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_is_written_through_a_symbolic_link() {
        let base = std::env::temp_dir().join(format!("mlpserve-ovr-link-{}", std::process::id()));
        let (model, outside) = (base.join("model"), base.join("outside"));
        std::fs::create_dir_all(model.join("5")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, model.join("4")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), model.join("5/model.onnx")).unwrap();
        for name in ["4/model.onnx", "4/sub/model.onnx", "5/model.onnx"] {
            let err = write_files(&model, &[(name.to_string(), b"x".to_vec())]).unwrap_err();
            assert!(
                matches!(&err, ControlError::BadRequest(m) if m.contains("symbolic link")),
                "{name}: {err:?}"
            );
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
