//! shuttle randomized checks of the WHOLE lock-free trainer,
//! `cllm::train::lockfree::run::<Shuttle>`: pre-fetch thread, leader on the test's
//! main thread and two spawned workers (three `TrainingContext`s), real model, real
//! AdamW, under shuttle's random and PCT schedulers (`CLLM_SHUTTLE_ITERS` iterations
//! each, default 1000: the model is small enough that an iteration takes about 1 ms).
//!
//! Owns: the end-to-end trainer-under-a-model-checker properties only. A tiny GPT
//! (1 layer, width 8, 2 heads, vocabulary 16, context 4), batch 2, 3 micro-batches
//! per step, 3 steps; with helper threads, also shapes whose matmul rows do not divide
//! by the team size (8 rows over a team of 3, 3 rows over a team of 2; 300 iterations
//! per scheduler, as a team of 3 costs more per iteration). Checked in every iteration: each step's loss, the last summed
//! gradient, the final weights, both AdamW moments, the update count, the step and
//! the sampler position are bitwise those of the single-threaded reference
//! (`Trainer::step`, computed once outside the model checker); every micro-batch is
//! computed once; stopping after a step keeps exactly the consumed position. A hang
//! (lost wake-up, a worker or the pre-fetch thread never joined) is a shuttle
//! deadlock report.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;

use cllm::model::{GptConfig, ParamLayout, TrainingContext};
use cllm::train::lockfree;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{decay_ranges, TrainConfig, TrainState, Trainer};
use common::{shuttle_check, Shuttle};
use core::ops::Range;
use std::sync::Arc;

const WORKERS: usize = 3;
const STEPS: u64 = 3;

fn config() -> TrainConfig {
    config_of(2, 4)
}

/// The tiny model with `batch` sequences of `seq` tokens per micro-batch: every matmul
/// a team splits has `batch * seq` rows.
fn config_of(batch: usize, seq: usize) -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            n_positions: 4,
            vocab_size: 16,
        },
        batch,
        micro_batches: 3,
        seq,
        steps: STEPS,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 1,
            total: STEPS,
        },
        adamw: AdamWConfig::default(),
        // Small enough that clipping engages: the clip factor comes from the norm the
        // workers assemble from their parts' block sums.
        grad_clip: 0.5,
        seed: 7,
    }
}

