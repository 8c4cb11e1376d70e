//! The async driver of one batch queue: moves jobs from the channel into the shared queue,
//! hands batches to idle workers, answers expired jobs and drops abandoned ones. It never
//! runs ORT and never copies tensors. A worker that finishes while a batch is ready takes
//! it itself (see `worker`); the driver serves the workers that found nothing to do.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::queue::{BatchQueue, Entry, Poll};
use super::worker::{Batch, SharedQueue, WorkerPool};
use super::Job;
use crate::error::Error;
use crate::metrics::ModelMetrics;
use crate::spec::ModelSpec;

pub struct Driver {
    pub jobs: mpsc::UnboundedReceiver<Job>,
    pub free: mpsc::UnboundedReceiver<usize>,
    pub workers: WorkerPool,
    pub queue: SharedQueue,
    pub spec: Arc<ModelSpec>,
    pub metrics: ModelMetrics,
}

/// Runs until every handle is dropped and the queue has drained (graceful shutdown).
pub async fn drive(mut d: Driver) {
    let workers = d.workers.inboxes.len();
    let mut idle: Vec<usize> = (0..workers).rev().collect();
    let mut open = true;
    let mut wake: Option<Instant> = None;
    loop {
        if !open && idle.len() == workers && super::worker::lock_queue(&d.queue).is_empty() {
            break;
        }
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let arrived = tokio::select! {
            job = d.jobs.recv(), if open => {
                open = job.is_some();
                job
            }
            Some(index) = d.free.recv() => {
                idle.push(index);
                None
            }
            () = sleep => None,
        };
        while let Ok(index) = d.free.try_recv() {
            idle.push(index);
        }
        let now = Instant::now();
        let mut queue = super::worker::lock_queue(&d.queue);
        // Take everything that arrived meanwhile, so a burst becomes one batch.
        for job in arrived
            .into_iter()
            .chain(std::iter::from_fn(|| d.jobs.try_recv().ok()))
        {
            enqueue(&mut queue, job);
        }
        let expired = queue.remove_expired(now);
        wake = None;
        let mut batches = Vec::new();
        while let Some(&worker) = idle.last() {
            match poll_live(&mut queue, now) {
                Poll::Ready(jobs) => {
                    idle.pop();
                    batches.push((worker, Batch { jobs, formed: now }));
                }
                Poll::WaitUntil(t) => {
                    wake = Some(t);
                    break;
                }
                Poll::Empty => break,
            }
        }
        if let Some(deadline) = queue.next_deadline() {
            wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
        }
        d.metrics.queue_depth.set(queue.len() as i64);
        drop(queue);
        time_out(expired, &d.spec, now);
        for (worker, batch) in batches {
            dispatch(&d, worker, batch);
        }
    }
}

/// The queue's next batch, without the abandoned jobs: those are dropped unanswered, as
/// nobody is listening. Checked here, on the batch, rather than by scanning the queue on
/// every event. `Ready` is never empty.
pub fn poll_live(queue: &mut BatchQueue<Job>, now: Instant) -> Poll<Job> {
    loop {
        match queue.poll(now) {
            Poll::Ready(mut jobs) => {
                jobs.retain(|job| !job.is_abandoned());
                if !jobs.is_empty() {
                    return Poll::Ready(jobs);
                }
            }
            other => return other,
        }
    }
}

/// Answers jobs whose deadline passed in the queue (call it without the queue's lock).
pub fn time_out(expired: Vec<Job>, spec: &ModelSpec, now: Instant) {
    for job in expired {
        let waited = now.saturating_duration_since(job.enqueued);
        let timeout = job
            .deadline
            .map(|t| t.saturating_duration_since(job.enqueued))
            .unwrap_or_default();
        job.answer(Err(Error::Timeout {
            model: spec.name.clone(),
            waited_ms: waited.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
        }));
    }
}

fn enqueue(queue: &mut BatchQueue<Job>, job: Job) {
    queue.push(Entry {
        rows: job.rows,
        class: job.class.clone(),
        width: job.width,
        enqueued: job.enqueued,
        deadline: job.deadline,
        payload: job,
    });
}

fn dispatch(d: &Driver, worker: usize, batch: Batch) {
    if let Err(std::sync::mpsc::SendError(batch)) = d.workers.inboxes[worker].send(batch) {
        // The worker thread is gone (it only exits when its channels close); fail the jobs.
        for job in batch.jobs {
            job.answer(Err(Error::Internal(format!(
                "model '{}': worker {worker} has stopped",
                d.spec.name
            ))));
        }
    }
}
