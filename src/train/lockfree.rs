//! Owns the lock-free scheduler (the seed notes' Phases 2A-2D): a pre-fetch thread
//! draws micro-batches into the [`PrefetchQueue`], the leader (the calling thread)
//! feeds each step's micro-batches into the [`StepProtocol`], and every worker,
//! leader included, computes micro-batches with its own [`TrainingContext`], reduces
//! gradient parts in parallel and applies AdamW to the parts it reduced.
//! Must never let timing change a number: micro-batch `m` always fills slot `m`, the
//! reduction order is fixed, the norm is summed in fixed blocks, and every worker
//! computes the same step decision. Never touches files or the CLI.
//!
//! With more threads than micro-batches, each worker leads a [`Team`] of helper
//! threads that split its micro-batch's matmuls by output rows (intra-batch
//! parallelism; the same bits, see `model::RowSplit`).
//!
//! Generic over [`Platform`] so the whole trainer runs under shuttle in the tests, and
//! over [`Faults`] so tests can make the pre-fetch draw or any hook fail
//! ([`run_with_faults`]; production runs use [`NoFaults`] through [`run`]).
//!
//! # Errors
//! Every failure ends the run for every thread (the protocol aborts, every thread is
//! joined) and is returned typed: a sampler error on the pre-fetch thread arrives as
//! [`TrainError::Batch`] with its step (exactly what [`Trainer::step`] reports for the
//! same data), a panic there as [`TrainError::PrefetchPanicked`], a hook's panic as
//! [`TrainError::WorkerPanicked`] naming the step and the worker, a thread the OS
//! refuses as [`TrainError::Spawn`] (no step runs).
//!
//! [`Trainer::step`]: crate::train::trainer::Trainer::step

use crate::data::{Sampler, SamplerState, TokenSource};
use crate::model::{self, RowSplit, TrainingContext};
use crate::queue::{PrefetchError, PrefetchQueue};
use crate::step::{StepError, StepHooks, StepProtocol, Team, WorkerStats};
use crate::sync::{Join, Platform};
use crate::train::apply::clip_scale;
pub use crate::train::faults::{Faults, NoFaults};
use crate::train::norm;
use crate::train::optim::{update_part, StepScalars};
use crate::train::types::{StepStats, TrainConfig, TrainError, TrainState};
use core::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Re-exported from [`types`](crate::train::types) (its old home was here).
pub use crate::train::types::RunReport;

/// One micro-batch on its way to a worker.
#[derive(Debug)]
pub struct Fetched {
    /// Input tokens (`batch * seq`).
    pub tokens: Vec<u32>,
    /// Next-token targets.
    pub targets: Vec<u32>,
    /// The training step it belongs to (for error reports).
    pub step: u64,
    /// The sampler's state right after drawing it (what a checkpoint records once
    /// this micro-batch is consumed).
    pub sampler_after: SamplerState,
}

/// The decision every worker reaches for a step.
pub struct Decision {
    /// What the step measured.
    pub stats: StepStats,
    scalars: StepScalars,
}

/// Run up to `steps` optimizer steps on `contexts.len()` workers plus `helpers` helper
/// threads (spread over the workers' teams as evenly as possible),
/// updating `state` in place and leaving the last step's summed gradient in
/// `last_grad`. `on_step` runs on the calling thread after each step;
/// returning `false` stops the run after that step. Returns the contexts (a worker
/// that panicked loses its own) and the report or the first real error.
#[allow(clippy::too_many_arguments)]
pub fn run<P: Platform, D: TokenSource + Clone + 'static>(
    cfg: &TrainConfig,
    state: &mut TrainState,
    decay: &Arc<[Range<usize>]>,
    contexts: Vec<TrainingContext>,
    helpers: usize,
    train: &D,
    steps: u64,
    last_grad: &mut Vec<f32>,
    on_step: &mut dyn FnMut(&StepStats) -> bool,
) -> (Vec<TrainingContext>, Result<RunReport, TrainError>) {
    run_with_faults::<P, NoFaults, D>(
        cfg,
        state,
        decay,
        contexts,
        helpers,
        train,
        steps,
        last_grad,
        on_step,
        &Arc::new(NoFaults),
    )
}