/// Deterministic training tokens below the vocabulary size.
fn tokens() -> Arc<[u32]> {
    (0..257u32)
        .map(|i| (i * 7 + i / 3 + (i * i) % 5) % 16)
        .collect::<Vec<_>>()
        .into()
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// The single-threaded reference after `steps` steps: per-step loss bits, last
/// gradient-sum bits, final state.
struct Reference {
    losses: Vec<u32>,
    grad: Vec<u32>,
    state: TrainState,
}

fn reference(cfg: TrainConfig, train: &[u32], steps: u64) -> Reference {
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let losses = (0..steps)
        .map(|_| trainer.step(train).unwrap().loss.to_bits())
        .collect();
    let grad = bits(trainer.last_gradient_sum());
    Reference {
        losses,
        grad,
        state: trainer.into_state(),
    }
}

/// Run the lock-free trainer (`workers` workers, `helpers` helper threads splitting
/// their matmuls) under shuttle for up to `STEPS` steps, stopping after `stop_after`
/// steps, and compare with the reference of that many steps.
fn trainer_equals_reference(stop_after: u64, workers: usize, helpers: usize) {
    trainer_of_shape_equals_reference(config(), stop_after, workers, helpers, None);
}

/// As `trainer_equals_reference`, for `cfg`; `iterations` overrides the shuttle
/// iteration count (per scheduler) when the shape is slower than the default one.
fn trainer_of_shape_equals_reference(
    cfg: TrainConfig,
    stop_after: u64,
    workers: usize,
    helpers: usize,
    iterations: Option<usize>,
) {
    let train = tokens();
    assert!(train.iter().all(|&t| (t as usize) < cfg.model.vocab_size));
    let want = Arc::new(reference(cfg, &train, stop_after));
    let initial = Arc::new(TrainState::initial(&cfg).unwrap());
    let decay: Arc<[Range<usize>]> = decay_ranges(&ParamLayout::new(&cfg.model)).into();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let check = move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut state = (*initial).clone();
        let contexts: Vec<TrainingContext> = (0..workers)
            .map(|_| TrainingContext::new(&cfg.model, cfg.batch, cfg.seq).unwrap())
            .collect();
        let mut last_grad = Vec::new();
        let mut losses = Vec::new();
        let (contexts, result) = lockfree::run::<Shuttle, _>(
            &cfg,
            &mut state,
            &decay,
            contexts,
            helpers,
            &train,
            STEPS,
            &mut last_grad,
            &mut |s: &cllm::train::trainer::StepStats| {
                assert_eq!(s.step, losses.len() as u64, "steps reported in order");
                losses.push(s.loss.to_bits());
                (losses.len() as u64) < stop_after
            },
        );
        let report = result.unwrap();
        assert_eq!(contexts.len(), workers, "every context comes back");
        assert_eq!(report.steps, stop_after);
        assert_eq!(report.workers.len(), workers + helpers);
        assert_eq!(
            report.workers.iter().map(|w| w.jobs).sum::<usize>(),
            cfg.micro_batches * stop_after as usize,
            "every micro-batch computed once"
        );
        assert_eq!(losses, want.losses, "per-step losses");
        assert_eq!(bits(&last_grad), want.grad, "last summed gradient");
        let w = &want.state;
        assert_eq!(bits(&state.params), bits(&w.params), "weights");
        assert_eq!(bits(&state.opt.m), bits(&w.opt.m), "first moments");
        assert_eq!(bits(&state.opt.v), bits(&w.opt.v), "second moments");
        assert_eq!(
            (state.opt.t, state.step, state.sampler),
            (w.opt.t, w.step, w.sampler),
            "update count, step, sampler position"
        );
    };
    match iterations {
        None => shuttle_check(check),
        Some(n) => {
            use shuttle::scheduler::{PctScheduler, RandomScheduler};
            let check = Arc::new(check);
            let mut config = shuttle::Config::new();
            config.stack_size = 1 << 20;
            let again = Arc::clone(&check);
            shuttle::Runner::new(RandomScheduler::new(n), config.clone()).run(move || again());
            shuttle::Runner::new(PctScheduler::new(3, n), config).run(move || check());
        }
    }
    eprintln!(
        "shuttle_trainer: {} iterations (stop after {stop_after})",
        runs.load(std::sync::atomic::Ordering::SeqCst)
    );
}

#[test]
fn three_workers_three_steps_equal_the_single_threaded_reference() {
    trainer_equals_reference(STEPS, WORKERS, 0);
}

/// Intra-batch parallelism: two workers for three micro-batches, each leading a team
/// with one helper thread that computes half the rows of every matmul.
#[test]
fn two_workers_with_a_helper_each_equal_the_single_threaded_reference() {
    trainer_equals_reference(STEPS, 2, 2);
}

/// `on_step` stops the run after the first step while the pre-fetch thread has
/// drawn ahead (and may be parked on a full ring): the state is exactly the one
/// after one step, and every thread is joined.
#[test]
fn stopping_after_one_step_keeps_the_consumed_position() {
    trainer_equals_reference(1, WORKERS, 0);
}

/// Rows that do not divide by the team size: one worker leading a team of three
/// (itself and two helpers) over matmuls of 8 rows (parts of 3, 3 and 2 rows).
#[test]
fn one_worker_with_two_helpers_splits_eight_rows_three_ways() {
    trainer_of_shape_equals_reference(config(), STEPS, 1, 2, Some(300));
}

/// Rows that do not divide by the team size: 1 sequence of 3 tokens (3 rows per
/// matmul) on two workers with a helper each (parts of 2 and 1 rows).
#[test]
fn two_workers_with_a_helper_each_split_three_rows_two_ways() {
    trainer_of_shape_equals_reference(config_of(1, 3), STEPS, 2, 2, Some(300));
}
