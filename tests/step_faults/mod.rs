//! A platform-generic harness for runs of `cllm::step::StepProtocol` with one injected
//! fault (a panic in any hook, or an `Err` from `compute` or `decide`), shared by
//! `tests/loom_step_faults.rs`, `tests/loom_spin.rs`, `tests/shuttle_step.rs`,
//! `tests/shuttle_spin.rs` and `tests/std_wait.rs`: the same run and the same checks
//! under loom, shuttle (each with and without spinning) and the production `Std`.
//!
//! Owns: the fault-injecting hooks, one run (the leader on the calling thread, the
//! workers spawned through the platform), the sequential reference it is compared
//! with, and the assertions about who reports what. Threads are spawned with
//! `P::spawn` and shared through `std::sync::Arc` (neither checker needs its own `Arc`
//! for this: the protocol's shared state is all in `P`'s types).
//! Must never use the library's reduction, parts or optimizer for the expected values
//! (written here, independently), and never abort the run itself after a failure: the
//! protocol must have done that, which is one of the checked properties.
#![allow(dead_code)]

use crate::step_toy::*;
use cllm::segments::PART_ALIGN;
use cllm::step::{StepError, StepHooks, StepProtocol, WorkerStats};
use cllm::sync::{Join, Platform};
use core::cell::Cell;
use core::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// The panic message prefix of every injected panic (see `common::quiet_panics`).
pub const PANIC: &str = "injected panic (step_faults)";

/// The shape of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Non-leading workers (participants are 0 = the leader, 1..=workers).
    pub workers: usize,
    pub n_slots: usize,
    pub n_parts: usize,
    pub len: usize,
    pub steps: usize,
}

impl Shape {
    /// The parts, written independently of the library: interior boundaries at
    /// `floor(len * p / n_parts)` rounded down to the `PART_ALIGN` grid.
    pub fn parts(&self) -> Vec<Range<usize>> {
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

/// Where to inject the one fault of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    /// Whoever computes job `slot` of `step` panics.
    ComputePanic {
        step: usize,
        slot: usize,
    },
    /// Whoever computes job `slot` of `step` returns an error.
    ComputeErr {
        step: usize,
        slot: usize,
    },
    /// Whoever summarizes part `part` in `step` panics.
    SummarizePanic {
        step: usize,
        part: usize,
    },
    /// Whoever updates part `part` in `step` panics.
    UpdatePanic {
        step: usize,
        part: usize,
    },
    /// Participant `worker`'s decide panics in `step` (if it decides: the leader
    /// always does, a worker only when it claimed a part).
    DecidePanic {
        step: usize,
        worker: usize,
    },
    /// Participant `worker`'s decide returns an error in `step`.
    DecideErr {
        step: usize,
        worker: usize,
    },
}

impl Fault {
    fn step(&self) -> Option<usize> {
        match *self {
            Fault::None => None,
            Fault::ComputePanic { step, .. }
            | Fault::ComputeErr { step, .. }
            | Fault::SummarizePanic { step, .. }
            | Fault::UpdatePanic { step, .. }
            | Fault::DecidePanic { step, .. }
            | Fault::DecideErr { step, .. } => Some(step),
        }
    }
}

/// A hook's injected error: where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub step: usize,
    pub worker: usize,
}

/// One participant's hooks.
pub struct Hooks {
    worker: usize,
    fault: Fault,
    parts: Vec<Range<usize>>,
    /// How many times each part was summarized so far, by anyone: part `p`'s `k`-th
    /// summary is that of step `k` (each part is summarized exactly once per step).
    summarized: Arc<[AtomicUsize]>,
    /// The step in which this participant's fault fired (a `Cell`: `decide` has
    /// `&self`).
    pub fired: Cell<Option<usize>>,
    /// (step, part start, part end, decision factor bits) per update.
    pub updates: Vec<(usize, usize, usize, u32)>,
}

impl Hooks {
    pub fn new(worker: usize, fault: Fault, shape: Shape, summarized: Arc<[AtomicUsize]>) -> Self {
        Hooks {
            worker,
            fault,
            parts: shape.parts(),
            summarized,
            fired: Cell::new(None),
            updates: Vec::new(),
        }
    }

