//! A bounded hand-off from the request path to one background thread that works in
//! batches (the span exporter, the payload log's file writer). Handing over is a short
//! lock and a push: it never waits, and it wakes the thread only when the thread sleeps
//! on an empty queue or a full batch's worth is waiting. Otherwise the thread looks on its
//! own every `gather` interval: at tens of thousands of items a second, a wake-up (a system
//! call and a context switch) per item would cost more than the item's own work. A full
//! queue refuses new items, and the caller counts them as dropped.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Answered once everything handed over before it is dealt with.
pub enum Flush {
    /// For a waiting thread.
    Blocking(std::sync::mpsc::SyncSender<()>),
    /// For an async task.
    Async(tokio::sync::oneshot::Sender<()>),
}

impl Flush {
    pub fn done(self) {
        match self {
            Flush::Blocking(tx) => {
                let _ = tx.send(());
            }
            Flush::Async(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// What the thread takes in one look.
pub struct Taken<T> {
    pub items: Vec<T>,
    /// To answer once `items` are dealt with.
    pub flushes: Vec<Flush>,
    /// No more items will come: deal with these and end.
    pub closed: bool,
}

struct State<T> {
    items: Vec<T>,
    /// The items' summed weight (spans, records).
    weight: usize,
    /// The thread waits for a first item, and the next push wakes it.
    idle: bool,
    /// The thread waits for `gather` to pass, and only a full batch wakes it early.
    gathering: bool,
    flushes: Vec<Flush>,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    capacity: usize,
    batch: usize,
}

/// The queue; cheap to clone (both sides hold one).
pub struct Handoff<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Handoff<T> {
    /// A queue holding at most `capacity` weight; `batch` waiting wake the thread early.
    pub fn new(capacity: usize, batch: usize) -> Handoff<T> {
        Handoff {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    items: Vec::new(),
                    weight: 0,
                    idle: false,
                    gathering: false,
                    flushes: Vec::new(),
                    closed: false,
                }),
                wake: Condvar::new(),
                capacity,
                batch,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `item` over; gives it back when the queue is full or closed.
    pub fn push(&self, item: T, weight: usize) -> Result<(), T> {
        let mut s = self.lock();
        if s.closed || s.weight + weight > self.shared.capacity {
            return Err(item);
        }
        s.items.push(item);
        s.weight += weight;
        let wake = s.idle || (s.gathering && s.weight >= self.shared.batch);
        if wake {
            s.idle = false;
            s.gathering = false;
            drop(s);
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Asks for everything handed over so far to be dealt with (and with `close`, for
    /// the thread to end after it); `done` is answered then.
    pub fn flush(&self, done: Flush, close: bool) {
        let mut s = self.lock();
        s.flushes.push(done);
        s.closed |= close;
        s.idle = false;
        s.gathering = false;
        drop(s);
        self.shared.wake.notify_one();
    }

    /// The thread's side: waits for a first item (or a flush), then up to `gather` for a
    /// batch's worth, and takes what is there.
    pub fn take(&self, gather: Duration) -> Taken<T> {
        let mut s = self.lock();
        while s.items.is_empty() && s.flushes.is_empty() && !s.closed {
            s.idle = true;
            s = self
                .shared
                .wake
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
        s.idle = false;
        let deadline = Instant::now() + gather;
        while s.weight < self.shared.batch && s.flushes.is_empty() && !s.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s.gathering = true;
            s = self
                .shared
                .wake
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        s.gathering = false;
        s.weight = 0;
        Taken {
            items: std::mem::take(&mut s.items),
            flushes: std::mem::take(&mut s.flushes),
            closed: s.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_too() {
        let q = Handoff::new(3, 2);
        assert!(q.push(1, 2).is_ok());
        assert_eq!(q.push(2, 2), Err(2));
        assert!(q.push(3, 1).is_ok());
        let t = q.take(Duration::ZERO);
        assert_eq!(t.items, [1, 3]);
        assert!(!t.closed);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        q.flush(Flush::Blocking(tx), true);
        assert_eq!(q.push(4, 1), Err(4));
        let t = q.take(Duration::from_secs(60));
        assert!(t.items.is_empty() && t.closed);
        t.flushes.into_iter().for_each(Flush::done);
        rx.recv().unwrap();
    }

    #[test]
    fn the_thread_wakes_for_a_first_item_and_for_a_full_batch() {
        let q: Handoff<u32> = Handoff::new(100, 4);
        let taker = q.clone();
        let thread = std::thread::spawn(move || {
            // A first item ends the idle wait; four end the gathering long before an hour.
            let t = taker.take(Duration::from_secs(3600));
            t.items.len()
        });
        for i in 0..4 {
            q.push(i, 1).unwrap();
        }
        let got = thread.join().unwrap();
        assert!((1..=4).contains(&got), "{got}");
    }
}
