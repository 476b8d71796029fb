//! Property tests of the three protocols against independent models: every queue
//! operation against a `VecDeque`, real-thread runs against multiset/FIFO properties,
//! and the reduction against a plain recursive f32 tree sum, bitwise.
//!
//! Properties that could hang on a bug run in forked children with a timeout, so a
//! hang is a shrunk failure instead of a stuck CI.

use cllm::isa::Isa;
use cllm::queue::{PopError, PrefetchError, PrefetchQueue, PushError, WorkQueue};
use cllm::segments::reduce::pairwise_sum_into;
use cllm::segments::{GradientSegments, SegmentsError};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "watchdog/mod.rs"]
mod watchdog;

/// Bound a plain test that waits on a queue or a slot (the forked properties have
/// proptest's own timeout): a lost wake-up exits 124 naming the test.
fn bound(name: &str) -> watchdog::Watchdog {
    watchdog::Watchdog::arm(name, std::time::Duration::from_secs(60))
}

fn forked(cases: u32) -> Config {
    Config {
        cases,
        fork: true,
        timeout: 20_000,
        ..Config::default()
    }
}

// ---- WorkQueue against a VecDeque model ---------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    TryPush(u16),
    TryPop,
    Push(u16),
    Pop,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::TryPush),
        4 => Just(Op::TryPop),
        2 => any::<u16>().prop_map(Op::Push),
        2 => Just(Op::Pop),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(forked(256))]

    /// Every operation, in any order, agrees with a bounded `VecDeque` plus a closed
    /// flag (and the capacity asked for); blocking operations are only issued when they
    /// cannot block.
    #[test]
    fn work_queue_matches_vecdeque(capacity in 1usize..=9, ops in proptest::collection::vec(op(), 0..400)) {
        let q: WorkQueue<u16> = WorkQueue::with_capacity(capacity);
        let mut model: VecDeque<u16> = VecDeque::new();
        let (mut closed, mut pushed, mut popped) = (false, 0usize, 0usize);
        for op in ops {
            match op {
                Op::TryPush(x) => {
                    let got = q.try_push(x);
                    if closed {
                        prop_assert_eq!(got, Err(PushError::Closed(x)));
                    } else if model.len() == capacity {
                        prop_assert_eq!(got, Err(PushError::Full(x)));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.push_back(x);
                        pushed += 1;
                    }
                }
                Op::Push(x) if closed || model.len() < capacity => {
                    let got = q.push(x);
                    if closed {
                        prop_assert_eq!(got, Err(cllm::queue::Closed(x)));
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.push_back(x);
                        pushed += 1;
                    }
                }
                Op::TryPop => {
                    let want = match model.pop_front() {
                        Some(x) => { popped += 1; Ok(x) }
                        None if closed => Err(PopError::Closed),
                        None => Err(PopError::Empty),
                    };
                    prop_assert_eq!(q.try_pop(), want);
                }
                Op::Pop if closed || !model.is_empty() => {
                    let want = model.pop_front();
                    popped += usize::from(want.is_some());
                    prop_assert_eq!(q.pop(), want);
                }
                Op::Close => {
                    q.close();
                    closed = true;
                }
                Op::Push(_) | Op::Pop => {} // would block forever on one thread
            }
            prop_assert_eq!(q.len(), model.len());
            prop_assert_eq!(q.is_empty(), model.is_empty());
            prop_assert_eq!(q.is_closed(), closed);
            prop_assert_eq!((q.pushed(), q.popped()), (pushed, popped));
            prop_assert_eq!(q.capacity(), capacity);
        }
        // The Debug form reports the model's figures (what a user sees in a log).
        prop_assert_eq!(
            format!("{q:?}"),
            format!("WorkQueue {{ capacity: {capacity}, pushed: {pushed}, popped: {popped}, closed: {closed} }}")
        );
    }

    /// Real threads: random producers, consumers, capacity and item counts; the popped
    /// multiset equals the pushed one, each producer's items stay in order in every
    /// consumer, and the totals match.
    #[test]
    fn work_queue_threads_deliver_exactly_once(
        producers in 1usize..=4,
        consumers in 1usize..=4,
        capacity in 1usize..=8,
        items in 0usize..=200,
    ) {
        let q: WorkQueue<(usize, usize)> = WorkQueue::with_capacity(capacity);
        let finished = AtomicUsize::new(0);
        let outputs: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
            for p in 0..producers {
                let (q, finished) = (&q, &finished);
                s.spawn(move || {
                    for i in 0..items {
                        q.push((p, i)).unwrap();
                    }
                    // AcqRel: the last producer closes after every producer's pushes.
                    if finished.fetch_add(1, Ordering::AcqRel) + 1 == producers {
                        q.close();
                    }
                });
            }
            let hs: Vec<_> = (0..consumers)
                .map(|_| s.spawn(|| std::iter::from_fn(|| q.pop()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for out in &outputs {
            for p in 0..producers {
                let seq: Vec<usize> = out.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                prop_assert!(seq.windows(2).all(|w| w[0] < w[1]));
            }
        }
        let mut all: Vec<_> = outputs.into_iter().flatten().collect();
        all.sort_unstable();
        let want: Vec<_> = (0..producers).flat_map(|p| (0..items).map(move |i| (p, i))).collect();
        prop_assert_eq!(all, want);
        prop_assert_eq!((q.pushed(), q.popped()), (producers * items, producers * items));
    }

    /// Every item is dropped exactly once, each by whoever holds it last: popped items
    /// by the popper, refused ones by the pusher, and those left in a dropped queue by
    /// the queue, wherever head and tail stand (rounds of pushes and pops move them
    /// round the ring and across laps before the drop).
    #[test]
    fn work_queue_drops_every_item_once(
        capacity in 1usize..=8,
        rounds in proptest::collection::vec((0usize..=8, 0usize..=8), 1..=4),
    ) {
        struct Counted(usize, Arc<Vec<AtomicUsize>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.1[self.0].fetch_add(1, Ordering::Relaxed);
            }
        }
        let total: usize = rounds.iter().map(|r| r.0).sum();
        let drops: Arc<Vec<AtomicUsize>> = Arc::new((0..total).map(|_| AtomicUsize::new(0)).collect());
        let q: WorkQueue<Counted> = WorkQueue::with_capacity(capacity);
        let mut id = 0;
        for &(push, pop) in &rounds {
            for _ in 0..push {
                drop(q.try_push(Counted(id, drops.clone())));
                id += 1;
            }
            for _ in 0..pop {
                drop(q.try_pop());
            }
        }
        drop(q);
        let counts: Vec<usize> = drops.iter().map(|d| d.load(Ordering::Relaxed)).collect();
        prop_assert_eq!(counts, vec![1; total]);
    }
}

#[test]
fn work_queue_capacity_zero_or_huge_is_refused() {
    assert!(WorkQueue::<u8>::try_with_capacity(0).is_none());
    // Capacities no allocator can hold are refused, not a panic: the position bound
    // itself, one past it, and a slot array whose size overflows.
    for huge in [usize::MAX / 4, usize::MAX / 4 + 1, usize::MAX / 16] {
        assert!(WorkQueue::<u8>::try_with_capacity(huge).is_none(), "{huge}");
    }
    let q: WorkQueue<u8> = WorkQueue::with_capacity(1);
    assert_eq!(q.try_push(1), Ok(()));
    assert_eq!(q.try_push(2), Err(PushError::Full(2)));
}

// ---- PrefetchQueue -------------------------------------------------------------------

proptest! {
    #![proptest_config(forked(64))]

    /// The consumer sees items 0..k in order, then the error if the producer failed,
    /// then end of stream; stopping early joins the producer; every item produced is
    /// dropped exactly once.
    #[test]
    fn prefetch_in_order_then_outcome(
        capacity in 1usize..=16,
        items in 0usize..=500,
        fail in any::<bool>(),
        stop_after in proptest::option::of(0usize..=500),
    ) {
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Counted(usize, Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.1.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (m, d) = (made.clone(), dropped.clone());
        let mut q = PrefetchQueue::<Counted, String>::spawn(capacity, move |tx| {
            for i in 0..items {
                m.fetch_add(1, Ordering::Relaxed);
                if tx.send(Counted(i, d.clone())).is_err() {
                    return Ok(());
                }
            }
            if fail { Err(format!("failed after {items}")) } else { Ok(()) }
        })
        .unwrap();
        let limit = stop_after.unwrap_or(usize::MAX);
        let mut seen = 0;
        let mut outcome = None;
        while seen < limit {
            match q.recv() {
                Ok(Some(c)) => {
                    prop_assert_eq!(c.0, seen);
                    seen += 1;
                }
                Ok(None) => { outcome = Some(Ok(())); break; }
                Err(e) => { outcome = Some(Err(e)); break; }
            }
        }
        match outcome {
            Some(Ok(())) => prop_assert!(!fail && seen == items),
            Some(Err(PrefetchError::Producer(msg))) => {
                prop_assert!(fail && seen == items);
                prop_assert_eq!(msg, format!("failed after {items}"));
                prop_assert!(matches!(q.recv(), Ok(None)));
            }
            Some(Err(other)) => prop_assert!(false, "unexpected {other}"),
            None => prop_assert_eq!(seen, limit),
        }
        drop(q);
        prop_assert_eq!(dropped.load(Ordering::Relaxed), made.load(Ordering::Relaxed));
    }
}

#[test]
fn prefetch_reports_panics_and_zero_capacity() {
    let _w = bound("prop_core::prefetch_reports_panics_and_zero_capacity");
    let mut q = PrefetchQueue::<u8, ()>::spawn(2, |tx| {
        tx.send(1).unwrap();
        panic!("producer exploded");
    })
    .unwrap();
    assert_eq!(q.recv().unwrap(), Some(1));
    match q.recv() {
        Err(PrefetchError::ProducerPanicked(msg)) => assert!(msg.contains("exploded")),
        other => panic!("expected the panic, got {other:?}"),
    }
    assert!(matches!(
        PrefetchQueue::<u8, ()>::spawn(0, |_| Ok(())),
        Err(PrefetchError::ZeroCapacity)
    ));
}

/// `Producer::is_stopped` is false while the consumer lives (it cannot leave before
/// it has received the first item, which carries the answer) and true once the
/// consumer is dropped (after a refused `send`; dropping the queue joins the producer,
/// so the answer is recorded by then).
#[test]
fn prefetch_is_stopped_follows_the_consumer() {
    let _w = bound("prop_core::prefetch_is_stopped_follows_the_consumer");
    let after = Arc::new(AtomicUsize::new(0));
    let a = after.clone();
    let mut q = PrefetchQueue::<bool, ()>::spawn(1, move |tx| {
        let before = tx.is_stopped();
        if tx.send(before).is_ok() {
            while tx.send(false).is_ok() {}
        }
        a.store(1 + usize::from(tx.is_stopped()), Ordering::Relaxed);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        q.recv().unwrap(),
        Some(false),
        "is_stopped before the consumer left"
    );
    drop(q);
    assert_eq!(
        after.load(Ordering::Relaxed),
        2,
        "is_stopped after a refused send"
    );
}

// ---- Reduction -------------------------------------------------------------------------

/// The documented order, written independently: tree(x) = x0, else tree(left half)
/// + tree(right half), with the left half of length floor(n / 2).
fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [one] => *one,
        _ => {
            let mid = values.len() / 2;
            tree_sum(&values[..mid]) + tree_sum(&values[mid..])
        }
    }
}

fn expected(inputs: &[Vec<f32>], len: usize) -> Vec<u32> {
    (0..len)
        .map(|i| tree_sum(&inputs.iter().map(|v| v[i]).collect::<Vec<_>>()).to_bits())
        .collect()
}

/// Floats of very different magnitudes and both signs, so that a different order of
/// additions gives different bits.
fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1.0e3f32..1.0e3,
        -1.0e-3f32..1.0e-3,
        prop::sample::select(vec![1.0e8f32, -1.0e8, 3.0e7, 0.1, -0.3]),
    ]
}

