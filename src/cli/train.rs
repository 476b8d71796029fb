//! `cllm train`: parse the run's hyper-parameters, set up or resume the trainer, show
//! progress, write metrics, checkpoints and the loss plot, and end with a sample.
//! Must never implement training itself (that is `cllm::train`).

use super::text::{checkpoint_tokenizer, describe, prepare_text};
use super::{bits_per_byte, describe_isa, select_isa, IsaArg, IsaSource};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use cllm::data::prepare::{
    val_bytes_per_token, Prepared, TokenizerChoice, BUILT_IN_BPE_VOCAB, DEFAULT_BPE_VOCAB,
};
use cllm::data::{TokenSource, TokenizerKind};
use cllm::dist::launch::Fnv1a;
use cllm::dist::{RankTrainer, Transport};
use cllm::isa::Isa;
use cllm::model::GptConfig;
use cllm::train::checkpoint::{self, OutDir};
use cllm::train::driver::{
    drive, Cadence, CadenceError, CadenceOverrides, Engine, Evaluation, Observer, Outcome, RunPlan,
    StepProgress, TrainSummary,
};
use cllm::train::generate::generate;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::{Schedule, DEFAULT_WARMUP};
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Options of `cllm train`. Model and optimizer options cannot be combined with
/// `--resume` (the checkpoint fixes them, so the trajectory continues bit for bit).
/// The cadence options (`--eval-every`, `--eval-windows`, `--checkpoint-every`,
/// `--sample-tokens`) are saved with every checkpoint; a resumed run continues with
/// the saved values unless the flag is given again, which wins.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A text file, or a directory of files read recursively (hidden entries
    /// skipped). It is tokenized once into a token file under --cache-dir and read from
    /// disk as it trains, so it may be larger than memory. Without it, cllm trains on
    /// its built-in corpus (a seeded word-level Markov source written as sentences)
    /// and reports the source's entropy rate: the lowest loss any model can reach.
    /// With --resume and no DATA, the resumed run's own data is read again.
    pub data: Option<PathBuf>,
    /// Tokenizer: `byte` (one token per byte, vocabulary 256), `bpe` (a byte-level BPE
    /// trained on the training text, see --vocab) or `gpt2` (GPT-2's own 50,257
    /// tokens). Saved as tokenizer.json with every checkpoint, so Hugging Face's
    /// AutoTokenizer loads it [default: byte; a resumed run keeps its own].
    #[arg(long, value_name = "NAME", conflicts_with = "resume")]
    pub tokenizer: Option<String>,
    /// Vocabulary of --tokenizer bpe: 257 to 65536 ids, <|endoftext|> included
    /// [default: 4096; 512 for the built-in corpus, whose words are all single tokens
    /// by about 700].
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub vocab: Option<usize>,
    /// Where the corpus's token file (and a trained BPE) is cached; a later run on the
    /// same data and tokenizer reuses it, a changed or damaged one is rebuilt
    /// [default: OUT/tokens].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Transformer layers.
    #[arg(long, default_value_t = 2, conflicts_with = "resume")]
    pub layers: usize,
    /// Model width (embedding size); must be divisible by --heads.
    #[arg(long, default_value_t = 128, conflicts_with = "resume")]
    pub width: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4, conflicts_with = "resume")]
    pub heads: usize,
    /// Context length (tokens per training sequence).
    #[arg(long, default_value_t = 64, conflicts_with = "resume")]
    pub context: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8, conflicts_with = "resume")]
    pub batch: usize,
    /// Micro-batches per optimizer step (gradient accumulation). The global batch is
    /// batch x micro-batches sequences, independent of --threads; each micro-batch
    /// goes to one worker (threads beyond that help split its matmuls).
    #[arg(long, default_value_t = 2, conflicts_with = "resume")]
    pub micro_batches: usize,
    /// Optimizer steps [default: 1500 (about a minute for the default shape on one
    /// core, half that on two), or what --epochs implies].
    #[arg(long, conflicts_with_all = ["epochs", "resume"])]
    pub steps: Option<u64>,
    /// Passes over the training split (converted to steps).
    #[arg(long, conflicts_with = "resume")]
    pub epochs: Option<f64>,
    /// Peak learning rate (after warm-up).
    #[arg(long, default_value_t = 2e-3, conflicts_with = "resume")]
    pub lr: f32,
    /// Final learning rate of the cosine decay [default: lr / 10].
    #[arg(long, conflicts_with = "resume")]
    pub min_lr: Option<f32>,
    /// Linear warm-up steps [default: 300, whatever the run's length: the learning
    /// rate's early slope, not the run's share, is what keeps the first steps stable;
    /// a shorter run stays in warm-up].
    #[arg(long, conflicts_with = "resume")]
    pub warmup: Option<u64>,
    /// AdamW weight decay (matrices only).
    #[arg(long, default_value_t = 0.1, conflicts_with = "resume")]
    pub weight_decay: f32,
    /// Clip the gradient's L2 norm to this (0 disables).
    #[arg(long, default_value_t = 1.0, conflicts_with = "resume")]
    pub grad_clip: f32,
    /// Seed of the initial weights and of the batch order.
    #[arg(long, default_value_t = 1, conflicts_with = "resume")]
    pub seed: u64,
    /// Threads (at most 1024). One worker per micro-batch at most; with the lock-free scheduler the
    /// remaining threads join the workers' teams and split their matmuls by rows
    /// (the barrier scheduler leaves them out). Results are bitwise identical for any
    /// thread count and either scheduler.
    #[arg(long, default_value_t = super::default_threads())]
    pub threads: usize,
    /// How workers are scheduled: `lockfree` (pre-fetch thread, lock-free work queue,
    /// parallel reduction and sharded optimizer) or `barrier` (the baseline: two
    /// barriers per step, reduction and update on the main thread).
    #[arg(long, value_enum, default_value_t = SchedulerArg::Lockfree)]
    pub scheduler: SchedulerArg,
    /// Output directory: checkpoints, metrics.jsonl, loss.svg. Must be new, empty, or
    /// an earlier cllm output directory (whose checkpoint is then replaced)
    /// [default: the --resume directory, else cllm-run].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (or output) directory, bit for bit,
    /// with its --eval-every, --eval-windows, --checkpoint-every and --sample-tokens
    /// (each of these given on this command line wins over the saved one).
    /// metrics.jsonl is cut back to the checkpoint's step, so every step is logged once.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Validation loss every this many steps (and at the end) [default: 100, or the
    /// resumed run's].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Validation windows per evaluation [default: 64, or the resumed run's].
    #[arg(long)]
    pub eval_windows: Option<usize>,
    /// Write a checkpoint every this many steps (0: only at the end) [default: 0, or
    /// the resumed run's].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Stop after this step (writing a checkpoint) although the run is longer, as if
    /// interrupted; `--resume` continues it.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Tokens of text to generate at the end (0: none) [default: 200, or the resumed
    /// run's].
    #[arg(long)]
    pub sample_tokens: Option<usize>,
    #[command(flatten)]
    pub isa: IsaArg,
}

