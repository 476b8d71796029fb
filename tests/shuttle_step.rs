//! shuttle randomized model checks of `cllm::step::StepProtocol` over the `Shuttle`
//! platform (random and PCT schedulers, `CLLM_SHUTTLE_ITERS` iterations each, default
//! 1000): the leader on the test's main thread plus 3 workers running `work`, 2-5
//! slots, 3-5 parts (some empty), 4 consecutive steps.
//!
//! Owns: the StepProtocol shuttle properties only. Which participant computes which
//! job, reduces which part, and how far an idle worker runs ahead into the next step
//! is up to the schedule. Checked in every iteration: every decision any participant
//! reaches equals the decision of a plain sequential computation written here (same
//! inputs, bitwise); the final weights, last reduced gradient and aux buffer are
//! bitwise the reference; every part is updated exactly once per step. A failing
//! hook (a compute error in whoever takes one job, or a decide error everywhere) makes
//! every participant return: the failing one(s) with the hook's error, the rest with
//! `Aborted`, the leader in the failing step; weights and aux are those after the
//! steps before it (no part of the failed step is updated). A lost wake-up or a hang
//! is a shuttle deadlock report.
//! A panic in any hook (compute, summarize, decide, update) or an error from decide,
//! in whichever participant runs it (`tests/step_faults`), ends the run for everyone
//! without the harness aborting it: the one that failed reports
//! `Panicked { step, worker }` (or the error), every other participant `Aborted`.
//! Not here: a panic in compute. It unwinds through the slot writer's `Drop`, which
//! notifies an `Event`, and shuttle models a mutex released during unwinding as
//! poisoned (it drops the waiters); `tests/loom_step_faults.rs` checks that case.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;
mod step_faults;
mod step_toy;

use cllm::segments::PART_ALIGN;
use cllm::step::{StepError, StepHooks, StepProtocol, WorkerStats};
use common::{shuttle_check, Shuttle};
use core::cell::RefCell;
use core::ops::Range;
use shuttle::sync::Arc;
use shuttle::thread;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use step_toy::*;

const WORKERS: usize = 3;
const STEPS: usize = 4;

/// The shape of one check.
#[derive(Debug, Clone, Copy)]
struct Shape {
    n_slots: usize,
    n_parts: usize,
    len: usize,
}

impl Shape {
    /// The parts, written independently of the library: interior boundaries at
    /// `floor(len * p / n_parts)` rounded down to the `PART_ALIGN` grid.
    fn parts(&self) -> Vec<Range<usize>> {
        let bound = |p: usize| {
            if p == self.n_parts {
                self.len
            } else {
                (self.len * p / self.n_parts) / PART_ALIGN * PART_ALIGN
            }
        };
        (0..self.n_parts).map(|p| bound(p)..bound(p + 1)).collect()
    }
}

// ---- the test's hooks: tiny, deterministic, order-sensitive ----------------------
/// A hook's injected failure: where it happened.
#[derive(Debug, Clone, PartialEq)]
enum Injected {
    Compute {
        step: usize,
        slot: usize,
        worker: usize,
    },
    Decide {
        step: usize,
    },
}

/// Where to inject a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Whoever computes this (step, slot) fails.
    Compute {
        step: usize,
        slot: usize,
    },
    /// Every participant's decide fails in this step.
    Decide {
        step: usize,
    },
}

struct Hooks {
    worker: usize,
    fault: Fault,
    decided: RefCell<Vec<Decision>>,
    /// (step, part start, part end, decision factor bits) per update.
    updates: Vec<(usize, usize, usize, u32)>,
}

impl Hooks {
    fn new(worker: usize, fault: Fault) -> Self {
        Hooks {
            worker,
            fault,
            decided: RefCell::new(Vec::new()),
            updates: Vec::new(),
        }
    }
}

impl StepHooks<Payload> for Hooks {
    type Error = Injected;
    type Decision = Decision;