fn slots(max_slots: usize, max_len: usize) -> impl Strategy<Value = (Vec<Vec<f32>>, usize)> {
    (1..=max_slots, 0..=max_len).prop_flat_map(|(n, len)| {
        (
            proptest::collection::vec(proptest::collection::vec(float(), len), n),
            Just(len),
        )
    })
}

proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    /// Both kernels equal the independent tree sum bitwise, for any slot count and any
    /// length (including lengths not a multiple of 8 and longer than one 4096 chunk).
    #[test]
    fn reduction_is_the_tree_sum_bitwise((inputs, len) in slots(33, 5000)) {
        let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let want = expected(&inputs, len);
        for kernel in Isa::available() {
            let mut out = vec![f32::NAN; len];
            pairwise_sum_into(&views, &mut out, kernel);
            prop_assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.clone(), "{:?}", kernel);
        }
    }
}

/// The bitwise checks mean something: a left-to-right sum of these values differs.
#[test]
fn summation_order_changes_bits() {
    let x = [1.0e8f32, 1.0, -1.0e8, 1.0];
    let left_to_right = x.iter().fold(0.0f32, |a, b| a + b);
    assert_ne!(left_to_right.to_bits(), tree_sum(&x).to_bits());
}

// ---- GradientSegments with real threads ------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Task {
    Fill(usize, usize),
    Reduce(usize, usize),
}

