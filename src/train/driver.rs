//! Owns the run driver: the loop every front end (`cllm train`, `cllm bench`, each rank
//! of a data-parallel run) trains through. It runs an [`Engine`] to the next
//! evaluation, checkpoint or stop, evaluates, writes `metrics.jsonl`, checkpoints, stops
//! at the plan's stop step or when any process saw an interrupt, and at the end writes
//! the final checkpoint and `loss.svg`. Also the run's [`Cadence`] (how often it
//! evaluates and checkpoints) and how a resumed run takes it over from its checkpoint.
//!
//! Must never print, parse flags or install signal handlers (the front end does, through
//! an [`Observer`] and an interrupt flag), never compute a number of the trajectory (the
//! engine does), and never let a process whose engine does not write
//! ([`Engine::writes`]) touch a file. Every process makes the same collective calls
//! ([`Engine::run`], [`Engine::agree`], [`Engine::snapshot`]) in the same order: the
//! points where the driver calls them depend only on the step count, the plan and the
//! agreed interrupt, which are the same on every process.

use crate::data::{TokenSource, Tokens};
use crate::isa::Isa;
use crate::train::checkpoint::{self, CheckpointError, OutDir};
use crate::train::report::{plot_svg, MetricsLog, ReportError, Series};
use crate::train::trainer::{Scheduler, StepStats, TrainConfig, TrainError, TrainState, Trainer};
use serde::Deserialize as _;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One process's view of a training run, as the driver drives it. Every process of a
/// run (one, or every rank of a data-parallel run) calls the collective methods
/// (`run`, `agree`, `snapshot`) the same number of times in the same order.
pub trait Engine {
    /// The run's configuration (the same on every process).
    fn config(&self) -> &TrainConfig;
    /// Steps completed (the same on every process between collective calls).
    fn step_count(&self) -> u64;
    /// Collective. Up to `steps` steps; `on_step` after each on this process; when it
    /// returns false on ANY process every process stops after that same step.
    fn run(
        &mut self,
        train: &Tokens,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<(), TrainError>;
    /// Not collective; called on every process at the same points. Validation loss.
    fn eval(&mut self, val: &dyn TokenSource, windows: usize) -> Result<f32, TrainError>;
    /// Collective. The whole training state (a rank engine gathers the optimizer
    /// shards); what a checkpoint saves.
    fn snapshot(&mut self) -> Result<TrainState, TrainError>;
    /// Collective. True if `stop` is true on any process (Ctrl-C seen on one rank stops
    /// all). Default: `Ok(stop)`.
    fn agree(&mut self, stop: bool) -> Result<bool, TrainError> {
        Ok(stop)
    }
    /// Whether this process writes files (metrics, checkpoints, the plot). Default
    /// true; a rank engine says `rank == 0`.
    fn writes(&self) -> bool {
        true
    }
    /// Not collective. Extra fields of the run's last `metrics.jsonl` record (asked on
    /// the writing process only, after the final snapshot): how the engine ran, for
    /// example its threads and their utilization. Default: none.
    fn summary_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    /// Not collective. This process is leaving the run with `error`, which did not come
    /// from the engine (a file it could not write, a plan it rejected): the other
    /// processes will not make their next collective call's partner, so an engine with
    /// peers should make their pending or next collective fail now instead of waiting.
    /// Called at most once, as the driver returns the error. Default: nothing.
    fn fail(&mut self, error: &DriverError) {
        let _ = error;
    }
}

impl Engine for Trainer {
    fn config(&self) -> &TrainConfig {
        Trainer::config(self)
    }

    fn step_count(&self) -> u64 {
        Trainer::step_count(self)
    }

