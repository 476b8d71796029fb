//! Owns the types every part of training shares: the configuration
//! ([`TrainConfig`]), the state ([`TrainState`]), what a step measured ([`StepStats`]),
//! why training stopped ([`TrainError`]), the scheduler choice ([`Scheduler`]) and what
//! a run measured ([`RunReport`]). The schedulers ([`barrier`](super::barrier),
//! [`lockfree`](super::lockfree)) and the facade ([`trainer`](super::trainer)) depend on
//! this module; it must never depend on any of them, and never spawn a thread or
//! touch an atomic.

use crate::data::{Sampler, SamplerState};
use crate::model::{self, GptConfig, ModelError};
use crate::segments::SegmentsError;
use crate::step::WorkerStats;
use crate::train::optim::{AdamState, AdamWConfig};
use crate::train::schedule::Schedule;
use std::time::Duration;

/// Everything that determines a training trajectory.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Model shape.
    pub model: GptConfig,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimizer step (the global batch is `batch * micro_batches`
    /// sequences, whatever the thread count).
    pub micro_batches: usize,
    /// Tokens per sequence (at most `model.n_positions`).
    pub seq: usize,
    /// Optimizer steps of the whole run (the schedule's length).
    pub steps: u64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// AdamW hyper-parameters.
    pub adamw: AdamWConfig,
    /// Clip the gradient's L2 norm to this (0 disables clipping).
    pub grad_clip: f32,
    /// Seed of the initial weights and of the batch sampler.
    pub seed: u64,
}

