//! Worker threads: each owns one ORT session (rc.15's `Session::run` takes `&mut self`) and
//! runs the batches the batcher task hands it: stack, [`runtime::execute`], split. Never
//! runs on a tokio thread. Every job of a batch is answered exactly once, also when the
//! batch fails or the run panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::{assemble, Job, JobOutput};
use crate::error::Error;
use crate::metrics::ModelMetrics;
use crate::runtime::{self, Session};
use crate::spec::ModelSpec;
use crate::tensor::Tensor;

/// Jobs formed into one batch by the batcher task.
pub struct Batch {
    pub jobs: Vec<Job>,
    /// When the batch left the queue (end of queue time).
    pub formed: Instant,
}

/// The send sides of the workers' inboxes, indexed by worker number.
pub struct WorkerPool {
    pub inboxes: Vec<SyncSender<Batch>>,
}

/// Starts one named thread per session. Each announces its index on `free` whenever it
/// is ready for the next batch.
pub fn spawn_workers(
    sessions: Vec<Session>,
    spec: Arc<ModelSpec>,
    metrics: ModelMetrics,
    free: UnboundedSender<usize>,
) -> std::io::Result<WorkerPool> {
    let mut inboxes = Vec::with_capacity(sessions.len());
    for (index, mut session) in sessions.into_iter().enumerate() {
        // Capacity 1: the task only sends to a worker it knows is idle.
        let (tx, rx) = sync_channel::<Batch>(1);
        let spec = spec.clone();
        let metrics = metrics.clone();
        let free = free.clone();
        std::thread::Builder::new()
            .name(format!("ort-{}-{}", spec.name, index))
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    run_batch(&mut session, &spec, &metrics, batch);
                    if free.send(index).is_err() {
                        break;
                    }
                }
            })?;
        inboxes.push(tx);
    }
    Ok(WorkerPool { inboxes })
}

fn run_batch(session: &mut Session, spec: &ModelSpec, metrics: &ModelMetrics, batch: Batch) {
    let started = Instant::now();
    let rows: Vec<usize> = batch.jobs.iter().map(|j| j.rows).collect();
    let mut inputs = Vec::with_capacity(batch.jobs.len());
    let mut jobs = Vec::with_capacity(batch.jobs.len());
    for mut job in batch.jobs {
        inputs.push(std::mem::take(&mut job.inputs));
        jobs.push(job);
    }
    let result = catch_unwind(AssertUnwindSafe(|| execute(session, spec, inputs, &rows)))
        .unwrap_or_else(|_| Err("ONNX Runtime execution panicked".to_string()));
    let compute_time = started.elapsed();
    let batch_rows: usize = rows.iter().sum();
    metrics.executions.inc();
    metrics.batch_size.observe(batch_rows as f64);
    metrics.compute_duration.observe(compute_time.as_secs_f64());
    match result {
        Ok(per_request) => {
            for (job, outputs) in jobs.into_iter().zip(per_request) {
                let queue_time = batch.formed.saturating_duration_since(job.enqueued);
                job.answer(Ok(JobOutput {
                    outputs,
                    queue_time,
                    compute_time,
                    batch_rows,
                }));
            }
        }
        Err(message) => {
            tracing::error!(model = %spec.name, version = %spec.version, batch_rows, %message, "batch failed");
            for job in jobs {
                job.answer(Err(Error::Internal(format!(
                    "model '{}' version {} failed to run: {message}",
                    spec.name, spec.version
                ))));
            }
        }
    }
}

/// Stack, run, split. Errors are strings for the log and the 500 message.
fn execute(
    session: &mut Session,
    spec: &ModelSpec,
    inputs: Vec<Vec<Tensor>>,
    rows: &[usize],
) -> Result<Vec<Vec<Tensor>>, String> {
    let stacked = assemble::stack(&spec.inputs, inputs)?;
    let outputs = runtime::execute(session, spec, stacked)?;
    if spec.batched {
        assemble::split(outputs, rows)
    } else {
        Ok(vec![outputs])
    }
}
