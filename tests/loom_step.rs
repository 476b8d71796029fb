//! loom model checks of `cllm::step::StepProtocol` over the `Loom` platform,
//! exhaustive within a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides).
//!
//! Owns: the StepProtocol loom properties only. Two participants (the leader on the
//! model's main thread, one worker spawned with `work`), two slots, two parts of
//! `PART_ALIGN` floats, two consecutive steps, so the worker may race into step 1
//! while the leader is still updating step 0. Weights, gradient, aux, summaries and
//! losses sit behind loom-tracked tokens and cells: a job of step `g + 1` reading a
//! weight part before its step-`g` update is ordered after it, a reduction reading a
//! slot before its publish, or a decision reading a summary or loss before it is
//! written is a loom causality violation; a lost wake-up is a loom deadlock report.
//! Checked in every execution: each step's decision (and the inputs it was made
//! from), the final weights, the last reduced gradient and the aux buffer are
//! bitwise equal to a plain sequential computation written here; each part is
//! updated exactly once per step with that step's decision; a hook that panics in
//! the worker makes `work` return `StepError::Panicked { step, worker: 1 }` and the
//! leader `Aborted`, never a hang.
//! Not checkable here: the Release/Acquire pairs on `summarized` and `updated`. Each
//! Release increment is followed by `Event::notify`'s `fence(SeqCst)` with no loom
//! schedule point in between, and loom joins every SeqCst fence into one global
//! causality, so the next fence of the reading thread (the leader's `feed` has one)
//! already orders it; a Relaxed increment there survives this file.
//! `tests/loom_orderings.rs` checks them on a platform with a schedule point before
//! every fence (`tests/loom_point`).
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;
mod step_toy;

use cllm::segments::PART_ALIGN;
use cllm::step::{StepError, StepHooks, StepProtocol, WorkerStats};
use common::{loom_model, Loom};
use core::ops::Range;
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use step_toy::*;

const N_SLOTS: usize = 2;
const N_PARTS: usize = 2;
const LEN: usize = N_PARTS * PART_ALIGN;
const STEPS: usize = 2;

// ---- the test's hooks: tiny, deterministic, order-sensitive ----------------------

#[derive(Debug)]
struct Injected;

/// One participant's hooks. `panic_at`: panic in this participant's first job of
/// that step or later (recording the step first).
struct Hooks {
    panic_at: Option<usize>,
    panicked: Option<usize>,
    /// (step, part start, part end, decision factor bits) per update.
    updates: Vec<(usize, usize, usize, u32)>,
}

impl Hooks {
    fn new(panic_at: Option<usize>) -> Self {
        Hooks {
            panic_at,
            panicked: None,
            updates: Vec::new(),
        }
    }
}

impl StepHooks<Payload> for Hooks {
    type Error = Injected;
    type Decision = Decision;