/// [`run`], consulting `faults` before every draw and at the start of every hook
/// (see [`Faults`]).
#[allow(clippy::too_many_arguments)]
pub fn run_with_faults<P: Platform, F: Faults, D: TokenSource + Clone + 'static>(
    cfg: &TrainConfig,
    state: &mut TrainState,
    decay: &Arc<[Range<usize>]>,
    mut contexts: Vec<TrainingContext>,
    helpers: usize,
    train: &D,
    steps: u64,
    last_grad: &mut Vec<f32>,
    on_step: &mut dyn FnMut(&StepStats) -> bool,
    faults: &Arc<F>,
) -> (Vec<TrainingContext>, Result<RunReport, TrainError>) {
    let started = Instant::now();
    let n_workers = contexts.len();
    if n_workers == 0 || steps == 0 {
        let report = RunReport {
            wall: started.elapsed(),
            workers: vec![WorkerStats::default(); n_workers],
            ..RunReport::default()
        };
        return (contexts, Ok(report));
    }
    let m = cfg.micro_batches;
    let n_parts = 4 * n_workers;
    let weights = core::mem::take(&mut state.params);
    let aux = vec![
        core::mem::take(&mut state.opt.m),
        core::mem::take(&mut state.opt.v),
    ];
    let protocol = match StepProtocol::<Fetched, P>::new(m, n_parts, weights, aux) {
        Ok(p) => Arc::new(p),
        Err(e) => return (contexts, Err(e.into())),
    };
    // Team w: worker w plus its share of the helpers.
    let teams: Vec<Arc<Team<P>>> = (0..n_workers)
        .map(|w| {
            let extra = helpers / n_workers + usize::from(w < helpers % n_workers);
            Arc::new(Team::new(1 + extra))
        })
        .collect();
    // Threads are counted in start order (the calling thread is 0) for the error a
    // refused start reports; after one refusal nothing more is started.
    let n_threads = n_workers + helpers;
    let mut spawned_threads = 0usize;
    let refused = |before: usize, source| TrainError::Spawn {
        index: before + 1,
        threads: n_threads,
        source,
    };
    let mut helper_handles = Vec::new();
    let mut spawn_error = None;
    'helpers: for (w, team) in teams.iter().enumerate() {
        for h in 1..team.size() {
            let team = Arc::clone(team);
            match P::spawn(&format!("cllm-helper-{w}.{h}"), move || team.help(h)) {
                Ok(handle) => {
                    helper_handles.push(handle);
                    spawned_threads += 1;
                }
                Err(e) => {
                    spawn_error = Some(refused(spawned_threads, e));
                    break 'helpers;
                }
            }
        }
    }
    let hooks = |ctx, worker: usize| TrainHooks::<P, F> {
        cfg: *cfg,
        ctx,
        decay: Arc::clone(decay),
        worker,
        team: Arc::clone(&teams[worker]),
        first_step: state.step,
        first_t: state.opt.t,
        faults: Arc::clone(faults),
    };
    let mut leader_hooks = hooks(contexts.remove(0), 0);
    // Contexts of workers never started (after a refusal) go back to the caller.
    let mut unstarted = Vec::new();
    let mut handles = Vec::new();
    for (i, ctx) in contexts.into_iter().enumerate() {
        if spawn_error.is_some() {
            unstarted.push(ctx);
            continue;
        }
        let worker = i + 1;
        let protocol = Arc::clone(&protocol);
        let h = hooks(ctx, worker);
        // The hooks travel in a shared cell so a refused start can hand the context
        // back (the closure, and whatever it owns, is dropped by a failed spawn).
        let cell = Arc::new(parking_lot::Mutex::new(Some(h)));
        let in_thread = Arc::clone(&cell);
        let spawned = P::spawn(&format!("cllm-worker-{worker}"), move || {
            let mut h = in_thread
                .lock()
                .take()
                .expect("the hooks are handed over once");
            let mut stats = WorkerStats::default();
            let result = protocol.work(worker, &mut h, &mut stats);
            let result = result.map_err(|e| step_error(e, h.first_step));
            (h.ctx, stats, result)
        });
        match spawned {
            Ok(handle) => {
                handles.push(handle);
                spawned_threads += 1;
            }
            Err(e) => {
                spawn_error = Some(refused(spawned_threads, e));
                if let Some(h) = cell.lock().take() {
                    unstarted.push(h.ctx);
                }
            }
        }
    }

    let mut leader_stats = WorkerStats::default();
    let mut done = 0u64;
    let mut sampler_after = state.sampler;
    let mut leader_error = spawn_error;
    if leader_error.is_none() {
        match start_prefetch::<P, F, D>(cfg, state, train, steps, faults) {
            Err(e) => leader_error = Some(e),
            Ok(mut prefetch) => {
                while done < steps {
                    let step = done as usize;
                    let global = state.step + done;
                    let mut batch = Vec::with_capacity(m);
                    // The position after this step's draws; it counts only once the
                    // step completes (a failed step leaves the position before it).
                    let mut step_sampler = sampler_after;
                    let fetched = (0..m).try_for_each(|_| match prefetch.recv() {
                        Ok(Some(f)) => {
                            step_sampler = f.sampler_after;
                            batch.push(f);
                            Ok(())
                        }
                        Ok(None) => Err(TrainError::Config(format!(
                            "step {global}: the pre-fetch thread ended early"
                        ))),
                        Err(e) => Err(prefetch_error(e, global)),
                    });
                    if let Err(e) = fetched {
                        leader_error = Some(e);
                        break;
                    }
                    if let Err(e) = protocol.feed(step, batch) {
                        leader_error = Some(TrainError::Config(e.to_string()));
                        break;
                    }
                    match protocol.lead(step, &mut leader_hooks, &mut leader_stats) {
                        Ok(decision) => {
                            done += 1;
                            sampler_after = step_sampler;
                            if !on_step(&decision.stats) {
                                break;
                            }
                        }
                        Err(e) => {
                            leader_error = Some(step_error(e, state.step));
                            break;
                        }
                    }
                }
            }
        }
    }
    if leader_error.is_some() {
        protocol.abort();
    } else {
        protocol.stop();
    }

    // Join everyone, then pick the error to report: the leader's own unless it only
    // saw the abort, else the first worker's real one.
    let mut contexts = vec![leader_hooks.ctx];
    contexts.append(&mut unstarted);
    let mut workers = vec![leader_stats];
    let mut errors = Vec::new();
    if let Some(e) = leader_error {
        errors.push(e);
    }
    for (i, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok((ctx, stats, result)) => {
                contexts.push(ctx);
                workers.push(stats);
                if let Err(e) = result {
                    errors.push(e);
                }
            }
            Err(_) => errors.push(TrainError::WorkerPanicked {
                step: state.step + protocol.steps_fed().saturating_sub(1) as u64,
                worker: i + 1,
            }),
        }
    }
    // Every team leader has returned: release and join the helpers.
    for team in &teams {
        team.stop();
    }
    for handle in helper_handles {
        match handle.join() {
            Ok(busy) => workers.push(WorkerStats {
                busy,
                ..WorkerStats::default()
            }),
            Err(_) => errors.push(TrainError::Config("a helper thread died".into())),
        }
    }
    let aborted_only = |e: &TrainError| matches!(e, TrainError::Aborted);
    let error = errors
        .iter()
        .position(|e| !aborted_only(e))
        .map(|i| errors.swap_remove(i))
        .or_else(|| errors.pop());

    let protocol = match Arc::try_unwrap(protocol) {
        Ok(p) => p,
        Err(_) => {
            return (
                contexts,
                Err(TrainError::Config("a worker outlived the run".into())),
            )
        }
    };
    let (weights, grad, mut aux) = protocol.into_buffers();
    state.params = weights;
    if done > 0 {
        *last_grad = grad;
    }
    state.opt.v = aux.pop().unwrap_or_default();
    state.opt.m = aux.pop().unwrap_or_default();
    state.opt.t += done;
    state.step += done;
    state.sampler = sampler_after;
    let report = RunReport {
        steps: done,
        wall: started.elapsed(),
        workers,
    };
    (contexts, error.map_or(Ok(report), Err))
}

