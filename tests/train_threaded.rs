//! Threads and schedulers change no number: for every thread count from 1 to 6,
//! both schedulers and several micro-batch counts, every step's loss, gradient sum
//! and the final weights, moments and sampler state are bitwise identical to the
//! single-threaded reference (`Trainer::step`), whether the steps run one call at a
//! time or in one long run.

use cllm::data::{Corpus, MarkovSource};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use std::sync::Arc;

#[path = "watchdog/mod.rs"]
mod watchdog;

/// Bound one test that runs threads (the whole file takes about a second): a lost
/// wake-up exits 124 naming the test instead of hanging CI.
fn bound(name: &str) -> watchdog::Watchdog {
    watchdog::Watchdog::arm(name, std::time::Duration::from_secs(120))
}

fn config(micro_batches: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            n_positions: 8,
            vocab_size: 256,
        },
        batch: 2,
        micro_batches,
        seq: 8,
        steps: 4,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 1,
            total: 4,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 0.5,
        seed,
    }
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

type Trace = Vec<(u32, Vec<u32>)>;

/// Per step (loss bits, gradient-sum bits), and the final state, from the reference.
fn reference(cfg: TrainConfig, train: &[u32]) -> (Trace, TrainState) {
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let mut trace = Vec::new();
    for _ in 0..cfg.steps {
        let stats = trainer.step(train).unwrap();
        trace.push((stats.loss.to_bits(), bits(trainer.last_gradient_sum())));
    }
    (trace, trainer.into_state())
}

/// The same through `Trainer::run`, one step per call.
fn threaded(
    cfg: TrainConfig,
    threads: usize,
    scheduler: Scheduler,
    train: &Arc<[u32]>,
) -> (Trace, TrainState) {
    let state = TrainState::initial(&cfg).unwrap();
    let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler).unwrap();
    // One worker per micro-batch at most; lock-free turns the rest into helpers.
    assert_eq!(trainer.workers(), threads.min(cfg.micro_batches));
    let all = match scheduler {
        Scheduler::LockFree => threads,
        Scheduler::Barrier => threads.min(cfg.micro_batches),
    };
    assert_eq!(trainer.threads(), all);
    let mut trace = Vec::new();
    for _ in 0..cfg.steps {
        let mut loss = None;
        let report = trainer
            .run(train, 1, &mut |s| {
                loss = Some(s.loss.to_bits());
                true
            })
            .unwrap();
        assert_eq!(report.steps, 1);
        trace.push((loss.unwrap(), bits(trainer.last_gradient_sum())));
    }
    (trace, trainer.into_state())
}

#[test]
fn every_thread_count_and_scheduler_gives_the_single_threaded_bits() {
    let _w =
        bound("train_threaded::every_thread_count_and_scheduler_gives_the_single_threaded_bits");
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    let corpus = Corpus::from_bytes(&source.generate(20_000, 3), "test".into(), 0.1).unwrap();
    let train: Arc<[u32]> = corpus.train.clone().into();
    for (micro_batches, seed) in [(1, 1), (3, 2), (5, 3), (8, 4)] {
        let cfg = config(micro_batches, seed);
        let (want_trace, want) = reference(cfg, &corpus.train);
        for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
            for threads in 1..=6 {
                let (trace, got) = threaded(cfg, threads, scheduler, &train);
                let what = format!("M={micro_batches}, {threads} threads, {scheduler:?}");
                assert_eq!(trace, want_trace, "{what}");
                assert_eq!(bits(&got.params), bits(&want.params), "{what}");
                assert_eq!(bits(&got.opt.m), bits(&want.opt.m), "{what}");
                assert_eq!(bits(&got.opt.v), bits(&want.opt.v), "{what}");
                assert_eq!(
                    (got.step, got.opt.t, got.sampler),
                    (want.step, want.opt.t, want.sampler),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn one_long_run_equals_one_step_at_a_time() {
    let _w = bound("train_threaded::one_long_run_equals_one_step_at_a_time");
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    let corpus = Corpus::from_bytes(&source.generate(20_000, 5), "test".into(), 0.1).unwrap();
    let train: Arc<[u32]> = corpus.train.clone().into();
    let cfg = config(4, 9);
    let (want_trace, want) = reference(cfg, &corpus.train);
    for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
        let state = TrainState::initial(&cfg).unwrap();
        let mut trainer = Trainer::with_scheduler(cfg, state, 3, scheduler).unwrap();
        let mut losses = Vec::new();
        let report = trainer
            .run(&train, cfg.steps, &mut |s| {
                losses.push(s.loss.to_bits());
                true
            })
            .unwrap();
        assert_eq!(report.steps, cfg.steps);
        assert_eq!(report.workers.len(), 3);
        assert_eq!(
            report.workers.iter().map(|w| w.jobs).sum::<usize>(),
            4 * cfg.steps as usize
        );
        let want_losses: Vec<u32> = want_trace.iter().map(|t| t.0).collect();
        assert_eq!(losses, want_losses, "{scheduler:?}");
        assert_eq!(
            bits(trainer.last_gradient_sum()),
            want_trace.last().unwrap().1
        );
        let got = trainer.into_state();
        assert_eq!(bits(&got.params), bits(&want.params), "{scheduler:?}");
        assert_eq!((got.step, got.sampler), (want.step, want.sampler));
    }
}

#[test]
fn stopping_early_keeps_the_consumed_position() {
    let _w = bound("train_threaded::stopping_early_keeps_the_consumed_position");
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    let corpus = Corpus::from_bytes(&source.generate(20_000, 6), "test".into(), 0.1).unwrap();
    let train: Arc<[u32]> = corpus.train.clone().into();
    let cfg = config(2, 4);
    let (_, want) = {
        let mut t = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
        let mut tr = Vec::new();
        for _ in 0..2 {
            tr.push(t.step(&corpus.train).unwrap().loss);
        }
        (tr, t.into_state())
    };
    let state = TrainState::initial(&cfg).unwrap();
    let mut trainer = Trainer::with_scheduler(cfg, state, 2, Scheduler::LockFree).unwrap();
    // Ask for every step but stop after the second: the pre-fetch thread has drawn
    // ahead, yet the state must be the one after exactly two steps.
    let report = trainer.run(&train, cfg.steps, &mut |s| s.step < 1).unwrap();
    assert_eq!(report.steps, 2);
    let got = trainer.into_state();
    assert_eq!(bits(&got.params), bits(&want.params));
    assert_eq!((got.step, got.sampler), (want.step, want.sampler));
}

#[test]
fn zero_threads_is_an_error() {
    let cfg = config(2, 1);
    assert!(Trainer::with_threads(cfg, TrainState::initial(&cfg).unwrap(), 0).is_err());
}