    fn run(
        &mut self,
        train: &Tokens,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<(), TrainError> {
        Trainer::run(self, train, steps, on_step).map(|_| ())
    }

    fn eval(&mut self, val: &dyn TokenSource, windows: usize) -> Result<f32, TrainError> {
        Trainer::eval(self, val, windows)
    }

    fn snapshot(&mut self) -> Result<TrainState, TrainError> {
        Ok(self.state().clone())
    }

    fn summary_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert(
            "worker_utilization".into(),
            json!(self.totals().utilization()),
        );
        fields.insert("threads".into(), json!(self.threads()));
        let scheduler: Scheduler = self.scheduler();
        fields.insert("scheduler".into(), json!(format!("{scheduler:?}")));
        fields
    }
}

/// How often a run evaluates, checkpoints and how much it samples at the end: the
/// settings a resumed run takes over from its checkpoint (`run.json`'s `settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cadence {
    /// Validation loss every this many steps (and at the stop step).
    pub eval_every: u64,
    /// Validation windows per evaluation.
    pub eval_windows: usize,
    /// A checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Bytes of text the front end samples at the end (0: none); the driver does not
    /// sample, it only carries the value into the saved settings.
    pub sample_tokens: usize,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            eval_every: 100,
            eval_windows: 64,
            checkpoint_every: 0,
            sample_tokens: 200,
        }
    }
}

/// Some of a [`Cadence`]'s fields: the ones a front end was given, or the ones a saved
/// checkpoint recorded (fields a checkpoint lacks are `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CadenceOverrides {
    /// [`Cadence::eval_every`].
    pub eval_every: Option<u64>,
    /// [`Cadence::eval_windows`].
    pub eval_windows: Option<usize>,
    /// [`Cadence::checkpoint_every`].
    pub checkpoint_every: Option<u64>,
    /// [`Cadence::sample_tokens`].
    pub sample_tokens: Option<usize>,
}

/// A cadence that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CadenceError {
    /// The saved settings are not a cadence.
    #[error("the checkpoint's run settings")]
    Saved(#[source] serde_json::Error),
    /// A field that must be positive is 0 (`field` is the [`Cadence`] field's name).
    #[error("{field} must be at least 1")]
    Zero {
        /// `eval_every` or `eval_windows`.
        field: &'static str,
    },
}

impl Cadence {
    /// The fields `given` (a front end's flags) over `saved` (a resumed run's
    /// `run.json` settings, see [`checkpoint::load_settings`]) over the defaults.
    pub fn resolve(
        given: &CadenceOverrides,
        saved: Option<&serde_json::Value>,
    ) -> Result<Self, CadenceError> {
        let saved: CadenceOverrides = match saved {
            Some(v) => CadenceOverrides::deserialize(v).map_err(CadenceError::Saved)?,
            None => CadenceOverrides::default(),
        };
        let d = Cadence::default();
        let c = Cadence {
            eval_every: given
                .eval_every
                .or(saved.eval_every)
                .unwrap_or(d.eval_every),
            eval_windows: given
                .eval_windows
                .or(saved.eval_windows)
                .unwrap_or(d.eval_windows),
            checkpoint_every: given
                .checkpoint_every
                .or(saved.checkpoint_every)
                .unwrap_or(d.checkpoint_every),
            sample_tokens: given
                .sample_tokens
                .or(saved.sample_tokens)
                .unwrap_or(d.sample_tokens),
        };
        c.validate()?;
        Ok(c)
    }

    /// Every field in range.
    pub fn validate(&self) -> Result<(), CadenceError> {
        if self.eval_every == 0 {
            return Err(CadenceError::Zero {
                field: "eval_every",
            });
        }
        if self.eval_windows == 0 {
            return Err(CadenceError::Zero {
                field: "eval_windows",
            });
        }
        Ok(())
    }
}