/// Start the pre-fetch thread: it draws `steps * micro_batches` micro-batches in
/// order from a sampler at `state.sampler`. A draw that fails ends the stream with
/// [`TrainError::Batch`] naming the step, after every micro-batch drawn before it.
fn start_prefetch<P: Platform, F: Faults, D: TokenSource + Clone + 'static>(
    cfg: &TrainConfig,
    state: &TrainState,
    train: &D,
    steps: u64,
    faults: &Arc<F>,
) -> Result<PrefetchQueue<Fetched, TrainError, P>, TrainError> {
    let (batch, seq, m) = (cfg.batch, cfg.seq, cfg.micro_batches);
    let mut sampler = Sampler::from_state(state.sampler);
    let first_step = state.step;
    let train = train.clone();
    let faults = Arc::clone(faults);
    let capacity = crate::queue::PREFETCH_DEFAULT_CAPACITY.min(2 * m).max(1);
    PrefetchQueue::spawn(capacity, move |producer| {
        for s in 0..steps {
            let step = first_step + s;
            for mb in 0..m {
                let (mut tokens, mut targets) = (vec![0; batch * seq], vec![0; batch * seq]);
                faults
                    .draw(step, mb)
                    .and_then(|()| {
                        sampler.next_batch(&train, batch, seq, &mut tokens, &mut targets)
                    })
                    .map_err(|source| TrainError::Batch { step, source })?;
                let item = Fetched {
                    tokens,
                    targets,
                    step,
                    sampler_after: sampler.state(),
                };
                if producer.send(item).is_err() {
                    return Ok(()); // the trainer stopped early
                }
            }
        }
        Ok(())
    })
    .map_err(|e| prefetch_error(e, first_step))
}

// ---- the hooks: what a worker does inside the protocol ----------------------------

