//! How versions come and go: start-up loading, explicit load/unload, and the poll loop.
//! Every operation on one model holds its operation lock, so they are serialized; each
//! reconciles the model with what is on disk (`sync`): load new or changed versions in the
//! background while the current ones serve, then swap the map entry in one short write
//! section, then retire what the version policy no longer selects. A failed load leaves
//! what serves untouched and records the reason for the index. Every transition is logged
//! and reflected in the state gauge. Start-up and each poll reconcile several models at
//! once (one per core): the load itself keeps its measurements apart from other loads'
//! work (see `load::prepare`).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::StreamExt;

use super::discover::{self, ModelScan};
use super::load::VersionToLoad;
use super::overrides::{self, LoadRequest};
use super::routing::Routing;
use super::{
    read, write, ControlError, Live, OpState, Repository, Slot, StartupError, State, Version,
};
use crate::config::ControlMode;

/// How one reconciliation treats what it finds.
#[derive(Clone, Copy)]
struct Sync {
    /// Poll mode: load a version only once its fingerprint is the same at two polls.
    require_stable: bool,
    /// Reload selected versions even when nothing changed.
    force: bool,
}

impl Repository {
    /// Start-up: none/poll load every model directory, explicit loads `load_models` (`*` =
    /// all). Failures are isolated (the index shows them) unless `exit_on_error`. An
    /// unreadable root, or (mode none) a root without models, fails start-up.
    pub async fn start(
        &self,
        load_models: &[String],
        exit_on_error: bool,
    ) -> Result<(), StartupError> {
        let root = &self.options.root;
        let (dirs, skipped) = discover::model_dirs(root)?;
        for (path, why) in &skipped {
            tracing::warn!(path = %path.display(), reason = %why, "skipped repository entry");
        }
        let names: Vec<String> = match self.options.mode {
            ControlMode::Explicit if load_models.iter().any(|m| m == "*") => {
                dirs.into_iter().map(|d| d.name).collect()
            }
            ControlMode::Explicit => load_models.to_vec(),
            _ if dirs.is_empty() && self.options.mode == ControlMode::None => {
                return Err(StartupError::NoModels(root.clone()))
            }
            _ => dirs.into_iter().map(|d| d.name).collect(),
        };
        // `buffered` keeps the names' order for the failures it reports.
        let failures: Vec<(String, ControlError)> = futures_util::stream::iter(names)
            .map(|name| async move {
                let request = LoadRequest::default();
                self.load_model(&name, request)
                    .await
                    .err()
                    .map(|e| (name, e))
            })
            .buffered(self.loads_at_once())
            .filter_map(std::future::ready)
            .collect()
            .await;
        if exit_on_error && !failures.is_empty() {
            return Err(StartupError::ModelsFailed(failures));
        }
        Ok(())
    }

    /// Loads (or reloads what changed of) `name`: writes the request's files, then
    /// reconciles. Answers when done; the error lists the versions that failed.
    pub async fn load_model(&self, name: &str, request: LoadRequest) -> Result<(), ControlError> {
        check_name(name)?;
        let slot = self.slot_or_new(name);
        let mut op = slot.op.lock().await;
        if !request.files.is_empty() {
            let dir = self.options.root.join(name);
            let files = request.files.clone();
            tokio::task::spawn_blocking(move || overrides::write_files(&dir, &files))
                .await
                .map_err(|e| ControlError::Internal(format!("writing files panicked: {e}")))??;
        }
        op.config_override = request.config.clone();
        write(&slot.live).wanted = true;
        let sync = Sync {
            require_stable: false,
            force: request.force,
        };
        let result = self.sync(&slot, &mut op, sync).await;
        if result.is_err() {
            self.forget_if_absent(&slot);
        }
        result
    }