/// `--scheduler` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerArg {
    /// Lock-free step protocol (default).
    Lockfree,
    /// Two barrier waits per step, reduction and update on the main thread (the
    /// baseline).
    Barrier,
}

impl From<SchedulerArg> for Scheduler {
    fn from(s: SchedulerArg) -> Self {
        match s {
            SchedulerArg::Lockfree => Scheduler::LockFree,
            SchedulerArg::Barrier => Scheduler::Barrier,
        }
    }
}

/// The run was interrupted (Ctrl-C) after a checkpoint was written; `main` exits
/// with status 130.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted at step {step}; checkpoint written to {checkpoint} (continue with --resume {out})"
)]
pub struct Interrupted {
    /// Steps completed.
    pub step: u64,
    /// The checkpoint directory.
    pub checkpoint: String,
    /// The output directory to resume from.
    pub out: String,
}

/// The most threads `cllm train` starts. Far more than any step can use (workers
/// beyond the micro-batches and helpers beyond a matmul's rows only wait), and low
/// enough that the operating system's limits on threads and memory maps are not
/// reached, where a thread failing to start would abort the process.
pub const MAX_THREADS: usize = 1024;

/// The cadence flags given on the command line (each wins over a resumed run's saved
/// value).
fn cadence_flags(args: &TrainArgs) -> CadenceOverrides {
    CadenceOverrides {
        eval_every: args.eval_every,
        eval_windows: args.eval_windows,
        checkpoint_every: args.checkpoint_every,
        sample_tokens: args.sample_tokens,
    }
}