/// What one drive does: the data, where files go, the cadence, the stop step.
#[derive(Clone)]
pub struct RunPlan<'a> {
    /// Training tokens.
    pub train: Tokens,
    /// Validation tokens; `None`: the run never evaluates (a timing run).
    pub val: Option<&'a dyn TokenSource>,
    /// Output directory (checkpoints, `metrics.jsonl`, `loss.svg`), written only by a
    /// process whose engine [`writes`](Engine::writes); `None`: no process writes any
    /// file. It must be new, empty or an earlier cllm output directory
    /// ([`checkpoint::check_out_dir`]); a run resumed at step `s > 0` cuts its
    /// `metrics.jsonl` back to step `s` and appends.
    pub out: Option<PathBuf>,
    /// How often to evaluate and checkpoint.
    pub cadence: Cadence,
    /// Stop after this step (after the engine's current step, at most the run's
    /// `steps`): a final checkpoint is written there.
    pub stop: u64,
    /// Saved in every checkpoint's `run.json` ([`checkpoint::load_settings`] reads it
    /// back); `None`: the cadence.
    pub settings: Option<serde_json::Value>,
    /// The corpus's entropy rate: drawn as the plot's floor line.
    pub entropy: Option<f64>,
    /// The instruction-set path named in every record.
    pub isa: Isa,
    /// Companion files written into every checkpoint directory (for example the
    /// run's tokenizer files), see [`checkpoint::save_with_files`].
    pub files: Vec<checkpoint::CompanionFile>,
    /// Mean bytes of text per target token over the evaluation windows of `val`;
    /// given, every evaluation also records `val_bits_per_byte` (the summed loss over
    /// the windows' bytes, in bits).
    pub val_bytes_per_token: Option<f64>,
    /// What the loss is measured in, for the plot's axis (for example `nats/token`).
    pub loss_unit: &'static str,
}

impl<'a> RunPlan<'a> {
    /// A plan that trains on `train` to `stop` with the default cadence, no evaluation,
    /// no files, no entropy floor, the active instruction-set path.
    pub fn new(train: impl Into<Tokens>, stop: u64) -> Self {
        RunPlan {
            train: train.into(),
            val: None,
            out: None,
            cadence: Cadence::default(),
            stop,
            settings: None,
            entropy: None,
            isa: crate::isa::active(),
            files: Vec::new(),
            val_bytes_per_token: None,
            loss_unit: "nats/token",
        }
    }
}

/// One step as the front end sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProgress {
    /// What the engine reported.
    pub stats: StepStats,
    /// Steps completed (`stats.step + 1`).
    pub done: u64,
    /// Training tokens per second since the drive started.
    pub tokens_per_s: f64,
    /// Seconds since the drive started.
    pub elapsed_s: f64,
}

/// One evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Steps completed.
    pub step: u64,
    /// The training loss of the last step.
    pub train_loss: f32,
    /// The validation loss (nats per token).
    pub val_loss: f32,
    /// The validation loss in bits per byte of text, when the plan knows the bytes per
    /// token ([`RunPlan::val_bytes_per_token`]): comparable across tokenizers.
    pub val_bits_per_byte: Option<f64>,
    /// Training tokens per second since the drive started.
    pub tokens_per_s: f64,
}

/// How much a drive trained (known once the last step is done, before the final
/// checkpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSummary {
    /// The engine's step count when the drive started.
    pub first_step: u64,
    /// Steps completed at the end.
    pub step: u64,
    /// Seconds spent in the loop.
    pub secs: f64,
    /// Training tokens per second over the loop.
    pub tokens_per_s: f64,
}

/// How the front end watches a drive (every method is called on every process, on the
/// driving thread; `on_step` between steps, the others between engine calls).
pub trait Observer {
    /// After each step.
    fn on_step(&mut self, progress: &StepProgress) {
        let _ = progress;
    }
    /// After each evaluation.
    fn on_eval(&mut self, eval: &Evaluation) {
        let _ = eval;
    }
    /// After the last step, before the final checkpoint.
    fn on_train_end(&mut self, summary: &TrainSummary) {
        let _ = summary;
    }
}

/// Watches nothing.
impl Observer for () {}

/// How a drive ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What it trained.
    pub summary: TrainSummary,
    /// The plan's stop step: `summary.step` is less if the run was interrupted.
    pub stop: u64,
    /// The last validation loss, if the drive evaluated.
    pub last_val: Option<f32>,
    /// The final checkpoint's directory (on the writing process with an output
    /// directory).
    pub checkpoint: Option<PathBuf>,
    /// `metrics.jsonl` (likewise).
    pub metrics: Option<PathBuf>,
    /// `loss.svg` (likewise).
    pub plot: Option<PathBuf>,
    /// The final state (the engine's last snapshot).
    pub state: TrainState,
}

impl Outcome {
    /// The run stopped before its stop step (an interrupt on some process).
    pub fn interrupted(&self) -> bool {
        self.summary.step < self.stop
    }
}

