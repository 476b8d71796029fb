//! Owns the barrier scheduler: the design the seed notes started from, kept as the
//! measured baseline. Workers live for the whole run; every step the main thread
//! draws the micro-batches, all participants meet at a barrier ([`Barrier`]: the
//! algorithm of `std::sync::Barrier`, a generation count under a mutex, built on
//! `parking_lot` so ThreadSanitizer sees its synchronization; std's own is
//! uninstrumented here and makes TSan report false races), each
//! computes a fixed share (micro-batch `m` goes to worker `m % n`) into slot `m`,
//! they meet again, and the main thread alone reduces and updates.
//! Must never let the thread count change a number (slot `m` is micro-batch `m`,
//! the reduction is the fixed pairwise tree) and never let a failed worker hang the
//! others: a failure (an error or a panic, on a worker or on the main thread) is
//! recorded, every participant keeps meeting the barriers, and the run ends after the
//! step with the error. A thread the OS refuses to start ends the run before any step
//! with [`TrainError::Spawn`]: the threads already started are released (the barrier
//! drops the missing participants) and joined.

use crate::data::Sampler;
use crate::data::TokenSource;
use crate::model::{self, TrainingContext};
use crate::segments::GradientSegments;
use crate::step::WorkerStats;
use crate::train::apply::apply_update;
use crate::train::faults::{Faults, NoFaults};
use crate::train::types::{RunReport, StepStats, TrainConfig, TrainError, TrainState};
use crate::train::workers::MicroBatch;
use core::cell::UnsafeCell;
use core::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Everything the main thread needs besides the workers' contexts.
pub struct BarrierRun<'a> {
    /// The configuration.
    pub cfg: &'a TrainConfig,
    /// Weight-decay ranges.
    pub decay: &'a [Range<usize>],
    /// The gradient slots (one part).
    pub segments: &'a GradientSegments,
    /// The batch sampler (advanced by the main thread).
    pub sampler: &'a mut Sampler,
    /// The summed gradient buffer.
    pub grad: &'a mut Vec<f32>,
    /// Training tokens.
    pub train: &'a dyn TokenSource,
}

/// A reusable barrier for `n` threads (the `std::sync::Barrier` algorithm), whose
/// party count can shrink (for participants that never started).
pub struct Barrier {
    /// (parties, arrivals in this generation, generation).
    state: parking_lot::Mutex<(usize, usize, u64)>,
    cv: parking_lot::Condvar,
}

impl Barrier {
    /// A barrier that releases every `n` arrivals.
    pub fn new(n: usize) -> Self {
        Barrier {
            state: parking_lot::Mutex::new((n, 0, 0)),
            cv: parking_lot::Condvar::new(),
        }
    }

    /// Block until every party has called `wait` (for this generation). The mutex
    /// orders everything before every arrival before everything after every release.
    pub fn wait(&self) {
        let mut s = self.state.lock();
        let generation = s.2;
        s.1 += 1;
        if s.1 < s.0 {
            while s.2 == generation {
                self.cv.wait(&mut s);
            }
        } else {
            Self::release(&mut s);
            self.cv.notify_all();
        }
    }

    /// From now on, release every `parties - missing` arrivals (at least one); the
    /// current generation is released at once if everyone left has arrived.
    pub fn remove_parties(&self, missing: usize) {
        let mut s = self.state.lock();
        s.0 = s.0.saturating_sub(missing).max(1);
        if s.1 > 0 && s.1 >= s.0 {
            Self::release(&mut s);
            self.cv.notify_all();
        }
    }

    fn release(s: &mut (usize, usize, u64)) {
        s.1 = 0;
        s.2 = s.2.wrapping_add(1);
    }
}

/// Data the main thread writes between barriers and workers read inside them.
struct Shared<T>(UnsafeCell<T>);

// SAFETY: every access is ordered by the two barriers of a step (see `run`): the main
// thread writes only while every worker waits at the start barrier, workers read
// (and write their own losses) only between the start and end barriers.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The raw pointer (dereferenced only under the barrier discipline above).
    fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// Run up to `steps` steps on `contexts.len()` participants (the caller is worker 0).
/// If `on_step` panics, the run stops after that step (every worker is joined) and
/// the panic continues in the caller.
pub fn run(
    r: BarrierRun<'_>,
    state: &mut TrainState,
    contexts: &mut [TrainingContext],
    steps: u64,
    on_step: &mut dyn FnMut(&StepStats) -> bool,
) -> Result<RunReport, TrainError> {
    run_with_faults(r, state, contexts, steps, on_step, &NoFaults)
}

