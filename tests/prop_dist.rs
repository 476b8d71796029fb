//! Property: a data-parallel run of `R` ranks (threads over `MemoryTransport<Std>`,
//! each rank with its own worker threads) is the single-process `Trainer::step` run,
//! bit for bit, for random small shapes, seeds, micro-batch counts `M` in 1..=8, rank
//! counts `R` in 1..=min(4, M), 1..=3 threads per rank and 1..=3 steps, starting
//! either from the initial state or from a state the reference trained for a step or
//! two (so the sampler, moments and update count are not the initial ones).
//!
//! Owns: the cross-rank bitwise property only. Compared on every rank: every step's
//! statistics (`stat_bits`), the final weights, both moments, the update count, the
//! step and the sampler state (from `snapshot()`), and the last summed gradient
//! assembled from every rank's `gradient_shard()`. Each case runs in a forked process
//! with a timeout, so a hang is a shrunk failure, not a stuck test.
//! Must never touch `src/` or the other tests' helpers (`tests/bitwise` is used, not
//! changed).

#[path = "bitwise/mod.rs"]
mod bitwise;

use bitwise::{bits, stat_bits, tokens, StatBits};
use cllm::dist::{MemoryTransport, RankTrainer};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::sync::Arc;

/// One case: a model and run shape, and how it is split across ranks.
#[derive(Debug, Clone, Copy)]
struct Case {
    layers: usize,
    width: usize,
    heads: usize,
    seq: usize,
    batch: usize,
    micro_batches: usize,
    seed: u64,
    /// Reference steps before the ranks start (0: from the initial state).
    warm: u64,
    steps: u64,
    ranks: usize,
    threads: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=2,
        prop_oneof![Just(8usize), Just(16)],
        1usize..=2,
        4usize..=8,
        1usize..=3,
        1usize..=8,
        0u64..1000,
        0u64..=2,
        1u64..=3,
    )
        .prop_flat_map(
            |(layers, width, heads, seq, batch, micro_batches, seed, warm, steps)| {
                (1..=micro_batches.min(4), 1usize..=3).prop_map(move |(ranks, threads)| Case {
                    layers,
                    width,
                    heads,
                    seq,
                    batch,
                    micro_batches,
                    seed,
                    warm,
                    steps,
                    ranks,
                    threads,
                })
            },
        )
}

fn train_config(c: &Case) -> TrainConfig {
    let total = c.warm + c.steps;
    TrainConfig {
        model: GptConfig {
            n_layer: c.layers,
            n_head: c.heads,
            n_embd: c.width,
            n_positions: c.seq,
            vocab_size: 64,
        },
        batch: c.batch,
        micro_batches: c.micro_batches,
        seq: c.seq,
        steps: total,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 1,
            total,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: c.seed,
    }
}

/// What a run leaves, as bits: every step's statistics, the whole state and the last
/// summed gradient.
#[derive(Debug, PartialEq)]
struct Outcome {
    stats: Vec<StatBits>,
    params: Vec<u32>,
    m: Vec<u32>,
    v: Vec<u32>,
    t: u64,
    step: u64,
    sampler: cllm::data::SamplerState,
    grad: Vec<u32>,
}

fn outcome(stats: Vec<StatBits>, state: &TrainState, grad: Vec<u32>) -> Outcome {
    Outcome {
        stats,
        params: bits(&state.params),
        m: bits(&state.opt.m),
        v: bits(&state.opt.v),
        t: state.opt.t,
        step: state.step,
        sampler: state.sampler,
        grad,
    }
}

/// The reference: `warm` steps (giving the ranks' starting state), then `steps` more.
fn reference(cfg: &TrainConfig, c: &Case, data: &[u32]) -> (TrainState, Outcome) {
    let mut t = Trainer::new(*cfg, TrainState::initial(cfg).expect("state")).expect("trainer");
    for _ in 0..c.warm {
        t.step(data).expect("a finite warm-up step");
    }
    let start = t.state().clone();
    let stats = (0..c.steps)
        .map(|_| stat_bits(&t.step(data).expect("a finite step")))
        .collect();
    let grad = bits(t.last_gradient_sum());
    (start, outcome(stats, &t.into_state(), grad))
}

/// The ranks' run: every rank's outcome, each with the gradient assembled from every
/// rank's shard.
fn ranks_run(cfg: &TrainConfig, c: &Case, start: &TrainState, data: &Arc<[u32]>) -> Vec<Outcome> {
    let handles: Vec<_> = MemoryTransport::<cllm::sync::Std>::group(c.ranks)
        .into_iter()
        .map(|transport| {
            let (cfg, start, data, c) = (*cfg, start.clone(), Arc::clone(data), *c);
            std::thread::spawn(move || {
                let mut rank =
                    RankTrainer::new(cfg, start, c.threads, transport).expect("a rank trainer");
                let mut stats = Vec::new();
                rank.run(&data, c.steps, &mut |s| {
                    stats.push(stat_bits(s));
                    true
                })
                .expect("a finite run");
                let (range, grad) = rank.gradient_shard();
                let shard = (range, bits(grad));
                let state = rank.snapshot().expect("a snapshot");
                (stats, state, shard)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("a rank panicked"))
        .collect();
    let mut grad = vec![u32::MAX; start.params.len()];
    let mut covered = vec![false; start.params.len()];
    for (_, _, (range, g)) in &results {
        grad[range.clone()].copy_from_slice(g);
        for c in &mut covered[range.clone()] {
            assert!(!*c, "gradient shards overlap");
            *c = true;
        }
    }
    assert!(covered.iter().all(|&c| c), "gradient shards leave a gap");
    results
        .into_iter()
        .map(|(stats, state, _)| outcome(stats, &state, grad.clone()))
        .collect()
}

proptest! {
    #![proptest_config(Config {
        cases: 1024,
        fork: true,
        timeout: 60_000,
        ..Config::default()
    })]

    #[test]
    fn ranks_give_the_single_process_bits(c in case()) {
        let cfg = train_config(&c);
        let data = tokens(c.seed ^ 0x5eed, 3000, 64);
        let (start, want) = reference(&cfg, &c, &data);
        for (r, got) in ranks_run(&cfg, &c, &start, &data).iter().enumerate() {
            prop_assert_eq!(&got.stats, &want.stats, "rank {}: step statistics", r);
            prop_assert!(got.params == want.params, "rank {}: weights", r);
            prop_assert!(got.m == want.m, "rank {}: first moments", r);
            prop_assert!(got.v == want.v, "rank {}: second moments", r);
            prop_assert_eq!(got.t, want.t, "rank {}: update count", r);
            prop_assert_eq!(got.step, want.step, "rank {}: step", r);
            prop_assert_eq!(&got.sampler, &want.sampler, "rank {}: sampler", r);
            prop_assert!(got.grad == want.grad, "rank {}: last summed gradient", r);
        }
    }
}
