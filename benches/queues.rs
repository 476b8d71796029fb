//! Queue throughput: `WorkQueue` against `crossbeam::queue::ArrayQueue` and a
//! `Mutex<VecDeque>` (1 producer/1 consumer and 2/2, capacity 256), and
//! `PrefetchQueue` against a crossbeam bounded channel (capacity 128). Each iteration
//! moves `ITEMS` u64 through the queue with fresh threads; compare ratios within one run.

use cllm::queue::{PrefetchQueue, WorkQueue};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam::queue::ArrayQueue;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ITEMS: u64 = 100_000;
const CAPACITY: usize = 256;

/// The operations every contender offers, as a non-blocking push/pop.
trait Contender: Sync {
    fn try_push(&self, x: u64) -> Result<(), u64>;
    fn try_pop(&self) -> Option<u64>;
}

impl Contender for WorkQueue<u64> {
    fn try_push(&self, x: u64) -> Result<(), u64> {
        WorkQueue::try_push(self, x).map_err(|e| match e {
            cllm::queue::PushError::Full(x) | cllm::queue::PushError::Closed(x) => x,
        })
    }
    fn try_pop(&self) -> Option<u64> {
        WorkQueue::try_pop(self).ok()
    }
}

impl Contender for ArrayQueue<u64> {
    fn try_push(&self, x: u64) -> Result<(), u64> {
        self.push(x)
    }
    fn try_pop(&self) -> Option<u64> {
        self.pop()
    }
}

impl Contender for Mutex<VecDeque<u64>> {
    fn try_push(&self, x: u64) -> Result<(), u64> {
        let mut q = self.lock().unwrap();
        if q.len() == CAPACITY {
            Err(x)
        } else {
            q.push_back(x);
            Ok(())
        }
    }
    fn try_pop(&self) -> Option<u64> {
        self.lock().unwrap().pop_front()
    }
}

/// Same retry policy for everyone: spin a little, then yield.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Move ITEMS through `q` with `p` producers and `c` consumers using try ops + backoff.
fn transfer<Q: Contender>(q: &Q, p: u64, c: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..p {
            s.spawn(|| {
                for i in 0..ITEMS / p {
                    let mut x = i;
                    let mut spins = 0;
                    while let Err(back) = q.try_push(x) {
                        x = back;
                        backoff(&mut spins);
                    }
                }
            });
        }
        for _ in 0..c {
            s.spawn(|| {
                let mut got = 0;
                let mut spins = 0;
                while got < ITEMS / c {
                    match q.try_pop() {
                        Some(x) => {
                            std::hint::black_box(x);
                            got += 1;
                            spins = 0;
                        }
                        None => backoff(&mut spins),
                    }
                }
            });
        }
    });
    start.elapsed()
}

/// WorkQueue with its own blocking push/pop (bounded spin, then park).
fn transfer_blocking(q: &WorkQueue<u64>, p: u64, c: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..p {
            s.spawn(|| {
                for i in 0..ITEMS / p {
                    q.push(i).unwrap();
                }
            });
        }
        for _ in 0..c {
            s.spawn(|| {
                for _ in 0..ITEMS / c {
                    std::hint::black_box(q.pop());
                }
            });
        }
    });
    start.elapsed()
}

fn queues(c: &mut Criterion) {
    let mut group = c.benchmark_group("mpmc");
    group.throughput(Throughput::Elements(ITEMS));
    for (p, n) in [(1u64, 1u64), (2, 2)] {
        let shape = format!("{p}P{n}C");
        group.bench_with_input(
            BenchmarkId::new("WorkQueue(try)", &shape),
            &(p, n),
            |b, &(p, n)| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| transfer(&WorkQueue::<u64>::with_capacity(CAPACITY), p, n))
                        .sum()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("WorkQueue(blocking)", &shape),
            &(p, n),
            |b, &(p, n)| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            transfer_blocking(&WorkQueue::<u64>::with_capacity(CAPACITY), p, n)
                        })
                        .sum()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("ArrayQueue", &shape),
            &(p, n),
            |b, &(p, n)| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| transfer(&ArrayQueue::new(CAPACITY), p, n))
                        .sum()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("Mutex<VecDeque>", &shape),
            &(p, n),
            |b, &(p, n)| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| transfer(&Mutex::new(VecDeque::with_capacity(CAPACITY)), p, n))
                        .sum()
                })
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("prefetch");
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("PrefetchQueue", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    let q = PrefetchQueue::<u64, ()>::spawn(128, |tx| {
                        for i in 0..ITEMS {
                            if tx.send(i).is_err() {
                                break;
                            }
                        }
                        Ok(())
                    })
                    .unwrap();
                    for x in q {
                        std::hint::black_box(x.unwrap());
                    }
                    start.elapsed()
                })
                .sum()
        })
    });
    group.bench_function("crossbeam bounded channel", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    let (tx, rx) = crossbeam::channel::bounded(128);
                    let producer = std::thread::spawn(move || {
                        for i in 0..ITEMS {
                            if tx.send(i).is_err() {
                                break;
                            }
                        }
                    });
                    for x in rx {
                        std::hint::black_box(x);
                    }
                    producer.join().unwrap();
                    start.elapsed()
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = queues
}
criterion_main!(benches);
