//! `cllm corpus`: write the built-in corpus to a file and print its entropy rate.

use super::bits_per_byte;
use anyhow::{Context, Result};
use clap::Args;
use cllm::data::{default_corpus, DEFAULT_CORPUS_ALPHA, DEFAULT_CORPUS_ORDER, DEFAULT_CORPUS_SEED};
use cllm::train::checkpoint_io::atomic_write;
use std::path::PathBuf;

/// Options of `cllm corpus`.
#[derive(Args, Debug)]
pub struct CorpusArgs {
    /// File to write (replaced atomically if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

/// Run `cllm corpus`.
pub fn run(args: CorpusArgs) -> Result<()> {
    let (bytes, entropy) = default_corpus().context("generating the built-in corpus")?;
    atomic_write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} bytes to {}: order-{DEFAULT_CORPUS_ORDER} Markov source (seed {DEFAULT_CORPUS_SEED}, alpha {DEFAULT_CORPUS_ALPHA})",
        bytes.len(),
        args.out.display()
    );
    println!(
        "entropy rate {entropy:.6} nats/byte ({:.6} bits/byte)",
        bits_per_byte(entropy)
    );
    Ok(())
}
