//! R ranks (threads over the in-memory transport) against the single-process
//! reference `Trainer::step`: every step's statistics, the final weights, the summed
//! gradient and the whole training state, bit for bit, for R = 1..=4 and several
//! thread counts per rank; a checkpointed state resumes on another R.

#[path = "bitwise/mod.rs"]
mod bitwise;
#[path = "watchdog/mod.rs"]
mod watchdog;

use bitwise::{bits, stat_bits, tokens, StatBits};
use cllm::dist::{MemoryTransport, RankTrainer};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
use std::sync::Arc;
use std::time::Duration;

fn cfg(steps: u64, micro_batches: usize, n_embd: usize) -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd,
            n_positions: 8,
            vocab_size: 64,
        },
        batch: 2,
        micro_batches,
        seq: 8,
        steps,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 2,
            total: steps,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 11,
    }
}

/// The reference: `steps` calls of `Trainer::step`, with every step's stats, the
/// final state and the last summed gradient.
fn reference(
    cfg: &TrainConfig,
    state: TrainState,
    data: &[u32],
    steps: u64,
) -> (Vec<StatBits>, TrainState, Vec<u32>) {
    let mut t = Trainer::new(*cfg, state).expect("trainer");
    let stats = (0..steps)
        .map(|_| stat_bits(&t.step(data).expect("step")))
        .collect();
    let grad = bits(t.last_gradient_sum());
    (stats, t.into_state(), grad)
}

/// `steps` steps on `ranks` rank threads with `threads` threads each: rank 0's stats,
/// every rank's snapshot (they must agree), and the summed gradient assembled from
/// the ranks' shards.
fn ranks_run(
    cfg: &TrainConfig,
    state: &TrainState,
    data: &Arc<[u32]>,
    steps: u64,
    ranks: usize,
    threads: usize,
) -> (Vec<StatBits>, TrainState, Vec<u32>) {
    let group = MemoryTransport::<cllm::sync::Std>::group(ranks);
    let handles: Vec<_> = group
        .into_iter()
        .map(|transport| {
            let (cfg, state, data) = (*cfg, state.clone(), Arc::clone(data));
            std::thread::spawn(move || {
                let mut rank = RankTrainer::new(cfg, state, threads, transport).expect("rank");
                let mut stats = Vec::new();
                rank.run(&data, steps, &mut |s| {
                    stats.push(stat_bits(s));
                    true
                })
                .expect("run");
                let (range, grad) = rank.gradient_shard();
                let grad = (range, bits(grad));
                (stats, rank.snapshot().expect("snapshot"), grad)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("a rank panicked"))
        .collect();
    let n = state.params.len();
    let mut grad = vec![0u32; n];
    for (_, _, (range, g)) in &results {
        grad[range.clone()].copy_from_slice(g);
    }
    let (stats0, state0, _) = &results[0];
    for (stats, state, _) in &results[1..] {
        assert_eq!(stats, stats0, "ranks disagree on the step statistics");
        assert_eq!(
            bits(&state.params),
            bits(&state0.params),
            "ranks disagree on the weights"
        );
        assert_eq!(bits(&state.opt.m), bits(&state0.opt.m));
        assert_eq!(bits(&state.opt.v), bits(&state0.opt.v));
    }
    (stats0.clone(), state0.clone(), grad)
}

fn assert_same_state(a: &TrainState, b: &TrainState, what: &str) {
    assert_eq!(bits(&a.params), bits(&b.params), "{what}: weights");
    assert_eq!(bits(&a.opt.m), bits(&b.opt.m), "{what}: first moments");
    assert_eq!(bits(&a.opt.v), bits(&b.opt.v), "{what}: second moments");
    assert_eq!(a.opt.t, b.opt.t, "{what}: update count");
    assert_eq!(a.step, b.step, "{what}: step");
    assert_eq!(a.sampler, b.sampler, "{what}: sampler");
}

#[test]
fn every_rank_count_gives_the_single_process_bits() {
    let _w = watchdog::Watchdog::arm("dist_ranks bits", Duration::from_secs(300));
    let data = tokens(5, 4000, 64);
    for (m, width) in [(4, 8), (5, 16), (7, 8)] {
        let cfg = cfg(4, m, width);
        let init = TrainState::initial(&cfg).expect("initial state");
        let (want_stats, want_state, want_grad) = reference(&cfg, init.clone(), &data, 4);
        for ranks in 1..=m.min(4) {
            for threads in [1, 2] {
                let (stats, state, grad) = ranks_run(&cfg, &init, &data, 4, ranks, threads);
                let what = format!("M={m} width={width} R={ranks} threads={threads}");
                assert_eq!(stats, want_stats, "{what}: step statistics");
                assert_same_state(&state, &want_state, &what);
                assert_eq!(grad, want_grad, "{what}: last summed gradient");
            }
        }
    }
}

#[test]
fn a_state_saved_with_two_ranks_resumes_on_three() {
    let _w = watchdog::Watchdog::arm("dist_ranks resume", Duration::from_secs(300));
    let data = tokens(9, 4000, 64);
    let cfg = cfg(6, 6, 8);
    let init = TrainState::initial(&cfg).expect("initial state");
    let (want_stats, want_state, _) = reference(&cfg, init.clone(), &data, 6);
    let (first, mid, _) = ranks_run(&cfg, &init, &data, 3, 2, 1);
    let (rest, end, _) = ranks_run(&cfg, &mid, &data, 3, 3, 2);
    let stats: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(stats, want_stats);
    assert_same_state(&end, &want_state, "2 ranks then 3");
}

#[test]
fn more_ranks_than_micro_batches_is_refused() {
    let cfg = cfg(2, 2, 8);
    let init = TrainState::initial(&cfg).expect("initial state");
    let mut group = MemoryTransport::<cllm::sync::Std>::group(3);
    let transport = group.remove(0);
    let err = RankTrainer::new(cfg, init, 1, transport)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("3 ranks but only 2 micro-batch"),
        "{err}"
    );
}
