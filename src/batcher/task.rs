//! The async driver of one batch queue: moves jobs from the channel into the pure queue,
//! hands batches to idle workers, answers expired jobs and drops abandoned ones. It never
//! runs ORT and never copies tensors.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::queue::{BatchQueue, Entry, Poll};
use super::worker::{Batch, WorkerPool};
use super::Job;
use crate::error::Error;
use crate::metrics::ModelMetrics;
use crate::spec::ModelSpec;

pub struct Driver {
    pub jobs: mpsc::UnboundedReceiver<Job>,
    pub free: mpsc::UnboundedReceiver<usize>,
    pub workers: WorkerPool,
    pub queue: BatchQueue<Job>,
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
        if !open && d.queue.is_empty() && idle.len() == workers {
            break;
        }
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            job = d.jobs.recv(), if open => match job {
                Some(job) => enqueue(&mut d.queue, job),
                None => open = false,
            },
            Some(index) = d.free.recv() => idle.push(index),
            () = sleep => {}
        }
        // Take everything that arrived meanwhile, so a burst becomes one batch.
        while let Ok(job) = d.jobs.try_recv() {
            enqueue(&mut d.queue, job);
        }
        while let Ok(index) = d.free.try_recv() {
            idle.push(index);
        }
        let now = Instant::now();
        for job in d.queue.remove_expired(now) {
            let waited = now.saturating_duration_since(job.enqueued);
            let timeout = job
                .deadline
                .map(|t| t.saturating_duration_since(job.enqueued))
                .unwrap_or_default();
            job.answer(Err(Error::Timeout {
                model: d.spec.name.clone(),
                waited_ms: waited.as_millis() as u64,
                timeout_ms: timeout.as_millis() as u64,
            }));
        }
        wake = None;
        while let Some(&worker) = idle.last() {
            match d.queue.poll(now) {
                Poll::Ready(mut jobs) => {
                    // Abandoned jobs are dropped unanswered: nobody is listening. Checked
                    // here, on the batch, rather than by scanning the queue on every event.
                    jobs.retain(|job| !job.is_abandoned());
                    if jobs.is_empty() {
                        continue;
                    }
                    idle.pop();
                    dispatch(&d, worker, Batch { jobs, formed: now });
                }
                Poll::WaitUntil(t) => {
                    wake = Some(t);
                    break;
                }
                Poll::Empty => break,
            }
        }
        if let Some(deadline) = d.queue.next_deadline() {
            wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
        }
        d.metrics.queue_depth.set(d.queue.len() as i64);
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
