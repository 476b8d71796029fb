//! loom model checks of the fault paths of `cllm::step::StepProtocol` over the `Loom`
//! platform (exhaustive within a preemption bound of 2; `LOOM_MAX_PREEMPTIONS`
//! overrides): a panic in every hook (compute, summarize, decide, update) and an
//! error from decide, in the leader or in the worker, while the other participant
//! waits at whichever gate the schedule puts it (the leader on `updated` in `lead` or
//! on `summarized`, the worker on `summarized`, on the slots' publish or on `fed` for
//! the next step).
//!
//! Owns: these fault properties only. Two participants (the leader on the model's main
//! thread, one worker), two slots, two parts of `PART_ALIGN` floats, one step (the
//! worker then waits for a step that is never fed), or two steps with the fault in
//! the second (the worker may race into step 1 while the leader still updates step
//! 0). Checked in every execution (see
//! `step_faults::check`): the participant whose hook failed reports
//! `Panicked { step, worker }` (or the hook's error), the other `Aborted`; the run is
//! aborted by the protocol itself (the harness never aborts it), so a gate that an
//! abort does not open is a loom deadlock report; nothing is updated with a wrong
//! decision. Where the faulty hook may or may not run in the faulty participant (a
//! worker that claims no part neither summarizes, decides nor updates), both kinds of
//! execution must occur, and for faults in "whoever" runs a hook, both the leader and
//! the worker must have been the one.
//! Must never touch: `tests/common`, `tests/step_toy` or `tests/step_faults` beyond
//! using them, or any other protocol's tests.

mod common;
mod step_faults;
mod step_toy;

use cllm::segments::PART_ALIGN;
use common::{loom_model, Loom};
use step_faults::{check, expected, run, Fault, Shape, Tally};

const SHAPE: Shape = Shape {
    workers: 1,
    n_slots: 2,
    n_parts: 2,
    len: 2 * PART_ALIGN,
    steps: 1,
};

/// What a property requires of the executions, beyond each one's checks.
#[derive(Debug, Clone, Copy)]
struct Require {
    completed: bool,
    by_leader: bool,
    by_worker: bool,
}

fn model(fault: Fault, require: Require) {
    model_of(SHAPE, fault, require)
}

fn model_of(shape: Shape, fault: Fault, require: Require) {
    common::quiet_panics(&[step_faults::PANIC]);
    let full = std::sync::Arc::new(expected(shape, shape.steps));
    let tally = std::sync::Arc::new(Tally::default());
    {
        let (full, tally) = (full.clone(), tally.clone());
        loom_model(move || {
            let out = run::<Loom>(shape, fault);
            tally.add(check(shape, fault, &out, &full));
        });
    }
    let (completed, by_leader, by_worker) = tally.get();
    eprintln!(
        "loom_step_faults {fault:?}: {completed} completed, {by_leader} failed in the leader, \
         {by_worker} in the worker"
    );
    assert_eq!(
        completed > 0,
        require.completed,
        "executions that completed"
    );
    assert_eq!(
        by_leader > 0,
        require.by_leader,
        "executions failing in the leader"
    );
    assert_eq!(
        by_worker > 0,
        require.by_worker,
        "executions failing in the worker"
    );
}

/// Whoever updates part 0 panics: when it is the worker, the leader is waiting (or
/// about to wait) on `updated`; when it is the leader, the worker is updating part 1
/// or waiting for the next feed.
#[test]
fn a_panic_in_update_ends_the_run_for_both() {
    model(
        Fault::UpdatePanic { step: 0, part: 0 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: true,
        },
    );
}

/// Whoever summarizes part 1 panics while the other waits on `summarized` (or on the
/// publish, or for the next feed).
#[test]
fn a_panic_in_summarize_ends_the_run_for_both() {
    model(
        Fault::SummarizePanic { step: 0, part: 1 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: true,
        },
    );
}

/// The worker's decide panics (when it claimed a part and so decides): the leader is
/// waiting on `updated` for the worker's parts.
#[test]
fn a_worker_panic_in_decide_ends_the_run_for_both() {
    model(
        Fault::DecidePanic { step: 0, worker: 1 },
        Require {
            completed: true,
            by_leader: false,
            by_worker: true,
        },
    );
}

/// The leader's decide panics (it always decides) while the worker waits on
/// `summarized`, on `fed`, or has updated its part.
#[test]
fn a_leader_panic_in_decide_ends_the_run_for_both() {
    model(
        Fault::DecidePanic { step: 0, worker: 0 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: false,
        },
    );
}

/// The worker's decide returns an error: reported as the hook's error by the worker,
/// `Aborted` by the leader.
#[test]
fn a_worker_decide_error_ends_the_run_for_both() {
    model(
        Fault::DecideErr { step: 0, worker: 1 },
        Require {
            completed: true,
            by_leader: false,
            by_worker: true,
        },
    );
}

/// The leader's decide returns an error while the worker waits.
#[test]
fn a_leader_decide_error_ends_the_run_for_both() {
    model(
        Fault::DecideErr { step: 0, worker: 0 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: false,
        },
    );
}

/// Whoever computes slot 1 panics while the other waits on the publish (or for the
/// next feed).
#[test]
fn a_panic_in_compute_ends_the_run_for_both() {
    model(
        Fault::ComputePanic { step: 0, slot: 1 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: true,
        },
    );
}

/// Two steps, whoever updates part 1 of step 1 panics: step 0 completes with the
/// reference decision, then both end.
#[test]
fn a_panic_in_update_of_step_1_ends_the_run_for_both() {
    model_of(
        Shape { steps: 2, ..SHAPE },
        Fault::UpdatePanic { step: 1, part: 1 },
        Require {
            completed: false,
            by_leader: true,
            by_worker: true,
        },
    );
}
