//! The model repository as a live map: model name → its versions, each an `Arc<Model>`.
//! A request clones the `Arc` of the version that admitted it and keeps it until answered,
//! so a version swapped out or unloaded drains on its own: its batcher and worker threads
//! stop when the last request holding it is answered. The map is read under short
//! `RwLock` sections (clone an `Arc`, never await inside); every change of one model's
//! versions happens in `lifecycle` under that model's operation lock.
//!
//! Owns: lookup by name and version/label (`routing`), the index (state and reason of
//! every version), readiness. Discovery is in `discover`, loading in `load`, load/unload/
//! poll in `lifecycle` (failing with a [`ControlError`] by cause), load overrides in `overrides`, the pre-deployment check in `check`.

mod check;
mod discover;
mod error;
mod lifecycle;
mod load;
mod model;
mod overrides;
mod routing;

pub use check::{check, CheckReport, CheckedVersion, Problem};
pub use discover::{scan_model, DiscoverError, ModelScan, ScanError};
pub use error::{ControlError, StartupError};
pub use load::{prepare, LoadOptions, Loader, VersionToLoad};
pub use model::{InferRequest, Model};
pub use overrides::{checked_path, LoadRequest};

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::config::{ControlMode, ModelConfig};
use crate::error::{Error, Result};
use discover::Fingerprint;
use routing::{Routing, Unresolved};

/// A version's state as the index reports it (Triton's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Loading,
    Ready,
    Unloading,
    Unavailable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Loading => "LOADING",
            State::Ready => "READY",
            State::Unloading => "UNLOADING",
            State::Unavailable => "UNAVAILABLE",
        }
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct IndexEntry {
    pub name: String,
    /// Empty when the model has no version to report (never loaded, unloaded, unusable).
    pub version: String,
    #[schema(value_type = String, pattern = "^(READY|UNAVAILABLE|LOADING|UNLOADING)$")]
    pub state: &'static str,
    pub reason: String,
}

/// How the repository behaves; from the server configuration.
#[derive(Debug, Clone)]
pub struct RepositoryOptions {
    pub root: PathBuf,
    pub mode: ControlMode,
    /// Readiness needs every wanted model to serve (see [`Repository::is_ready`]).
    pub strict_readiness: bool,
}

/// The live model map.
pub struct Repository {
    options: RepositoryOptions,
    loader: Loader,
    models: RwLock<BTreeMap<String, Arc<Slot>>>,
    closing: AtomicBool,
}

/// One model: its operation lock and what it serves now.
struct Slot {
    name: String,
    /// Serializes loads, unloads and polls of this model; held across awaits.
    op: tokio::sync::Mutex<OpState>,
    live: RwLock<Live>,
}

/// What only operations on the model read and write (under `Slot::op`).
#[derive(Default)]
struct OpState {
    /// The `parameters.config` of the last explicit load, used instead of `config.toml`.
    config_override: Option<ModelConfig>,
    /// Poll mode: fingerprints seen at the previous poll of versions waiting to load.
    seen: BTreeMap<u64, Fingerprint>,
    /// Warnings already logged, so a poll does not repeat them every interval.
    warned: HashSet<String>,
}

/// What requests and the index read (short read sections only).
#[derive(Default)]
struct Live {
    /// Should serve: loaded at start (none/poll) or by the API (explicit), not unloaded.
    wanted: bool,
    /// Why the model as a whole cannot be (re)loaded now, if it cannot.
    error: Option<String>,
    versions: BTreeMap<u64, Version>,
    /// Versions with a model, ascending (what routing picks from).
    served: Vec<u64>,
    routing: Routing,
    /// Retired versions still answering their last requests.
    draining: Vec<(u64, Weak<Model>)>,
}

/// One version's entry.
struct Version {
    state: State,
    reason: String,
    model: Option<Arc<Model>>,
    /// The files and the serving config the entry was loaded (or failed) from.
    fingerprint: Fingerprint,
    config: ModelConfig,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding the lock leaves the map in a consistent state (every write
    // section is a plain assignment), so a poisoned lock is still usable.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Repository {
    /// An empty repository; [`Repository::start`] (in `lifecycle`) fills it.
    pub fn new(options: RepositoryOptions, loader: Loader) -> Repository {
        Repository {
            options,
            loader,
            models: RwLock::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
        }
    }

    /// The control mode this repository runs in.
    pub fn mode(&self) -> ControlMode {
        self.options.mode
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        read(&self.models).get(name).cloned()
    }

    /// The version `version` names (a number or a label), or — when it names none — the
    /// traffic split's pick, else the highest served version.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>> {
        let slot = self
            .slot(name)
            .ok_or_else(|| Error::ModelNotFound(name.to_string()))?;
        let live = read(&slot.live);
        match live.routing.resolve(version, &live.served, routing::draw()) {
            Ok(v) => live
                .versions
                .get(&v)
                .and_then(|e| e.model.clone())
                .ok_or_else(|| Error::Internal(format!("model '{name}' version {v} vanished"))),
            Err(Unresolved::Unknown) => Err(Error::VersionNotFound {
                model: name.to_string(),
                version: version.unwrap_or_default().to_string(),
                available: served_names(&live).join(", "),
            }),
            Err(Unresolved::NoneServed) => Err(Error::Unavailable(format!(
                "model '{name}' is not ready: {}",
                live.error.as_deref().unwrap_or("no version is loaded")
            ))),
        }
    }

