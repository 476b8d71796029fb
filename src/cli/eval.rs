//! `cllm eval`: the mean loss and bits per byte of a checkpoint on a corpus. Must
//! never write files.

use super::text::{checkpoint_tokenizer, prepare_text};
use super::{bits_per_byte, select_isa, IsaArg};
use anyhow::{bail, Context, Result};
use clap::Args;
use cllm::data::prepare::{val_bytes_per_token, TokenizerChoice};
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
    /// At most this many windows of context+1 tokens, spread evenly over the data.
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
    let tokenizer = checkpoint_tokenizer(&ckpt)?;
    // A given corpus is evaluated whole (tokenized in memory, one file at a time);
    // the built-in one on its validation split.
    let (tokens, entropy) = match &args.data {
        Some(path) => (encode_all(&tokenizer, path)?, None),
        None => {
            let text = prepare_text(
                None,
                TokenizerChoice::Given(tokenizer.clone()),
                std::path::Path::new("."),
                1,
                false,
            )?;
            (text.val.to_vec(), text.floor)
        }
    };
    let seq = ckpt.model.n_positions;
    if tokens.len() < seq + 1 {
        bail!(
            "the data has {} tokens; the model's context of {seq} needs at least {}",
            tokens.len(),
            seq + 1
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
    let per_byte = val_bytes_per_token(&tokenizer, &tokens, seq, args.max_windows)
        .map_or(f64::NAN, |b| loss / b);
    let unit = match tokenizer.kind() {
        cllm::data::TokenizerKind::Byte => "nats/byte".to_string(),
        _ => format!("nats/token, {per_byte:.4} nats/byte"),
    };
    println!(
        "loss {loss:.4} {unit}, {:.4} bits/byte ({} tokens, tokenizer {}, checkpoint {})",
        bits_per_byte(per_byte),
        tokens.len(),
        tokenizer.kind().name(),
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

/// Every file of `path` (as `cllm train` lists them), each tokenized on its own, in
/// order.
fn encode_all(tokenizer: &cllm::data::Tokenizer, path: &std::path::Path) -> Result<Vec<u32>> {
    let context = || format!("reading the corpus {}", path.display());
    let files = cllm::data::cache::corpus_files(path).with_context(context)?;
    let mut tokens = Vec::new();
    for f in &files {
        let bytes =
            std::fs::read(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
        let ids = tokenizer
            .encode(&bytes)
            .with_context(|| format!("tokenizing {}", f.path.display()))?;
        tokens.extend(ids);
    }
    Ok(tokens)
}
