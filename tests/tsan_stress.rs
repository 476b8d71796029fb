//! Std-thread stress scenarios of all three protocols on the production `Std` platform,
//! and a 4-thread training run (weights shared read-only by the workers), asserting
//! their properties. Built with `harness = false` so that it runs cleanly
//! under ThreadSanitizer (libtest's own result channel is uninstrumented std code and
//! produces false reports); `verification/tsan.sh` runs it with `-Zsanitizer=thread`,
//! and plain `cargo test` runs it too. Besides the protocols and the trainer: an
//! `Event<Std>` token ring handing plain data along (the production wait cell, fences
//! and parking), and the step protocol on `Std` with a panic or error in a hook
//! (`tests/step_faults`), and the cross-rank in-memory transport (`MemoryTransport<Std>`,
//! many rounds) and a data-parallel run of `RankTrainer`s on it. Prints
//! `N passed, 0 failed`; exits 1 on failure.

use common::watchdog;

mod common;
mod step_faults;
mod step_toy;

use cllm::queue::{PrefetchQueue, PushError, WorkQueue};
use cllm::segments::GradientSegments;
use std::sync::atomic::{AtomicUsize, Ordering};

fn work_queue(producers: usize, consumers: usize, capacity: usize, items: usize) {
    let q: WorkQueue<(usize, usize)> = WorkQueue::with_capacity(capacity);
    let finished = AtomicUsize::new(0);
    let outputs: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
        for p in 0..producers {
            let (q, finished) = (&q, &finished);
            s.spawn(move || {
                for i in 0..items {
                    if i % 2 == 0 {
                        q.push((p, i)).expect("open");
                    } else {
                        let mut item = (p, i);
                        while let Err(e) = q.try_push(item) {
                            match e {
                                PushError::Full(back) => item = back,
                                PushError::Closed(_) => panic!("closed while pushing"),
                            }
                            std::thread::yield_now();
                        }
                    }
                }
                // AcqRel: the last producer sees every other producer's pushes done.
                if finished.fetch_add(1, Ordering::AcqRel) + 1 == producers {
                    q.close();
                }
            });
        }
        let handles: Vec<_> = (0..consumers)
            .map(|_| s.spawn(|| std::iter::from_fn(|| q.pop()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("consumer"))
            .collect()
    });
    for out in &outputs {
        for p in 0..producers {
            let seq: Vec<usize> = out.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "per-producer FIFO");
        }
    }
    let mut all: Vec<_> = outputs.into_iter().flatten().collect();
    all.sort_unstable();
    let want: Vec<_> = (0..producers)
        .flat_map(|p| (0..items).map(move |i| (p, i)))
        .collect();
    assert!(all == want, "every item exactly once");
    assert_eq!(
        (q.pushed(), q.popped()),
        (producers * items, producers * items)
    );
}

fn prefetch(capacity: usize, items: usize, take: Option<usize>) {
    let mut q = PrefetchQueue::<Vec<u32>, String>::spawn(capacity, move |tx| {
        for i in 0..items {
            if tx.send(vec![i as u32; 3]).is_err() {
                return Ok(());
            }
        }
        Err("done".to_owned())
    })
    .expect("spawn");
    let limit = take.unwrap_or(usize::MAX);
    let mut n = 0;
    while n < limit {
        match q.recv() {
            Ok(Some(v)) => {
                assert_eq!(v, vec![n as u32; 3], "in order");
                n += 1;
            }
            Ok(None) => panic!("end of stream before the error"),
            Err(_) => {
                assert_eq!(n, items, "error after every item");
                assert!(matches!(q.recv(), Ok(None)));
                return;
            }
        }
    }
}

fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [one] => *one,
        _ => tree_sum(&values[..values.len() / 2]) + tree_sum(&values[values.len() / 2..]),
    }
}

fn value(step: usize, slot: usize, i: usize) -> f32 {
    [1.0e8f32, -1.0e8, 3.0, 0.5, -7.25, 1.0e-3, 2.5e4][(step * 5 + slot * 3 + i) % 7]
}

#[derive(Debug, Clone, Copy)]
enum Task {
    Fill(usize, usize),
    Reduce(usize, usize),
}

