//! Worker threads: each owns one ORT session (rc.15's `Session::run` takes `&mut self`) and
//! runs the batches the batcher task hands it: stack, [`runtime::execute`], split. Every
//! job of a batch is answered exactly once, also when the batch fails or the run panics.
//! A worker that finishes while the queue holds a ready batch takes it at once instead of
//! reporting idle and waiting for the batcher task, which shares the async threads with
//! the requests this very batch just answered.
//! The one exception to "ORT runs on worker threads": [`run_inline`], a short request that
//! finds the server otherwise empty runs on the thread that received it (no hand-offs).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::health::{panic_message, Health, TEST_PANIC_ROWS};
use super::queue::{BatchQueue, Poll};
use super::task::{poll_live, time_out};
use super::{assemble, BatchError, Job, JobOutput};
use crate::error::Error;
use crate::metrics::ModelMetrics;
use crate::runtime::{self, Session};
use crate::spec::ModelSpec;
use crate::telemetry::{self, BatchRun, TracedJob};
use crate::tensor::Tensor;

/// Jobs formed into one batch by the batcher task.
pub struct Batch {
    pub jobs: Vec<Job>,
    /// When the batch left the queue (end of queue time).
    pub formed: Instant,
}

/// An instance's session. Its worker thread locks it for each batch; an inline request
/// only ever `try_lock`s it, so neither waits on the other for more than one run.
pub type SharedSession = Arc<Mutex<Session>>;

/// The model's batch queue: the batcher task fills it, and both the task and the workers
/// take batches from it. Locked only for queue operations, never during a run.
pub type SharedQueue = Arc<Mutex<BatchQueue<Job>>>;

/// Queue operations never panic midway, so a poisoned lock still holds a sound queue.
pub fn lock_queue(queue: &SharedQueue) -> MutexGuard<'_, BatchQueue<Job>> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The send sides of the workers' inboxes and their sessions, indexed by worker number.
pub struct WorkerPool {
    pub inboxes: Vec<SyncSender<Batch>>,
    pub sessions: Vec<SharedSession>,
}

