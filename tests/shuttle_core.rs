//! shuttle randomized model checks (random and PCT schedulers, `CLLM_SHUTTLE_ITERS`
//! iterations each, default 1000) over larger shapes than loom can afford: up to 4
//! producers and 4 consumers, capacities 1 to 8. shuttle treats atomics as SeqCst, so
//! these tests hunt lost items, lost wake-ups and non-atomic races; ordering bugs are
//! loom's and TSan's job. A failure prints the schedule to replay it.

mod common;

use common::watchdog;

/// Bound one shuttle test: 300 s per 1,000 iterations of each scheduler
/// (`CLLM_SHUTTLE_ITERS`), over ten times the measured time on a loaded 2-core
/// machine and far below CI's limit; a hang exits 124 naming the test.
fn bound(name: &str) -> watchdog::Watchdog {
    let iters = common::shuttle_iterations().max(1) as f64;
    watchdog::Watchdog::arm(
        name,
        std::time::Duration::from_secs_f64(300.0 * iters / 1000.0),
    )
}

use cllm::queue::{PrefetchQueue, PushError, WorkQueue};
use cllm::segments::{GradientSegments, SegmentsError};
use common::{shuttle_check, Shuttle};
use shuttle::sync::Arc;
use shuttle::thread;

/// `producers` threads push `items` tagged items each (mixing try and blocking push),
/// the last one to finish closes; `consumers` threads pop until end of stream.
fn mpmc(producers: usize, consumers: usize, capacity: usize, items: usize) {
    shuttle_check(move || {
        let q = Arc::new(WorkQueue::<(usize, usize), Shuttle>::with_capacity(
            capacity,
        ));
        let finished = Arc::new(shuttle::sync::atomic::AtomicUsize::new(0));
        let mut handles = Vec::new();
        for p in 0..producers {
            let (q, finished) = (q.clone(), finished.clone());
            handles.push(thread::spawn(move || {
                for i in 0..items {
                    let mut item = (p, i);
                    if i % 2 == 0 {
                        q.push(item).unwrap();
                    } else {
                        loop {
                            match q.try_push(item) {
                                Ok(()) => break,
                                Err(PushError::Full(back)) => {
                                    item = back;
                                    thread::yield_now();
                                }
                                Err(PushError::Closed(_)) => panic!("closed while pushing"),
                            }
                        }
                    }
                }
                if finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == producers {
                    q.close();
                }
            }));
        }
        let consumers: Vec<_> = (0..consumers)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || std::iter::from_fn(|| q.pop()).collect::<Vec<_>>())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let outputs: Vec<Vec<(usize, usize)>> =
            consumers.into_iter().map(|c| c.join().unwrap()).collect();
        for out in &outputs {
            for p in 0..producers {
                let seq: Vec<usize> = out.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert!(
                    seq.windows(2).all(|w| w[0] < w[1]),
                    "per-producer FIFO: {seq:?}"
                );
            }
        }
        let mut all: Vec<_> = outputs.into_iter().flatten().collect();
        all.sort_unstable();
        let want: Vec<_> = (0..producers)
            .flat_map(|p| (0..items).map(move |i| (p, i)))
            .collect();
        assert_eq!(all, want, "every item exactly once");
        assert_eq!(
            (q.pushed(), q.popped()),
            (producers * items, producers * items)
        );
    });
}

#[test]
fn work_queue_1p1c_capacity_1() {
    let _w = bound("shuttle_core::work_queue_1p1c_capacity_1");
    mpmc(1, 1, 1, 6);
}

#[test]
fn work_queue_2p2c_capacity_2() {
    let _w = bound("shuttle_core::work_queue_2p2c_capacity_2");
    mpmc(2, 2, 2, 4);
}

#[test]
fn work_queue_4p4c_capacity_3() {
    let _w = bound("shuttle_core::work_queue_4p4c_capacity_3");
    mpmc(4, 4, 3, 3);
}

#[test]
fn work_queue_3p2c_capacity_8() {
    let _w = bound("shuttle_core::work_queue_3p2c_capacity_8");
    mpmc(3, 2, 8, 5);
}

/// Pushes racing close: each item is delivered or handed back, never both or neither.
#[test]
fn work_queue_close_races_pushes() {
    let _w = bound("shuttle_core::work_queue_close_races_pushes");
    shuttle_check(|| {
        let q = Arc::new(WorkQueue::<usize, Shuttle>::with_capacity(2));
        let pushers: Vec<_> = (0..3)
            .map(|i| {
                let q = q.clone();
                thread::spawn(move || q.push(i).is_ok())
            })
            .collect();
        let closer = {
            let q = q.clone();
            thread::spawn(move || q.close())
        };
        let mut drained: Vec<usize> = std::iter::from_fn(|| q.pop()).collect();
        let accepted: Vec<usize> = pushers
            .into_iter()
            .enumerate()
            .filter_map(|(i, h)| h.join().unwrap().then_some(i))
            .collect();
        closer.join().unwrap();
        drained.sort_unstable();
        assert_eq!(
            drained, accepted,
            "exactly the accepted items are delivered"
        );
    });
}