fn segments(threads: usize, n_slots: usize, n_parts: usize, steps: usize) {
    let len = 2000;
    let seg: GradientSegments = GradientSegments::new(n_slots, len, n_parts).expect("layout");
    let tasks: WorkQueue<Task> = WorkQueue::with_capacity(8);
    let outputs: Vec<Vec<(usize, usize, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (seg, tasks) = (&seg, &tasks);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(task) = tasks.pop() {
                        match task {
                            Task::Fill(step, slot) => {
                                let mut w = seg.claim(step, slot).expect("claim");
                                w.write(|g| {
                                    g.iter_mut()
                                        .enumerate()
                                        .for_each(|(i, x)| *x = value(step, slot, i))
                                });
                                w.publish();
                            }
                            Task::Reduce(step, part) => {
                                let mut out = vec![0.0; seg.part_range(part).len()];
                                seg.reduce_part(step, part, &mut out).expect("reduce");
                                mine.push((step, part, out));
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        for step in 0..steps {
            for slot in 0..n_slots {
                tasks.push(Task::Fill(step, slot)).expect("open");
            }
            for part in 0..n_parts {
                tasks.push(Task::Reduce(step, part)).expect("open");
            }
        }
        tasks.close();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut seen = 0;
    for (step, part, out) in outputs.into_iter().flatten() {
        for (o, i) in out.iter().zip(seg.part_range(part)) {
            let want = tree_sum(&(0..n_slots).map(|s| value(step, s, i)).collect::<Vec<_>>());
            assert_eq!(o.to_bits(), want.to_bits(), "step {step} float {i}");
        }
        seen += 1;
    }
    assert_eq!(
        seen,
        steps * n_parts,
        "every part of every step reduced once"
    );
}

/// Ten training steps of a small model on 4 threads over `micro_batches` micro-batches
/// (fewer micro-batches than threads: the lock-free workers get helpers) under
/// `scheduler`: every loss and the final weights equal the single-threaded reference
/// (`Trainer::step`) bitwise.
fn training(
    threads: usize,
    micro_batches: usize,
    steps: u64,
    scheduler: cllm::train::trainer::Scheduler,
) {
    use cllm::data::{Corpus, MarkovSource};
    use cllm::model::GptConfig;
    use cllm::train::optim::AdamWConfig;
    use cllm::train::schedule::Schedule;
    use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
    let cfg = TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 16,
            n_positions: 8,
            vocab_size: 256,
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
        seed: 5,
    };
    let source = MarkovSource::new(1, 1, 0.3).expect("source");
    let corpus =
        Corpus::from_bytes(&source.generate(5_000, 2), "tsan".into(), 0.1).expect("corpus");
    let bits =
        |t: Trainer| -> Vec<u32> { t.into_state().params.iter().map(|x| x.to_bits()).collect() };
    let mut reference =
        Trainer::new(cfg, TrainState::initial(&cfg).expect("init")).expect("trainer");
    let want: Vec<u32> = (0..steps)
        .map(|_| {
            reference
                .step(&corpus.train)
                .expect("finite step")
                .loss
                .to_bits()
        })
        .collect();
    let state = TrainState::initial(&cfg).expect("init");
    let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler).expect("trainer");
    let train: std::sync::Arc<[u32]> = corpus.train.clone().into();
    let mut got = Vec::new();
    trainer
        .run(&train, steps, &mut |s| {
            got.push(s.loss.to_bits());
            true
        })
        .expect("finite run");
    assert_eq!(got, want, "threaded losses equal single-threaded");
    assert_eq!(
        bits(trainer),
        bits(reference),
        "threaded weights equal single-threaded"
    );
}

/// A counter written with plain (non-atomic) accesses by whoever holds the token of
/// `event_ring`: only the Event wait/notify handshake and the turn counter order them,
/// so a wake-up that returns before the turn is handed over is a data race here.
struct Baton(core::cell::UnsafeCell<u64>);

// SAFETY: only the thread whose turn it is touches the cell (see `event_ring`); the
// turn counter's Release increment / Acquire load orders consecutive holders.
unsafe impl Sync for Baton {}

/// `threads` threads pass a token `rounds` times each through one `Event<Std>`; the
/// holder increments a plain counter. Every hand-over must be ordered and none lost.
fn event_ring(threads: usize, rounds: usize) {
    use cllm::sync::{Event, Std};
    let event = Event::<Std>::new();
    let turn = AtomicUsize::new(0);
    let baton = Baton(core::cell::UnsafeCell::new(0));
    // Every thread is joined explicitly: a scoped thread whose handle is dropped
    // unjoined frees its result packet after a fence TSan does not model.
    std::thread::scope(|s| {
        let ring = |me: usize| {
            let (event, turn, baton) = (&event, &turn, &baton);
            move || {
                for round in 0..rounds {
                    let mine = round * threads + me;
                    // Acquire: pairs with the previous holder's Release increment.
                    event.wait_until(|| turn.load(Ordering::Acquire) == mine);
                    assert_eq!(turn.load(Ordering::Acquire), mine, "woke before its turn");
                    // SAFETY: it is this thread's turn: no other thread touches the
                    // cell until the increment below hands the turn on.
                    unsafe { *baton.0.get() += 1 };
                    // Release: the write above happens before the next holder's.
                    turn.fetch_add(1, Ordering::Release);
                    event.notify();
                }
            }
        };
        let handles: Vec<_> = (0..threads).map(|me| s.spawn(ring(me))).collect();
        for h in handles {
            h.join().expect("ring thread");
        }
    });
    assert_eq!(
        baton.0.into_inner(),
        (threads * rounds) as u64,
        "every hand-over"
    );
}

/// The step protocol on `Std` (production spin limits) with `fault`, `runs` times, each
/// checked against the sequential reference (`tests/step_faults`).
fn step_faults_on_std(fault: step_faults::Fault, runs: usize) {
    use cllm::segments::PART_ALIGN;
    let shape = step_faults::Shape {
        workers: 3,
        n_slots: 5,
        n_parts: 3,
        len: 3 * PART_ALIGN + 5,
        steps: 4,
    };
    common::quiet_panics(&[step_faults::PANIC]);
    let full = step_faults::expected(shape, shape.steps);
    for _ in 0..runs {
        let out = step_faults::run::<cllm::sync::Std>(shape, fault);
        step_faults::check(shape, fault, &out, &full);
    }
}

/// What rank `from` sends rank `to` in round `round` of `memory_transport`: empty for a
/// quarter of the (round, from, to), else the round and both ranks, so a message from
/// another round or rank is seen.
fn dist_message(round: usize, from: usize, to: usize) -> Vec<u8> {
    if (round + from + to).is_multiple_of(4) {
        return Vec::new();
    }
    let mut m = (round as u64).to_le_bytes().to_vec();
    m.extend([from as u8, to as u8]);
    m
}

/// `ranks` std threads over `MemoryTransport<Std>` (production spin limits) run
/// `rounds` collectives, all-to-all and all-gather alternately: every message received
/// is exactly the one sent, in every round (the double-buffered mailboxes are reused
/// every other round while slower ranks may still read the previous one).
fn memory_transport(ranks: usize, rounds: usize) {
    use cllm::dist::{MemoryTransport, Transport};
    let handles: Vec<_> = MemoryTransport::<cllm::sync::Std>::group(ranks)
        .into_iter()
        .map(|mut t| {
            std::thread::spawn(move || {
                let (me, r) = (t.rank(), t.size());
                for k in 0..rounds {
                    if k.is_multiple_of(2) {
                        let send: Vec<Vec<u8>> = (0..r).map(|q| dist_message(k, me, q)).collect();
                        let got = t.all_to_all(&send).expect("all-to-all");
                        for (p, m) in got.iter().enumerate() {
                            assert_eq!(m, &dist_message(k, p, me), "rank {me} round {k}");
                        }
                    } else {
                        let got = t.all_gather(&dist_message(k, me, me)).expect("all-gather");
                        for (p, m) in got.iter().enumerate() {
                            assert_eq!(m, &dist_message(k, p, p), "rank {me} round {k}");
                        }
                    }
                }
                // Returned, not dropped here: the last rank to drop its end frees the
                // shared mailboxes, and Arc's Acquire fence is invisible to TSan (std
                // is not instrumented), so a free on a rank thread would be a false
                // report. Dropped on the main thread after every join instead.
                t
            })
        })
        .collect();
    let ends: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("a rank panicked"))
        .collect();
    drop(ends);
}

/// `ranks` `RankTrainer`s of `threads` threads each (std threads over
/// `MemoryTransport<Std>`) train `steps` steps: every rank's losses and final weights
/// equal the single-process reference (`Trainer::step`) bitwise.
fn rank_training(ranks: usize, threads: usize, steps: u64) {
    use cllm::data::{Corpus, MarkovSource};
    use cllm::dist::{MemoryTransport, RankTrainer};
    use cllm::model::GptConfig;
    use cllm::train::optim::AdamWConfig;
    use cllm::train::schedule::Schedule;
    use cllm::train::trainer::{TrainConfig, TrainState, Trainer};
    let cfg = TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 16,
            n_positions: 8,
            vocab_size: 256,
        },
        batch: 2,
        micro_batches: 7,
        seq: 8,
        steps,
        schedule: Schedule {
            max_lr: 1e-2,
            min_lr: 1e-3,
            warmup: 1,
            total: steps,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 9,
    };
    let source = MarkovSource::new(3, 1, 0.3).expect("source");
    let corpus =
        Corpus::from_bytes(&source.generate(5_000, 4), "tsan".into(), 0.1).expect("corpus");
    let train: std::sync::Arc<[u32]> = corpus.train.clone().into();
    let init = TrainState::initial(&cfg).expect("init");
    let mut reference = Trainer::new(cfg, init.clone()).expect("trainer");
    let want_losses: Vec<u32> = (0..steps)
        .map(|_| reference.step(&train).expect("finite step").loss.to_bits())
        .collect();
    let want: Vec<u32> = reference
        .into_state()
        .params
        .iter()
        .map(|x| x.to_bits())
        .collect();
    let handles: Vec<_> = MemoryTransport::<cllm::sync::Std>::group(ranks)
        .into_iter()
        .map(|transport| {
            let (init, train) = (init.clone(), std::sync::Arc::clone(&train));
            std::thread::spawn(move || {
                let mut rank = RankTrainer::new(cfg, init, threads, transport).expect("rank");
                let mut losses = Vec::new();
                rank.run(&train, steps, &mut |s| {
                    losses.push(s.loss.to_bits());
                    true
                })
                .expect("finite run");
                let params: Vec<u32> = rank.params().iter().map(|x| x.to_bits()).collect();
                // Dropped on the main thread after the joins (see `memory_transport`).
                (losses, params, rank)
            })
        })
        .collect();
    let mut ranks_left = Vec::new();
    for (r, h) in handles.into_iter().enumerate() {
        let (losses, params, rank) = h.join().expect("a rank panicked");
        assert_eq!(losses, want_losses, "rank {r}: losses equal single-process");
        assert!(params == want, "rank {r}: weights equal single-process");
        ranks_left.push(rank);
    }
    drop(ranks_left);
}

