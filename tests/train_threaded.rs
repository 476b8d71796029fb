//! The threaded forward/backward phase changes no number: for every thread count
//! from 1 to 6 and several micro-batch counts, every step's loss, gradient sum and
//! the final weights, moments and sampler state are bitwise identical to the
//! single-threaded trainer's.

use cllm::data::{Corpus, MarkovSource};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState, Trainer};

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

/// Per step (loss bits, gradient-sum bits), and the final state.
fn run(cfg: TrainConfig, threads: usize, train: &[u32]) -> (Vec<(u32, Vec<u32>)>, TrainState) {
    let mut trainer =
        Trainer::with_threads(cfg, TrainState::initial(&cfg).unwrap(), threads).unwrap();
    assert_eq!(trainer.threads(), threads.min(cfg.micro_batches));
    let mut trace = Vec::new();
    for _ in 0..cfg.steps {
        let stats = trainer.step(train).unwrap();
        trace.push((stats.loss.to_bits(), bits(trainer.last_gradient_sum())));
    }
    (trace, trainer.into_state())
}

#[test]
fn every_thread_count_gives_the_single_threaded_bits() {
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    let corpus = Corpus::from_bytes(&source.generate(20_000, 3), "test".into(), 0.1).unwrap();
    for (micro_batches, seed) in [(1, 1), (3, 2), (5, 3), (8, 4)] {
        let cfg = config(micro_batches, seed);
        let (want_trace, want) = run(cfg, 1, &corpus.train);
        for threads in 2..=6 {
            let (trace, got) = run(cfg, threads, &corpus.train);
            assert_eq!(trace, want_trace, "M={micro_batches}, {threads} threads");
            assert_eq!(bits(&got.params), bits(&want.params));
            assert_eq!(bits(&got.opt.m), bits(&want.opt.m));
            assert_eq!(bits(&got.opt.v), bits(&want.opt.v));
            assert_eq!((got.step, got.sampler), (want.step, want.sampler));
        }
    }
}

#[test]
fn zero_threads_is_an_error() {
    let cfg = config(2, 1);
    assert!(Trainer::with_threads(cfg, TrainState::initial(&cfg).unwrap(), 0).is_err());
}
