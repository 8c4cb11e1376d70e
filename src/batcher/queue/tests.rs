use std::collections::HashSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn queue(max: usize, preferred: Vec<usize>, delay_us: u64) -> BatchQueue<u32> {
    budget_queue(max, preferred, delay_us, usize::MAX)
}

fn budget_queue(
    max: usize,
    preferred: Vec<usize>,
    delay_us: u64,
    max_batch_elements: usize,
) -> BatchQueue<u32> {
    BatchQueue::new(BatchPolicy {
        max_batch_size: max,
        preferred_batch_sizes: preferred,
        max_queue_delay: Duration::from_micros(delay_us),
        max_batch_elements,
    })
}

/// Test classes have rows of `class + 1` elements.
fn width(class: usize) -> usize {
    class + 1
}

fn entry(id: u32, rows: usize, class: usize, at: Instant) -> Entry<u32> {
    Entry {
        rows,
        class: vec![class],
        width: width(class),
        enqueued: at,
        deadline: None,
        payload: id,
    }
}

#[test]
fn empty_queue_is_empty() {
    assert_eq!(queue(4, vec![], 0).poll(Instant::now()), Poll::Empty);
}

#[test]
fn zero_delay_sends_at_once_and_never_waits() {
    let t0 = Instant::now();
    let mut q = queue(8, vec![], 0);
    q.push(entry(1, 1, 0, t0));
    assert_eq!(q.poll(t0), Poll::Ready(vec![1]));
}

#[test]
fn rows_count_toward_the_limit_and_order_is_fifo() {
    let t0 = Instant::now();
    let mut q = queue(8, vec![], 0);
    for (id, rows) in [(1, 3), (2, 4), (3, 2), (4, 1)] {
        q.push(entry(id, rows, 0, t0));
    }
    // 3 + 4 = 7; adding 2 would exceed 8, so the batch stops there (FIFO, no skipping ahead).
    assert_eq!(q.poll(t0), Poll::Ready(vec![1, 2]));
    assert_eq!(q.poll(t0), Poll::Ready(vec![3, 4]));
    assert_eq!(q.poll(t0), Poll::Empty);
}

#[test]
fn different_shape_classes_never_mix() {
    let t0 = Instant::now();
    let mut q = queue(8, vec![], 0);
    q.push(entry(1, 1, 10, t0));
    q.push(entry(2, 1, 20, t0));
    q.push(entry(3, 1, 10, t0));
    assert_eq!(q.poll(t0), Poll::Ready(vec![1, 3]));
    assert_eq!(q.poll(t0), Poll::Ready(vec![2]));
}

#[test]
fn delay_waits_for_the_oldest_until_full_or_due() {
    let t0 = Instant::now();
    let mut q = queue(4, vec![], 1000);
    q.push(entry(1, 1, 0, t0));
    assert_eq!(
        q.poll(t0),
        Poll::WaitUntil(t0 + Duration::from_micros(1000))
    );
    q.push(entry(2, 1, 0, t0));
    assert_eq!(
        q.poll(t0 + Duration::from_micros(10)),
        Poll::WaitUntil(t0 + Duration::from_micros(1000))
    );
    // Due: send what is there.
    assert_eq!(
        q.poll(t0 + Duration::from_micros(1000)),
        Poll::Ready(vec![1, 2])
    );
    // Full before the delay: send at once.
    for id in 3..7 {
        q.push(entry(id, 1, 0, t0));
    }
    assert_eq!(q.poll(t0), Poll::Ready(vec![3, 4, 5, 6]));
}

#[test]
fn preferred_sizes_are_sent_without_waiting() {
    let t0 = Instant::now();
    let mut q = queue(8, vec![2, 4], 1000);
    q.push(entry(1, 1, 0, t0));
    assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
    q.push(entry(2, 1, 0, t0));
    q.push(entry(3, 1, 0, t0));
    // 3 pending: the largest preferred prefix (2) goes now, 3 keeps waiting.
    assert_eq!(q.poll(t0), Poll::Ready(vec![1, 2]));
    assert!(matches!(q.poll(t0), Poll::WaitUntil(_)));
}

#[test]
fn the_element_budget_cuts_batches_of_wide_rows() {
    let t0 = Instant::now();
    // 8 rows allowed, but 12 elements: class 2 (3 elements a row) gets 4 rows per batch.
    let mut q = budget_queue(8, vec![], 0, 12);
    for id in 0..6 {
        q.push(entry(id, 1, 2, t0));
    }
    assert_eq!(q.poll(t0), Poll::Ready(vec![0, 1, 2, 3]));
    assert_eq!(q.poll(t0), Poll::Ready(vec![4, 5]));
    // Narrow rows (class 0, 1 element) are limited by rows only.
    for id in 10..20 {
        q.push(entry(id, 1, 0, t0));
    }
    assert_eq!(q.poll(t0), Poll::Ready((10..18).collect()));
}

#[test]
fn an_entry_over_the_budget_runs_alone() {
    let t0 = Instant::now();
    let mut q = budget_queue(8, vec![], 0, 4);
    q.push(entry(1, 3, 4, t0)); // 3 rows x 5 elements = 15 > 4
    q.push(entry(2, 1, 4, t0));
    assert_eq!(q.poll(t0), Poll::Ready(vec![1]));
    assert_eq!(q.poll(t0), Poll::Ready(vec![2]));
}

