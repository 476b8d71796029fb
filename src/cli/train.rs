//! `cllm train`: parse the run's hyper-parameters, set up or resume the trainer, show
//! progress, write metrics, checkpoints and the loss plot, and end with a sample.
//! Must never implement training itself (that is `cllm::train`).

use super::{bits_per_byte, load_corpus};
use anyhow::{bail, Context, Result};
use clap::Args;
use cllm::data::ByteTokenizer;
use cllm::model::GptConfig;
use cllm::train::checkpoint::{self, OutDir};
use cllm::train::generate::generate;
use cllm::train::optim::AdamWConfig;
use cllm::train::report::{plot_svg, MetricsLog, Series};
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `cllm train`. Model and optimizer options cannot be combined with
/// `--resume` (the checkpoint fixes them, so the trajectory continues bit for bit).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A text file, or a directory of files read recursively. Without it, cllm trains
    /// on its built-in corpus (a seeded Markov source) and reports the source's
    /// entropy rate: the lowest loss any model can reach.
    pub data: Option<PathBuf>,
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
    #[arg(long, default_value_t = 16, conflicts_with = "resume")]
    pub batch: usize,
    /// Micro-batches per optimizer step (gradient accumulation). The global batch is
    /// batch x micro-batches sequences, independent of --threads.
    #[arg(long, default_value_t = 1, conflicts_with = "resume")]
    pub micro_batches: usize,
    /// Optimizer steps [default: 1500 (about a minute for the default shape on one
    /// core), or what --epochs implies].
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
    /// Linear warm-up steps [default: 5% of the steps].
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
    /// Worker threads for the forward/backward phase (at most one per micro-batch is
    /// used). Results are bitwise identical for any thread count.
    #[arg(long, default_value_t = super::default_threads())]
    pub threads: usize,
    /// Output directory: checkpoints, metrics.jsonl, loss.svg. Must be new, empty, or
    /// an earlier cllm output directory (whose checkpoint is then replaced)
    /// [default: the --resume directory, else cllm-run].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (or output) directory, bit for bit.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Validation loss every this many steps (and at the end).
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Validation windows per evaluation.
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u64,
    /// Stop after this step (writing a checkpoint) although the run is longer, as if
    /// interrupted; `--resume` continues it.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Bytes of text to generate at the end (0: none).
    #[arg(long, default_value_t = 200)]
    pub sample_tokens: usize,
}