/// A panic inside a run is caught before the guard drops, so a poisoned lock still holds
/// a usable session.
fn lock(session: &SharedSession) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts one named thread per session. After each batch a worker takes the queue's next
/// ready batch itself; when there is none it announces its index on `free` and waits for
/// the batcher task to send one. Workers answer their jobs themselves: measured side by
/// side, handing the answers to the batcher task instead (one wake-up per batch) was ~10%
/// slower for JSON ranking traffic, whose async threads are busy decoding, and no faster
/// elsewhere.
pub fn spawn_workers(
    sessions: Vec<Session>,
    spec: Arc<ModelSpec>,
    metrics: ModelMetrics,
    queue: SharedQueue,
    free: UnboundedSender<usize>,
    health: Arc<Health>,
) -> std::io::Result<WorkerPool> {
    let mut inboxes = Vec::with_capacity(sessions.len());
    let sessions: Vec<SharedSession> = sessions
        .into_iter()
        .map(|s| Arc::new(Mutex::new(s)))
        .collect();
    for (index, session) in sessions.iter().cloned().enumerate() {
        // Capacity 1: the task only sends to a worker it knows is idle.
        let (tx, rx) = sync_channel::<Batch>(1);
        let worker = Worker {
            index,
            session,
            spec: spec.clone(),
            metrics: metrics.clone(),
            queue: queue.clone(),
            free: free.clone(),
            health: health.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ort-{}-{}", spec.name, index))
            .spawn(move || loop {
                match catch_unwind(AssertUnwindSafe(|| worker.serve(&rx))) {
                    Ok(()) => break,
                    Err(payload) => {
                        if !worker.restart(&*payload) {
                            break;
                        }
                    }
                }
            })?;
        inboxes.push(tx);
    }
    Ok(WorkerPool { inboxes, sessions })
}

/// One worker thread's state: everything it needs to serve, and to start afresh after
/// a panic.
struct Worker {
    index: usize,
    session: SharedSession,
    spec: Arc<ModelSpec>,
    metrics: ModelMetrics,
    queue: SharedQueue,
    free: UnboundedSender<usize>,
    health: Arc<Health>,
}

impl Worker {
    /// Runs the batches sent to this worker until its inbox or the driver closes.
    fn serve(&self, inbox: &Receiver<Batch>) {
        while let Ok(mut batch) = inbox.recv() {
            loop {
                run_batch(
                    &mut lock(&self.session),
                    &self.spec,
                    &self.metrics,
                    &self.health,
                    batch,
                    self.index,
                );
                match take_ready(&self.queue, &self.spec, &self.metrics) {
                    Some(next) => batch = next,
                    None => break,
                }
            }
            if self.free.send(self.index).is_err() {
                return;
            }
        }
    }

    /// After a panic escaped [`Worker::serve`] (its jobs are answered by then, see
    /// [`Held`]): the version is UNAVAILABLE with the reason, a fresh worker warms the
    /// session up and, when that run succeeds, the version is READY again. Returns false
    /// when the driver is gone (nothing left to serve).
    fn restart(&self, payload: &(dyn std::any::Any + Send)) -> bool {
        let (model, version, worker) = (&self.spec.name, &self.spec.version, self.index);
        let reason = format!(
            "worker {worker} of model '{model}' version {version} panicked: {}",
            panic_message(payload)
        );
        self.health.fail(reason.clone());
        self.metrics.ready.set(0);
        self.metrics.worker_restarts.inc();
        tracing::error!(%model, %version, worker, %reason, "worker thread panicked: version UNAVAILABLE until a fresh worker has warmed up");
        let warm = catch_unwind(AssertUnwindSafe(|| {
            runtime::warm_up(&mut lock(&self.session), &self.spec).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|p| Err(format!("warm-up panicked: {}", panic_message(&*p))));
        match warm {
            Ok(()) => {
                if self.health.recover().is_some() {
                    self.metrics.ready.set(1);
                    tracing::info!(%model, %version, worker, "fresh worker warmed up: version READY again");
                }
            }
            Err(e) => {
                tracing::error!(%model, %version, worker, error = %e, "fresh worker's warm-up failed: version stays UNAVAILABLE until a batch succeeds")
            }
        }
        self.free.send(self.index).is_ok()
    }
}

/// The queue's next batch if one is ready now (answering the jobs that expired meanwhile).
fn take_ready(queue: &SharedQueue, spec: &ModelSpec, metrics: &ModelMetrics) -> Option<Batch> {
    let now = Instant::now();
    let mut queue = lock_queue(queue);
    let expired = queue.remove_expired(now);
    let jobs = match poll_live(&mut queue, now) {
        Poll::Ready(jobs) => Some(jobs),
        Poll::WaitUntil(_) | Poll::Empty => None,
    };
    metrics.queue_depth.set(queue.len() as i64);
    drop(queue);
    time_out(expired, spec, now);
    jobs.map(|jobs| Batch { jobs, formed: now })
}

/// Runs one request of `rows` rows on the calling thread with the first instance that is
/// free, or gives the inputs back when every instance is busy. Only for requests known
/// to be short (`ModelSpec::inline_rows`): it blocks the calling thread for one run.
pub fn run_inline(
    sessions: &[SharedSession],
    spec: &ModelSpec,
    metrics: &ModelMetrics,
    inputs: Vec<Tensor>,
    rows: usize,
    trace: &Option<crate::telemetry::SpanRef>,
    request_id: Option<&str>,
) -> Result<crate::error::Result<JobOutput>, Vec<Tensor>> {
    let Some((instance, mut session)) = sessions
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.try_lock().ok().map(|s| (i, s)))
    else {
        return Err(inputs);
    };
    let started = Instant::now();
    let (result, compute_time) = run_recorded(&mut session, spec, metrics, vec![inputs], &[rows]);
    drop(session);
    if let Some(span) = trace {
        let run = BatchRun {
            model: &spec.name,
            version: &spec.version,
            instance,
            rows,
            requests: 1,
            formed: started,
            started,
            ended: started + compute_time,
        };
        telemetry::record_batch(
            &run,
            &[TracedJob {
                span,
                enqueued: started,
            }],
        );
    }
    metrics.inline_executions.inc();
    Ok(match result {
        Ok(mut per_request) => Ok(JobOutput {
            outputs: per_request.pop().unwrap_or_default(),
            queue_time: Duration::ZERO,
            compute_time,
            batch_rows: rows,
        }),
        Err(message) => {
            log_failed_run(spec, rows, &[request_id], &message);
            Err(failed(spec, &message))
        }
    })
}

/// Stack, run, split, with the panic caught and the batch metrics recorded; returns the
/// outputs per request and the time it took. The caller logs a failure
/// ([`log_failed_run`]), as it knows the requests' ids.
fn run_recorded(
    session: &mut Session,
    spec: &ModelSpec,
    metrics: &ModelMetrics,
    inputs: Vec<Vec<Tensor>>,
    rows: &[usize],
) -> (Result<Vec<Vec<Tensor>>, BatchError>, Duration) {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| execute(session, spec, inputs, rows)))
        .unwrap_or(Err(BatchError::Panicked));
    let compute_time = started.elapsed();
    let batch_rows: usize = rows.iter().sum();
    metrics.executions.inc();
    metrics.batch_size.observe(batch_rows as f64);
    metrics.compute_duration.observe(compute_time.as_secs_f64());
    (result, compute_time)
}

