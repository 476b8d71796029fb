//! Proves that a micro-batch's loss and gradient are a function of its numbers only:
//! not of where the buffers sit in memory (parameters and gradient at any float
//! offset, contexts allocated after heap allocations of varying size) and not of what
//! the context computed before (a context reused after another micro-batch gives a
//! fresh context's bits). Schedulers hand micro-batches to contexts and slots that
//! differ by thread count and history, so the guarantee rests on both.
//! Must never touch: the model's internals (public entry points only).

use cllm::model::{forward_backward, init_params, GptConfig, TrainingContext};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn ids(n: usize, a: u64, b: u64, vocab: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i * a + b) % vocab as u64) as u32)
        .collect()
}

/// Loss and gradient bits of one micro-batch computed with the parameters and the
/// gradient placed `offset` floats into their buffers (gradient pre-filled with NaN,
/// so an element left unwritten shows) on `ctx`.
fn run_at(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    targets: &[u32],
    offset: usize,
) -> (u32, Vec<u32>) {
    let mut p = vec![0f32; offset + params.len()];
    p[offset..].copy_from_slice(params);
    let mut g = vec![f32::NAN; offset + params.len()];
    let loss = forward_backward(cfg, &p[offset..], ctx, tokens, targets, &mut g[offset..])
        .expect("a valid micro-batch");
    (loss.to_bits(), bits(&g[offset..]))
}

proptest! {
    #![proptest_config(Config { cases: 48, failure_persistence: None, ..Config::default() })]

    #[test]
    fn a_micro_batch_is_the_same_wherever_and_after_whatever(
        n_layer in 1usize..=2,
        n_head in 1usize..=4,
        head_dim in 1usize..=12,
        vocab_size in 2usize..=600,
        batch in 1usize..=3,
        seq in 1usize..=9,
        seed in any::<u64>(),
        offsets in proptest::collection::vec(1usize..=17, 1..=3),
        junk in proptest::collection::vec(1usize..=4096, 1..=3),
    ) {
        let cfg = GptConfig { n_layer, n_head, n_embd: n_head * head_dim, n_positions: 9, vocab_size };
        let params = init_params(&cfg, seed);
        let n = batch * seq;
        let (tokens, targets) = (ids(n, 37, seed % 101, vocab_size), ids(n, 11, 3, vocab_size));
        let mut fresh = TrainingContext::new(&cfg, batch, seq).unwrap();
        let want = run_at(&cfg, &params, &mut fresh, &tokens, &targets, 0);

        // Other addresses: shifted parameter and gradient buffers, and contexts made
        // after allocations that move the heap.
        let mut held = Vec::new();
        for (&offset, &bytes) in offsets.iter().zip(junk.iter().cycle()) {
            held.push(vec![1u8; bytes]);
            let mut ctx = TrainingContext::new(&cfg, batch, seq).unwrap();
            prop_assert_eq!(&run_at(&cfg, &params, &mut ctx, &tokens, &targets, offset), &want, "offset {}", offset);
        }

        // Another history: the same context, after a different micro-batch.
        let (other_t, other_g) = (ids(n, 13, 1, vocab_size), ids(n, 7, 9, vocab_size));
        let mut used = TrainingContext::new(&cfg, batch, seq).unwrap();
        run_at(&cfg, &params, &mut used, &other_t, &other_g, 0);
        prop_assert_eq!(&run_at(&cfg, &params, &mut used, &tokens, &targets, 0), &want, "after another micro-batch");
        drop(held);
    }
}