    /// Record the fault firing in `step`; panic, or return the error to report.
    fn fire(&self, step: usize, panic: bool) -> Injected {
        self.fired.set(Some(step));
        if panic {
            panic!("{PANIC}: worker {} in step {step}", self.worker);
        }
        Injected {
            step,
            worker: self.worker,
        }
    }

    /// Which part `range` is; `None` for an empty one (several empty parts may share
    /// a range, and no fault is ever injected into one).
    fn part_of(&self, range: &Range<usize>) -> Option<usize> {
        if range.is_empty() {
            return None;
        }
        Some(
            self.parts
                .iter()
                .position(|r| r == range)
                .expect("a range that is one of the parts"),
        )
    }
}

impl StepHooks<Payload> for Hooks {
    type Error = Injected;
    type Decision = Decision;

    fn compute(&mut self, w: &[f32], job: &Payload, grad: &mut [f32]) -> Result<f32, Injected> {
        let here = (job.step, job.slot);
        match self.fault {
            Fault::ComputePanic { step, slot } if (step, slot) == here => {
                self.fire(step, true);
            }
            Fault::ComputeErr { step, slot } if (step, slot) == here => {
                return Err(self.fire(step, false));
            }
            _ => {}
        }
        Ok(job_gradient(w, *job, grad))
    }

    fn summarize(&mut self, range: Range<usize>, grad: &[f32], out: &mut Vec<f64>) {
        if let Some(part) = self.part_of(&range) {
            let step = self.summarized[part].fetch_add(1, SeqCst);
            if self.fault == (Fault::SummarizePanic { step, part }) {
                self.fire(step, true);
            }
        }
        part_summary(range, grad, out);
    }

    fn decide(
        &self,
        step: usize,
        losses: &[f32],
        summaries: &[&Vec<f64>],
    ) -> Result<Decision, Injected> {
        match self.fault {
            Fault::DecidePanic { step: s, worker } if (s, worker) == (step, self.worker) => {
                self.fire(step, true);
            }
            Fault::DecideErr { step: s, worker } if (s, worker) == (step, self.worker) => {
                return Err(self.fire(step, false));
            }
            _ => {}
        }
        Ok(decision(step, losses, summaries))
    }

    fn update(
        &mut self,
        d: &Decision,
        range: Range<usize>,
        weights: &mut [f32],
        grad: &[f32],
        aux: &mut [&mut [f32]],
    ) {
        if let Some(part) = self.part_of(&range) {
            if self.fault == (Fault::UpdatePanic { step: d.step, part }) {
                self.fire(d.step, true);
            }
        }
        part_update(d.c, weights, grad, aux[0]);
        self.updates
            .push((d.step, range.start, range.end, d.c.to_bits()));
    }
}

/// The state after `steps` steps, computed on one thread without the library.
pub struct Expected {
    pub decisions: Vec<Decision>,
    pub weights: Vec<u32>,
    pub grad: Vec<u32>,
    pub aux: Vec<u32>,
}

