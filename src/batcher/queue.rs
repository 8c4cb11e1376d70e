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
    /// Most padded elements per batch: a class whose rows take `width` elements batches at
    /// most `max_batch_elements / width` rows (at least one entry always goes).
    pub max_batch_elements: usize,
}

/// One queued request (or chunk of one).
#[derive(Debug)]
pub struct Entry<P> {
    pub rows: usize,
    /// Entries batch together only with equal classes (see `ModelSpec::shape_class`).
    pub class: Vec<usize>,
    /// Elements per row once padded to the class's bucket; equal within a class.
    pub width: usize,
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
    max_batch_elements: usize,
    /// No queued deadline is earlier than this (it may be stale-early after entries leave
    /// in batches), so `remove_expired` scans only when something may have expired.
    earliest_deadline: Option<Instant>,
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
            max_batch_elements: policy.max_batch_elements.max(1),
            earliest_deadline: None,
        }
    }

    pub fn push(&mut self, entry: Entry<P>) {
        if let Some(d) = entry.deadline {
            self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
        }
        self.entries.push_back(entry);
    }

    /// Rows a batch of entries `width` elements wide may hold: the row limit, lowered by
    /// the element budget.
    pub fn row_limit(&self, width: usize) -> usize {
        self.max_batch_size
            .min(self.max_batch_elements / width.max(1))
            .max(1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes and returns entries whose deadline is at or before `now`.
    /// Costs a scan only when the earliest deadline has come.
    pub fn remove_expired(&mut self, now: Instant) -> Vec<P> {
        if self.earliest_deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
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
        // The scan is paid anyway: make the bound exact again.
        self.earliest_deadline = self.entries.iter().filter_map(|e| e.deadline).min();
        removed
    }

    /// No queued deadline is earlier than this, so the driver can wake to expire it. It
    /// may be earlier than every queued deadline (a stale bound costs one spare wake-up).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.entries.is_empty() {
            return None;
        }
        self.earliest_deadline
    }

    /// Decides the next batch; call it when a worker is free. The head entry's class is
    /// batched, later entries of other classes wait their turn; within a class order is FIFO.
    pub fn poll(&mut self, now: Instant) -> Poll<P> {
        let Some(head) = self.entries.front() else {
            return Poll::Empty;
        };
        let class = &head.class;
        let limit = self.row_limit(head.width);
        let oldest_wait = now.saturating_duration_since(head.enqueued);
        let mut chosen = Vec::new();
        let mut pending = 0usize;
        let mut preferred_prefix: Option<usize> = None;
        let mut full = false;
        for (i, e) in self.entries.iter().enumerate() {
            if e.class != *class {
                continue;
            }
            if pending + e.rows > limit {
                full = true;
                if chosen.is_empty() {
                    // The head alone is over the limit (a budget lower than its rows): it
                    // goes alone rather than never.
                    chosen.push(i);
                }
                break;
            }
            pending += e.rows;
            chosen.push(i);
            if self.preferred.binary_search(&pending).is_ok() {
                preferred_prefix = Some(chosen.len());
            }
            if pending == limit {
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
