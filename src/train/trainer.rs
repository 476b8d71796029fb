//! Owns the single-threaded training step: draw the step's micro-batches, run
//! forward/backward for each into its own [`GradientSegments`] slot, reduce the slots
//! in the fixed pairwise order, clip, and apply AdamW. Also the validation loss.
//! Must never touch atomics directly or let the thread count change a number: the
//! forward/backward phase may run on several workers ([`workers`](super::workers)),
//! but slot `m` always holds micro-batch `m` and the reduction order is fixed. Never
//! knows about files, the CLI or progress bars.
//!
//! # Types
//! * [`TrainConfig`]: everything that determines the trajectory (model shape, batch
//!   geometry, optimizer, schedule, clipping, seed); defined in
//!   [`types`](super::types), re-exported here.
//! * [`TrainState`]: everything that changes step by step (weights, moments, step
//!   count, sampler). Saving and restoring it resumes the same trajectory bit for bit.
//! * [`Trainer`]: a state plus the reusable buffers a step needs; the facade over
//!   the reference step and both schedulers.
//!
//! # One step `s`
//! 1. For micro-batch `m` in `0..M` (in order, on this thread): the sampler draws
//!    `batch` windows. Then, on one or more workers, `forward_backward` overwrites
//!    slot `m` with d(mean loss of m)/d(params); the phase ends when every worker
//!    has joined.
//! 2. The slots are reduced in the fixed pairwise tree over `m` ([`GradientSegments`]).
//! 3. The gradient is the mean over micro-batches (`scale = 1/M`); its L2 norm is
//!    computed in fixed f64 blocks ([`norm`](super::norm)); if above `grad_clip`, `scale` shrinks.
//! 4. A non-finite loss or gradient norm stops training with an error naming the step
//!    (before any update, so the weights stay the last finite ones).
//! 5. AdamW updates every parameter (weight decay on matrices only).
//!
//! The step loss is the mean of the micro-batch losses, summed in `m` order in f64.

use crate::data::{eval_windows, Sampler, TokenSource};
use crate::model::{self, ParamLayout, TrainingContext};
use crate::segments::GradientSegments;
use crate::step::WorkerStats;
use crate::train::workers::{forward_backward_serial, MicroBatch};
use crate::train::{barrier, lockfree};
use core::ops::Range;
use std::sync::Arc;
use std::time::Duration;

// The shared types and step arithmetic live in their own modules (so the schedulers
// need not depend on this facade); these re-exports keep their old paths working.
pub use crate::train::apply::{apply_update, clip_scale};
pub use crate::train::types::{
    RunReport, Scheduler, StepStats, TrainConfig, TrainError, TrainState,
};

/// Totals over every run of a trainer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// Wall time inside `run`.
    pub wall: Duration,
    /// Per worker, summed over runs.
    pub workers: Vec<WorkerStats>,
}