/// The flags given on the command line over `saved` (a resumed run's) over the
/// defaults; a field out of range is named by its flag.
fn resolve_cadence(args: &TrainArgs, saved: Option<&serde_json::Value>) -> Result<Cadence> {
    Cadence::resolve(&cadence_flags(args), saved).map_err(|e| match e {
        CadenceError::Zero { field } => {
            anyhow!("--{} must be at least 1", field.replace('_', "-"))
        }
        other => other.into(),
    })
}

/// The settings saved with every checkpoint (`run.json`'s `settings`): the cadence,
/// and the training data's path (`null` for the built-in corpus), which a resume
/// without DATA reads again.
fn run_settings(cadence: Cadence, data: Option<&Path>) -> Result<serde_json::Value> {
    let mut settings = serde_json::to_value(cadence).context("encoding the run settings")?;
    if let Some(map) = settings.as_object_mut() {
        let path = data.map(|d| d.to_string_lossy().into_owned());
        map.insert("data".into(), serde_json::json!(path));
    }
    Ok(settings)
}

/// The training data a checkpoint's saved settings name, if any (checkpoints written
/// before the data was saved name none: such a resume reads the built-in corpus
/// unless DATA is given).
fn saved_data(saved: Option<&serde_json::Value>) -> Option<PathBuf> {
    saved?.get("data")?.as_str().map(PathBuf::from)
}