/// The one log line of a failed run: every request of the batch fails with it, and the
/// transports do not log [`Error::RunFailed`] again. `request_ids`: one per request,
/// `None` for a request that came without one.
fn log_failed_run(
    spec: &ModelSpec,
    batch_rows: usize,
    request_ids: &[Option<&str>],
    cause: &BatchError,
) {
    let ids: Vec<&str> = request_ids.iter().flatten().copied().collect();
    tracing::error!(
        model = %spec.name,
        version = %spec.version,
        batch_rows,
        requests = request_ids.len(),
        request_ids = %ids.join(","),
        error = %cause,
        "inference failed"
    );
}

fn failed(spec: &ModelSpec, message: &BatchError) -> Error {
    Error::RunFailed(format!(
        "model '{}' version {} failed to run: {message}",
        spec.name, spec.version
    ))
}

/// The ids of `jobs`, for [`log_failed_run`].
fn request_ids(jobs: &[Job]) -> Vec<Option<&str>> {
    jobs.iter().map(|j| j.request_id.as_deref()).collect()
}

/// The jobs of the batch being run. Dropped while its thread unwinds from a panic, it
/// marks the version failed and answers every job it still holds with the reason, so no
/// request waits for an answer that cannot come.
struct Held<'a> {
    jobs: Vec<Job>,
    spec: &'a ModelSpec,
    health: &'a Health,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.jobs.is_empty() || !std::thread::panicking() {
            return;
        }
        let reason = &BatchError::WorkerPanicked;
        self.health.fail(format!(
            "a worker of model '{}' version {} panicked",
            self.spec.name, self.spec.version
        ));
        let rows = self.jobs.iter().map(|j| j.rows).sum();
        log_failed_run(self.spec, rows, &request_ids(&self.jobs), reason);
        for job in self.jobs.drain(..) {
            job.answer(Err(failed(self.spec, reason)));
        }
    }
}

/// Runs one batch and answers every job.
fn run_batch(
    session: &mut Session,
    spec: &ModelSpec,
    metrics: &ModelMetrics,
    health: &Health,
    batch: Batch,
    instance: usize,
) {
    let rows: Vec<usize> = batch.jobs.iter().map(|j| j.rows).collect();
    let mut inputs = Vec::with_capacity(batch.jobs.len());
    let mut jobs = Vec::with_capacity(batch.jobs.len());
    for mut job in batch.jobs {
        inputs.push(std::mem::take(&mut job.inputs));
        jobs.push(job);
    }
    let mut held = Held { jobs, spec, health };
    let batch_rows: usize = rows.iter().sum();
    if *TEST_PANIC_ROWS == Some(batch_rows) {
        panic!("test-only panic: MLPSERVE_TEST_WORKER_PANIC_ROWS={batch_rows}");
    }
    let started = Instant::now();
    let (result, compute_time) = run_recorded(session, spec, metrics, inputs, &rows);
    if held.jobs.iter().any(|j| j.trace.is_some()) {
        let run = BatchRun {
            model: &spec.name,
            version: &spec.version,
            instance,
            rows: batch_rows,
            requests: held.jobs.len(),
            formed: batch.formed,
            started,
            ended: started + compute_time,
        };
        let traced: Vec<TracedJob<'_>> = held
            .jobs
            .iter()
            .filter_map(|j| {
                j.trace.as_ref().map(|span| TracedJob {
                    span,
                    enqueued: j.enqueued,
                })
            })
            .collect();
        telemetry::record_batch(&run, &traced);
    }
    match result {
        Ok(per_request) => {
            for (job, outputs) in held.jobs.drain(..).zip(per_request) {
                let queue_time = batch.formed.saturating_duration_since(job.enqueued);
                job.answer(Ok(JobOutput {
                    outputs,
                    queue_time,
                    compute_time,
                    batch_rows,
                }));
            }
            if health.recover().is_some() {
                metrics.ready.set(1);
                tracing::info!(model = %spec.name, version = %spec.version, "a batch succeeded: version READY again");
            }
        }
        Err(message) => {
            log_failed_run(spec, batch_rows, &request_ids(&held.jobs), &message);
            for job in held.jobs.drain(..) {
                job.answer(Err(failed(spec, &message)));
            }
        }
    }
}

/// Stack, run, split.
fn execute(
    session: &mut Session,
    spec: &ModelSpec,
    inputs: Vec<Vec<Tensor>>,
    rows: &[usize],
) -> Result<Vec<Vec<Tensor>>, BatchError> {
    let inputs = match &spec.context {
        Some(context) => assemble::run_context(context, inputs, rows, |stacked| {
            Ok(runtime::execute_context(session, spec, stacked)?)
        })?,
        None => inputs,
    };
    let stacked = assemble::stack(spec.graph_inputs(), inputs, rows)?;
    let outputs = runtime::execute(session, spec, stacked)?;
    if spec.batched {
        assemble::split(outputs, rows)
    } else {
        Ok(vec![outputs])
    }
}
