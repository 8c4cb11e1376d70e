//! The model repository: discovery of `<repo>/<model>/<version>/model.onnx` (Triton's
//! layout, optional `<repo>/<model>/config.toml`), loading every version into sessions and
//! batchers, and lookup by name and version (the highest version serves by default).

mod model;

pub use model::{InferRequest, Model};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batcher::{self, Batcher};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::runtime::{self, Runtime, SessionOptions};

/// Server-wide defaults for building sessions.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub session: SessionOptions,
}

/// All loaded models, by name then version number.
pub struct Repository {
    models: BTreeMap<String, BTreeMap<u64, Arc<Model>>>,
    closing: AtomicBool,
}

/// A model version found on disk.
struct Found {
    name: String,
    version: u64,
    path: PathBuf,
    config: ModelConfig,
}

fn discover(root: &Path) -> std::result::Result<Vec<Found>, String> {
    let read =
        |p: &Path| std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut found = Vec::new();
    for model_dir in read(root)? {
        let model_dir = model_dir.map_err(|e| e.to_string())?.path();
        let Some(name) = model_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !model_dir.is_dir() || name.starts_with('.') {
            continue;
        }
        let config = ModelConfig::load(&model_dir.join("config.toml"))?;
        for version_dir in read(&model_dir)? {
            let version_dir = version_dir.map_err(|e| e.to_string())?.path();
            let version = version_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|v| v.parse::<u64>().ok());
            let path = version_dir.join("model.onnx");
            if let (Some(version), true) = (version, path.is_file()) {
                found.push(Found {
                    name: name.clone(),
                    version,
                    path,
                    config: config.clone(),
                });
            }
        }
    }
    found.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    Ok(found)
}

impl Repository {
    /// Loads every model version under `root`. Must run inside a tokio runtime (batchers
    /// spawn their driver tasks). Any model that fails to load fails start-up, naming it.
    pub fn load(
        root: &Path,
        runtime: &Runtime,
        options: &LoadOptions,
        metrics: &Metrics,
    ) -> std::result::Result<Repository, String> {
        let mut models: BTreeMap<String, BTreeMap<u64, Arc<Model>>> = BTreeMap::new();
        for f in discover(root)? {
            let model = load_version(&f, runtime, options, metrics).map_err(|e| {
                format!(
                    "model '{}' version {} ({}): {e}",
                    f.name,
                    f.version,
                    f.path.display()
                )
            })?;
            tracing::info!(
                model = %f.name, version = f.version,
                inputs = ?model.spec.inputs.iter().map(|i| format!("{}: {}", i.name, i.describe())).collect::<Vec<_>>(),
                batched = model.spec.batched, max_batch_size = model.spec.max_batch_size(),
                instances = model.spec.config.instances,
                placements = ?model.spec.placements.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "model loaded"
            );
            models
                .entry(f.name.clone())
                .or_default()
                .insert(f.version, Arc::new(model));
        }
        if models.is_empty() {
            return Err(format!(
                "no models found under {} (expected <model>/<version>/model.onnx)",
                root.display()
            ));
        }
        Ok(Repository {
            models,
            closing: AtomicBool::new(false),
        })
    }

    /// The requested version, or the highest one when `version` is `None` or empty.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>> {
        let versions = self
            .models
            .get(name)
            .ok_or_else(|| Error::ModelNotFound(name.to_string()))?;
        let model = match version.filter(|v| !v.is_empty()) {
            None => versions.values().next_back(),
            Some(v) => v.parse::<u64>().ok().and_then(|n| versions.get(&n)),
        };
        model.cloned().ok_or_else(|| Error::VersionNotFound {
            model: name.to_string(),
            version: version.unwrap_or_default().to_string(),
            available: self.versions(name).join(", "),
        })
    }

    /// Every loaded version of `name`, ascending; `ModelNotFound` when there is none.
    pub fn all_versions(&self, name: &str) -> Result<Vec<Arc<Model>>> {
        let versions = self
            .models
            .get(name)
            .ok_or_else(|| Error::ModelNotFound(name.to_string()))?;
        Ok(versions.values().cloned().collect())
    }

    /// Version names of `name`, ascending.
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.models
            .get(name)
            .map(|v| v.keys().map(u64::to_string).collect())
            .unwrap_or_default()
    }

    /// Every loaded model version, by name then version.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.values().flat_map(|v| v.values())
    }

    /// Ready = loaded and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.closing.load(Ordering::Acquire)
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
        if !self.is_ready() {
            return Err(Error::Unavailable("server is shutting down".to_string()));
        }
        Ok(model)
    }
}

fn load_version(
    f: &Found,
    runtime: &Runtime,
    options: &LoadOptions,
    metrics: &Metrics,
) -> std::result::Result<Model, String> {
    let c = &f.config;
    let mut sessions = Vec::with_capacity(c.instances);
    let mut placements = Vec::with_capacity(c.instances);
    for index in 0..c.instances {
        let session_options = SessionOptions {
            intra_op_threads: c
                .intra_op_threads
                .unwrap_or(options.session.intra_op_threads),
            execution_provider: c
                .execution_provider
                .unwrap_or(options.session.execution_provider),
            fallback: c.fallback.unwrap_or(options.session.fallback),
            device_id: c.device_id(index),
        };
        let (session, placement) =
            runtime::build_session(runtime.env(), &f.path, &session_options)?;
        if placement.provider != session_options.execution_provider {
            tracing::warn!(
                model = %f.name, version = f.version, instance = index,
                asked = ?session_options.execution_provider, runs_on = %placement,
                "model instance runs on the CPU instead of the execution provider asked for"
            );
        }
        sessions.push(session);
        placements.push(placement);
    }
    let mut spec = runtime::read_spec(&sessions[0], &f.name, &f.version.to_string(), c.clone())?;
    spec.placements = placements;
    let spec = Arc::new(spec);
    for session in &mut sessions {
        runtime::warm_up(session, &spec);
    }
    let model_metrics = metrics.model(&spec.name, &spec.version);
    for placement in &spec.placements {
        metrics.instance_placed(&spec.name, &spec.version, &placement.to_string());
    }
    let (free_tx, free_rx) = mpsc::unbounded_channel();
    let workers = batcher::spawn_workers(sessions, spec.clone(), model_metrics.clone(), free_tx)
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    let batcher = Batcher::start(spec.clone(), workers, free_rx, model_metrics.clone());
    Ok(Model::new(spec, batcher, model_metrics))
}