impl RunTotals {
    /// Each worker's busy time over the wall time (0 before any run).
    pub fn utilization(&self) -> Vec<f64> {
        let wall = self.wall.as_secs_f64();
        self.workers
            .iter()
            .map(|w| {
                if wall > 0.0 {
                    w.busy.as_secs_f64() / wall
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// A training run in progress: state plus reusable buffers.
pub struct Trainer {
    cfg: TrainConfig,
    layout: ParamLayout,
    decay: Arc<[Range<usize>]>,
    scheduler: Scheduler,
    poisoned: bool,
    /// Helper threads of the lock-free scheduler's teams (threads beyond one per
    /// micro-batch).
    helpers: usize,
    totals: RunTotals,
    state: TrainState,
    sampler: Sampler,
    /// One per worker; `contexts[0]` also serves evaluation.
    contexts: Vec<TrainingContext>,
    segments: GradientSegments,
    grad: Vec<f32>,
    batches: Vec<MicroBatch>,
    tokens: Vec<u32>,
    targets: Vec<u32>,
    losses: Vec<f32>,
}

impl Trainer {
    /// A single-threaded trainer starting from `state` (the initial one or a
    /// restored checkpoint).
    pub fn new(cfg: TrainConfig, state: TrainState) -> Result<Self, TrainError> {
        Self::with_threads(cfg, state, 1)
    }

    /// A trainer whose [`Trainer::run`] uses `threads` workers (each with its own
    /// context) under the lock-free scheduler. Every number it produces is the same
    /// for any `threads`.
    pub fn with_threads(
        cfg: TrainConfig,
        state: TrainState,
        threads: usize,
    ) -> Result<Self, TrainError> {
        Self::with_scheduler(cfg, state, threads, Scheduler::LockFree)
    }

    /// As [`Trainer::with_threads`], with a choice of scheduler.
    pub fn with_scheduler(
        cfg: TrainConfig,
        state: TrainState,
        threads: usize,
        scheduler: Scheduler,
    ) -> Result<Self, TrainError> {
        let layout = checked_layout(&cfg, &state, threads)?;
        let n = layout.len();
        let decay: Arc<[Range<usize>]> = decay_ranges(&layout).into();
        // One worker (with its own context) per micro-batch at most; the lock-free
        // scheduler turns the remaining threads into helpers that split the workers'
        // matmuls, the barrier scheduler leaves them out.
        let workers = threads.min(cfg.micro_batches);
        let helpers = match scheduler {
            Scheduler::LockFree => threads - workers,
            Scheduler::Barrier => 0,
        };
        let contexts = (0..workers)
            .map(|_| TrainingContext::new(&cfg.model, cfg.batch, cfg.seq))
            .collect::<Result<Vec<_>, _>>()?;
        // One part: the single-threaded step reduces everything on this thread.
        let segments = GradientSegments::new(cfg.micro_batches, n, 1)?;
        let micro = cfg.batch * cfg.seq;
        Ok(Trainer {
            sampler: Sampler::from_state(state.sampler),
            cfg,
            layout,
            decay,
            scheduler,
            poisoned: false,
            helpers,
            totals: RunTotals::default(),
            state,
            contexts,
            segments,
            grad: vec![0.0; n],
            batches: vec![
                MicroBatch {
                    tokens: vec![0; micro],
                    targets: vec![0; micro],
                };
                cfg.micro_batches
            ],
            tokens: vec![0; micro],
            targets: vec![0; micro],
            losses: vec![0.0; cfg.micro_batches],
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The current state (with the sampler's position brought up to date).
    pub fn state(&mut self) -> &TrainState {
        self.state.sampler = self.sampler.state();
        &self.state
    }

    /// Threads of [`Trainer::run`]: the workers plus the helpers.
    pub fn threads(&self) -> usize {
        self.workers() + self.helpers
    }

    /// Workers with their own context (at most one per micro-batch); the other
    /// threads are helpers that split the workers' matmuls (lock-free only).
    pub fn workers(&self) -> usize {
        self.contexts.len()
    }

    /// The scheduler of [`Trainer::run`].
    pub fn scheduler(&self) -> Scheduler {
        self.scheduler
    }

    /// Wall time and per-worker busy time over every run so far.
    pub fn totals(&self) -> &RunTotals {
        &self.totals
    }

    /// Run up to `steps` optimizer steps on the trainer's workers and scheduler.
    /// `on_step` runs on this thread after every step; returning `false` stops the
    /// run after that step. The trajectory is bitwise the one of [`Trainer::step`].
    /// After an error the trainer refuses further work ([`TrainError::Poisoned`]),
    /// except after a thread the OS refused to start ([`TrainError::Spawn`],
    /// [`TrainError::SpawnPrefetch`]): no step ran then and the state is untouched.
    ///
    /// If `on_step` panics, the run stops after that step as if it had returned
    /// `false` (every thread stops and is joined, the trainer keeps the state after
    /// the step), and then the panic continues in the caller.
    pub fn run<D: TokenSource + Clone + 'static>(
        &mut self,
        train: &D,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<RunReport, TrainError> {
        let mut callback_panic = None;
        let mut guarded =
            |stats: &StepStats| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                on_step(stats)
            })) {
                Ok(go_on) => go_on,
                Err(payload) => {
                    callback_panic = Some(payload);
                    false
                }
            };
        let outcome = self.run_guarded(train, steps, &mut guarded);
        if let Some(payload) = callback_panic {
            std::panic::resume_unwind(payload);
        }
        outcome
    }

    /// [`Trainer::run`] with a callback that does not panic.
    fn run_guarded<D: TokenSource + Clone + 'static>(
        &mut self,
        train: &D,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<RunReport, TrainError> {
        if self.poisoned {
            return Err(TrainError::Poisoned);
        }
        self.poisoned = true;
        let workers = self.workers();
        self.contexts.truncate(workers);
        let report = match self.scheduler {
            Scheduler::LockFree => {
                self.state.sampler = self.sampler.state();
                let contexts = core::mem::take(&mut self.contexts);
                let (contexts, result) = lockfree::run::<crate::sync::Std, D>(
                    &self.cfg,
                    &mut self.state,
                    &self.decay,
                    contexts,
                    self.helpers,
                    train,
                    steps,
                    &mut self.grad,
                    on_step,
                );
                self.contexts = contexts;
                self.sampler = Sampler::from_state(self.state.sampler);
                result
            }
            Scheduler::Barrier => barrier::run(
                barrier::BarrierRun {
                    cfg: &self.cfg,
                    decay: &self.decay,
                    segments: &self.segments,
                    sampler: &mut self.sampler,
                    grad: &mut self.grad,
                    train,
                },
                &mut self.state,
                &mut self.contexts,
                steps,
                on_step,
            ),
        };
        let report = match report {
            Ok(report) => report,
            // A refused thread start stops the run before any step, with every context
            // and the whole state back: the trainer stays usable.
            Err(e @ (TrainError::Spawn { .. } | TrainError::SpawnPrefetch { .. })) => {
                self.poisoned = false;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // A worker that panicked lost its context; only a successful run gets here.
        while self.contexts.len() < workers {
            self.contexts.push(TrainingContext::new(
                &self.cfg.model,
                self.cfg.batch,
                self.cfg.seq,
            )?);
        }
        self.totals.wall += report.wall;
        self.totals.workers.resize(
            report.workers.len().max(self.totals.workers.len()),
            WorkerStats::default(),
        );
        for (t, w) in self.totals.workers.iter_mut().zip(&report.workers) {
            t.busy += w.busy;
            t.jobs += w.jobs;
            t.parts += w.parts;
            t.steps += w.steps;
        }
        self.poisoned = false;
        Ok(report)
    }

    /// Steps completed.
    pub fn step_count(&self) -> u64 {
        self.state.step
    }

    /// The summed (not yet averaged) gradient of the last step, in layout order.
    pub fn last_gradient_sum(&self) -> &[f32] {
        &self.grad
    }

    /// Run one optimizer step on `train` tokens, entirely on the calling thread (the
    /// reference every scheduler is compared with).
    pub fn step(&mut self, train: &(impl TokenSource + ?Sized)) -> Result<StepStats, TrainError> {
        if self.poisoned {
            return Err(TrainError::Poisoned);
        }
        let step = self.state.step;
        // The segments count their own steps from 0 for this trainer's lifetime.
        let seg_step = self.segments.completed_steps();
        for b in self.batches.iter_mut() {
            self.sampler
                .next_batch(
                    train,
                    self.cfg.batch,
                    self.cfg.seq,
                    &mut b.tokens,
                    &mut b.targets,
                )
                .map_err(|source| TrainError::Batch { step, source })?;
        }
        // Worker 0 is this thread: the same error a one-thread scheduler reports.
        forward_backward_serial(
            &self.cfg.model,
            &self.state.params,
            &mut self.contexts[0],
            &self.segments,
            seg_step,
            &self.batches,
            &mut self.losses,
        )
        .map_err(|e| TrainError::WorkerFailed {
            step,
            worker: 0,
            source: Box::new(e),
        })?;
        self.segments.reduce_all(seg_step, &mut self.grad)?;
        self.apply(step)
    }

    /// Mean loss over the deterministic evaluation windows of `data` (at most
    /// `max_windows` windows of `seq + 1` tokens, batched `batch` at a time).
    pub fn eval(
        &mut self,
        data: &(impl TokenSource + ?Sized),
        max_windows: usize,
    ) -> Result<f32, TrainError> {
        evaluate(
            &self.cfg,
            &self.state.params,
            &mut self.contexts[0],
            data,
            max_windows,
            &mut self.tokens,
            &mut self.targets,
        )
    }

    /// Consume the trainer, returning its state.
    pub fn into_state(mut self) -> TrainState {
        self.state.sampler = self.sampler.state();
        self.state
    }

    // ---- helpers ----------------------------------------------------------------

    /// Steps 3-5 of the protocol, given the summed gradient in `self.grad` and the
    /// micro-batch losses in `self.losses`.
    fn apply(&mut self, step: u64) -> Result<StepStats, TrainError> {
        let stats = apply_update(
            &self.cfg,
            &self.decay,
            &mut self.state.params,
            &mut self.state.opt,
            &self.grad,
            &self.losses,
            step,
        )?;
        self.state.step += 1;
        Ok(stats)
    }
}

/// What every trainer checks before it starts (the configuration, at least one
/// thread, a state that fits the model), and the model's parameter layout.
pub fn checked_layout(
    cfg: &TrainConfig,
    state: &TrainState,
    threads: usize,
) -> Result<ParamLayout, TrainError> {
    cfg.validate()?;
    if threads == 0 {
        return Err(TrainError::Config("threads must be at least 1".into()));
    }
    let layout = ParamLayout::new(&cfg.model);
    state.check_fits(layout.len())?;
    Ok(layout)
}

/// The parameter ranges that get weight decay: the 2-D tensors.
pub fn decay_ranges(layout: &ParamLayout) -> Vec<Range<usize>> {
    layout
        .tensors()
        .iter()
        .filter(|t| t.is_matrix())
        .map(|t| t.range())
        .collect()
}

/// Mean loss of `params` over the evaluation windows of `data` (see
/// [`eval_windows`]); windows are batched by the context's batch size, and the
/// mean is over every position of every window, summed in window order in f64.
pub fn evaluate(
    cfg: &TrainConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    data: &(impl TokenSource + ?Sized),
    max_windows: usize,
    tokens: &mut [u32],
    targets: &mut [u32],
) -> Result<f32, TrainError> {
    let seq = cfg.seq;
    let batch = cfg.batch;
    let starts = eval_windows(data.len(), seq, max_windows);
    if starts.is_empty() {
        return Err(TrainError::Config(format!(
            "evaluation data has {} tokens, fewer than one window of {}",
            data.len(),
            seq + 1
        )));
    }
    // Full batches use the caller's context; a shorter last chunk gets a context of
    // its own size, so every window counts exactly once.
    let mut rest_ctx = None;
    let mut total = 0.0f64;
    // One read of `seq + 1` tokens per window: inputs and targets overlap.
    let mut window = vec![0; seq + 1];
    for chunk in starts.chunks(batch) {
        let rows = chunk.len();
        for (b, &start) in chunk.iter().enumerate() {
            data.read(start, &mut window);
            tokens[b * seq..(b + 1) * seq].copy_from_slice(&window[..seq]);
            targets[b * seq..(b + 1) * seq].copy_from_slice(&window[1..]);
        }
        let ctx = if rows == batch {
            &mut *ctx
        } else {
            rest_ctx.insert(TrainingContext::new(&cfg.model, rows, seq)?)
        };
        let (t, y) = (&tokens[..rows * seq], &targets[..rows * seq]);
        total += model::forward_loss(&cfg.model, params, ctx, t, y)? as f64 * rows as f64;
    }
    Ok((total / starts.len() as f64) as f32)
}