fn value(seed: u64, step: usize, slot: usize, i: usize) -> f32 {
    let mut x = seed ^ ((step as u64) << 40) ^ ((slot as u64) << 20) ^ i as u64;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    let scale = [1.0e-3f32, 1.0, 1.0e4][(x % 3) as usize];
    ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
}

/// Run `steps` steps with `threads` workers pulling fill/reduce tasks; returns each
/// step's reduced gradient.
fn run_segments(
    threads: usize,
    n_slots: usize,
    len: usize,
    n_parts: usize,
    steps: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let seg: GradientSegments = GradientSegments::new(n_slots, len, n_parts).unwrap();
    let tasks: WorkQueue<Task> = WorkQueue::with_capacity(4);
    let mut result = vec![vec![f32::NAN; len]; steps];
    let pieces: Vec<(usize, usize, Vec<f32>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (seg, tasks) = (&seg, &tasks);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(task) = tasks.pop() {
                        match task {
                            Task::Fill(step, slot) => {
                                let mut w = seg.claim(step, slot).unwrap();
                                w.write(|g| {
                                    g.iter_mut()
                                        .enumerate()
                                        .for_each(|(i, x)| *x = value(seed, step, slot, i))
                                });
                                w.publish();
                            }
                            Task::Reduce(step, part) => {
                                let mut out = vec![0.0; seg.part_range(part).len()];
                                seg.reduce_part(step, part, &mut out).unwrap();
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
                tasks.push(Task::Fill(step, slot)).unwrap();
            }
            for part in 0..n_parts {
                tasks.push(Task::Reduce(step, part)).unwrap();
            }
        }
        tasks.close();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for (step, part, out) in pieces {
        result[step][seg.part_range(part)].copy_from_slice(&out);
    }
    result
}

proptest! {
    #![proptest_config(forked(32))]

    /// Whatever the thread count, every step's result is the tree sum bitwise (and so
    /// identical across thread counts).
    #[test]
    fn segments_threads_equal_the_tree_sum(
        threads in 1usize..=6,
        n_slots in 1usize..=8,
        len in 0usize..=1500,
        n_parts in 1usize..=6,
        steps in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let got = run_segments(threads, n_slots, len, n_parts, steps, seed);
        for (step, out) in got.iter().enumerate() {
            let inputs: Vec<Vec<f32>> = (0..n_slots).map(|s| (0..len).map(|i| value(seed, step, s, i)).collect()).collect();
            prop_assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), expected(&inputs, len));
        }
    }

    /// Parts tile 0..len in order, contiguously.
    #[test]
    fn parts_tile_the_parameters(len in 0usize..100_000, n_parts in 1usize..=64) {
        let seg: GradientSegments = GradientSegments::new(1, len, n_parts).unwrap();
        let mut at = 0;
        for p in 0..n_parts {
            let r = seg.part_range(p);
            prop_assert_eq!(r.start, at);
            prop_assert!(r.end >= r.start);
            at = r.end;
        }
        prop_assert_eq!(at, len);
    }
}

