//! How much memory the process may use: the container's limit when there is one (cgroup
//! v2 `memory.max`, cgroup v1 `memory.limit_in_bytes`), otherwise the host's memory. A
//! container limit below the host's memory is what the kernel's OOM killer enforces, so
//! defaults sized from the host's memory alone get the process killed in a container.
//!
//! Paths are read below a root directory (`/` in production), so the parsing is tested on
//! fixture trees (`tests/fixtures/cgroup/`).

use std::path::{Path, PathBuf};

/// The memory available to the process and where that figure came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// For the log: the file that set the limit, e.g. "cgroup v2 memory.max (/sys/fs/cgroup/memory.max)".
    pub source: String,
}

/// Used when not even `/proc/meminfo` can be read.
const ASSUMED: u64 = 4 << 30;

impl MemoryLimit {
    /// The limit of this process (reads below `/`).
    pub fn detect() -> MemoryLimit {
        MemoryLimit::detect_at(Path::new("/"))
    }

    /// The limit as the files below `root` say: the smallest cgroup limit on the
    /// process's cgroup path (v2, else v1), capped by the host's memory.
    pub fn detect_at(root: &Path) -> MemoryLimit {
        let host = host_memory(root);
        let cgroup = cgroup_v2_limit(root).or_else(|| cgroup_v1_limit(root));
        match (cgroup, host) {
            (Some((bytes, file)), Some(host)) if bytes < host => MemoryLimit {
                bytes,
                source: file,
            },
            (_, Some(host)) => MemoryLimit {
                bytes: host,
                source: "host memory (/proc/meminfo MemTotal)".to_string(),
            },
            (Some((bytes, file)), None) => MemoryLimit {
                bytes,
                source: file,
            },
            (None, None) => MemoryLimit {
                bytes: ASSUMED,
                source: "assumed 4 GiB (no cgroup limit, /proc/meminfo unreadable)".to_string(),
            },
        }
    }
}

fn host_memory(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The process's cgroup path for `controller` from `/proc/self/cgroup`: the v2 line is
/// `0::/path`, a v1 line `N:controller[,other]:/path`. `None` for v2 asks for the v2 line.
fn cgroup_path(root: &Path, controller: Option<&str>) -> Option<PathBuf> {
    let text = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        matches.then(|| PathBuf::from(path.trim_start_matches('/')))
    })
}

/// The directories from `base/path` up to `base`: a limit anywhere above binds too.
/// Inside a container's cgroup namespace the path is `/` and only `base` is read.
fn up_from(base: &Path, path: Option<PathBuf>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(path) = path {
        let mut dir = base.join(path);
        while dir.starts_with(base) && dir != base {
            dirs.push(dir.clone());
            if !dir.pop() {
                break;
            }
        }
    }
    dirs.push(base.to_path_buf());
    dirs
}

/// The smallest numeric value of `file` in `dirs` and which file it was; `unlimited`
/// tells values that mean "no limit".
fn smallest(
    dirs: &[PathBuf],
    file: &str,
    unlimited: impl Fn(&str) -> bool,
) -> Option<(u64, PathBuf)> {
    dirs.iter()
        .filter_map(|dir| {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).ok()?;
            let text = text.trim();
            if unlimited(text) {
                return None;
            }
            Some((text.parse::<u64>().ok()?, path))
        })
        .min_by_key(|(bytes, _)| *bytes)
}

fn shown(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    format!("/{}", relative.display())
}

/// cgroup v2: `memory.max` ("max" = no limit) of the process's cgroup and its parents.
fn cgroup_v2_limit(root: &Path) -> Option<(u64, String)> {
    let base = root.join("sys/fs/cgroup");
    if !base.join("cgroup.controllers").exists() {
        return None;
    }
    let dirs = up_from(&base, cgroup_path(root, None));
    let (bytes, path) = smallest(&dirs, "memory.max", |t| t == "max")?;
    Some((
        bytes,
        format!("cgroup v2 memory.max ({})", shown(root, &path)),
    ))
}

/// cgroup v1: `memory.limit_in_bytes` of the memory controller; "no limit" is a value
/// near `i64::MAX` (rounded to pages), which the host-memory cap then discards.
fn cgroup_v1_limit(root: &Path) -> Option<(u64, String)> {
    let base = root.join("sys/fs/cgroup/memory");
    let dirs = up_from(&base, cgroup_path(root, Some("memory")));
    let (bytes, path) = smallest(&dirs, "memory.limit_in_bytes", |_| false)?;
    Some((
        bytes,
        format!("cgroup v1 memory.limit_in_bytes ({})", shown(root, &path)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> MemoryLimit {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(name);
        MemoryLimit::detect_at(&root)
    }

    #[test]
    fn cgroup_v2_memory_max_in_a_container() {
        let limit = fixture("v2-container");
        assert_eq!(limit.bytes, 512 << 20);
        assert_eq!(
            limit.source,
            "cgroup v2 memory.max (/sys/fs/cgroup/memory.max)"
        );
    }

    #[test]
    fn cgroup_v2_max_means_host_memory() {
        let limit = fixture("v2-unlimited");
        assert_eq!(limit.bytes, 16_000_000 * 1024);
        assert!(limit.source.starts_with("host memory"), "{}", limit.source);
    }

    #[test]
    fn cgroup_v2_a_parent_limit_binds_the_child() {
        let limit = fixture("v2-nested");
        assert_eq!(limit.bytes, 1 << 30);
        assert_eq!(
            limit.source,
            "cgroup v2 memory.max (/sys/fs/cgroup/kubepods/memory.max)"
        );
    }

    #[test]
    fn cgroup_v1_memory_limit_in_bytes() {
        let limit = fixture("v1-limited");
        assert_eq!(limit.bytes, 768 << 20);
        assert_eq!(
            limit.source,
            "cgroup v1 memory.limit_in_bytes (/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes)"
        );
    }

    #[test]
    fn cgroup_v1_unlimited_is_host_memory() {
        let limit = fixture("v1-unlimited");
        assert_eq!(limit.bytes, 16_000_000 * 1024);
        assert!(limit.source.starts_with("host memory"), "{}", limit.source);
    }

    #[test]
    fn nothing_readable_assumes_four_gib() {
        let limit = fixture("empty");
        assert_eq!(limit.bytes, 4 << 30);
        assert!(limit.source.starts_with("assumed"), "{}", limit.source);
    }
}