/// Run `cllm train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.threads > MAX_THREADS {
        bail!(
            "--threads {} is more than the limit of {MAX_THREADS} threads",
            args.threads
        );
    }
    // Checked again once a resumed run's saved values are known; here so that a bad
    // flag fails before the corpus is loaded.
    if args.eval_every == Some(0) {
        bail!("--eval-every must be at least 1");
    }
    if args.eval_windows == Some(0) {
        bail!("--eval-windows must be at least 1");
    }
    // Before any kernel runs: every step of this process uses the path.
    let (isa, isa_source) = select_isa(args.isa.isa.as_deref())?;
    let out = args
        .out
        .clone()
        .or_else(|| args.resume.clone())
        .unwrap_or_else(|| PathBuf::from("cllm-run"));
    // Before the token cache is written into it.
    checkpoint::check_out_dir(&out).with_context(|| format!("--out {}", out.display()))?;
    let (resumed, saved) = match &args.resume {
        Some(dir) => {
            let context = || format!("loading the checkpoint to resume from {}", dir.display());
            let ckpt = checkpoint::load(dir).with_context(context)?;
            (
                Some(ckpt),
                checkpoint::load_settings(dir).with_context(context)?,
            )
        }
        None => (None, None),
    };
    // A resumed run reads the data it was trained on unless DATA is given.
    let data = match (&args.data, saved_data(saved.as_ref())) {
        (Some(given), _) => Some(given.clone()),
        (None, Some(path)) => {
            println!("data: {} (the resumed run's)", path.display());
            Some(path)
        }
        (None, None) => None,
    };
    let choice = match &resumed {
        Some(ckpt) => TokenizerChoice::Given(checkpoint_tokenizer(ckpt)?),
        None => {
            let default_vocab = match data {
                Some(_) => DEFAULT_BPE_VOCAB,
                None => BUILT_IN_BPE_VOCAB,
            };
            let name = args.tokenizer.as_deref().unwrap_or("byte");
            TokenizerChoice::parse(name, args.vocab, default_vocab)?
        }
    };
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| out.join(checkpoint::TOKEN_CACHE_DIR));
    // Bad input found from here until training starts leaves nothing behind: the
    // directories this run would create (the token cache among them) go again.
    let mut created = Created::new(&[&out, &cache_dir]);
    let text = prepare_text(data.as_deref(), choice, &cache_dir, args.threads, true)?;
    let entropy = text.floor;

    let (cfg, state, cadence) = match &args.resume {
        Some(_) => {
            let Some(ckpt) = resumed else {
                bail!("the checkpoint to resume from was not loaded");
            };
            let Some((cfg, state)) = ckpt.training else {
                bail!(
                    "{} holds weights but no training state; it cannot be resumed",
                    ckpt.dir.display()
                );
            };
            (cfg, state, resolve_cadence(&args, saved.as_ref())?)
        }
        None => {
            let cadence = resolve_cadence(&args, None)?;
            let cfg = config_from_args(&args, text.train.len(), text.tokenizer.vocab_size())?;
            let state = TrainState::initial(&cfg).context("initialising the model")?;
            (cfg, state, cadence)
        }
    };
    text.check_context(cfg.seq)
        .context("the corpus is too short for this context length")?;
    if state.step >= cfg.steps {
        bail!(
            "the checkpoint is at step {} of {}: the run is already complete",
            state.step,
            cfg.steps
        );
    }
    let stop = args.stop_at.unwrap_or(cfg.steps).min(cfg.steps);
    if stop <= state.step {
        bail!(
            "--stop-at {stop} is not after the current step {}",
            state.step
        );
    }
    let run = Run {
        args: &args,
        cfg,
        cadence,
        // Absolute, so that a resume from another directory finds it.
        data: data.map(|d| std::fs::canonicalize(&d).unwrap_or(d)),
        stop,
        out,
        text,
        entropy,
        isa,
        isa_source,
    };
    let world = super::dist::world(cfg.micro_batches)?;
    created.keep();
    // One of several MPI processes, or the only process.
    match world {
        None => run.single(state),
        Some(world) => run.rank(state, world),
    }
}

/// A `cllm train` run whose configuration, cadence and data are settled.
struct Run<'a> {
    args: &'a TrainArgs,
    cfg: TrainConfig,
    cadence: Cadence,
    /// The training data given (or the resumed run's), `None` for the built-in corpus.
    data: Option<PathBuf>,
    stop: u64,
    out: PathBuf,
    text: Prepared,
    /// The built-in corpus's floor, in nats per byte.
    entropy: Option<f64>,
    isa: Isa,
    isa_source: IsaSource,
}