/// Run `cllm train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.eval_every == 0 {
        bail!("--eval-every must be at least 1");
    }
    if args.eval_windows == 0 {
        bail!("--eval-windows must be at least 1");
    }
    let (corpus, entropy) = load_corpus(args.data.as_deref())?;
    let out = args
        .out
        .clone()
        .or_else(|| args.resume.clone())
        .unwrap_or_else(|| PathBuf::from("cllm-run"));

    let (cfg, state) = match &args.resume {
        Some(dir) => {
            let ckpt = checkpoint::load(dir).with_context(|| {
                format!("loading the checkpoint to resume from {}", dir.display())
            })?;
            let Some((cfg, state)) = ckpt.training else {
                bail!(
                    "{} holds weights but no training state; it cannot be resumed",
                    ckpt.dir.display()
                );
            };
            (cfg, state)
        }
        None => {
            let cfg = config_from_args(&args, corpus.train.len())?;
            let state = TrainState::initial(&cfg).context("initialising the model")?;
            (cfg, state)
        }
    };
    corpus
        .check_context(cfg.seq)
        .context("the corpus is too short for this context length")?;
    match checkpoint::check_out_dir(&out).with_context(|| format!("--out {}", out.display()))? {
        OutDir::Fresh => {}
        OutDir::Cllm if args.resume.is_none() => {
            eprintln!("note: replacing the earlier cllm run in {}", out.display())
        }
        OutDir::Cllm => {}
    }
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
    let mut trainer =
        Trainer::with_threads(cfg, state, args.threads).context("setting up the trainer")?;
    let n_params = trainer.layout().len();
    let files = match corpus.n_files {
        0 => String::new(),
        n => format!(" from {n} file(s)"),
    };
    println!(
        "cllm train: {} ({} train / {} validation bytes{files})",
        corpus.source,
        corpus.train.len(),
        corpus.val.len(),
    );
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
        match trainer.step_count() {
            0 => String::new(),
            s => format!(", resuming at step {s}"),
        }
    );
    if let Some(h) = entropy {
        println!(
            "the corpus's entropy rate is {h:.4} nats/byte ({:.3} bits/byte): the floor no model can beat",
            bits_per_byte(h)
        );
    }

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let metrics_path = out.join("metrics.jsonl");
    // A resumed run appends to its log; a new run starts one.
    let mut metrics = if trainer.step_count() > 0 {
        MetricsLog::append(&metrics_path)?
    } else {
        MetricsLog::create(&metrics_path)?
    };
    let bar = progress_bar(cfg.steps, trainer.step_count());
    let mut train_points = Vec::new();
    let mut val_points = Vec::new();
    let started = Instant::now();
    let first_step = trainer.step_count();
    let mut last_val = None;
    while trainer.step_count() < stop {
        let stats = trainer.step(&corpus.train)?;
        let done = trainer.step_count();
        let secs = started.elapsed().as_secs_f64();
        let tok_s = (done - first_step) as f64 * cfg.tokens_per_step() as f64 / secs;
        train_points.push((done as f64, stats.loss as f64));
        let mut record = json!({
            "step": done, "loss": stats.loss, "lr": stats.lr,
            "grad_norm": stats.grad_norm, "tokens_per_s": tok_s, "elapsed_s": secs,
        });
        if done % args.eval_every == 0 || done == stop {
            let val = trainer.eval(&corpus.val, args.eval_windows)?;
            val_points.push((done as f64, val as f64));
            record["val_loss"] = json!(val);
            last_val = Some(val);
            let floor = entropy.map_or(String::new(), |h| format!(" (floor {h:.3})"));
            let line = format!(
                "step {done:>6}  train {:.4}  val {val:.4}{floor}  {:.0} tok/s",
                stats.loss, tok_s
            );
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
        }
        metrics.write(&record)?;
        bar.set_position(done);
        bar.set_message(format!("loss {:.4}  {:.0} tok/s", stats.loss, tok_s));
        if args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < stop {
            checkpoint::save(&out, &cfg, trainer.state())?;
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let tokens = (stop - first_step) as f64 * cfg.tokens_per_step() as f64;
    let ckpt =
        checkpoint::save(&out, &cfg, trainer.state()).context("writing the final checkpoint")?;
    let plot = out.join("loss.svg");
    plot_svg(
        &plot,
        "cllm training loss",
        "step",
        "loss (nats/byte)",
        &[
            Series {
                label: "train",
                points: &train_points,
            },
            Series {
                label: "validation",
                points: &val_points,
            },
        ],
        entropy.map(|h| ("entropy rate (floor)", h)),
    )?;
    println!(
        "trained {} steps in {secs:.1} s: {:.0} tokens/s on {} worker thread(s)",
        stop - first_step,
        tokens / secs,
        trainer.threads()
    );
    if let Some(val) = last_val {
        println!(
            "validation loss {val:.4} nats/byte ({:.3} bits/byte){}",
            bits_per_byte(val as f64),
            entropy.map_or(String::new(), |h| format!(
                "; entropy floor {h:.4} ({:.3} bits/byte)",
                bits_per_byte(h)
            ))
        );
    }
    println!("checkpoint: {}", ckpt.display());
    println!(
        "metrics: {}  plot: {}",
        metrics_path.display(),
        plot.display()
    );
    if args.sample_tokens > 0 {
        let state = trainer.state();
        let text = generate(
            &cfg.model,
            &state.params,
            &[],
            args.sample_tokens,
            0.8,
            cfg.seed,
        )?;
        println!(
            "sample (temperature 0.8):\n{}",
            ByteTokenizer::decode(&text)
        );
    }
    Ok(())
}

// ---- helpers --------------------------------------------------------------------

fn config_from_args(args: &TrainArgs, train_tokens: usize) -> Result<TrainConfig> {
    let model = GptConfig {
        n_layer: args.layers,
        n_head: args.heads,
        n_embd: args.width,
        n_positions: args.context,
        vocab_size: ByteTokenizer::VOCAB,
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
            warmup: args.warmup.unwrap_or(steps / 20),
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
