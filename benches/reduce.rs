//! Reduction throughput at 1M floats: the fixed-order pairwise sum with the AVX2
//! kernel against the scalar one (same bits, different speed), and the full
//! `GradientSegments` reduce (all parts on one thread) for 8 slots.

use cllm::isa::Isa;
use cllm::segments::reduce::pairwise_sum_into;
use cllm::segments::GradientSegments;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

const LEN: usize = 1 << 20;

fn inputs(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|s| {
            (0..LEN)
                .map(|i| ((i * 31 + s * 17) % 1000) as f32 * 1e-3 - 0.5)
                .collect()
        })
        .collect()
}

fn reduce(c: &mut Criterion) {
    let mut group = c.benchmark_group("pairwise_sum_1M");
    for n in [4usize, 8] {
        let data = inputs(n);
        let views: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let mut out = vec![0.0f32; LEN];
        group.throughput(Throughput::Bytes((n * LEN * 4) as u64));
        for kernel in Isa::available() {
            let name = kernel.name();
            group.bench_with_input(BenchmarkId::new(name, n), &kernel, |b, &k| {
                b.iter(|| pairwise_sum_into(&views, &mut out, k))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("segments_reduce_all_1M");
    let n = 8;
    let seg: GradientSegments = GradientSegments::new(n, LEN, 4).unwrap();
    let data = inputs(n);
    let mut out = vec![0.0f32; LEN];
    let mut step = 0;
    group.throughput(Throughput::Bytes((n * LEN * 4) as u64));
    group.bench_function("8 slots, 4 parts, 1 thread", |b| {
        b.iter(|| {
            for (slot, values) in data.iter().enumerate() {
                let mut w = seg.claim(step, slot).unwrap();
                w.write(|g| g.copy_from_slice(values));
                w.publish();
            }
            seg.reduce_all(step, &mut out).unwrap();
            step += 1;
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = reduce
}
criterion_main!(benches);
