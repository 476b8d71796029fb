//! `cllm sample`: generate text from a checkpoint. Must never write files.

use super::text::checkpoint_tokenizer;
use super::{select_isa, IsaArg};
use anyhow::{bail, Context, Result};
use clap::Args;
use cllm::train::checkpoint;
use cllm::train::generate::generate;
use std::path::PathBuf;

/// Options of `cllm sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Checkpoint directory (or a `cllm train` output directory: its latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to continue (empty: start a new line).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to generate (with the checkpoint's own tokenizer).
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Sampling temperature (0: always the most likely token, the lowest id on a tie).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub isa: IsaArg,
}

/// Run `cllm sample`: print the prompt followed by its continuation.
pub fn run(args: SampleArgs) -> Result<()> {
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        bail!("--temperature {} must be >= 0", args.temperature);
    }
    select_isa(args.isa.isa.as_deref())?;
    let ckpt = checkpoint::load(&args.checkpoint)
        .with_context(|| format!("loading the checkpoint {}", args.checkpoint.display()))?;
    let tokenizer = checkpoint_tokenizer(&ckpt)?;
    let prompt = tokenizer
        .encode(args.prompt.as_bytes())
        .context("encoding the prompt")?;
    let text = generate(
        &ckpt.model,
        &ckpt.params,
        &prompt,
        args.tokens,
        args.temperature,
        args.seed,
    )?;
    println!("{}{}", args.prompt, tokenizer.decode(&text));
    Ok(())
}