#[test]
fn expired_and_cancelled_entries_are_removed() {
    let t0 = Instant::now();
    let mut q = queue(8, vec![], 0);
    let mut e = entry(1, 1, 0, t0);
    e.deadline = Some(t0 + Duration::from_millis(5));
    q.push(e);
    q.push(entry(2, 1, 0, t0));
    q.push(entry(3, 1, 0, t0));
    assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(5)));
    assert!(q.remove_expired(t0).is_empty());
    assert_eq!(q.remove_expired(t0 + Duration::from_millis(5)), vec![1]);
    assert_eq!(q.remove_where(|e| e.payload == 3), vec![3]);
    assert_eq!(q.poll(t0), Poll::Ready(vec![2]));
}

/// An operation the property test applies to a queue.
#[derive(Debug, Clone)]
enum Op {
    Push {
        rows: usize,
        class: usize,
        timeout_us: Option<u64>,
    },
    Advance(u64),
    Poll,
    Cancel(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..6, 0usize..3, proptest::option::of(0u64..3000)).prop_map(
            |(rows, class, timeout_us)| Op::Push {
                rows,
                class,
                timeout_us
            }
        ),
        (0u64..2000).prop_map(Op::Advance),
        Just(Op::Poll),
        (0u32..40).prop_map(Op::Cancel),
    ]
}

proptest! {
    /// Every entry leaves exactly once (batched, expired or cancelled); no batch exceeds
    /// the limit or mixes classes; within a class, batches preserve arrival order.
    #[test]
    fn every_entry_leaves_exactly_once(
        ops in proptest::collection::vec(op(), 1..120),
        max in 1usize..10,
        delay_us in prop_oneof![Just(0u64), 0u64..1500],
        preferred in proptest::collection::vec(1usize..10, 0..3),
        budget in prop_oneof![Just(usize::MAX), 1usize..40],
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut q = budget_queue(max, preferred, delay_us, budget);
        // Live entries' deadlines, to check the queue's deadline bookkeeping.
        let mut deadlines: std::collections::HashMap<u32, Instant> = Default::default();
        let mut next_id = 0u32;
        let mut info = std::collections::HashMap::new();
        let mut left = HashSet::new();
        let mut last_batched_per_class: std::collections::HashMap<usize, u32> = Default::default();
        let mut check_batch = |batch: Vec<u32>, info: &std::collections::HashMap<u32, (usize, usize)>, left: &mut HashSet<u32>| -> Result<(), TestCaseError> {
            prop_assert!(!batch.is_empty());
            let rows: usize = batch.iter().map(|id| info[id].0).sum();
            prop_assert!(rows <= max, "batch of {} rows over max {}", rows, max);
            let class = info[&batch[0]].1;
            // The padded-element budget holds, except for a lone entry over it by itself.
            prop_assert!(
                batch.len() == 1 || rows * width(class) <= budget,
                "batch of {} rows x {} elements over the budget {}", rows, width(class), budget
            );
            for id in &batch {
                prop_assert_eq!(info[id].1, class);
                prop_assert!(left.insert(*id), "entry {} left twice", id);
                if let Some(prev) = last_batched_per_class.insert(class, *id) {
                    prop_assert!(prev < *id, "FIFO broken within class {}", class);
                }
            }
            Ok(())
        };
        for op in ops {
            match op {
                Op::Push { rows, class, timeout_us } => {
                    let rows = rows.min(max);
                    info.insert(next_id, (rows, class));
                    let deadline = timeout_us.map(|t| now + Duration::from_micros(t));
                    if let Some(d) = deadline {
                        deadlines.insert(next_id, d);
                    }
                    q.push(Entry {
                        rows,
                        class: vec![class],
                        width: width(class),
                        enqueued: now,
                        deadline,
                        payload: next_id,
                    });
                    next_id += 1;
                }
                Op::Advance(us) => now += Duration::from_micros(us),
                Op::Poll => {
                    for id in q.remove_expired(now) {
                        prop_assert!(deadlines[&id] <= now, "entry {} expired early", id);
                        prop_assert!(left.insert(id));
                    }
                    // Nothing expired stays behind, and the wake-up bound is never late.
                    let live = deadlines.iter().filter(|(id, _)| !left.contains(id));
                    let earliest = live.clone().map(|(_, &d)| d).min();
                    prop_assert!(live.clone().all(|(_, &d)| d > now), "an expired entry was kept");
                    if let Some(e) = earliest {
                        prop_assert!(q.next_deadline().is_some_and(|n| n <= e), "next_deadline is late");
                    }
                    match q.poll(now) {
                        Poll::Ready(batch) => check_batch(batch, &info, &mut left)?,
                        Poll::WaitUntil(t) => prop_assert!(t > now),
                        Poll::Empty => prop_assert!(q.is_empty()),
                    }
                }
                Op::Cancel(id) => {
                    for id in q.remove_where(|e| e.payload == id) {
                        prop_assert!(left.insert(id));
                    }
                }
            }
        }
        // Drain: time moves past every delay, so everything leaves.
        now += Duration::from_secs(10);
        for id in q.remove_expired(now) {
            prop_assert!(left.insert(id));
        }
        while let Poll::Ready(batch) = q.poll(now) {
            check_batch(batch, &info, &mut left)?;
        }
        prop_assert!(q.is_empty());
        prop_assert_eq!(left.len(), next_id as usize);
    }
}
