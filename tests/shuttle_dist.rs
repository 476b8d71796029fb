//! shuttle randomized model checks of the cross-rank protocol: `MemoryTransport` over
//! the `Shuttle` platform and its spinning variant (random and PCT schedulers,
//! `CLLM_SHUTTLE_ITERS` iterations each, default 1000), and the real
//! `RankTrainer<MemoryTransport<Shuttle>>` with its ranks as shuttle threads (each
//! iteration trains a small model for two steps: about 2 ms).
//!
//! Owns: the cross-rank shuttle properties only.
//! * Every rank receives exactly what each rank sent it, over several rounds of
//!   all-to-all and all-gather (distinct payloads, some empty), 2 and 3 ranks.
//! * A rank that fails or leaves while the others are in or entering a round makes
//!   every other rank's call return `PeerFailed` naming it (a hang is a shuttle
//!   deadlock report).
//! * `RankTrainer` with 2 and 3 ranks of one thread each (so no std thread is spawned
//!   inside the model) ends two steps with every rank's weights and statistics equal,
//!   bitwise, to the single-process `Trainer::step` reference computed before the
//!   check; a rank that stops after one step (failing, or dropping its trainer) makes
//!   every other rank's `run` return `TrainError::Comm` naming it, not hang.
//!
//! Must never touch: `tests/common` (used, not changed), `src/` or any other
//! protocol's tests.

#[path = "bitwise/mod.rs"]
mod bitwise;
mod common;
#[path = "dist_rounds/mod.rs"]
mod dist_rounds;

use bitwise::{bits, stat_bits, tokens, StatBits};
use cllm::dist::{CommError, RankTrainer, Transport};
use cllm::model::GptConfig;
use cllm::sync::Platform;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainError, TrainState, Trainer};
use common::{shuttle_check, Shuttle, ShuttleSpin};
use dist_rounds::{fail_or_see_failure, on_ranks, rounds, Exit};
use std::sync::Arc;

// ---- the transport ------------------------------------------------------------------

fn exchange<P: Platform + 'static>(ranks: usize, n: usize) {
    shuttle_check(move || {
        on_ranks::<P, _>(ranks, move |mut t| rounds(&mut t, n));
    });
}

#[test]
fn two_ranks_six_rounds_every_message_exact() {
    exchange::<Shuttle>(2, 6);
}

#[test]
fn three_ranks_five_rounds_every_message_exact() {
    exchange::<Shuttle>(3, 5);
}

#[test]
fn three_ranks_five_rounds_spinning() {
    exchange::<ShuttleSpin>(3, 5);
}

/// All ranks run `before` good rounds; rank `victim` then fails or leaves while the
/// others enter one more round: each must get `PeerFailed` naming it and its reason.
/// The others keep their transports until every rank returned (so the victim is the
/// only dead rank).
fn failure<P: Platform + 'static>(ranks: usize, victim: usize, before: usize, exit: Exit) {
    shuttle_check(move || {
        on_ranks::<P, _>(ranks, move |t| fail_or_see_failure(t, victim, before, exit));
    });
}

#[test]
fn a_failing_rank_fails_the_others_three_ranks() {
    failure::<Shuttle>(3, 1, 2, Exit::Fail);
}

#[test]
fn a_dropped_rank_fails_the_others_three_ranks() {
    failure::<Shuttle>(3, 0, 3, Exit::Drop);
}

#[test]
fn a_failing_rank_fails_the_others_spinning() {
    failure::<ShuttleSpin>(2, 1, 1, Exit::Fail);
}

// ---- the rank trainer -----------------------------------------------------------------

fn cfg(micro_batches: usize) -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            n_positions: 8,
            vocab_size: 64,
        },
        batch: 2,
        micro_batches,
        seq: 8,
        steps: 2,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 1,
            total: 2,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 23,
    }
}

/// The single-process reference: two `Trainer::step`s' statistics and final weights.
fn reference(cfg: &TrainConfig, data: &[u32]) -> (Vec<StatBits>, Vec<u32>) {
    let mut t = Trainer::new(*cfg, TrainState::initial(cfg).expect("state")).expect("trainer");
    let stats = (0..2)
        .map(|_| stat_bits(&t.step(data).expect("a finite step")))
        .collect();
    (stats, bits(&t.into_state().params))
}

/// `ranks` rank trainers of one thread each run two steps; every rank's statistics and
/// final weights must be the reference's, bitwise.
fn ranks_equal_reference(ranks: usize, micro_batches: usize) {
    let cfg = cfg(micro_batches);
    let data = tokens(3, 2000, 64);
    let (want_stats, want_params) = reference(&cfg, &data);
    let init = TrainState::initial(&cfg).expect("state");
    shuttle_check(move || {
        let (init, data) = (init.clone(), Arc::clone(&data));
        let (want_stats, want_params) = (want_stats.clone(), want_params.clone());
        let results = on_ranks::<Shuttle, _>(ranks, move |t| {
            let mut rank = RankTrainer::new(cfg, init.clone(), 1, t).expect("rank");
            let mut stats = Vec::new();
            rank.run(&data, 2, &mut |s| {
                stats.push(stat_bits(s));
                true
            })
            .expect("run");
            (stats, bits(rank.params()))
        });
        for (r, (stats, params)) in results.iter().enumerate() {
            assert_eq!(stats, &want_stats, "rank {r}: step statistics");
            assert!(params == &want_params, "rank {r}: final weights differ");
        }
    });
}

#[test]
fn two_rank_trainers_give_the_single_process_bits() {
    ranks_equal_reference(2, 3);
}

#[test]
fn three_rank_trainers_give_the_single_process_bits() {
    ranks_equal_reference(3, 5);
}

/// Rank `victim` runs one step and then fails (or drops its trainer); the others run
/// two: their `run` must fail in step 1 with `TrainError::Comm` naming the victim.
fn a_rank_stops(ranks: usize, victim: usize, exit: Exit) {
    let cfg = cfg(ranks + 1);
    let data = tokens(4, 2000, 64);
    let init = TrainState::initial(&cfg).expect("state");
    shuttle_check(move || {
        let (init, data) = (init.clone(), Arc::clone(&data));
        on_ranks::<Shuttle, _>(ranks, move |t| {
            let me = t.rank();
            let mut rank = RankTrainer::new(cfg, init.clone(), 1, t).expect("rank");
            if me == victim {
                rank.run(&data, 1, &mut |_| true).expect("the first step");
                match exit {
                    Exit::Fail => rank.fail("stopped on purpose"),
                    Exit::Drop => drop(rank),
                }
                return;
            }
            let why = match exit {
                Exit::Fail => "stopped on purpose",
                Exit::Drop => "left the group",
            };
            let mut steps = 0;
            let err = rank
                .run(&data, 2, &mut |_| {
                    steps += 1;
                    true
                })
                .expect_err("a peer stopped");
            assert_eq!(steps, 1, "rank {me}: steps done before the failure");
            match err {
                TrainError::Comm {
                    step: 1,
                    rank,
                    source:
                        CommError::PeerFailed {
                            rank: failed,
                            why: w,
                        },
                } if rank == me && failed == victim && w == why => {}
                other => panic!("rank {me}: unexpected error {other:?}"),
            }
        });
    });
}

#[test]
fn a_failing_rank_stops_the_other_trainer() {
    a_rank_stops(2, 1, Exit::Fail);
}

/// Rank 0 is the victim: the others then fail themselves (reporting the error), and
/// the transport names the lowest dead rank, which is then still rank 0.
#[test]
fn a_dropped_rank_stops_both_other_trainers() {
    a_rank_stops(3, 0, Exit::Drop);
}