    fn compute(&mut self, w: &[f32], job: &Payload, grad: &mut [f32]) -> Result<f32, Injected> {
        if self.fault
            == (Fault::Compute {
                step: job.step,
                slot: job.slot,
            })
        {
            return Err(Injected::Compute {
                step: job.step,
                slot: job.slot,
                worker: self.worker,
            });
        }
        Ok(job_gradient(w, *job, grad))
    }

    fn summarize(&mut self, range: Range<usize>, grad: &[f32], out: &mut Vec<f64>) {
        part_summary(range, grad, out);
    }

    fn decide(
        &self,
        step: usize,
        losses: &[f32],
        summaries: &[&Vec<f64>],
    ) -> Result<Decision, Injected> {
        if self.fault == (Fault::Decide { step }) {
            return Err(Injected::Decide { step });
        }
        let d = decision(step, losses, summaries);
        self.decided.borrow_mut().push(d.clone());
        Ok(d)
    }

    fn update(
        &mut self,
        d: &Decision,
        range: Range<usize>,
        weights: &mut [f32],
        grad: &[f32],
        aux: &mut [&mut [f32]],
    ) {
        part_update(d.c, weights, grad, aux[0]);
        self.updates
            .push((d.step, range.start, range.end, d.c.to_bits()));
    }
}

// ---- the sequential reference ----------------------------------------------------

/// The state after `steps` steps, computed on one thread without the library.
struct Expected {
    decisions: Vec<Decision>,
    weights: Vec<u32>,
    grad: Vec<u32>,
    aux: Vec<u32>,
}

