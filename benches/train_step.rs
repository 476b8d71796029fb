//! Criterion bench: one single-threaded training step (forward, backward, reduction,
//! AdamW) of GPT shape S (2 layers, width 128, 4 heads, context 64, batch 16, vocab
//! 256), reported as tokens/s. Compare with the PyTorch peer in ../shared/peers run
//! back to back; never a pass/fail test.

use cllm::data::{Corpus, MarkovSource};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn shape_s() -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 2,
            n_head: 4,
            n_embd: 128,
            n_positions: 64,
            vocab_size: 256,
        },
        batch: 16,
        micro_batches: 1,
        seq: 64,
        steps: 1_000_000,
        schedule: Schedule {
            max_lr: 1e-3,
            min_lr: 1e-4,
            warmup: 10,
            total: 1_000_000,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 1,
    }
}

fn train_step(c: &mut Criterion) {
    let source = MarkovSource::new(1, 2, 0.15).expect("valid source");
    let corpus =
        Corpus::from_bytes(&source.generate(200_000, 1), "bench".into(), 0.1).expect("corpus");
    let cfg = shape_s();
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).expect("init")).expect("trainer");
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(cfg.tokens_per_step() as u64));
    group.bench_function("shape S, 1 thread", |b| {
        b.iter(|| trainer.step(&corpus.train).expect("finite step"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    targets = train_step
}
criterion_main!(benches);