/// Prefetch: every item in order then end of stream, or early drop with no leak.
fn prefetch(capacity: usize, items: usize, take: Option<usize>) {
    shuttle_check(move || {
        let drops = Arc::new(shuttle::sync::atomic::AtomicUsize::new(0));
        let d = drops.clone();
        struct Counted(usize, Arc<shuttle::sync::atomic::AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let mut q = PrefetchQueue::<Counted, (), Shuttle>::spawn(capacity, move |tx| {
            for i in 0..items {
                if tx.send(Counted(i, d.clone())).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })
        .unwrap();
        let limit = take.unwrap_or(usize::MAX);
        let mut got = Vec::new();
        while got.len() < limit {
            match q.recv().unwrap() {
                Some(c) => got.push(c.0),
                None => break,
            }
        }
        if take.is_none() {
            assert_eq!(got, (0..items).collect::<Vec<_>>());
        } else {
            assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
        }
        drop(q);
        // Every item created was dropped exactly once: at most `items` were created, and
        // after the drop nothing is alive, so the count equals what the producer sent.
        let dropped = drops.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            dropped >= got.len() && dropped <= items,
            "dropped {dropped}"
        );
    });
}

#[test]
fn prefetch_capacity_1_to_8() {
    let _w = bound("shuttle_core::prefetch_capacity_1_to_8");
    for (capacity, items, take) in [
        (1, 5, None),
        (2, 7, None),
        (3, 0, None),
        (8, 20, None),
        (1, 6, Some(2)),
        (4, 20, Some(5)),
    ] {
        prefetch(capacity, items, take);
    }
}

/// The documented order: tree(x) = x0, else tree(left half) + tree(right half).
fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [one] => *one,
        _ => {
            let mid = values.len() / 2;
            tree_sum(&values[..mid]) + tree_sum(&values[mid..])
        }
    }
}

fn value(step: usize, slot: usize, i: usize) -> f32 {
    [1.0e8f32, -1.0e8, 3.0, 0.5, -7.25, 1.0e-3][(step * 7 + slot * 3 + i) % 6]
}

/// Work for the segment workers, dispatched in step order (fills of a step, then its
/// reductions), as the trainer does: a step's reductions are always taken before the
/// next step's fills.
#[derive(Debug, Clone, Copy)]
enum Task {
    Fill { step: usize, slot: usize },
    Reduce { step: usize, part: usize },
}

/// Workers pull fill and reduce tasks from a shared work queue for three steps; the
/// result is bitwise equal to the tree sum whatever the schedule.
fn segments(workers: usize, n_slots: usize, n_parts: usize) {
    shuttle_check(move || {
        let len = 600; // parts on the 256-float grid: 256 + 256 + 88, or 512 + 88
        let seg = Arc::new(GradientSegments::<Shuttle>::new(n_slots, len, n_parts).unwrap());
        let steps = 3;
        let tasks = Arc::new(WorkQueue::<Task, Shuttle>::with_capacity(
            (n_slots + n_parts) * steps,
        ));
        for step in 0..steps {
            for slot in 0..n_slots {
                tasks.push(Task::Fill { step, slot }).unwrap();
            }
            for part in 0..n_parts {
                tasks.push(Task::Reduce { step, part }).unwrap();
            }
        }
        tasks.close();
        let out = Arc::new(shuttle::sync::Mutex::new(vec![vec![f32::NAN; len]; steps]));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (seg, tasks, out) = (seg.clone(), tasks.clone(), out.clone());
                thread::spawn(move || {
                    while let Some(task) = tasks.pop() {
                        match task {
                            Task::Fill { step, slot } => {
                                let mut w = seg.claim(step, slot).unwrap();
                                assert_eq!(w.step(), step);
                                w.write(|g| {
                                    g.iter_mut()
                                        .enumerate()
                                        .for_each(|(i, x)| *x = value(step, slot, i))
                                });
                                w.publish();
                            }
                            Task::Reduce { step, part } => {
                                let range = seg.part_range(part);
                                let mut buf = vec![0.0; range.len()];
                                seg.reduce_part(step, part, &mut buf).unwrap();
                                out.lock().unwrap()[step][range].copy_from_slice(&buf);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let out = out.lock().unwrap();
        for (step, got) in out.iter().enumerate() {
            for (i, g) in got.iter().enumerate() {
                let want = tree_sum(&(0..n_slots).map(|s| value(step, s, i)).collect::<Vec<_>>());
                assert_eq!(g.to_bits(), want.to_bits(), "step {step} float {i}");
            }
        }
    });
}

#[test]
fn segments_3_workers_4_slots_2_parts() {
    let _w = bound("shuttle_core::segments_3_workers_4_slots_2_parts");
    segments(3, 4, 2);
}

#[test]
fn segments_4_workers_6_slots_3_parts() {
    let _w = bound("shuttle_core::segments_4_workers_6_slots_3_parts");
    segments(4, 6, 3);
}

/// Two threads race to reduce the same part of the same step: exactly one wins.
#[test]
fn segments_part_reduced_exactly_once() {
    let _w = bound("shuttle_core::segments_part_reduced_exactly_once");
    shuttle_check(|| {
        let seg = Arc::new(GradientSegments::<Shuttle>::new(1, 4, 1).unwrap());
        let mut w = seg.claim(0, 0).unwrap();
        w.write(|g| g.fill(1.0));
        w.publish();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let seg = seg.clone();
                thread::spawn(move || seg.reduce_part(0, 0, &mut [0.0; 4]))
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results.iter().any(|r| matches!(
            r,
            Err(SegmentsError::PartTaken { .. } | SegmentsError::PartNotDue { .. })
        )));
    });
}

/// Two threads race to claim the same slot: exactly one wins.
#[test]
fn segments_slot_claimed_exactly_once() {
    let _w = bound("shuttle_core::segments_slot_claimed_exactly_once");
    shuttle_check(|| {
        let seg = Arc::new(GradientSegments::<Shuttle>::new(2, 4, 1).unwrap());
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let seg = seg.clone();
                thread::spawn(move || seg.claim(0, 1).map(std::mem::forget).is_ok())
            })
            .collect();
        let wins = racers
            .into_iter()
            .map(|r| r.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(wins, 1);
    });
}