/// [`run`], consulting `faults` before every draw, every micro-batch's
/// forward/backward (on its worker) and the update (on the main thread, worker 0).
pub fn run_with_faults<F: Faults>(
    r: BarrierRun<'_>,
    state: &mut TrainState,
    contexts: &mut [TrainingContext],
    steps: u64,
    on_step: &mut dyn FnMut(&StepStats) -> bool,
    faults: &F,
) -> Result<RunReport, TrainError> {
    let started = Instant::now();
    let cfg = r.cfg;
    let n = contexts.len().max(1);
    let m = cfg.micro_batches;
    let micro = cfg.batch * cfg.seq;
    let batches = Shared(UnsafeCell::new(vec![
        MicroBatch {
            tokens: vec![0; micro],
            targets: vec![0; micro],
        };
        m
    ]));
    let losses: Vec<Shared<f32>> = (0..m).map(|_| Shared(UnsafeCell::new(0.0))).collect();
    let params = Shared(UnsafeCell::new(core::mem::take(&mut state.params)));
    // (segment step, training step) of the step in progress.
    let seg_step = Shared(UnsafeCell::new((0usize, 0u64)));
    let barrier = Barrier::new(n);
    let go = AtomicBool::new(true);
    let failure: parking_lot::Mutex<Option<TrainError>> = parking_lot::Mutex::new(None);
    let (first, rest) = contexts.split_at_mut(1);
    let mut done = 0u64;

    let work = |worker: usize, ctx: &mut TrainingContext, step: u64, stats: &mut WorkerStats| {
        let t0 = Instant::now();
        for mb in (worker..m).step_by(n) {
            let result = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: between the barriers (see `Shared`): the main thread does not
                // write params, batches or the step counter now.
                let (p, b, (g, _)) =
                    unsafe { (&*params.get(), &(&*batches.get())[mb], *seg_step.get()) };
                faults.compute(step, worker)?;
                let mut slot = r.segments.claim(g, mb)?;
                let loss = slot.write(|grad| {
                    model::forward_backward(&cfg.model, p, ctx, &b.tokens, &b.targets, grad)
                })?;
                slot.publish();
                // SAFETY: only the worker that owns micro-batch `mb` writes its loss.
                unsafe { *losses[mb].0.get() = loss };
                Ok::<_, TrainError>(())
            }));
            let err = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(TrainError::WorkerFailed {
                    step,
                    worker,
                    source: Box::new(e),
                }),
                Err(_) => Some(TrainError::WorkerPanicked { step, worker }),
            };
            if let Some(e) = err {
                failure.lock().get_or_insert(e);
                break;
            }
            stats.jobs += 1;
        }
        stats.busy += t0.elapsed();
    };

    let mut callback_panic = None;
    let result = std::thread::scope(|scope| {
        // Start the workers; a refusal stops here (see below).
        let mut handles = Vec::with_capacity(rest.len());
        let mut refused = None;
        for (i, ctx) in rest.iter_mut().enumerate() {
            let (work, barrier, go) = (&work, &barrier, &go);
            let step_now = &seg_step;
            let spawned = std::thread::Builder::new()
                .name(format!("cllm-barrier-{}", i + 1))
                .spawn_scoped(scope, move || {
                    let mut stats = WorkerStats::default();
                    loop {
                        barrier.wait();
                        // Relaxed: the barrier orders the main thread's store before us.
                        if !go.load(Ordering::Relaxed) {
                            return stats;
                        }
                        stats.steps += 1;
                        // SAFETY: between the barriers, read-only (see `Shared`).
                        let (_, step) = unsafe { *step_now.get() };
                        work(i + 1, ctx, step, &mut stats);
                        barrier.wait();
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    refused = Some(TrainError::Spawn {
                        index: i + 1,
                        threads: n,
                        source,
                    });
                    break;
                }
            }
        }
        if refused.is_some() {
            // The started workers wait at the start barrier for `n` arrivals: count
            // only the main thread and them, and let them see `go == false`.
            barrier.remove_parties(n - 1 - handles.len());
        }

        let mut leader = WorkerStats::default();
        let mut outcome = refused.map_or(Ok(()), Err);
        while outcome.is_ok() && done < steps {
            let step = state.step + done;
            let ctx0 = &mut first[0];
            let drawn = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: every worker waits at the start barrier: nobody reads these.
                let (b, g) = unsafe { (&mut *batches.get(), &mut *seg_step.get()) };
                *g = (r.segments.completed_steps(), step);
                b.iter_mut().enumerate().try_for_each(|(mb, b)| {
                    faults.draw(step, mb).and_then(|()| {
                        r.sampler.next_batch(
                            r.train,
                            cfg.batch,
                            cfg.seq,
                            &mut b.tokens,
                            &mut b.targets,
                        )
                    })
                })
            }));
            match drawn {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    outcome = Err(TrainError::Batch { step, source });
                    break;
                }
                Err(_) => {
                    outcome = Err(TrainError::WorkerPanicked { step, worker: 0 });
                    break;
                }
            }
            barrier.wait();
            leader.steps += 1;
            work(0, ctx0, step, &mut leader);
            barrier.wait();
            if let Some(e) = failure.lock().take() {
                outcome = Err(e);
                break;
            }
            let t0 = Instant::now();
            let stats = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: workers wait at the start barrier again; the main thread alone
                // touches params and losses until it next waits.
                let (p, ls) = unsafe {
                    (
                        &mut *params.get(),
                        losses.iter().map(|l| *l.get()).collect::<Vec<f32>>(),
                    )
                };
                // SAFETY: as above.
                let (g, _) = unsafe { *seg_step.get() };
                r.segments.reduce_all(g, r.grad)?;
                faults.decide(step, 0)?;
                faults.update(step, 0);
                apply_update(cfg, r.decay, p, &mut state.opt, r.grad, &ls, step)
            }))
            .unwrap_or(Err(TrainError::WorkerPanicked { step, worker: 0 }));
            leader.busy += t0.elapsed();
            match stats {
                Ok(stats) => {
                    done += 1;
                    match catch_unwind(AssertUnwindSafe(|| on_step(&stats))) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(payload) => {
                            callback_panic = Some(payload);
                            break;
                        }
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        // Relaxed: the barrier below orders it before every worker's load.
        go.store(false, Ordering::Relaxed);
        barrier.wait();
        let mut workers = vec![leader];
        for h in handles {
            workers.push(h.join().unwrap_or_default());
        }
        outcome.map(|()| workers)
    });
    state.params = params.0.into_inner();
    state.step += done;
    if let Some(payload) = callback_panic {
        std::panic::resume_unwind(payload);
    }
    let workers = result?;
    Ok(RunReport {
        steps: done,
        wall: started.elapsed(),
        workers,
    })
}