/// A named stress scenario.
type Scenario = (&'static str, Box<dyn Fn()>);

fn main() {
    // Every scenario together takes about a minute under TSan; a hang fails here.
    let _w = watchdog::Watchdog::arm("tsan_stress", std::time::Duration::from_secs(1800));
    let scenarios: Vec<Scenario> = vec![
        (
            "work queue 2P2C cap 1",
            Box::new(|| work_queue(2, 2, 1, 20_000)),
        ),
        (
            "work queue 2P2C cap 2",
            Box::new(|| work_queue(2, 2, 2, 20_000)),
        ),
        (
            "work queue 4P4C cap 3",
            Box::new(|| work_queue(4, 4, 3, 5_000)),
        ),
        (
            "work queue 4P4C cap 256",
            Box::new(|| work_queue(4, 4, 256, 20_000)),
        ),
        ("prefetch cap 1", Box::new(|| prefetch(1, 20_000, None))),
        ("prefetch cap 128", Box::new(|| prefetch(128, 50_000, None))),
        (
            "prefetch early drop",
            Box::new(|| prefetch(4, 1_000_000, Some(100))),
        ),
        ("segments 4 threads", Box::new(|| segments(4, 6, 4, 20))),
        ("segments 2 threads", Box::new(|| segments(2, 3, 2, 20))),
        (
            "event ring 4 threads, plain data handed along",
            Box::new(|| event_ring(4, 5_000)),
        ),
        (
            "event ring 2 threads, plain data handed along",
            Box::new(|| event_ring(2, 20_000)),
        ),
        (
            "step protocol on Std, no fault",
            Box::new(|| step_faults_on_std(step_faults::Fault::None, 30)),
        ),
        (
            "step protocol on Std, a panic in update",
            Box::new(|| {
                step_faults_on_std(step_faults::Fault::UpdatePanic { step: 2, part: 1 }, 30)
            }),
        ),
        (
            "step protocol on Std, a panic in summarize",
            Box::new(|| {
                step_faults_on_std(step_faults::Fault::SummarizePanic { step: 1, part: 0 }, 30)
            }),
        ),
        (
            "step protocol on Std, an error from a worker's decide",
            Box::new(|| {
                step_faults_on_std(step_faults::Fault::DecideErr { step: 3, worker: 2 }, 30)
            }),
        ),
        (
            "memory transport 3 ranks, 20000 rounds",
            Box::new(|| memory_transport(3, 20_000)),
        ),
        (
            "memory transport 2 ranks, 30000 rounds",
            Box::new(|| memory_transport(2, 30_000)),
        ),
        (
            "rank trainers 3 ranks x 2 threads, 5 steps",
            Box::new(|| rank_training(3, 2, 5)),
        ),
        (
            "training lock-free 4 threads, 10 steps",
            Box::new(|| training(4, 8, 10, cllm::train::trainer::Scheduler::LockFree)),
        ),
        (
            "training lock-free 4 threads on 2 micro-batches (helpers split matmuls), 10 steps",
            Box::new(|| training(4, 2, 10, cllm::train::trainer::Scheduler::LockFree)),
        ),
        (
            "training barrier 4 threads, 10 steps",
            Box::new(|| training(4, 8, 10, cllm::train::trainer::Scheduler::Barrier)),
        ),
    ];
    // An optional argument keeps only the scenarios whose name contains it
    // (`cargo test --test tsan_stress -- "memory transport"`).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for (name, scenario) in scenarios {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(scenario)) {
            Ok(()) => {
                println!("ok      {name}");
                passed += 1;
            }
            Err(_) => {
                println!("FAILED  {name}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