/// Everything a step changes; with the [`TrainConfig`] it is a complete checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The flat parameter buffer ([`ParamLayout`](crate::model::ParamLayout) order).
    pub params: Vec<f32>,
    /// AdamW moments and update count.
    pub opt: AdamState,
    /// Steps completed.
    pub step: u64,
    /// The batch sampler's position.
    pub sampler: SamplerState,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The step's index (0-based).
    pub step: u64,
    /// Mean training loss over the step's micro-batches.
    pub loss: f32,
    /// L2 norm of the mean gradient before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f32,
    /// Tokens processed (`batch * micro_batches * seq`).
    pub tokens: usize,
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A hyper-parameter is out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The model rejected its configuration or input.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The data path rejected a request.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The gradient protocol was misused (a bug, reported instead of racing).
    #[error(transparent)]
    Segments(#[from] SegmentsError),
    /// The loss or gradient stopped being finite.
    #[error("step {step}: {what} is not finite ({value}); stopping before the update, the weights are those after step {last_good}")]
    NonFinite {
        /// The step (0-based) that produced it.
        step: u64,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value.
        value: f64,
        /// Steps completed with finite values.
        last_good: u64,
    },
    /// A worker thread panicked (the panic message went to stderr).
    #[error("step {step}: worker {worker} panicked; training stopped before the update")]
    WorkerPanicked {
        /// The step (0-based).
        step: u64,
        /// The worker's index.
        worker: usize,
    },
    /// A worker's forward/backward failed.
    #[error("step {step}: worker {worker} failed: {source}")]
    WorkerFailed {
        /// The step (0-based).
        step: u64,
        /// The worker's index.
        worker: usize,
        /// What went wrong.
        source: Box<TrainError>,
    },
    /// The sampler could not draw a micro-batch of this step (the same error whichever
    /// scheduler or thread count drew it; the steps before it completed).
    #[error("step {step}: cannot draw the step's micro-batches: {source}")]
    Batch {
        /// The step (0-based) whose micro-batch could not be drawn.
        step: u64,
        /// What the data path said.
        source: crate::data::DataError,
    },
    /// The lock-free scheduler's pre-fetch thread panicked while drawing this step's
    /// micro-batches.
    #[error("step {step}: the pre-fetch thread panicked: {message}")]
    PrefetchPanicked {
        /// The step (0-based) the leader was waiting for.
        step: u64,
        /// The panic's message.
        message: String,
    },
    /// The OS refused to start one of the run's threads. Every thread already started
    /// was stopped and joined before this is returned, and no step ran.
    #[error("could not start thread {index} of {threads}: {source}")]
    Spawn {
        /// The refused thread, counted in start order: the calling thread is 0, the
        /// first started thread 1, so `1 <= index < threads`.
        index: usize,
        /// Threads the run needed (the calling thread included).
        threads: usize,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The OS refused to start the lock-free scheduler's pre-fetch thread (every
    /// worker was stopped and joined; no step ran).
    #[error("could not start the pre-fetch thread: {source}")]
    SpawnPrefetch {
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another participant failed first; this one only saw the run end.
    #[error("the run was aborted")]
    Aborted,
    /// An earlier step failed; the trainer's state is not trustworthy any more.
    #[error("an earlier step failed; this trainer cannot continue")]
    Poisoned,
    /// A restored state does not fit the configuration.
    #[error("state does not match the configuration: {0}")]
    StateMismatch(String),
    /// A data-parallel run's collective failed (another rank failed, or the transport
    /// did) during this step; this rank stopped before the step's update.
    #[error("step {step}: rank {rank}: {source}")]
    Comm {
        /// The step (0-based).
        step: u64,
        /// The rank that reports it.
        rank: usize,
        /// What the transport said.
        source: crate::dist::CommError,
    },
    /// A data-parallel run cannot be laid out (more ranks than micro-batches).
    #[error(transparent)]
    Plan(#[from] crate::dist::plan::PlanError),
}

/// How a threaded run schedules its workers (both give the same bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduler {
    /// Main thread draws batches, workers meet at a `std::sync::Barrier` twice per
    /// step, the main thread reduces and updates alone (the baseline).
    Barrier,
    /// Pre-fetch thread, work queue, parallel reduction and sharded update ordered by
    /// the lock-free step protocol.
    #[default]
    LockFree,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// Steps completed.
    pub steps: u64,
    /// Wall time of the run.
    pub wall: Duration,
    /// One entry per worker (worker 0 is the calling thread), then one per helper
    /// thread (busy time only).
    pub workers: Vec<WorkerStats>,
}

impl TrainConfig {
    /// Check every field; the message names the offending one.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.model.validate()?;
        let bad = |s: String| Err(TrainError::Config(s));
        if self.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if self.micro_batches == 0 {
            return bad("micro-batches must be at least 1".into());
        }
        if self.seq == 0 || self.seq > self.model.n_positions {
            return bad(format!(
                "sequence length {} must be between 1 and the context length {}",
                self.seq, self.model.n_positions
            ));
        }
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        let s = &self.schedule;
        if !(s.max_lr.is_finite() && s.max_lr > 0.0) {
            return bad(format!("learning rate {} must be positive", s.max_lr));
        }
        if !(s.min_lr.is_finite() && s.min_lr >= 0.0 && s.min_lr <= s.max_lr) {
            return bad(format!(
                "minimum learning rate {} must be in [0, {}]",
                s.min_lr, s.max_lr
            ));
        }
        let a = &self.adamw;
        if !(a.beta1 >= 0.0 && a.beta1 < 1.0 && a.beta2 >= 0.0 && a.beta2 < 1.0) {
            return bad(format!(
                "AdamW betas ({}, {}) must be in [0, 1)",
                a.beta1, a.beta2
            ));
        }
        if !(a.eps.is_finite() && a.eps > 0.0) {
            return bad(format!("AdamW eps {} must be positive", a.eps));
        }
        if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be >= 0", a.weight_decay));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return bad(format!(
                "gradient clip {} must be >= 0 (0 disables)",
                self.grad_clip
            ));
        }
        Ok(())
    }

    /// Tokens consumed by one optimizer step.
    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.micro_batches * self.seq
    }
}

impl TrainState {
    /// The state before step 0: GPT-2 initial weights from the seed, zero moments.
    pub fn initial(cfg: &TrainConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        let params = model::init_params(&cfg.model, cfg.seed);
        let opt = AdamState::new(params.len());
        Ok(TrainState {
            params,
            opt,
            step: 0,
            sampler: Sampler::new(cfg.seed).state(),
        })
    }

    /// Whether this state's buffers fit a model of `n` parameters (weights and both
    /// moments); the error says what the state holds.
    pub fn check_fits(&self, n: usize) -> Result<(), TrainError> {
        if self.params.len() != n || self.opt.m.len() != n || self.opt.v.len() != n {
            return Err(TrainError::StateMismatch(format!(
                "the model has {n} parameters, the state holds {} weights and {}/{} moments",
                self.params.len(),
                self.opt.m.len(),
                self.opt.v.len()
            )));
        }
        Ok(())
    }
}
