//! Test-only: what the bitwise properties over whole training runs share: the token
//! stream they train on and the stats they compare, as bits.
//! Must never compare with a tolerance: everything here is exact.
#![allow(dead_code)]

use cllm::data::{symbol_index, MarkovSource};
use cllm::train::trainer::StepStats;
use std::sync::Arc;

/// A deterministic token stream below `vocab`: an order-1 Markov text's symbols
/// (28 of them) reduced modulo `vocab`.
pub fn tokens(seed: u64, len: usize, vocab: usize) -> Arc<[u32]> {
    let source = MarkovSource::new(seed, 1, 0.5).expect("a valid order-1 source");
    source
        .generate(len, seed)
        .into_iter()
        .map(|b| (symbol_index(b).expect("the source emits its own symbols") % vocab) as u32)
        .collect()
}

/// The bits of every float.
pub fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// What a step reports, as bits: (step, loss, gradient norm, learning rate, tokens).
pub type StatBits = (u64, u32, u64, u32, usize);

/// Every field of `StepStats` (destructured without `..`, so a new field does not
/// compile until it is compared here too).
pub fn stat_bits(s: &StepStats) -> StatBits {
    let StepStats {
        step,
        loss,
        grad_norm,
        lr,
        tokens,
    } = *s;
    (
        step,
        loss.to_bits(),
        grad_norm.to_bits(),
        lr.to_bits(),
        tokens,
    )
}