    /// Drops the entry of a model that has no directory and never had a version (a load
    /// of a name that is not there), so such loads leave nothing behind in the index.
    /// Kept while anyone else holds the slot (a concurrent load of the same name).
    fn forget_if_absent(&self, slot: &Arc<Slot>) {
        if !read(&slot.live).versions.is_empty() || self.options.root.join(&slot.name).is_dir() {
            return;
        }
        let mut models = write(&self.models);
        let only_ours = models
            .get(&slot.name)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && Arc::strong_count(slot) == 2);
        if only_ours {
            models.remove(&slot.name);
        }
    }

    /// Unloads every version of `name`: new requests get 404/503 at once, admitted ones
    /// finish on the version that admitted them.
    pub async fn unload_model(&self, name: &str) -> Result<(), ControlError> {
        let slot = self.slot(name).ok_or_else(|| {
            ControlError::NotFound(format!("model '{name}' is not in the repository"))
        })?;
        let _op = slot.op.lock().await;
        let mut live = write(&slot.live);
        live.wanted = false;
        live.error = None;
        let versions: Vec<u64> = live.versions.keys().copied().collect();
        for v in versions {
            self.retire(&slot.name, &mut live, v);
        }
        refresh_served(&mut live);
        live.routing = Routing::default();
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Poll mode: rescans the repository every `interval` until shutdown, and at once
    /// when `now` is notified (SIGHUP). A failure of one model (or of one scan) is logged
    /// and the next poll runs as usual.
    pub async fn poll_forever(
        self: Arc<Self>,
        interval: std::time::Duration,
        now: Arc<tokio::sync::Notify>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = now.notified() => tracing::info!("rescanning the repository now (SIGHUP)"),
            }
            if self.is_closing() {
                return;
            }
            self.poll_once().await;
        }
    }

    /// One rescan: every model directory is reconciled (requiring stable files), models
    /// whose directory disappeared are unloaded.
    pub async fn poll_once(&self) {
        let root = self.options.root.clone();
        let dirs = match tokio::task::spawn_blocking(move || discover::model_dirs(&root)).await {
            Ok(Ok((dirs, _))) => dirs,
            Ok(Err(e)) => return tracing::warn!(error = %e, "repository poll failed"),
            Err(e) => return tracing::warn!(error = %e, "repository poll panicked"),
        };
        futures_util::stream::iter(&dirs)
            .for_each_concurrent(self.loads_at_once(), |d| async move {
                let slot = self.slot_or_new(&d.name);
                let mut op = slot.op.lock().await;
                write(&slot.live).wanted = true;
                let sync = Sync {
                    require_stable: true,
                    force: false,
                };
                if let Err(e) = self.sync(&slot, &mut op, sync).await {
                    tracing::debug!(model = %d.name, error = %e, "poll: model not fully loaded");
                }
            })
            .await;
        let missing: Vec<String> = read(&self.models)
            .keys()
            .filter(|n| !dirs.iter().any(|d| &d.name == *n))
            .cloned()
            .collect();
        for name in missing {
            if self.options.root.join(&name).is_dir() {
                // The directory is still there but holds no version (the last one was
                // deleted, or a sync is half-way): keep serving what serves and record
                // why; only removing the model directory unloads the model.
                let slot = self.slot_or_new(&name);
                let mut op = slot.op.lock().await;
                let sync = Sync {
                    require_stable: true,
                    force: false,
                };
                if let Err(e) = self.sync(&slot, &mut op, sync).await {
                    tracing::debug!(model = %name, error = %e, "poll: model directory without a loadable version");
                }
                continue;
            }
            let _ = self.unload_model(&name).await;
            write(&self.models).remove(&name);
        }
    }

    /// How many models start-up and a poll reconcile at once: one load per core (a load
    /// runs ONNX Runtime on `intra_op_threads` threads), so concurrent loads do not queue
    /// for the cores (or, through them, for the load's own timed section).
    fn loads_at_once(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cores / self.loader.options.session.intra_op_threads.max(1)).max(1)
    }

    fn slot_or_new(&self, name: &str) -> Arc<Slot> {
        if let Some(s) = self.slot(name) {
            return s;
        }
        write(&self.models)
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    name: name.to_string(),
                    op: tokio::sync::Mutex::new(OpState::default()),
                    live: std::sync::RwLock::new(Live::default()),
                })
            })
            .clone()
    }

    /// Reconciles one model with its directory. Caller holds the model's operation lock.
    async fn sync(&self, slot: &Slot, op: &mut OpState, sync: Sync) -> Result<(), ControlError> {
        let name = slot.name.clone();
        let dir = self.options.root.join(&name);
        let config_override = op.config_override.clone();
        let (scan, present): (ModelScan, bool) = tokio::task::spawn_blocking(move || {
            (
                discover::scan_model(&dir, config_override.as_ref()),
                dir.is_dir(),
            )
        })
        .await
        .map_err(|e| ControlError::Internal(format!("scanning panicked: {e}")))?;
        for (path, why) in &scan.skipped {
            if op.warned.insert(format!("{}: {why}", path.display())) {
                tracing::warn!(model = %name, path = %path.display(), reason = %why, "skipped version");
            }
        }
        let config = match (
            scan.error.map(|e| e.to_string()),
            scan.config.map_err(|e| e.to_string()),
        ) {
            (None, Ok(c)) => c,
            (Some(e), _) | (None, Err(e)) => {
                if op.warned.insert(e.clone()) {
                    tracing::warn!(model = %name, reason = %e, "model cannot be loaded");
                }
                write(&slot.live).error = Some(e.clone());
                return Err(match present {
                    true => ControlError::Unservable(e),
                    false => ControlError::NotFound(e),
                });
            }
        };
        write(&slot.live).error = None;
        let on_disk: Vec<u64> = scan.versions.keys().copied().collect();
        let selected = config.version_policy.select(&on_disk);
        let serving_config = config.serving_part();
        let mut failures = Vec::new();
        for &v in &selected {
            let found = &scan.versions[&v];
            // A version that failed to load is tried again by a load request (which must
            // not answer success for a version that does not serve), not by every poll.
            let unchanged = read(&slot.live).versions.get(&v).is_some_and(|e| {
                e.fingerprint == found.fingerprint
                    && e.config == serving_config
                    && (e.model.is_some() || sync.require_stable)
            });
            if unchanged && !sync.force {
                op.seen.remove(&v);
                continue;
            }
            if sync.require_stable && op.seen.get(&v) != Some(&found.fingerprint) {
                op.seen.insert(v, found.fingerprint.clone());
                tracing::debug!(model = %name, version = v, "version changed; loading once it is unchanged for a poll interval");
                continue;
            }
            op.seen.remove(&v);
            let entry = |state, reason, model| Version {
                state,
                reason,
                model,
                fingerprint: found.fingerprint.clone(),
                config: serving_config.clone(),
            };
            let serving = read(&slot.live)
                .versions
                .get(&v)
                .is_some_and(|e| e.model.is_some());
            if !serving {
                self.set_version(slot, v, entry(State::Loading, String::new(), None));
            }
            tracing::info!(model = %name, version = v, reload = serving, "loading version");
            let loaded = self
                .loader
                .load(VersionToLoad {
                    name: name.clone(),
                    version: v,
                    model_file: found.model_file.clone(),
                    config: config.clone(),
                })
                .await;
            match loaded {
                Ok(model) => {
                    self.set_version(slot, v, entry(State::Ready, String::new(), Some(model)));
                }
                Err(e) => {
                    tracing::warn!(model = %name, version = v, error = %e, "version failed to load");

                    let old = read(&slot.live)
                        .versions
                        .get(&v)
                        .and_then(|e| e.model.clone());
                    let (state, reason) = match old {
                        Some(_) => (
                            State::Ready,
                            format!("reload failed, previous files still serve: {e}"),
                        ),
                        None => (State::Unavailable, e.to_string()),
                    };
                    self.set_version(slot, v, entry(state, reason, old));
                    failures.push(e.map_message(|m| format!("version {v}: {m}")));
                }
            }
        }
        self.retire_unselected(slot, &selected, &on_disk);
        let mut live = write(&slot.live);
        let (routing, warnings) = Routing::new(&config, &live.served);
        for w in warnings {
            if op.warned.insert(w.clone()) {
                tracing::warn!(model = %name, "{w}");
            }
        }
        live.routing = routing;
        live.draining.retain(|(_, w)| w.strong_count() > 0);
        ControlError::joined(failures).map_or(Ok(()), Err)
    }

    /// Retires versions the policy no longer selects (or that left the disk), but only
    /// once a selected version serves: until then the old ones keep serving.
    fn retire_unselected(&self, slot: &Slot, selected: &[u64], on_disk: &[u64]) {
        let mut live = write(&slot.live);
        let selected_serving = selected
            .iter()
            .any(|v| live.versions.get(v).is_some_and(|e| e.model.is_some()));
        let others: Vec<u64> = live
            .versions
            .keys()
            .copied()
            .filter(|v| !selected.contains(v))
            .collect();
        for v in others {
            let serving = live.versions[&v].model.is_some();
            if serving && !selected_serving && on_disk.contains(&v) {
                continue;
            }
            self.retire(&slot.name, &mut live, v);
        }
        refresh_served(&mut live);
    }

    /// Takes `v` out of the map; a served version drains (UNLOADING) until its last request.
    fn retire(&self, name: &str, live: &mut Live, v: u64) {
        let Some(entry) = live.versions.remove(&v) else {
            return;
        };
        let lifecycle = self.loader.metrics.lifecycle().clone();
        let version = v.to_string();
        match entry.model {
            Some(model) => {
                model.metrics.ready.set(0);
                lifecycle.set_state(name, &version, Some(State::Unloading.name()));
                tracing::info!(model = %name, version = v, "version draining: new requests go elsewhere");
                let (model_name, hook_metrics) = (name.to_string(), lifecycle);
                let metrics = self.loader.metrics.clone();
                let providers: Vec<String> = model
                    .spec
                    .placements
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                model.on_last_drop(Box::new(move || {
                    hook_metrics.set_state(&model_name, &version, None);
                    metrics.remove_version(&model_name, &version, &providers);
                    tracing::info!(model = %model_name, version = %version, "version unloaded: its last request was answered");
                }));
                live.draining.push((v, Arc::downgrade(&model)));
            }
            None => lifecycle.set_state(name, &version, None),
        }
    }

    /// Records a version's new entry (logging the transition) and swaps its model in.
    fn set_version(&self, slot: &Slot, v: u64, entry: Version) {
        let (state, reason, model) = (entry.state, entry.reason.clone(), entry.model.clone());
        let version = v.to_string();
        if let Some(m) = &model {
            m.metrics.ready.set(i64::from(state == State::Ready));
        }
        self.loader
            .metrics
            .lifecycle()
            .set_state(&slot.name, &version, Some(state.name()));
        let old = {
            let mut live = write(&slot.live);
            let old = live.versions.insert(v, entry);
            refresh_served(&mut live);
            old
        };
        // The replaced instance (a reload of the same version) drains outside the lock.
        if let Some(old_model) = old
            .and_then(|o| o.model)
            .filter(|o| !model.as_ref().is_some_and(|m| Arc::ptr_eq(m, o)))
        {
            let name = slot.name.clone();
            old_model.on_last_drop(Box::new(move || {
                tracing::info!(model = %name, version = v, "previous instance of the version unloaded");
            }));
        }
        match state {
            State::Ready if reason.is_empty() => {
                tracing::info!(model = %slot.name, version = v, "version ready")
            }
            State::Ready => {
                tracing::warn!(model = %slot.name, version = v, %reason, "version keeps serving")
            }
            State::Loading => tracing::info!(model = %slot.name, version = v, "version loading"),
            _ => {
                tracing::warn!(model = %slot.name, version = v, state = state.name(), %reason, "version unavailable")
            }
        }
    }
}

fn refresh_served(live: &mut Live) {
    live.served = live
        .versions
        .iter()
        .filter(|(_, e)| e.model.is_some())
        .map(|(v, _)| *v)
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
}

/// A model name is one plain path component: it names a directory under the root.
fn check_name(name: &str) -> Result<(), ControlError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255;
    plain
        .then_some(())
        .ok_or_else(|| ControlError::BadRequest(format!("'{name}' is not a valid model name")))
}