pub fn expected(shape: Shape, steps: usize) -> Expected {
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
    Expected {
        decisions,
        weights: bits(&w),
        grad: bits(&sum),
        aux: bits(&aux),
    }
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---- one run -----------------------------------------------------------------------

/// What a run produced.
pub struct Outcome {
    /// The leader's decisions of the steps it completed.
    pub decisions: Vec<Decision>,
    /// The leader's failure and its step.
    pub failure: Option<(usize, StepError<Injected>)>,
    /// Each worker's (1..=workers) result.
    pub workers: Vec<Result<(), StepError<Injected>>>,
    /// Every participant's hooks (index = participant, 0 the leader).
    pub hooks: Vec<Hooks>,
    pub stats: Vec<WorkerStats>,
    pub weights: Vec<f32>,
    pub grad: Vec<f32>,
    pub aux: Vec<f32>,
}

/// The leader feeds and leads `shape.steps` steps on this thread while the workers
/// run `work` on threads spawned with `P::spawn`; then `stop` if every step
/// completed. After a failure the run is NOT aborted here: the protocol must have
/// aborted it (asserted), or the workers never return (a checker's deadlock report,
/// or the caller's watchdog on `Std`).
pub fn run<P: Platform>(shape: Shape, fault: Fault) -> Outcome {
    let protocol = Arc::new(
        StepProtocol::<Payload, P>::new(
            shape.n_slots,
            shape.n_parts,
            initial_weights(shape.len),
            vec![vec![0.0; shape.len]],
        )
        .expect("a valid layout"),
    );
    let summarized: Arc<[AtomicUsize]> = (0..shape.n_parts).map(|_| AtomicUsize::new(0)).collect();
    let handles: Vec<_> = (1..=shape.workers)
        .map(|worker| {
            let protocol = Arc::clone(&protocol);
            let mut hooks = Hooks::new(worker, fault, shape, Arc::clone(&summarized));
            P::spawn("step worker", move || {
                let mut stats = WorkerStats::default();
                let result = protocol.work(worker, &mut hooks, &mut stats);
                (result, hooks, stats)
            })
            .expect("spawn a worker")
        })
        .collect();
    let mut hooks = Hooks::new(0, fault, shape, summarized);
    let mut stats = WorkerStats::default();
    let mut decisions = Vec::new();
    let mut failure = None;
    for step in 0..shape.steps {
        let jobs = (0..shape.n_slots).map(|slot| Payload { step, slot });
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
    match &failure {
        None => protocol.stop(),
        Some((step, e)) => assert!(
            protocol.is_aborted(),
            "the leader failed in step {step} ({e:?}) but the run is not aborted"
        ),
    }
    let mut all_hooks = vec![hooks];
    let mut all_stats = vec![stats];
    let mut workers = Vec::new();
    for h in handles {
        let (result, hooks, stats) = h.join().expect("a worker thread never panics");
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
        aux: aux.pop().expect("one aux buffer"),
    }
}

// ---- the checks ----------------------------------------------------------------------

/// How a run ended, for the callers' "both kinds occurred" counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The fault never fired (its participant never ran that hook in that step) and
    /// every step completed.
    Completed,
    /// The fault fired in this participant (0 = the leader).
    FailedIn(usize),
}

/// Check everything a run of `shape` with `fault` must show (`full` is
/// `expected(shape, shape.steps)`):
/// * every update any participant applied used the reference decision of its step;
/// * if the fault fired (in exactly one participant `i`, in step `s`): `i` reports
///   `Panicked { step: s, worker: i }` (a panic) or `Hook(Injected { s, i })` (an
///   error), every other participant `Aborted`, the leader in step `s`; the leader's
///   decisions are the reference's of the steps before `s`; nothing of a later step
///   was updated, every earlier step's parts exactly once; and when the fault is in
///   compute or summarize (so nobody can decide step `s`), nothing of step `s` either:
///   the weights and aux are the reference's after `s` steps;
/// * otherwise: every step completed, everything bitwise the reference, every part
///   updated exactly once per step, and the work adds up.
pub fn check(shape: Shape, fault: Fault, out: &Outcome, full: &Expected) -> Ended {
    let updates: Vec<_> = out.hooks.iter().flat_map(|h| h.updates.clone()).collect();
    for u in &updates {
        assert_eq!(
            u.3,
            full.decisions[u.0].c.to_bits(),
            "an update of step {} with another decision",
            u.0
        );
    }
    let parts = shape.parts();
    let updated_once = |steps: Range<usize>| {
        let mut got: Vec<_> = updates
            .iter()
            .filter(|u| steps.contains(&u.0))
            .cloned()
            .collect();
        got.sort_unstable();
        let mut want: Vec<_> = steps
            .flat_map(|s| {
                let c = full.decisions[s].c.to_bits();
                parts.iter().map(move |r| (s, r.start, r.end, c))
            })
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "every part updated exactly once per step");
    };
    let fired: Vec<(usize, usize)> = out
        .hooks
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.fired.get().map(|s| (i, s)))
        .collect();
    assert!(fired.len() <= 1, "one fault fired twice: {fired:?}");
    let Some(&(who, step)) = fired.first() else {
        assert!(out.failure.is_none(), "leader: {:?}", out.failure);
        for (i, r) in out.workers.iter().enumerate() {
            assert!(r.is_ok(), "worker {}: {r:?}", i + 1);
        }
        assert_eq!(out.decisions, full.decisions, "the leader's decisions");
        assert_eq!(bits(&out.weights), full.weights, "final weights");
        assert_eq!(bits(&out.grad), full.grad, "last reduced gradient");
        assert_eq!(bits(&out.aux), full.aux, "final aux");
        updated_once(0..shape.steps);
        let total = |f: fn(&WorkerStats) -> usize| out.stats.iter().map(f).sum::<usize>();
        assert_eq!(total(|s| s.jobs), shape.steps * shape.n_slots, "jobs");
        assert_eq!(total(|s| s.parts), shape.steps * shape.n_parts, "parts");
        return Ended::Completed;
    };
    assert_eq!(fault.step(), Some(step), "the fault fired in its step");
    let panicked = matches!(
        fault,
        Fault::ComputePanic { .. }
            | Fault::SummarizePanic { .. }
            | Fault::UpdatePanic { .. }
            | Fault::DecidePanic { .. }
    );
    let reported = |i: usize, e: &StepError<Injected>| match e {
        StepError::Panicked { step: s, worker } => {
            assert!(panicked, "participant {i} reports a panic for {fault:?}");
            assert_eq!((*s, *worker), (step, i), "participant {i}'s panic report");
        }
        StepError::Hook(e) => {
            assert!(!panicked, "participant {i} reports an error for {fault:?}");
            assert_eq!(e, &Injected { step, worker: i }, "participant {i}'s error");
        }
        other => panic!("participant {i} failed with {other:?}, not its own fault"),
    };
    let (at, leader) = out.failure.as_ref().expect("the leader must fail");
    assert_eq!(*at, step, "the leader fails in the faulty step");
    if who == 0 {
        reported(0, leader);
    } else {
        assert!(matches!(leader, StepError::Aborted), "leader: {leader:?}");
    }
    for (i, r) in out.workers.iter().enumerate().map(|(i, r)| (i + 1, r)) {
        match r {
            Err(e) if i == who => reported(i, e),
            Err(StepError::Aborted) => {}
            other => panic!("worker {i}: {other:?} (fault in participant {who}, step {step})"),
        }
    }
    assert_eq!(
        out.decisions[..],
        full.decisions[..step],
        "the leader's decisions before the fault"
    );
    assert!(
        updates.iter().all(|u| u.0 <= step),
        "an update of a step after the fault"
    );
    updated_once(0..step);
    if matches!(
        fault,
        Fault::ComputePanic { .. } | Fault::ComputeErr { .. } | Fault::SummarizePanic { .. }
    ) {
        let before = expected(shape, step);
        assert!(
            updates.iter().all(|u| u.0 < step),
            "an update of the failed step"
        );
        assert_eq!(
            bits(&out.weights),
            before.weights,
            "weights after the fault"
        );
        assert_eq!(bits(&out.aux), before.aux, "aux after the fault");
    }
    Ended::FailedIn(who)
}

/// Counts of how the runs of one property ended.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: AtomicUsize,
    pub by_leader: AtomicUsize,
    pub by_worker: AtomicUsize,
}

impl Tally {
    pub fn add(&self, ended: Ended) {
        let c = match ended {
            Ended::Completed => &self.completed,
            Ended::FailedIn(0) => &self.by_leader,
            Ended::FailedIn(_) => &self.by_worker,
        };
        c.fetch_add(1, SeqCst);
    }
    pub fn get(&self) -> (usize, usize, usize) {
        (
            self.completed.load(SeqCst),
            self.by_leader.load(SeqCst),
            self.by_worker.load(SeqCst),
        )
    }
}