    /// Every served version of `name`, ascending; `ModelNotFound` when there is no model.
    pub fn all_versions(&self, name: &str) -> Result<Vec<Arc<Model>>> {
        let slot = self
            .slot(name)
            .ok_or_else(|| Error::ModelNotFound(name.to_string()))?;
        let live = read(&slot.live);
        Ok(live
            .versions
            .values()
            .filter_map(|v| v.model.clone())
            .collect())
    }

    /// Served version names of `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.slot(name)
            .map(|s| served_names(&read(&s.live)))
            .unwrap_or_default()
    }

    /// Every served model version, by name then version.
    pub fn all(&self) -> Vec<Arc<Model>> {
        let slots: Vec<Arc<Slot>> = read(&self.models).values().cloned().collect();
        slots
            .iter()
            .flat_map(|s| {
                let live = read(&s.live);
                live.versions
                    .values()
                    .filter_map(|v| v.model.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The readiness rule. Strict (the default, Triton's `--strict-readiness`): not
    /// shutting down and every model that should be loaded serves at least one version
    /// whose workers are sound.
    /// Not strict: not shutting down (start-up loading has finished before the server
    /// listens, so a responsive server is ready even with unavailable models).
    pub fn is_ready(&self) -> bool {
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        !self.options.strict_readiness
            || read(&self.models).values().all(|s| {
                let live = read(&s.live);
                !live.wanted
                    || live.served.iter().any(|v| {
                        live.versions
                            .get(v)
                            .and_then(|e| e.model.as_ref())
                            .is_some_and(|m| m.health().failure().is_none())
                    })
            })
    }

    /// Whether the server is shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Marks the server as shutting down: readiness turns false, new requests get 503.
    pub fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
        for m in self.all() {
            m.metrics.ready.set(0);
        }
    }

    /// Like [`Repository::get`], but refuses with 503 while shutting down.
    pub fn get_for_inference(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>> {
        let model = self.get(name, version)?;
        if self.is_closing() {
            return Err(Error::Unavailable("server is shutting down".to_string()));
        }
        Ok(model)
    }

    /// Triton's repository index: every model and version the server knows, with its
    /// state and reason; in explicit mode also model directories never loaded. `ready_only`
    /// keeps only READY versions.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let closing = self.is_closing();
        let slots: Vec<Arc<Slot>> = read(&self.models).values().cloned().collect();
        let mut out = Vec::new();
        let entry = |name: &str, version: String, state: State, reason: &str| IndexEntry {
            name: name.to_string(),
            version,
            state: state.name(),
            reason: reason.to_string(),
        };
        for slot in &slots {
            let live = read(&slot.live);
            let before = out.len();
            for (v, e) in &live.versions {
                let health = e.model.as_ref().map(|m| m.health());
                let (state, reason) = match (closing, e.state) {
                    (true, State::Ready) => (State::Unavailable, "server is shutting down".into()),
                    (false, State::Ready) => match health.and_then(|h| h.failure()) {
                        Some(failure) => (State::Unavailable, failure),
                        None => match health.and_then(|h| h.recovered_from()) {
                            Some(r) if e.reason.is_empty() => {
                                (State::Ready, format!("recovered from: {r}"))
                            }
                            _ => match &live.error {
                                Some(err) if e.reason.is_empty() => {
                                    (State::Ready, format!("keeps serving: {err}"))
                                }
                                _ => (State::Ready, e.reason.clone()),
                            },
                        },
                    },
                    (_, s) => (s, e.reason.clone()),
                };
                out.push(entry(&slot.name, v.to_string(), state, &reason));
            }
            for (v, weak) in &live.draining {
                if weak.strong_count() > 0 && !live.versions.contains_key(v) {
                    let why = "unloaded; answering its last requests";
                    out.push(entry(&slot.name, v.to_string(), State::Unloading, why));
                }
            }
            if out.len() == before {
                let why = match (&live.error, live.wanted) {
                    (Some(e), _) => e.as_str(),
                    (None, false) => "unloaded",
                    (None, true) => "no version is loaded",
                };
                out.push(entry(&slot.name, String::new(), State::Unavailable, why));
            }
        }
        if self.options.mode == ControlMode::Explicit {
            if let Ok((dirs, _)) = discover::model_dirs(&self.options.root) {
                for d in dirs
                    .iter()
                    .filter(|d| !slots.iter().any(|s| s.name == d.name))
                {
                    out.push(entry(
                        &d.name,
                        String::new(),
                        State::Unavailable,
                        "not loaded",
                    ));
                }
            }
        }
        if ready_only {
            out.retain(|e| e.state == "READY");
        }
        out.sort_by(|a, b| {
            (&a.name, a.version.len(), &a.version).cmp(&(&b.name, b.version.len(), &b.version))
        });
        out
    }
}

fn served_names(live: &Live) -> Vec<String> {
    live.served.iter().map(u64::to_string).collect()
}