struct TrainHooks<P: Platform, F: Faults> {
    cfg: TrainConfig,
    ctx: TrainingContext,
    decay: Arc<[Range<usize>]>,
    worker: usize,
    team: Arc<Team<P>>,
    first_step: u64,
    first_t: u64,
    faults: Arc<F>,
}

/// A team as the model's row splitter.
struct TeamSplit<'a, P: Platform>(&'a Team<P>);

impl<P: Platform> RowSplit for TeamSplit<'_, P> {
    fn parts(&self) -> usize {
        self.0.size()
    }
    fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        self.0.run(f)
    }
}

impl<P: Platform, F: Faults> StepHooks<Fetched> for TrainHooks<P, F> {
    type Error = TrainError;
    type Decision = Decision;

    fn compute(
        &mut self,
        weights: &[f32],
        job: &Fetched,
        grad: &mut [f32],
    ) -> Result<f32, TrainError> {
        self.faults
            .compute(job.step, self.worker)
            .and_then(|()| {
                model::forward_backward_split(
                    &self.cfg.model,
                    weights,
                    &mut self.ctx,
                    &job.tokens,
                    &job.targets,
                    grad,
                    &TeamSplit(&self.team),
                )
                .map_err(TrainError::from)
            })
            .map_err(|e| TrainError::WorkerFailed {
                step: job.step,
                worker: self.worker,
                source: Box::new(e),
            })
    }

    fn summarize(&mut self, _range: Range<usize>, grad: &[f32], out: &mut Vec<f64>) {
        self.faults.summarize(self.worker);
        let mean_scale = 1.0 / self.cfg.micro_batches as f32;
        // Parts start on the NORM_BLOCK grid, so the part's blocks are global blocks.
        norm::block_sums(grad, 0..grad.len(), mean_scale, out);
    }

    fn decide(
        &self,
        step: usize,
        losses: &[f32],
        summaries: &[&Vec<f64>],
    ) -> Result<Decision, TrainError> {
        let cfg = &self.cfg;
        let m = cfg.micro_batches;
        let global = self.first_step + step as u64;
        self.faults.decide(global, self.worker)?;
        let loss = (losses.iter().map(|&l| l as f64).sum::<f64>() / m as f64) as f32;
        let non_finite = |what, value: f64| TrainError::NonFinite {
            step: global,
            what,
            value,
            last_good: global,
        };
        if !loss.is_finite() {
            return Err(non_finite("loss", loss as f64));
        }
        let blocks: Vec<f64> = summaries.iter().flat_map(|s| s.iter().copied()).collect();
        let grad_norm = norm::norm_from_blocks(&blocks);
        if !grad_norm.is_finite() {
            return Err(non_finite("gradient norm", grad_norm));
        }
        let scale = clip_scale(1.0 / m as f32, grad_norm, cfg.grad_clip);
        let lr = cfg.schedule.lr(global);
        let t = self.first_t + step as u64 + 1;
        Ok(Decision {
            stats: StepStats {
                step: global,
                loss,
                grad_norm,
                lr,
                tokens: cfg.tokens_per_step(),
            },
            scalars: StepScalars::for_update(&cfg.adamw, t, lr, scale),
        })
    }

    fn update(
        &mut self,
        d: &Decision,
        range: Range<usize>,
        weights: &mut [f32],
        grad: &[f32],
        aux: &mut [&mut [f32]],
    ) {
        self.faults.update(d.stats.step, self.worker);
        if let [m, v] = aux {
            update_part(
                &self.cfg.adamw,
                &d.scalars,
                range,
                &self.decay,
                weights,
                grad,
                m,
                v,
            );
        }
    }
}

// ---- helpers ----------------------------------------------------------------------

/// The pre-fetch queue's report as a training error: the producer's own error as it
/// was raised (it names its step), a panic there with the step the leader waited for.
fn prefetch_error(e: PrefetchError<TrainError>, step: u64) -> TrainError {
    match e {
        PrefetchError::Producer(e) => e,
        PrefetchError::ProducerPanicked(message) => TrainError::PrefetchPanicked { step, message },
        PrefetchError::Spawn(source) => TrainError::SpawnPrefetch { source },
        PrefetchError::ZeroCapacity => {
            TrainError::Config("the pre-fetch queue needs a capacity of at least 1".into())
        }
    }
}

/// A protocol error as a training error; `first_step` is the training step of the
/// protocol's step 0.
fn step_error(e: StepError<TrainError>, first_step: u64) -> TrainError {
    match e {
        StepError::Aborted => TrainError::Aborted,
        StepError::Protocol(e) => TrainError::Segments(e),
        StepError::Feed { step, what } => {
            TrainError::Config(format!("feeding step {}: {what}", first_step + step as u64))
        }
        StepError::Hook(e) => e,
        StepError::Panicked { step, worker } => TrainError::WorkerPanicked {
            step: first_step + step as u64,
            worker,
        },
    }
}
