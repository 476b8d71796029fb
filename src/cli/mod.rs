//! The subcommands of the `cllm` binary: argument structs, progress display and
//! human-readable output. Everything else is delegated to the library, which never
//! imports this module.

pub mod bench;
pub mod corpus;
pub mod demo;
pub mod eval;
pub mod sample;
pub mod train;

use anyhow::{Context, Result};
use cllm::data::Corpus;
use std::path::Path;

/// Fraction of the token stream held out for validation.
pub const VAL_FRACTION: f64 = 0.1;

/// The number of cores, the default worker count.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A corpus loaded from `data`, or the built-in one (with its entropy rate).
pub fn load_corpus(data: Option<&Path>) -> Result<(Corpus, Option<f64>)> {
    match data {
        Some(path) => {
            let corpus = Corpus::load(path, VAL_FRACTION)
                .with_context(|| format!("reading the corpus {}", path.display()))?;
            Ok((corpus, None))
        }
        None => {
            let (corpus, entropy) =
                Corpus::built_in(VAL_FRACTION).context("generating the built-in corpus")?;
            Ok((corpus, Some(entropy)))
        }
    }
}

/// Nats per token to bits per byte (the byte tokenizer has one byte per token).
pub fn bits_per_byte(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}
