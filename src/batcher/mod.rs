//! Dynamic batching per model version. [`Batcher`] is the cheap, cloneable handle that
//! transports submit to: it does admission control (a full queue answers 429 at once),
//! splits requests larger than `max_batch_size` into chunks and reassembles their answers.
//! The async driver (`task`) forms batches with the pure `queue` and hands them to workers.

pub mod assemble;
mod error;
mod health;
pub mod queue;
mod task;
mod worker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::metrics::ModelMetrics;
use crate::runtime::Session;
use crate::spec::ModelSpec;
use crate::tensor::Tensor;

pub use error::BatchError;
pub use health::Health;
pub use queue::{BatchPolicy, BatchQueue, Entry, Poll};
pub use worker::{Batch, SharedSession};

/// One queued unit of work: a whole request, or one chunk of a large one.
pub struct Job {
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    pub class: Vec<usize>,
    /// Padded elements per row (see `ModelSpec::padded_row_elements`).
    pub width: usize,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    /// The request's span when it is traced: the batch's run is recorded in it.
    pub trace: Option<crate::telemetry::SpanRef>,
    /// The request's id, for the log line of a failed run.
    pub request_id: Option<Arc<str>>,
    reply: oneshot::Sender<Result<JobOutput>>,
    /// Held until the job is answered; releases the request's admission slot on drop.
    _admission: Arc<Admission>,
}

impl Job {
    /// Answers the job. Consumes it, so a job cannot be answered twice.
    pub fn answer(self, result: Result<JobOutput>) {
        // The receiver is gone only if the client went away; nothing to do then.
        let _ = self.reply.send(result);
    }

    /// True when the client stopped waiting (its request future was dropped).
    pub fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// What a worker returns for one job.
#[derive(Debug)]
pub struct JobOutput {
    pub outputs: Vec<Tensor>,
    pub queue_time: Duration,
    pub compute_time: Duration,
    /// Rows in the ORT run this job was part of.
    pub batch_rows: usize,
}

/// Counts one admitted request until its last job is answered or dropped.
struct Admission {
    admitted: Arc<AtomicUsize>,
    metrics: ModelMetrics,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
        self.metrics.in_flight.dec();
    }
}

/// Handle to one model version's batch queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    /// The instances' sessions, for requests that run inline (see `submit`).
    sessions: Arc<[SharedSession]>,
    /// Largest request that may run inline: `ModelSpec::inline_rows` rows and
    /// `ModelSpec::inline_elements` padded elements, or 0 when the model waits for fuller
    /// batches (`max_queue_delay_us`).
    inline_rows: usize,
    inline_elements: usize,
    admitted: Arc<AtomicUsize>,
    spec: Arc<ModelSpec>,
    metrics: ModelMetrics,
    /// Whether the workers are sound (see `health`).
    health: Arc<Health>,
}

