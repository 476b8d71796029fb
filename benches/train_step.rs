//! Criterion bench: training steps (forward, backward, reduction, AdamW) of GPT shape
//! S (2 layers, width 128, 4 heads, context 64, 16 sequences per step, vocab 256),
//! reported as tokens/s: the single-threaded reference step, and 4-step runs of the
//! threaded trainer at 1..=cores threads under both schedulers (2 micro-batches of 8,
//! so scaling and the scheduler's cost show as ratios within one run). Compare with the
//! PyTorch peer in ../shared/peers run back to back; never a pass/fail test.

use cllm::data::{Corpus, MarkovSource};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
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

    let mut cfg = shape_s();
    cfg.batch = 8;
    cfg.micro_batches = 2;
    let train: Arc<[u32]> = corpus.train.clone().into();
    let steps = 4u64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("train_run");
    group.throughput(Throughput::Elements(steps * cfg.tokens_per_step() as u64));
    for (name, scheduler) in [
        ("lock-free", Scheduler::LockFree),
        ("barrier", Scheduler::Barrier),
    ] {
        for threads in 1..=cores.min(cfg.micro_batches) {
            let state = TrainState::initial(&cfg).expect("init");
            let mut trainer =
                Trainer::with_scheduler(cfg, state, threads, scheduler).expect("trainer");
            group.bench_function(format!("{name}, {threads} threads"), |b| {
                b.iter(|| {
                    trainer
                        .run(&train, steps, &mut |_| true)
                        .expect("finite run")
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    targets = train_step
}
criterion_main!(benches);
