//! loom model checks of the spin-then-park path production runs: the same protocols
//! over `LoomSpin` (`Loom` with `SPIN_LIMIT = LONG_SPIN_LIMIT = 1`, so every blocking
//! wait re-checks its condition once, yields, and only then parks), exhaustive within
//! a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides). The default `Loom`
//! platform never spins, so without this file the spin loops of the step protocol's
//! waits and of the work queue's blocking push and pop are never model-checked.
//!
//! Owns: the spinning-platform loom properties only:
//! * the step protocol, leader + one worker, two slots, two parts, two steps: every
//!   execution completes with the sequential reference's numbers (a spin that leaves
//!   as if its condition held is a spurious `Aborted` or a read of unfinished state);
//! * the step protocol with a panic in whoever updates part 0: both report as in
//!   `tests/loom_step_faults.rs` (the abort must end a spinning waiter too);
//! * the work queue, capacity 1, one producer pushing three items with the blocking
//!   `push` while the consumer drains with the blocking `pop` and the producer closes:
//!   every item arrives once, in order, and `pop` then reports the close.
//!
//! Must never touch: `tests/common`, `tests/step_toy` or `tests/step_faults` beyond
//! using them, or any other protocol's tests.

mod common;
mod step_faults;
mod step_toy;

use cllm::queue::WorkQueue;
use cllm::segments::PART_ALIGN;
use common::{loom_model, LoomSpin};
use step_faults::{check, expected, run, Ended, Fault, Shape, Tally};

fn shape(steps: usize) -> Shape {
    Shape {
        workers: 1,
        n_slots: 2,
        n_parts: 2,
        len: 2 * PART_ALIGN,
        steps,
    }
}

#[test]
fn spinning_two_participants_two_steps_equal_the_sequential_reference() {
    let shape = shape(2);
    let full = std::sync::Arc::new(expected(shape, shape.steps));
    let tally = std::sync::Arc::new(Tally::default());
    {
        let (full, tally) = (full.clone(), tally.clone());
        loom_model(move || {
            let out = run::<LoomSpin>(shape, Fault::None);
            let ended = check(shape, Fault::None, &out, &full);
            assert_eq!(ended, Ended::Completed);
            tally.add(ended);
        });
    }
    eprintln!("loom_spin: {} executions", tally.get().0);
}

#[test]
fn spinning_a_panic_in_update_ends_the_run_for_both() {
    common::quiet_panics(&[step_faults::PANIC]);
    let shape = shape(1);
    let fault = Fault::UpdatePanic { step: 0, part: 0 };
    let full = std::sync::Arc::new(expected(shape, shape.steps));
    let tally = std::sync::Arc::new(Tally::default());
    {
        let (full, tally) = (full.clone(), tally.clone());
        loom_model(move || {
            let out = run::<LoomSpin>(shape, fault);
            tally.add(check(shape, fault, &out, &full));
        });
    }
    let (completed, by_leader, by_worker) = tally.get();
    eprintln!("loom_spin {fault:?}: {by_leader} failed in the leader, {by_worker} in the worker");
    assert_eq!(completed, 0, "the update of part 0 always runs");
    assert!(
        by_leader > 0 && by_worker > 0,
        "both participants updated part 0"
    );
}

#[test]
fn spinning_work_queue_capacity_1_delivers_every_item_once_in_order() {
    const ITEMS: usize = 3;
    loom_model(|| {
        let q = std::sync::Arc::new(WorkQueue::<usize, LoomSpin>::with_capacity(1));
        let producer = {
            let q = q.clone();
            loom::thread::spawn(move || {
                for i in 0..ITEMS {
                    q.push(i).expect("the queue is open");
                }
                q.close();
            })
        };
        let got: Vec<usize> = core::iter::from_fn(|| q.pop()).collect();
        producer.join().unwrap();
        assert_eq!(
            got,
            (0..ITEMS).collect::<Vec<_>>(),
            "every item once, in order"
        );
        assert!(q.pop().is_none(), "closed and empty");
    });
}