impl Batcher {
    /// Starts a worker thread per session and the driver task. Must be called inside a
    /// tokio runtime.
    pub fn start(
        spec: Arc<ModelSpec>,
        sessions: Vec<Session>,
        metrics: ModelMetrics,
    ) -> std::io::Result<Batcher> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (free_tx, free) = mpsc::unbounded_channel();
        let policy = BatchPolicy {
            max_batch_size: spec.max_batch_size(),
            preferred_batch_sizes: spec.config.preferred_batch_sizes.clone(),
            max_queue_delay: spec.config.max_queue_delay(),
            max_batch_elements: spec.batch_element_limit(),
        };
        let queue = Arc::new(std::sync::Mutex::new(BatchQueue::new(policy)));
        let health = Arc::new(Health::default());
        let workers = worker::spawn_workers(
            sessions,
            spec.clone(),
            metrics.clone(),
            queue.clone(),
            free_tx,
            health.clone(),
        )?;
        let sessions = workers.sessions.iter().cloned().collect();
        tokio::spawn(task::drive(task::Driver {
            jobs: rx,
            free,
            workers,
            queue,
            spec: spec.clone(),
            metrics: metrics.clone(),
        }));
        Ok(Batcher {
            tx,
            sessions,
            inline_rows: if spec.config.max_queue_delay().is_zero() {
                spec.inline_rows
            } else {
                0
            },
            inline_elements: spec.inline_elements,
            admitted: Arc::new(AtomicUsize::new(0)),
            spec,
            metrics,
            health,
        })
    }

    /// Whether the version's workers are sound.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Queues validated inputs (`rows` rows, graph input order) and awaits the outputs.
    /// Dropping the returned future abandons the request; queued work is then dropped.
    /// `may_inline`: the caller knows of no other request in the server, so a short one
    /// that also finds this model idle runs on the calling thread.
    pub async fn submit(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        may_inline: bool,
    ) -> Result<JobOutput> {
        let spec = &self.spec;
        let max_queue_size = spec.config.max_queue_size;
        let in_flight = self.admitted.fetch_add(1, Ordering::AcqRel);
        if in_flight >= max_queue_size {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Overloaded {
                model: spec.name.clone(),
                version: spec.version.clone(),
                max_queue_size,
            });
        }
        self.metrics.in_flight.inc();
        let admission = Arc::new(Admission {
            admitted: self.admitted.clone(),
            metrics: self.metrics.clone(),
        });
        // Alone and short: run it here. Nothing could join its batch, and the hand-offs
        // to the batcher task and a worker thread and back cost more than a small run.
        let expired = deadline.is_some_and(|d| d <= Instant::now());
        let trace = crate::telemetry::current_span();
        let request_id = crate::logging::request_id();
        let width = spec.padded_row_elements(&inputs);
        // Rows alone cannot tell a short run: one row of a long history may take seconds.
        let short = rows <= self.inline_rows && rows.saturating_mul(width) <= self.inline_elements;
        let inputs = if may_inline && in_flight == 0 && short && !expired {
            let (sessions, metrics) = (&self.sessions, &self.metrics);
            let id = request_id.as_deref();
            match worker::run_inline(sessions, spec, metrics, inputs, rows, &trace, id) {
                Ok(result) => return result,
                Err(inputs) => inputs,
            }
        } else {
            inputs
        };
        let class = spec.shape_class(&inputs);
        let enqueued = Instant::now();
        // Chunks fit one batch: rows, padded elements and estimated working memory (the
        // queue cuts batches the same way).
        let max = spec.batch_rows_limit(width);
        let chunks = if rows > max && spec.batched {
            let sizes: Vec<usize> = (0..rows).step_by(max).map(|s| max.min(rows - s)).collect();
            // Copying up to max_request_rows rows runs on the blocking pool, not the async
            // threads that drive every model's batches.
            let (sizes, parts) = tokio::task::spawn_blocking(move || {
                let parts = assemble::split_request(inputs, rows, &sizes);
                (sizes, parts)
            })
            .await
            .map_err(|e| Error::Internal(format!("splitting a large request failed: {e}")))?;
            let parts = parts.map_err(|e| Error::Internal(e.to_string()))?;
            sizes.into_iter().zip(parts).collect()
        } else {
            vec![(rows, inputs)]
        };
        let mut replies = Vec::with_capacity(chunks.len());
        for (rows, inputs) in chunks {
            let (reply, rx) = oneshot::channel();
            let job = Job {
                inputs,
                rows,
                class: class.clone(),
                width,
                enqueued,
                deadline,
                trace,
                request_id: request_id.clone(),
                reply,
                _admission: admission.clone(),
            };
            self.tx.send(job).map_err(|_| {
                Error::Unavailable(format!("model '{}' is shutting down", spec.name))
            })?;
            replies.push(rx);
        }
        drop(admission);
        let lost = || {
            let why = self.health.failure().unwrap_or_default();
            Error::Internal(format!(
                "model '{}': a worker dropped a request unanswered {why}",
                spec.name
            ))
        };
        if replies.len() == 1 {
            return replies.pop().ok_or_else(lost)?.await.map_err(|_| lost())?;
        }
        let mut parts = Vec::with_capacity(replies.len());
        for rx in replies {
            parts.push(rx.await.map_err(|_| lost())??);
        }
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || merge_chunks(&spec, parts))
            .await
            .map_err(|e| Error::Internal(format!("merging a large request failed: {e}")))?
    }
}

/// Concatenates the outputs of a split request back in order.
fn merge_chunks(spec: &ModelSpec, parts: Vec<JobOutput>) -> Result<JobOutput> {
    let queue_time = parts.iter().map(|p| p.queue_time).max().unwrap_or_default();
    let compute_time = parts.iter().map(|p| p.compute_time).sum();
    let batch_rows = parts.iter().map(|p| p.batch_rows).max().unwrap_or_default();
    let rows: Vec<usize> = parts
        .iter()
        .map(|p| p.outputs.first().map_or(0, Tensor::rows))
        .collect();
    let outputs = assemble::stack(
        &spec.outputs,
        parts.into_iter().map(|p| p.outputs).collect(),
        &rows,
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(JobOutput {
        outputs,
        queue_time,
        compute_time,
        batch_rows,
    })
}
