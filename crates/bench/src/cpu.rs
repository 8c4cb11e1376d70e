//! Where the CPU went during a level, by thread role, read from Linux's per-thread
//! `/proc/self/task/*/schedstat` (nanoseconds on CPU). Roles come from thread names: ORT
//! workers are `ort-<model>-<n>`; ORT's own intra-op pool threads (intra_op_threads > 1)
//! inherit the name of the thread that built the session, a server runtime thread, so
//! they count as `server`. The
//! load generator's threads are `bench-client`, and the server's async runtime threads carry
//! tokio's default name (`tokio-rt-worker`, `tokio-runtime-worker` in older tokio).
//! Elsewhere than Linux every reading is empty.

use std::collections::BTreeMap;
use std::time::Duration;

/// Name prefix of the load generator's threads.
pub const CLIENT_THREAD: &str = "bench-client";

/// What a thread does, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// ORT worker threads (session runs, plus assemble/split).
    Ort,
    /// The server's tokio runtime (HTTP, decode, encode, batcher task).
    Server,
    /// The bench's load generator.
    Client,
    /// Anything else (main thread, ...).
    Other,
}

impl Role {
    fn of(comm: &str) -> Role {
        // /proc truncates names to 15 bytes.
        if comm.starts_with("ort-") {
            Role::Ort
        } else if comm.starts_with("tokio-r") {
            Role::Server
        } else if comm.starts_with(&CLIENT_THREAD[..CLIENT_THREAD.len().min(15)]) {
            Role::Client
        } else {
            Role::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Ort => "ort",
            Role::Server => "server",
            Role::Client => "client",
            Role::Other => "other",
        }
    }
}

/// CPU time per thread id, with the thread's role.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<u32, (Role, u64)>);

/// Reads every thread of this process.
pub fn snapshot() -> Snapshot {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Snapshot(out);
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            out.insert(tid, (Role::of(comm.trim_end()), ns));
        }
    }
    Snapshot(out)
}

/// Cores used per role between two snapshots over `wall` (1.0 = one core busy).
pub fn cores(before: &Snapshot, after: &Snapshot, wall: Duration) -> BTreeMap<Role, f64> {
    let mut used: BTreeMap<Role, u64> = BTreeMap::new();
    for (tid, &(role, ns)) in &after.0 {
        let start = before.0.get(tid).map_or(0, |&(_, b)| b);
        *used.entry(role).or_default() += ns.saturating_sub(start);
    }
    let wall = wall.as_secs_f64().max(1e-9);
    used.into_iter()
        .map(|(r, ns)| (r, ns as f64 / 1e9 / wall))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_truncated_names() {
        assert_eq!(Role::of("ort-finalmlp_ct"), Role::Ort);
        assert_eq!(Role::of("tokio-runtime-w"), Role::Server);
        assert_eq!(Role::of("tokio-rt-worker"), Role::Server);
        assert_eq!(Role::of("bench-client"), Role::Client);
        assert_eq!(Role::of("mlpserve"), Role::Other);
    }

    #[test]
    fn this_thread_is_seen_using_cpu() {
        if !cfg!(target_os = "linux") {
            return;
        }
        // Spin until the snapshots show 20 ms of CPU, giving up after 10 s of wall time. On a
        // loaded machine this thread may get a small share of a core, so the wait is bounded
        // by the CPU time seen, not by wall time. With `wall` = 1 s, `cores` is CPU seconds.
        let a = snapshot();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let used = loop {
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let c = cores(&a, &snapshot(), Duration::from_secs(1));
            let secs: f64 = c.values().sum();
            if secs >= 0.02 || t.elapsed() > Duration::from_secs(10) {
                break secs;
            }
        };
        assert!(
            used >= 0.02,
            "{used} CPU seconds seen after {:?} {x}",
            t.elapsed()
        );
    }
}