/// Why a drive failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The stop step is not after the current step, or past the run's end.
    #[error("cannot stop at step {stop}: the run is at step {step} of {steps}")]
    Stop {
        /// The plan's stop step.
        stop: u64,
        /// The engine's step count.
        step: u64,
        /// The run's steps.
        steps: u64,
    },
    /// The cadence is out of range.
    #[error(transparent)]
    Cadence(#[from] CadenceError),
    /// Training failed.
    #[error("training (step {step} of {steps})")]
    Train {
        /// The step (1-based) that failed.
        step: u64,
        /// The run's steps.
        steps: u64,
        /// What the engine said.
        source: TrainError,
    },
    /// Evaluation failed.
    #[error("evaluating after step {step}")]
    Eval {
        /// Steps completed.
        step: u64,
        /// What the engine said.
        source: TrainError,
    },
    /// The engine could not agree or snapshot.
    #[error("the run's processes could not {what} after step {step}")]
    Collective {
        /// `agree on stopping` or `take a snapshot`.
        what: &'static str,
        /// Steps completed.
        step: u64,
        /// What the engine said.
        source: TrainError,
    },
    /// The output directory is not usable.
    #[error("output directory {path}")]
    OutDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        source: CheckpointError,
    },
    /// The output directory could not be created.
    #[error("creating {path}")]
    CreateOut {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A checkpoint before the end could not be written.
    #[error(transparent)]
    Checkpoint(CheckpointError),
    /// The final checkpoint could not be written.
    #[error("writing the final checkpoint")]
    FinalCheckpoint(#[source] CheckpointError),
    /// `metrics.jsonl` or `loss.svg` could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The settings could not be encoded.
    #[error("encoding the run settings: {0}")]
    Settings(#[source] serde_json::Error),
}

impl DriverError {
    /// The engine returned this error (it already knows the run failed).
    fn is_engine_error(&self) -> bool {
        matches!(
            self,
            DriverError::Train { .. } | DriverError::Eval { .. } | DriverError::Collective { .. }
        )
    }
}

/// Drive `engine` through `plan`. `interrupt` is polled between steps (the front end's
/// Ctrl-C handler sets it): once any process has seen it set, every process stops after
/// the same step, and the writer checkpoints there ([`Outcome::interrupted`]).
/// `observer` sees every step, every evaluation and the summary.
///
/// On the writing process with an output directory: a new run starts `metrics.jsonl`,
/// a resumed one cuts it back to its step; each step appends one record (`step`, `loss`,
/// `lr`, `grad_norm`, `tokens_per_s`, `elapsed_s`, `isa`, and `val_loss` where it
/// evaluated), and the end one summary record (`step`, `tokens_per_s`, `isa` and the
/// engine's [`Engine::summary_fields`]); checkpoints are written every
/// `checkpoint_every` steps and at the end ([`checkpoint::save_with_settings`], each
/// made current atomically); `loss.svg` at the end. If the drive fails before its
/// first checkpoint, what it created is removed again (the directory if it made it,
/// else the log it started in an empty one).
pub fn drive<E: Engine + ?Sized>(
    engine: &mut E,
    plan: &RunPlan<'_>,
    interrupt: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome, DriverError> {
    let result = drive_inner(engine, plan, interrupt, observer);
    if let Err(e) = &result {
        if !e.is_engine_error() {
            engine.fail(e);
        }
    }
    result
}

/// The writing process's files.
struct Files {
    out: PathBuf,
    metrics_path: PathBuf,
    metrics: MetricsLog,
    fresh: FreshOut,
    train_points: Vec<(f64, f64)>,
    val_points: Vec<(f64, f64)>,
}

impl Files {
    /// Prepare `out` for a run at step `step`.
    fn open(out: &Path, step: u64) -> Result<Self, DriverError> {
        let out_kind = checkpoint::check_out_dir(out).map_err(|source| DriverError::OutDir {
            path: out.to_owned(),
            source,
        })?;
        let metrics_path = out.join(checkpoint::METRICS_FILE);
        // A failed start removes a directory it created, or the log it began in an empty
        // one; an earlier run's directory is left as it was.
        let fresh = FreshOut {
            remove: match (out.exists(), &out_kind) {
                (false, _) => Some(out.to_owned()),
                (true, OutDir::Fresh) => Some(metrics_path.clone()),
                (true, OutDir::Cllm) => None,
            },
        };
        std::fs::create_dir_all(out).map_err(|source| DriverError::CreateOut {
            path: out.to_owned(),
            source,
        })?;
        let mut train_points = Vec::new();
        let mut val_points = Vec::new();
        // A resumed run cuts its log back to the checkpoint (dropping what the earlier
        // process logged past it, and a torn last line) and appends; a new run starts one.
        let metrics = if step > 0 {
            let (log, kept) = MetricsLog::resume(&metrics_path, step)?;
            for record in &kept {
                let (Some(step), Some(loss)) = (record["step"].as_f64(), record["loss"].as_f64())
                else {
                    continue;
                };
                train_points.push((step, loss));
                if let Some(val) = record["val_loss"].as_f64() {
                    val_points.push((step, val));
                }
            }
            log
        } else {
            MetricsLog::create(&metrics_path)?
        };
        Ok(Files {
            out: out.to_owned(),
            metrics_path,
            metrics,
            fresh,
            train_points,
            val_points,
        })
    }
}

fn drive_inner<E: Engine + ?Sized>(
    engine: &mut E,
    plan: &RunPlan<'_>,
    interrupt: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Outcome, DriverError> {
    let cfg = *engine.config();
    let first_step = engine.step_count();
    let stop = plan.stop;
    if stop <= first_step || stop > cfg.steps {
        return Err(DriverError::Stop {
            stop,
            step: first_step,
            steps: cfg.steps,
        });
    }
    let cadence = plan.cadence;
    cadence.validate()?;
    let settings = match &plan.settings {
        Some(s) => s.clone(),
        None => serde_json::to_value(cadence).map_err(DriverError::Settings)?,
    };
    let isa = plan.isa.name();
    let mut files = match (&plan.out, engine.writes()) {
        (Some(out), true) => Some(Files::open(out, first_step)?),
        _ => None,
    };
    let started = Instant::now();
    let tokens_per_step = cfg.tokens_per_step() as f64;
    let mut last_val = None;
    loop {
        let at = engine.step_count();
        if at >= stop {
            break;
        }
        // Relaxed: a flag set by the front end's signal handler; polled between steps,
        // nothing else is published with it. Every process asks, so all leave together.
        let seen = interrupt.load(Ordering::Relaxed);
        let stop_now = engine
            .agree(seen)
            .map_err(|source| DriverError::Collective {
                what: "agree on stopping",
                step: at,
                source,
            })?;
        if stop_now {
            break;
        }
        // Run to the next evaluation, checkpoint or stop, whichever comes first.
        let mut next = stop.min((at / cadence.eval_every + 1).saturating_mul(cadence.eval_every));
        if let Some(k) = at.checked_div(cadence.checkpoint_every) {
            next = next.min((k + 1).saturating_mul(cadence.checkpoint_every));
        }
        let mut log_error = None;
        let mut pending = None;
        let mut on_step = |stats: &StepStats| {
            let done = stats.step + 1;
            let secs = started.elapsed().as_secs_f64();
            let tok_s = (done - first_step) as f64 * tokens_per_step / secs;
            let record = json!({
                "step": done, "loss": stats.loss, "lr": stats.lr,
                "grad_norm": stats.grad_norm, "tokens_per_s": tok_s, "elapsed_s": secs,
                "isa": isa,
            });
            if let Some(f) = files.as_mut() {
                f.train_points.push((done as f64, stats.loss as f64));
                if done < next {
                    if let Err(e) = f.metrics.write(&record) {
                        log_error = Some(e);
                        return false;
                    }
                }
            }
            if done >= next {
                pending = Some((*stats, tok_s, record));
            }
            observer.on_step(&StepProgress {
                stats: *stats,
                done,
                tokens_per_s: tok_s,
                elapsed_s: secs,
            });
            // Relaxed: as above; the step in progress ends normally either way.
            !interrupt.load(Ordering::Relaxed)
        };
        engine
            .run(&plan.train, next - at, &mut on_step)
            .map_err(|source| DriverError::Train {
                step: engine.step_count() + 1,
                steps: cfg.steps,
                source,
            })?;
        if let Some(e) = log_error {
            return Err(e.into());
        }
        let done = engine.step_count();
        if let Some((stats, tok_s, mut record)) = pending.take() {
            if done.is_multiple_of(cadence.eval_every) || done == stop {
                if let Some(val) = plan.val {
                    let v = engine
                        .eval(val, cadence.eval_windows)
                        .map_err(|source| DriverError::Eval { step: done, source })?;
                    if let Some(f) = files.as_mut() {
                        f.val_points.push((done as f64, v as f64));
                    }
                    record["val_loss"] = json!(v);
                    let bpb = plan
                        .val_bytes_per_token
                        .map(|b| v as f64 / b / std::f64::consts::LN_2);
                    if let Some(bpb) = bpb {
                        record["val_bits_per_byte"] = json!(bpb);
                    }
                    last_val = Some(v);
                    observer.on_eval(&Evaluation {
                        step: done,
                        train_loss: stats.loss,
                        val_loss: v,
                        val_bits_per_byte: bpb,
                        tokens_per_s: tok_s,
                    });
                }
            }
            if let Some(f) = files.as_mut() {
                f.metrics.write(&record)?;
            }
        }
        if cadence.checkpoint_every > 0
            && done.is_multiple_of(cadence.checkpoint_every)
            && done < stop
        {
            let state = snapshot(engine, done)?;
            if let Some(f) = files.as_mut() {
                checkpoint::save_with_files(&f.out, &cfg, &state, Some(&settings), &plan.files)
                    .map_err(DriverError::Checkpoint)?;
                f.fresh.keep();
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let step = engine.step_count();
    let tokens = (step - first_step) as f64 * tokens_per_step;
    let summary = TrainSummary {
        first_step,
        step,
        secs,
        tokens_per_s: tokens / secs,
    };
    observer.on_train_end(&summary);
    let state = snapshot(engine, step)?;
    let (mut checkpoint, mut metrics, mut plot) = (None, None, None);
    if let Some(mut f) = files {
        let ckpt = checkpoint::save_with_files(&f.out, &cfg, &state, Some(&settings), &plan.files)
            .map_err(DriverError::FinalCheckpoint)?;
        f.fresh.keep();
        let svg = f.out.join("loss.svg");
        plot_svg(
            &svg,
            "cllm training loss",
            "step",
            &format!("loss ({})", plan.loss_unit),
            &[
                Series {
                    label: "train",
                    points: &f.train_points,
                },
                Series {
                    label: "validation",
                    points: &f.val_points,
                },
            ],
            plan.entropy.map(|h| ("entropy rate (floor)", h)),
        )?;
        let mut record = serde_json::Map::new();
        record.insert("step".into(), json!(step));
        record.insert("tokens_per_s".into(), json!(summary.tokens_per_s));
        record.insert("isa".into(), json!(isa));
        record.extend(engine.summary_fields());
        f.metrics.write(&serde_json::Value::Object(record))?;
        checkpoint = Some(ckpt);
        metrics = Some(f.metrics_path);
        plot = Some(svg);
    }
    Ok(Outcome {
        summary,
        stop,
        last_val,
        checkpoint,
        metrics,
        plot,
        state,
    })
}

/// The engine's snapshot after step `step`.
fn snapshot<E: Engine + ?Sized>(engine: &mut E, step: u64) -> Result<TrainState, DriverError> {
    engine.snapshot().map_err(|source| DriverError::Collective {
        what: "take a snapshot",
        step,
        source,
    })
}

/// Removes what a run wrote into a new (or empty) output directory if the run fails
/// before its first checkpoint, so a failed start leaves nothing half-done behind:
/// the directory itself if the run created it, else the log it started there.
struct FreshOut {
    remove: Option<PathBuf>,
}

impl FreshOut {
    /// The first checkpoint exists: keep everything from now on.
    fn keep(&mut self) {
        self.remove = None;
    }
}

impl Drop for FreshOut {
    fn drop(&mut self) {
        if let Some(path) = self.remove.take() {
            let _ = match path.is_dir() {
                true => std::fs::remove_dir_all(path),
                false => std::fs::remove_file(path),
            };
        }
    }
}
