//! shuttle randomized checks of the spin-then-park path production runs: the
//! protocols over `ShuttleSpin` (`Shuttle` with `SPIN_LIMIT = LONG_SPIN_LIMIT = 2`:
//! every blocking wait re-checks its condition twice, yielding between, before it
//! parks), under the random and PCT schedulers (`CLLM_SHUTTLE_ITERS` iterations each,
//! default 1000). The default `Shuttle` platform never spins.
//!
//! Owns: the spinning-platform shuttle properties only:
//! * the step protocol, leader + 3 workers, 5 slots, 3 parts, 4 steps: every
//!   iteration completes with the sequential reference's numbers, every part updated
//!   once per step (`step_faults::check`);
//! * the step protocol with a panic in whoever updates part 1 of step 2: the one that
//!   panicked reports it, the others `Aborted`, with no abort by the harness;
//! * the work queue, capacity 1, two producers pushing with the blocking `push`, two
//!   consumers popping with the blocking `pop`: every item once, per-producer FIFO;
//! * the pre-fetch queue, capacity 1: every item in order, then the end of stream.
//!
//! Must never touch: `tests/common`, `tests/step_toy` or `tests/step_faults` beyond
//! using them, or any other protocol's tests.

mod common;
mod step_faults;
mod step_toy;

use cllm::queue::{PrefetchQueue, WorkQueue};
use cllm::segments::PART_ALIGN;
use common::{shuttle_check, ShuttleSpin};
use step_faults::{check, expected, run, Ended, Fault, Shape, Tally};

const SHAPE: Shape = Shape {
    workers: 3,
    n_slots: 5,
    n_parts: 3,
    len: 3 * PART_ALIGN + 5,
    steps: 4,
};

#[test]
fn spinning_leader_and_three_workers_equal_the_sequential_reference() {
    let full = std::sync::Arc::new(expected(SHAPE, SHAPE.steps));
    shuttle_check(move || {
        let out = run::<ShuttleSpin>(SHAPE, Fault::None);
        assert_eq!(check(SHAPE, Fault::None, &out, &full), Ended::Completed);
    });
}

#[test]
fn spinning_a_panic_in_update_stops_everyone() {
    common::quiet_panics(&[step_faults::PANIC]);
    let fault = Fault::UpdatePanic { step: 2, part: 1 };
    let full = std::sync::Arc::new(expected(SHAPE, SHAPE.steps));
    let tally = std::sync::Arc::new(Tally::default());
    {
        let tally = tally.clone();
        shuttle_check(move || {
            let out = run::<ShuttleSpin>(SHAPE, fault);
            tally.add(check(SHAPE, fault, &out, &full));
        });
    }
    let (completed, by_leader, by_worker) = tally.get();
    assert_eq!(completed, 0, "every part is updated");
    assert!(
        by_leader > 0 && by_worker > 0,
        "the leader and a worker both hit it"
    );
}

#[test]
fn spinning_work_queue_two_producers_two_consumers_capacity_1() {
    const ITEMS: usize = 4;
    shuttle_check(|| {
        let q = std::sync::Arc::new(WorkQueue::<(usize, usize), ShuttleSpin>::with_capacity(1));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (q, done) = (q.clone(), done.clone());
                shuttle::thread::spawn(move || {
                    for i in 0..ITEMS {
                        q.push((p, i)).expect("the queue is open");
                    }
                    if done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                        q.close();
                    }
                })
            })
            .collect();
        let consumer = {
            let q = q.clone();
            shuttle::thread::spawn(move || core::iter::from_fn(|| q.pop()).collect::<Vec<_>>())
        };
        let mine: Vec<_> = core::iter::from_fn(|| q.pop()).collect();
        let theirs = consumer.join().unwrap();
        for p in producers {
            p.join().unwrap();
        }
        for out in [&mine, &theirs] {
            for p in 0..2 {
                let seq: Vec<usize> = out.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert!(seq.windows(2).all(|w| w[0] < w[1]), "per-producer FIFO");
            }
        }
        let mut all: Vec<_> = mine.into_iter().chain(theirs).collect();
        all.sort_unstable();
        let want: Vec<_> = (0..2)
            .flat_map(|p| (0..ITEMS).map(move |i| (p, i)))
            .collect();
        assert_eq!(all, want, "every item exactly once");
    });
}

#[test]
fn spinning_prefetch_capacity_1_delivers_in_order_then_ends() {
    const ITEMS: usize = 4;
    shuttle_check(|| {
        let mut q = PrefetchQueue::<usize, (), ShuttleSpin>::spawn(1, |tx| {
            for i in 0..ITEMS {
                if tx.send(i).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })
        .expect("spawn the producer");
        for i in 0..ITEMS {
            assert_eq!(q.recv().expect("no producer error"), Some(i), "in order");
        }
        assert_eq!(q.recv().expect("no producer error"), None, "end of stream");
    });
}