    fn compute(&mut self, w: &[f32], job: &Payload, grad: &mut [f32]) -> Result<f32, Injected> {
        if self.panic_at.is_some_and(|s| job.step >= s) {
            self.panicked = Some(job.step);
            panic!("injected panic (loom_step)");
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
        part_update(d.c, weights, grad, aux[0]);
        self.updates
            .push((d.step, range.start, range.end, d.c.to_bits()));
    }
}

// ---- the sequential reference ----------------------------------------------------

/// What the run must produce, computed step by step on one thread without the
/// library: per-step decisions, final weights, last summed gradient, final aux.
struct Expected {
    decisions: Vec<Decision>,
    weights: Vec<u32>,
    grad: Vec<u32>,
    aux: Vec<u32>,
}

fn expected(steps: usize) -> Expected {
    let parts: Vec<Range<usize>> = (0..N_PARTS)
        .map(|p| p * PART_ALIGN..(p + 1) * PART_ALIGN)
        .collect();
    let mut w = initial_weights(LEN);
    let mut aux = vec![0.0f32; LEN];
    let mut sum = vec![0.0f32; LEN];
    let mut decisions = Vec::new();
    for step in 0..steps {
        let mut grads = vec![vec![0.0f32; LEN]; N_SLOTS];
        let losses: Vec<f32> = (0..N_SLOTS)
            .map(|slot| job_gradient(&w, Payload { step, slot }, &mut grads[slot]))
            .collect();
        // Two slots: the documented pairwise tree is slot 0 + slot 1.
        for (i, s) in sum.iter_mut().enumerate() {
            *s = grads[0][i] + grads[1][i];
        }
        let summaries: Vec<Vec<f64>> = parts
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                part_summary(r.clone(), &sum[r.clone()], &mut out);
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

// ---- the model -------------------------------------------------------------------

/// What the leader saw: the decisions of the steps it completed, and its error (with
/// the step) if a step failed.
type LeaderOutcome = (Vec<Decision>, Option<(usize, StepError<Injected>)>);

/// One execution: the leader feeds and leads `STEPS` steps on this thread while one
/// worker runs `work`; then stop (or abort after a failed step) and join. Returns the
/// leader's outcome, the worker's result, both hooks and stats, and the buffers.
#[allow(clippy::type_complexity)]
fn run_once(
    worker_panic_at: Option<usize>,
) -> (
    LeaderOutcome,
    Result<(), StepError<Injected>>,
    [Hooks; 2],
    [WorkerStats; 2],
    (Vec<f32>, Vec<f32>, Vec<Vec<f32>>),
) {
    let protocol = Arc::new(
        StepProtocol::<Payload, Loom>::new(
            N_SLOTS,
            N_PARTS,
            initial_weights(LEN),
            vec![vec![0.0; LEN]],
        )
        .unwrap(),
    );
    let worker = {
        let protocol = protocol.clone();
        thread::spawn(move || {
            let mut hooks = Hooks::new(worker_panic_at);
            let mut stats = WorkerStats::default();
            let result = protocol.work(1, &mut hooks, &mut stats);
            (result, hooks, stats)
        })
    };
    let mut hooks = Hooks::new(None);
    let mut stats = WorkerStats::default();
    let mut decisions = Vec::new();
    let mut failure = None;
    for step in 0..STEPS {
        let jobs = (0..N_SLOTS).map(|slot| Payload { step, slot });
        // Feeding fails only if a participant aborted the run meanwhile (the worker
        // may pop and fail on a job of this step before the last one is pushed).
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
    let (worker_result, worker_hooks, worker_stats) = worker.join().unwrap();
    let protocol = Arc::try_unwrap(protocol)
        .ok()
        .expect("every participant is gone");
    let buffers = protocol.into_buffers();
    (
        (decisions, failure),
        worker_result,
        [hooks, worker_hooks],
        [stats, worker_stats],
        buffers,
    )
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Two steps, no failure: every number equals the sequential reference, bitwise,
/// whatever the interleaving; each part is updated exactly once per step with that
/// step's decision; the work adds up.
#[test]
fn two_participants_two_steps_equal_the_sequential_reference() {
    let want = std::sync::Arc::new(expected(STEPS));
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    loom_model(move || {
        counter.fetch_add(1, SeqCst);
        let ((decisions, failure), worker, hooks, stats, (w, g, aux)) = run_once(None);
        assert!(failure.is_none(), "leader failed: {failure:?}");
        assert!(worker.is_ok(), "worker failed: {worker:?}");
        assert_eq!(decisions, want.decisions, "the leader's decisions");
        assert_eq!(bits(&w), want.weights, "final weights");
        assert_eq!(bits(&g), want.grad, "last reduced gradient");
        assert_eq!(bits(&aux[0]), want.aux, "final aux");
        // Each (step, part) updated exactly once, with that step's decision.
        let mut updates: Vec<_> = hooks.iter().flat_map(|h| h.updates.clone()).collect();
        updates.sort_unstable();
        let want_updates: Vec<_> = (0..STEPS)
            .flat_map(|s| {
                let c = want.decisions[s].c.to_bits();
                (0..N_PARTS).map(move |p| (s, p * PART_ALIGN, (p + 1) * PART_ALIGN, c))
            })
            .collect();
        assert_eq!(updates, want_updates, "updates per step and part");
        assert_eq!(stats.iter().map(|s| s.jobs).sum::<usize>(), STEPS * N_SLOTS);
        assert_eq!(
            stats.iter().map(|s| s.parts).sum::<usize>(),
            STEPS * N_PARTS
        );
        assert_eq!(stats[0].steps, STEPS, "the leader takes part in every step");
    });
    eprintln!("loom_step: {} executions", executions.load(SeqCst));
}

/// The worker's compute hook panics in the first job it takes in step `panic_at` or
/// later. Whenever that happens, `work` returns `Panicked { step, worker: 1 }`, the
/// leader's `feed` or `lead` of that step fails with `Aborted` (its own hooks never
/// panic) and every earlier step completed with the reference decision; when the
/// worker took no such job, the run completes as usual. Both kinds of execution must
/// occur.
fn worker_panics(panic_at: usize) {
    common::quiet_panics(&["injected panic"]);
    let want = std::sync::Arc::new(expected(STEPS));
    let panicked = std::sync::Arc::new(AtomicUsize::new(0));
    let completed = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let (panicked, completed) = (panicked.clone(), completed.clone());
        loom_model(move || {
            let ((decisions, failure), worker, hooks, _, (w, _, aux)) = run_once(Some(panic_at));
            match hooks[1].panicked {
                Some(step) => {
                    assert!(step >= panic_at);
                    assert!(
                        matches!(worker, Err(StepError::Panicked { step: s, worker: 1 }) if s == step),
                        "worker: {worker:?} (panicked in step {step})"
                    );
                    match &failure {
                        // The leader's own hooks never panic: anything but
                        // `Aborted` (say, a loom report caught by the protocol's
                        // panic guard) is a failure.
                        Some((s, StepError::Aborted)) => {
                            assert_eq!(*s, step, "the leader fails in the step of the panic")
                        }
                        other => panic!("leader: {other:?} (worker panicked in step {step})"),
                    }
                    assert_eq!(decisions[..], want.decisions[..step]);
                    panicked.fetch_add(1, SeqCst);
                }
                None => {
                    assert!(failure.is_none(), "leader failed: {failure:?}");
                    assert!(worker.is_ok(), "worker failed: {worker:?}");
                    assert_eq!(decisions, want.decisions);
                    assert_eq!(bits(&w), want.weights);
                    assert_eq!(bits(&aux[0]), want.aux);
                    completed.fetch_add(1, SeqCst);
                }
            }
        });
    }
    eprintln!(
        "loom_step: panic at step {panic_at}: {} executions panicked, {} completed",
        panicked.load(SeqCst),
        completed.load(SeqCst)
    );
    assert!(panicked.load(SeqCst) > 0, "no execution reached the panic");
    assert!(completed.load(SeqCst) > 0, "no execution completed");
}

#[test]
fn a_worker_panic_in_step_0_is_reported_not_hung() {
    worker_panics(0);
}

#[test]
fn a_worker_panic_in_step_1_is_reported_not_hung() {
    worker_panics(1);
}
