//! Pure batch formation (Triton's dynamic-batcher semantics). Given the current time it
//! decides what to run next; it never awaits, never touches ORT and owns no timers, so it is
//! tested with plain ids and injected instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How batches are formed.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// No batch exceeds this many rows.
    pub max_batch_size: usize,
    /// Sizes worth waiting for; empty means `[max_batch_size]` (as Triton normalises it).
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a preferred size; zero = never wait.
    pub max_queue_delay: Duration,
}

/// One queued request (or chunk of one).
#[derive(Debug)]
pub struct Entry<P> {
    pub rows: usize,
    /// Entries batch together only with equal classes (see `ModelSpec::shape_class`).
    pub class: Vec<usize>,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    pub payload: P,
}

/// What the queue wants done now.
#[derive(Debug, PartialEq)]
pub enum Poll<P> {
    /// Run these payloads as one batch, in this order.
    Ready(Vec<P>),
    /// Nothing to run before this instant unless something new arrives.
    WaitUntil(Instant),
    Empty,
}

/// FIFO queue of entries with batch formation.
#[derive(Debug)]
pub struct BatchQueue<P> {
    entries: VecDeque<Entry<P>>,
    max_batch_size: usize,
    /// Sorted ascending, never empty.
    preferred: Vec<usize>,
    max_queue_delay: Duration,
}

impl<P> BatchQueue<P> {
    pub fn new(policy: BatchPolicy) -> Self {
        let mut preferred = policy.preferred_batch_sizes;
        preferred.retain(|&p| p > 0 && p <= policy.max_batch_size);
        if preferred.is_empty() {
            preferred.push(policy.max_batch_size);
        }
        preferred.sort_unstable();
        preferred.dedup();
        BatchQueue {
            entries: VecDeque::new(),
            max_batch_size: policy.max_batch_size.max(1),
            preferred,
            max_queue_delay: policy.max_queue_delay,
        }
    }

    pub fn push(&mut self, entry: Entry<P>) {
        self.entries.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns entries whose deadline is at or before `now`.
    pub fn remove_expired(&mut self, now: Instant) -> Vec<P> {
        self.remove_where(|e| e.deadline.is_some_and(|d| d <= now))
    }

    /// Removes and returns entries for which `pred` holds (e.g. the client went away).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&Entry<P>) -> bool) -> Vec<P> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if pred(&e) {
                removed.push(e.payload);
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        removed
    }

    /// The earliest deadline among queued entries, so the driver can wake to expire it.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.deadline).min()
    }

    /// Decides the next batch; call it when a worker is free. The head entry's class is
    /// batched, later entries of other classes wait their turn; within a class order is FIFO.
    pub fn poll(&mut self, now: Instant) -> Poll<P> {
        let Some(head) = self.entries.front() else {
            return Poll::Empty;
        };
        let class = &head.class;
        let oldest_wait = now.saturating_duration_since(head.enqueued);
        let mut chosen = Vec::new();
        let mut pending = 0usize;
        let mut preferred_prefix: Option<usize> = None;
        let mut full = false;
        for (i, e) in self.entries.iter().enumerate() {
            if e.class != *class {
                continue;
            }
            if pending + e.rows > self.max_batch_size {
                full = true;
                break;
            }
            pending += e.rows;
            chosen.push(i);
            if self.preferred.binary_search(&pending).is_ok() {
                preferred_prefix = Some(chosen.len());
            }
            if pending == self.max_batch_size {
                full = true;
                break;
            }
        }
        let largest_preferred = *self.preferred.last().unwrap_or(&self.max_batch_size);
        let take = if full || pending >= largest_preferred {
            // A fuller batch is impossible or not wanted: send what fits, but prefer the
            // largest preferred prefix while the oldest may still wait.
            match preferred_prefix {
                Some(n) if oldest_wait < self.max_queue_delay => n,
                _ => chosen.len(),
            }
        } else if oldest_wait >= self.max_queue_delay {
            chosen.len()
        } else if let Some(n) = preferred_prefix {
            n
        } else {
            return Poll::WaitUntil(head.enqueued + self.max_queue_delay);
        };
        Poll::Ready(self.take_indices(&chosen[..take]))
    }

    /// Removes the entries at `indices` (ascending) and returns their payloads in order.
    fn take_indices(&mut self, indices: &[usize]) -> Vec<P> {
        if indices.len() == indices.last().map_or(0, |&l| l + 1) {
            // Common case: a plain prefix of the queue.
            return self
                .entries
                .drain(..indices.len())
                .map(|e| e.payload)
                .collect();
        }
        let mut out = Vec::with_capacity(indices.len());
        for &i in indices.iter().rev() {
            // Removing from the back keeps the earlier indices valid.
            if let Some(e) = self.entries.remove(i) {
                out.push(e.payload);
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests;
