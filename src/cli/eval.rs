//! `cllm eval`: the mean loss and bits per byte of a checkpoint on a corpus. Must
//! never write files.

use super::{bits_per_byte, load_corpus, select_isa, IsaArg};
use anyhow::{bail, Context, Result};
use clap::Args;
use cllm::model::TrainingContext;
use cllm::train::checkpoint;
use cllm::train::trainer::{evaluate, TrainConfig};
use std::path::PathBuf;

/// Options of `cllm eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory (or a `cllm train` output directory: its latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text file or directory to evaluate on (default: the built-in corpus's
    /// validation split). All of a given corpus is used, not only a split.
    pub data: Option<PathBuf>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// At most this many windows of context+1 bytes, spread evenly over the data.
    #[arg(long, default_value_t = 1024)]
    pub max_windows: usize,
    #[command(flatten)]
    pub isa: IsaArg,
}

/// Run `cllm eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch == 0 || args.max_windows == 0 {
        bail!("--batch and --max-windows must be at least 1");
    }
    select_isa(args.isa.isa.as_deref())?;
    let ckpt = checkpoint::load(&args.checkpoint)
        .with_context(|| format!("loading the checkpoint {}", args.checkpoint.display()))?;
    let (corpus, entropy) = load_corpus(args.data.as_deref())?;
    // A given corpus is evaluated whole; the built-in one on its validation split.
    let tokens = match args.data {
        Some(_) => [corpus.train.as_slice(), corpus.val.as_slice()].concat(),
        None => corpus.val.clone(),
    };
    let seq = ckpt.model.n_positions;
    if tokens.len() < seq + 1 {
        bail!(
            "the data has {} bytes; the model's context of {seq} needs at least {}",
            tokens.len(),
            seq + 1
        );
    }
    if let Some(&bad) = tokens
        .iter()
        .find(|&&t| t as usize >= ckpt.model.vocab_size)
    {
        bail!(
            "the data holds token {bad}, outside the model's vocabulary of {}",
            ckpt.model.vocab_size
        );
    }
    let cfg = match &ckpt.training {
        Some((cfg, _)) => TrainConfig {
            batch: args.batch,
            seq,
            ..*cfg
        },
        None => bail!(
            "{} has no training state; cllm eval needs a checkpoint written by cllm train",
            ckpt.dir.display()
        ),
    };
    let mut ctx = TrainingContext::new(&ckpt.model, args.batch, seq)?;
    let (mut t, mut y) = (vec![0; args.batch * seq], vec![0; args.batch * seq]);
    let loss = evaluate(
        &cfg,
        &ckpt.params,
        &mut ctx,
        &tokens,
        args.max_windows,
        &mut t,
        &mut y,
    )? as f64;
    println!(
        "loss {loss:.4} nats/byte, {:.4} bits/byte ({} tokens, checkpoint {})",
        bits_per_byte(loss),
        tokens.len(),
        ckpt.dir.display()
    );
    if let Some(h) = entropy {
        println!(
            "entropy floor of the built-in corpus: {h:.4} nats/byte ({:.4} bits/byte)",
            bits_per_byte(h)
        );
    }
    Ok(())
}