impl Run<'_> {
    /// The only process: the threaded trainer.
    fn single(self, state: TrainState) -> Result<()> {
        self.check_out()?;
        let args = self.args;
        let mut trainer =
            Trainer::with_scheduler(self.cfg, state, args.threads, args.scheduler.into())
                .context("setting up the trainer")?;
        self.print_header(trainer.layout().len(), trainer.step_count(), None);
        let outcome = self.drive(&mut trainer, true)?;
        let summary = &outcome.summary;
        println!(
            "trained {} steps in {:.1} s: {:.0} tokens/s on {} thread(s), {} scheduler",
            summary.step - summary.first_step,
            summary.secs,
            summary.tokens_per_s,
            trainer.threads(),
            match trainer.scheduler() {
                Scheduler::LockFree => "lock-free",
                Scheduler::Barrier => "barrier",
            }
        );
        let utilization = trainer.totals().utilization();
        println!(
            "worker utilization (busy / wall): {}",
            utilization
                .iter()
                .enumerate()
                .map(|(w, u)| match w.checked_sub(trainer.workers()) {
                    None => format!("worker {w} {:.1}%", 100.0 * u),
                    Some(h) => format!("helper {h} {:.1}%", 100.0 * u),
                })
                .collect::<Vec<_>>()
                .join("  ")
        );
        self.finish(&outcome)
    }

    /// One rank of a data-parallel run: every rank trains, rank 0 prints and writes.
    /// Any failure on this rank after the group exists is reported to the group
    /// (which ends every rank) before it is returned.
    fn rank<T: Transport>(self, state: TrainState, mut world: T) -> Result<()> {
        let (rank, ranks) = (world.rank(), world.size());
        let writer = rank == 0;
        let agreed = (|| {
            if writer {
                self.check_out()?;
            }
            let items = [
                (
                    "arguments",
                    super::dist::fingerprint_json(&(&self.cfg, &self.cadence, self.stop))?,
                ),
                ("data", self.text.fingerprint),
                ("state", state_fingerprint(&state)),
            ];
            super::dist::agree(&mut world, &items)
        })();
        if let Err(e) = agreed {
            world.fail(&format!("{e:#}"));
            return Err(e);
        }
        let mut trainer = match RankTrainer::new(self.cfg, state, self.args.threads, world) {
            Ok(t) => t,
            // The group learns of it when this rank's transport is dropped or aborts.
            Err(e) => return Err(e).context(format!("rank {rank} of {ranks}: setting up")),
        };
        if writer {
            self.print_header(
                cllm::model::ParamLayout::new(&self.cfg.model).len(),
                trainer.step_count(),
                Some((ranks, trainer.threads())),
            );
        }
        let outcome = self
            .drive(&mut trainer, writer)
            .with_context(|| format!("rank {rank} of {ranks}"))?;
        if !writer {
            return Ok(());
        }
        let summary = &outcome.summary;
        let comm = trainer.comm_stats();
        let per_step = |x: f64| x / comm.steps.max(1) as f64;
        println!(
            "trained {} steps in {:.1} s: {:.0} tokens/s on {ranks} rank(s) x {} thread(s)",
            summary.step - summary.first_step,
            summary.secs,
            summary.tokens_per_s,
            trainer.threads(),
        );
        println!(
            "communication (rank 0): {:.1} KiB sent per step, {:.2} ms per step in collectives",
            per_step(comm.bytes_sent as f64) / 1024.0,
            per_step(comm.time.as_secs_f64()) * 1e3,
        );
        self.finish(&outcome)
    }

    /// The output directory must be new, empty or an earlier cllm run's.
    fn check_out(&self) -> Result<()> {
        let out = &self.out;
        let kind =
            checkpoint::check_out_dir(out).with_context(|| format!("--out {}", out.display()))?;
        if kind == OutDir::Cllm && self.args.resume.is_none() {
            eprintln!("note: replacing the earlier cllm run in {}", out.display());
        }
        Ok(())
    }

    fn print_header(&self, n_params: usize, at: u64, ranks: Option<(usize, usize)>) {
        let cfg = &self.cfg;
        println!("cllm train: {}", describe(&self.text));
        println!(
            "model: {} layers, width {}, {} heads, context {}, vocab {} ({:.2}M parameters); \
             batch {} x {} micro-batches x {} tokens; {} steps{}",
            cfg.model.n_layer,
            cfg.model.n_embd,
            cfg.model.n_head,
            cfg.model.n_positions,
            cfg.model.vocab_size,
            n_params as f64 / 1e6,
            cfg.batch,
            cfg.micro_batches,
            cfg.seq,
            cfg.steps,
            match at {
                0 => String::new(),
                s => format!(", resuming at step {s}"),
            }
        );
        if let Some((ranks, threads)) = ranks {
            println!(
                "data-parallel: {ranks} rank(s) x {threads} thread(s), each rank computing \
                 {} of the {} micro-batches (the same bits as one process)",
                if cfg.micro_batches.is_multiple_of(ranks) {
                    (cfg.micro_batches / ranks).to_string()
                } else {
                    format!(
                        "{} or {}",
                        cfg.micro_batches / ranks,
                        cfg.micro_batches / ranks + 1
                    )
                },
                cfg.micro_batches
            );
        }
        println!(
            "isa: {} ({}, {}; every path gives the same bits)",
            self.isa,
            describe_isa(self.isa),
            self.isa_source.describe()
        );
        if let Some(h) = self.entropy {
            println!(
                "the corpus's entropy rate is {h:.4} nats/byte ({:.3} bits/byte): the floor no model can beat",
                bits_per_byte(h)
            );
        }
    }

    /// Drive `engine` to the stop step; `show`: this process prints progress.
    fn drive<E: Engine>(&self, engine: &mut E, show: bool) -> Result<Outcome> {
        let interrupt = interrupt_flag();
        let tokenizer = &self.text.tokenizer;
        let byte = tokenizer.kind() == TokenizerKind::Byte;
        let plan = RunPlan {
            val: Some(&self.text.val),
            out: Some(self.out.clone()),
            cadence: self.cadence,
            // The floor is per byte: a line on the plot only when tokens are bytes.
            entropy: self.entropy.filter(|_| byte),
            isa: self.isa,
            files: tokenizer
                .hf_files()
                .into_iter()
                .map(|(name, bytes)| (name.to_string(), bytes))
                .collect(),
            val_bytes_per_token: val_bytes_per_token(
                tokenizer,
                &self.text.val,
                self.cfg.seq,
                self.cadence.eval_windows,
            ),
            loss_unit: if byte { "nats/byte" } else { "nats/token" },
            settings: Some(run_settings(self.cadence, self.data.as_deref())?),
            ..RunPlan::new(self.text.train.clone(), self.stop)
        };
        let bar = match show {
            true => progress_bar(self.cfg.steps, engine.step_count()),
            false => ProgressBar::hidden(),
        };
        let mut progress = Progress {
            bar,
            entropy: self.entropy,
            show,
            byte,
        };
        Ok(drive(engine, &plan, &interrupt, &mut progress)?)
    }

    /// The writing process's last lines: validation loss, files, the sample.
    fn finish(&self, outcome: &Outcome) -> Result<()> {
        let entropy = self.entropy;
        if let Some(val) = outcome.last_val {
            let tokenizer = &self.text.tokenizer;
            let per_byte = val_bytes_per_token(
                tokenizer,
                &self.text.val,
                self.cfg.seq,
                self.cadence.eval_windows,
            )
            .map_or(f64::NAN, |b| val as f64 / b);
            let unit = match tokenizer.kind() {
                TokenizerKind::Byte => "nats/byte".to_string(),
                _ => format!("nats/token, {per_byte:.4} nats/byte"),
            };
            println!(
                "validation loss {val:.4} {unit} ({:.3} bits/byte){}",
                bits_per_byte(per_byte),
                entropy.map_or(String::new(), |h| format!(
                    "; entropy floor {h:.4} nats/byte ({:.3} bits/byte)",
                    bits_per_byte(h)
                ))
            );
        }
        let out = &self.out;
        // The writing process with an output directory gets all three paths.
        let (Some(ckpt), Some(metrics), Some(plot)) =
            (&outcome.checkpoint, &outcome.metrics, &outcome.plot)
        else {
            bail!("the run driver wrote no checkpoint into {}", out.display());
        };
        println!("checkpoint: {}", ckpt.display());
        if outcome.interrupted() {
            return Err(Interrupted {
                step: outcome.summary.step,
                checkpoint: ckpt.display().to_string(),
                out: out.display().to_string(),
            }
            .into());
        }
        println!("metrics: {}  plot: {}", metrics.display(), plot.display());
        if self.cadence.sample_tokens > 0 {
            let text = generate(
                &self.cfg.model,
                &outcome.state.params,
                &[],
                self.cadence.sample_tokens,
                0.8,
                self.cfg.seed,
            )?;
            println!(
                "sample (temperature 0.8):\n{}",
                self.text.tokenizer.decode(&text)
            );
        }
        Ok(())
    }
}