#[test]
fn segments_misuse_is_a_typed_error() {
    let _w = bound("prop_core::segments_misuse_is_a_typed_error");
    assert!(matches!(
        GradientSegments::<cllm::sync::Std>::new(0, 4, 1),
        Err(SegmentsError::Layout(_))
    ));
    assert!(matches!(
        GradientSegments::<cllm::sync::Std>::new(1, 4, 0),
        Err(SegmentsError::Layout(_))
    ));
    let seg: GradientSegments = GradientSegments::new(2, 4, 1).unwrap();
    assert!(matches!(
        seg.claim(0, 2),
        Err(SegmentsError::NoSuchSlot {
            slot: 2,
            n_slots: 2
        })
    ));
    let held = seg.claim(0, 0).unwrap();
    assert!(matches!(
        seg.claim(0, 0),
        Err(SegmentsError::SlotTaken { slot: 0, step: 0 })
    ));
    held.publish();
    assert!(matches!(
        seg.claim(0, 0),
        Err(SegmentsError::SlotTaken { slot: 0, step: 0 })
    ));
    let mut w = seg.claim(0, 1).unwrap();
    w.write(|g| g.fill(1.0));
    w.publish();
    assert!(matches!(
        seg.reduce_part(0, 1, &mut [0.0; 4]),
        Err(SegmentsError::NoSuchPart {
            part: 1,
            n_parts: 1
        })
    ));
    assert!(matches!(
        seg.reduce_part(0, 0, &mut [0.0; 3]),
        Err(SegmentsError::OutputLength {
            want: 4,
            got: 3,
            ..
        })
    ));
    seg.reduce_part(0, 0, &mut [0.0; 4]).unwrap();
    assert!(matches!(
        seg.reduce_part(0, 0, &mut [0.0; 4]),
        Err(SegmentsError::PartNotDue {
            step: 0,
            next: 1,
            ..
        })
    ));
    assert_eq!(seg.completed_steps(), 1);
    // Step 1 is now open; a claim for step 0 is stale.
    assert!(matches!(
        seg.claim(0, 1),
        Err(SegmentsError::SlotPassed {
            slot: 1,
            step: 0,
            current: 1
        })
    ));
    drop(seg.claim(1, 1).unwrap()); // an unpublished writer gives the slot back
    seg.claim(1, 1).unwrap().publish();
}