fn expected(shape: Shape, steps: usize) -> Expected {
    let Shape { n_slots, len, .. } = shape;
    let mut w = initial_weights(len);
    let mut aux = vec![0.0f32; len];
    let mut sum = vec![0.0f32; len];
    let mut decisions = Vec::new();
    for step in 0..steps {
        let mut grads = vec![vec![0.0f32; len]; n_slots];
        let losses: Vec<f32> = (0..n_slots)
            .map(|slot| job_gradient(&w, Payload { step, slot }, &mut grads[slot]))
            .collect();
        for (i, s) in sum.iter_mut().enumerate() {
            let column: Vec<f32> = grads.iter().map(|g| g[i]).collect();
            *s = tree_sum(&column);
        }
        let summaries: Vec<Vec<f64>> = shape
            .parts()
            .into_iter()
            .map(|r| {
                let mut out = Vec::new();
                part_summary(r.clone(), &sum[r], &mut out);
                out
            })
            .collect();
        let refs: Vec<&Vec<f64>> = summaries.iter().collect();
        let d = decision(step, &losses, &refs);
        part_update(d.c, &mut w, &sum, &mut aux);
        decisions.push(d);
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect();
    Expected {
        decisions,
        weights: bits(&w),
        grad: bits(&sum),
        aux: bits(&aux),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---- one run ---------------------------------------------------------------------

/// What a run produced.
struct Outcome {
    /// The leader's decisions of the steps it completed.
    decisions: Vec<Decision>,
    /// The leader's failure and its step.
    failure: Option<(usize, StepError<Injected>)>,
    /// Each worker's (1..=WORKERS) result.
    workers: Vec<Result<(), StepError<Injected>>>,
    /// Every participant's hooks (index = participant, 0 the leader).
    hooks: Vec<Hooks>,
    stats: Vec<WorkerStats>,
    weights: Vec<f32>,
    grad: Vec<f32>,
    aux: Vec<f32>,
}

/// The leader feeds and leads `STEPS` steps on this thread while `WORKERS` workers
/// run `work`; then stop (or abort after a failure, as the trainer does) and join.
fn run_once(shape: Shape, fault: Fault) -> Outcome {
    let Shape {
        n_slots,
        n_parts,
        len,
    } = shape;
    let protocol = Arc::new(
        StepProtocol::<Payload, Shuttle>::new(
            n_slots,
            n_parts,
            initial_weights(len),
            vec![vec![0.0; len]],
        )
        .unwrap(),
    );
    let handles: Vec<_> = (1..=WORKERS)
        .map(|worker| {
            let protocol = protocol.clone();
            thread::spawn(move || {
                let mut hooks = Hooks::new(worker, fault);
                let mut stats = WorkerStats::default();
                let result = protocol.work(worker, &mut hooks, &mut stats);
                (result, hooks, stats)
            })
        })
        .collect();
    let mut hooks = Hooks::new(0, fault);
    let mut stats = WorkerStats::default();
    let mut decisions = Vec::new();
    let mut failure = None;
    for step in 0..STEPS {
        let jobs = (0..n_slots).map(|slot| Payload { step, slot });
        // Feeding fails only if a participant aborted the run meanwhile.
        match protocol.feed(step, jobs) {
            Ok(()) => {}
            Err(StepError::Aborted) => {
                failure = Some((step, StepError::Aborted));
                break;
            }
            Err(e) => panic!("feeding step {step}: {e}"),
        }
        match protocol.lead(step, &mut hooks, &mut stats) {
            Ok(d) => decisions.push(d),
            Err(e) => {
                failure = Some((step, e));
                break;
            }
        }
    }
    if failure.is_some() {
        protocol.abort();
    } else {
        protocol.stop();
    }
    let mut all_hooks = vec![hooks];
    let mut all_stats = vec![stats];
    let mut workers = Vec::new();
    for h in handles {
        let (result, hooks, stats) = h.join().unwrap();
        workers.push(result);
        all_hooks.push(hooks);
        all_stats.push(stats);
    }
    let protocol = Arc::try_unwrap(protocol)
        .ok()
        .expect("every participant is gone");
    let (weights, grad, mut aux) = protocol.into_buffers();
    Outcome {
        decisions,
        failure,
        workers,
        hooks: all_hooks,
        stats: all_stats,
        weights,
        grad,
        aux: aux.pop().unwrap(),
    }
}

/// Every decision any participant reached is the reference decision of its step.
fn assert_decisions_agree(out: &Outcome, want: &Expected) {
    for (i, h) in out.hooks.iter().enumerate() {
        for d in h.decided.borrow().iter() {
            assert_eq!(d, &want.decisions[d.step], "participant {i}'s decision");
        }
    }
}

// ---- the checks ------------------------------------------------------------------

/// No fault: everything equals the reference, every part updated once per step.
fn check(shape: Shape) {
    let want = std::sync::Arc::new(expected(shape, STEPS));
    shuttle_check(move || {
        let out = run_once(shape, Fault::None);
        assert!(out.failure.is_none(), "leader: {:?}", out.failure);
        for (i, r) in out.workers.iter().enumerate() {
            assert!(r.is_ok(), "worker {}: {r:?}", i + 1);
        }
        assert_eq!(out.decisions, want.decisions, "the leader's decisions");
        assert_decisions_agree(&out, &want);
        assert_eq!(bits(&out.weights), want.weights, "final weights");
        assert_eq!(bits(&out.grad), want.grad, "last reduced gradient");
        assert_eq!(bits(&out.aux), want.aux, "final aux");
        let mut updates: Vec<_> = out.hooks.iter().flat_map(|h| h.updates.clone()).collect();
        updates.sort_unstable();
        let parts = shape.parts();
        let want_updates: Vec<_> = (0..STEPS)
            .flat_map(|s| {
                let c = want.decisions[s].c.to_bits();
                parts.iter().map(move |r| (s, r.start, r.end, c))
            })
            .collect();
        assert_eq!(updates, want_updates, "one update per step and part");
        let total = |f: fn(&WorkerStats) -> usize| out.stats.iter().map(f).sum::<usize>();
        assert_eq!(total(|s| s.jobs), STEPS * shape.n_slots);
        assert_eq!(total(|s| s.parts), STEPS * shape.n_parts);
    });
}

/// A length giving each of `n_parts` parts a non-empty range, with a tail that is not
/// a multiple of the SIMD width.
fn len_for(n_parts: usize) -> usize {
    n_parts * PART_ALIGN + 5
}

#[test]
fn leader_and_three_workers_five_slots_three_parts() {
    check(Shape {
        n_slots: 5,
        n_parts: 3,
        len: len_for(3),
    });
}

/// More workers than jobs: idle workers race ahead to the next step's claims and
/// feed wait while the others compute, reduce and update.
#[test]
fn leader_and_three_workers_two_slots_four_parts() {
    check(Shape {
        n_slots: 2,
        n_parts: 4,
        len: len_for(4),
    });
}

/// Parts cut on the PART_ALIGN grid leave some of five parts empty: their claimers
/// still summarize, decide and count them.
#[test]
fn leader_and_three_workers_four_slots_five_parts_some_empty() {
    let shape = Shape {
        n_slots: 4,
        n_parts: 5,
        len: 2 * PART_ALIGN + 3,
    };
    assert!(shape.parts().iter().any(|r| r.is_empty()));
    check(shape);
}

/// Run with a fault at step `step`: every participant returns (no deadlock), the
/// failing ones report the hook's error, everyone else `Aborted`, the leader in step
/// `step`; the state is the reference after `step` steps. Returns how many
/// iterations had a worker (not the leader) report the hook error.
fn check_fault(shape: Shape, fault: Fault, step: usize) -> usize {
    let before = std::sync::Arc::new(expected(shape, step));
    let full = std::sync::Arc::new(expected(shape, STEPS));
    let worker_failed = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = worker_failed.clone();
    shuttle_check(move || {
        let out = run_once(shape, fault);
        assert_decisions_agree(&out, &full);
        assert_eq!(out.decisions, before.decisions, "steps before the fault");
        let (at, leader) = out.failure.as_ref().expect("the leader must fail");
        assert_eq!(*at, step, "the leader fails in the faulty step");
        let mut reports = Vec::new();
        match leader {
            StepError::Hook(e) => reports.push((0, e.clone())),
            StepError::Aborted => {}
            other => panic!("leader: {other:?}"),
        }
        for (i, r) in out.workers.iter().enumerate() {
            match r {
                Err(StepError::Hook(e)) => reports.push((i + 1, e.clone())),
                Err(StepError::Aborted) => {}
                other => panic!("worker {}: {other:?}", i + 1),
            }
        }
        match fault {
            Fault::Compute { step, slot } => {
                assert_eq!(reports.len(), 1, "exactly one compute fails: {reports:?}");
                let (who, e) = &reports[0];
                assert_eq!(
                    e,
                    &Injected::Compute {
                        step,
                        slot,
                        worker: *who
                    }
                );
                if *who != 0 {
                    counter.fetch_add(1, SeqCst);
                }
            }
            Fault::Decide { step } => {
                assert!(!reports.is_empty(), "the decide error is reported");
                assert!(
                    reports.iter().all(|(_, e)| *e == Injected::Decide { step }),
                    "{reports:?}"
                );
                assert!(
                    reports.iter().any(|(who, _)| *who == 0),
                    "the leader always decides"
                );
            }
            Fault::None => unreachable!(),
        }
        // No part of the failed step was updated.
        assert_eq!(
            bits(&out.weights),
            before.weights,
            "weights after the fault"
        );
        assert_eq!(bits(&out.aux), before.aux, "aux after the fault");
        let updated = out.hooks.iter().flat_map(|h| &h.updates);
        assert!(
            updated.clone().all(|u| u.0 < step),
            "an update of the failed step"
        );
    });
    worker_failed.load(SeqCst)
}

#[test]
fn a_compute_error_in_step_2_stops_everyone() {
    let shape = Shape {
        n_slots: 5,
        n_parts: 3,
        len: len_for(3),
    };
    let by_workers = check_fault(shape, Fault::Compute { step: 2, slot: 3 }, 2);
    eprintln!("shuttle_step: a worker (not the leader) failed in {by_workers} iterations");
    assert!(by_workers > 0, "the failing job never went to a worker");
}

#[test]
fn a_compute_error_in_step_0_stops_everyone() {
    let shape = Shape {
        n_slots: 2,
        n_parts: 4,
        len: len_for(4),
    };
    let by_workers = check_fault(shape, Fault::Compute { step: 0, slot: 1 }, 0);
    assert!(by_workers > 0, "the failing job never went to a worker");
}

#[test]
fn a_decide_error_in_step_1_stops_everyone() {
    let shape = Shape {
        n_slots: 4,
        n_parts: 3,
        len: len_for(3),
    };
    check_fault(shape, Fault::Decide { step: 1 }, 1);
}

// ---- a panic or error in every hook, whoever runs it ---------------------------------

/// The fault shape: 3 workers + the leader, 5 slots, 3 parts, 4 steps.
const FAULT_SHAPE: step_faults::Shape = step_faults::Shape {
    workers: WORKERS,
    n_slots: 5,
    n_parts: 3,
    len: 3 * PART_ALIGN + 5,
    steps: STEPS,
};

/// Every iteration passes `step_faults::check`; returns how the iterations ended
/// (completed, failed in the leader, failed in a worker).
fn check_hook_fault(fault: step_faults::Fault) -> (usize, usize, usize) {
    common::quiet_panics(&[step_faults::PANIC]);
    let full = std::sync::Arc::new(step_faults::expected(FAULT_SHAPE, STEPS));
    let tally = std::sync::Arc::new(step_faults::Tally::default());
    {
        let (full, tally) = (full.clone(), tally.clone());
        shuttle_check(move || {
            let out = step_faults::run::<Shuttle>(FAULT_SHAPE, fault);
            tally.add(step_faults::check(FAULT_SHAPE, fault, &out, &full));
        });
    }
    let counts = tally.get();
    eprintln!("shuttle_step {fault:?}: (completed, by leader, by a worker) = {counts:?}");
    counts
}

#[test]
fn a_panic_in_update_stops_everyone() {
    let (completed, by_leader, by_worker) =
        check_hook_fault(step_faults::Fault::UpdatePanic { step: 2, part: 1 });
    assert_eq!(completed, 0, "every part is updated");
    assert!(
        by_leader > 0 && by_worker > 0,
        "the leader and a worker both hit it"
    );
}

#[test]
fn a_panic_in_summarize_stops_everyone() {
    let (completed, by_leader, by_worker) =
        check_hook_fault(step_faults::Fault::SummarizePanic { step: 1, part: 2 });
    assert_eq!(completed, 0, "every part is summarized");
    assert!(
        by_leader > 0 && by_worker > 0,
        "the leader and a worker both hit it"
    );
}

/// A compute error (a panic there is loom's: see the module doc), with the harness
/// not aborting the run: the protocol must.
#[test]
fn a_compute_error_stops_everyone_without_the_callers_abort() {
    let (completed, _, by_worker) =
        check_hook_fault(step_faults::Fault::ComputeErr { step: 3, slot: 4 });
    assert_eq!(completed, 0, "every job is computed");
    assert!(by_worker > 0, "a worker hit it");
}

#[test]
fn a_worker_panic_in_decide_stops_everyone() {
    let (completed, by_leader, by_worker) =
        check_hook_fault(step_faults::Fault::DecidePanic { step: 2, worker: 2 });
    assert_eq!(by_leader, 0);
    assert!(
        completed > 0 && by_worker > 0,
        "worker 2 decided in some iterations only"
    );
}

#[test]
fn a_leader_panic_in_decide_stops_everyone() {
    let (completed, by_leader, by_worker) =
        check_hook_fault(step_faults::Fault::DecidePanic { step: 0, worker: 0 });
    assert_eq!((completed, by_worker), (0, 0), "the leader always decides");
    assert!(by_leader > 0);
}

#[test]
fn a_worker_decide_error_stops_everyone() {
    let (completed, _, by_worker) =
        check_hook_fault(step_faults::Fault::DecideErr { step: 3, worker: 3 });
    assert!(
        completed > 0 && by_worker > 0,
        "worker 3 decided in some iterations only"
    );
}