/// The launch agreement's fingerprint of a starting state (its weights, moments, step
/// and sampler position): every rank must resume the same checkpoint.
fn state_fingerprint(state: &TrainState) -> u64 {
    let mut h = Fnv1a::new();
    for xs in [&state.params, &state.opt.m, &state.opt.v] {
        let bytes: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        h.write(&bytes);
    }
    h.write(&state.opt.t.to_le_bytes());
    h.write(&state.step.to_le_bytes());
    h.write(format!("{:?}", state.sampler).as_bytes());
    h.finish()
}

/// What `cllm train` shows while the driver runs: the progress bar (on a terminal) and
/// a line per evaluation.
struct Progress {
    bar: ProgressBar,
    entropy: Option<f64>,
    /// This process prints (the only process, or rank 0).
    show: bool,
    /// Tokens are bytes (the loss is per byte).
    byte: bool,
}

impl Observer for Progress {
    fn on_step(&mut self, p: &StepProgress) {
        self.bar.set_position(p.done);
        self.bar.set_message(format!(
            "loss {:.4}  {:.0} tok/s",
            p.stats.loss, p.tokens_per_s
        ));
    }

    fn on_eval(&mut self, e: &Evaluation) {
        if !self.show {
            return;
        }
        let floor = match (self.byte, e.val_bits_per_byte) {
            (true, _) | (false, None) => self
                .entropy
                .map_or(String::new(), |h| format!(" (floor {h:.3})")),
            (false, Some(bpb)) => format!(
                " ({bpb:.3} bits/byte{})",
                self.entropy.map_or(String::new(), |h| format!(
                    ", floor {:.3}",
                    bits_per_byte(h)
                ))
            ),
        };
        let line = format!(
            "step {:>6}  train {:.4}  val {:.4}{floor}  {:.0} tok/s",
            e.step, e.train_loss, e.val_loss, e.tokens_per_s,
        );
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    fn on_train_end(&mut self, _: &TrainSummary) {
        self.bar.finish_and_clear();
    }
}

// ---- helpers --------------------------------------------------------------------

/// Directories that did not exist when it was made: removed on drop unless kept.
struct Created(Vec<PathBuf>);

impl Created {
    fn new(paths: &[&PathBuf]) -> Self {
        Created(
            paths
                .iter()
                .filter(|p| !p.exists())
                .map(|p| p.to_path_buf())
                .collect(),
        )
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for dir in &self.0 {
            // Best effort: a directory this run made and never used.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A flag the first Ctrl-C sets (the run then finishes its step, writes a checkpoint
/// and exits with 130); a second Ctrl-C exits at once. If no handler can be
/// installed the flag simply never gets set.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    let installed = ctrlc::set_handler(move || {
        // Relaxed: a flag polled between steps; nothing else is published with it.
        if f.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and writing a checkpoint (Ctrl-C again to quit now)");
    });
    if let Err(e) = installed {
        eprintln!("note: Ctrl-C will stop training without a checkpoint ({e})");
    }
    flag
}

fn config_from_args(args: &TrainArgs, train_tokens: usize, vocab: usize) -> Result<TrainConfig> {
    let model = GptConfig {
        n_layer: args.layers,
        n_head: args.heads,
        n_embd: args.width,
        n_positions: args.context,
        vocab_size: vocab,
    };
    model.validate()?;
    let tokens_per_step = (args.batch * args.micro_batches * args.context).max(1);
    let steps = match (args.steps, args.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => {
            if !(e.is_finite() && e > 0.0) {
                bail!("--epochs {e} must be positive");
            }
            ((e * train_tokens as f64) / tokens_per_step as f64)
                .ceil()
                .max(1.0) as u64
        }
        (None, None) => 1500,
    };
    let cfg = TrainConfig {
        model,
        batch: args.batch,
        micro_batches: args.micro_batches,
        seq: args.context,
        steps,
        schedule: Schedule {
            max_lr: args.lr,
            min_lr: args.min_lr.unwrap_or(args.lr / 10.0),
            warmup: args.warmup.unwrap_or(DEFAULT_WARMUP),
            total: steps,
        },
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        grad_clip: args.grad_clip,
        seed: args.seed,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn progress_bar(total: u64, at: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(at);
    bar
}
