//! loom model checks of the three protocols and the Event they park on, exhaustive
//! within a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides), at capacities 1
//! and 2 so that full, empty and index wrap-around are all reached.
//!
//! Properties: every item delivered exactly once, per-producer FIFO, close and
//! producer-done release every waiter (a lost wake-up is a deadlock loom reports),
//! the reduction equals the sequential tree sum bitwise, and no slot is written while
//! a reduction may read it (loom's tracked cells report the overlapping access).

mod common;

use cllm::queue::{PrefetchError, PrefetchQueue, PushError, WorkQueue};
use cllm::segments::GradientSegments;
use cllm::sync::{AtomicFlag, Event, Platform};
use common::{loom_model, Loom};
use loom::sync::Arc;
use loom::thread;

type Q = WorkQueue<u32, Loom>;

/// Items popped by the consumer must be exactly the multiset pushed, each producer's
/// items in its own order.
fn assert_delivery(got: &[u32], producers: &[&[u32]]) {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    let mut want: Vec<u32> = producers.iter().flat_map(|p| p.iter().copied()).collect();
    want.sort_unstable();
    assert_eq!(sorted, want, "every item exactly once");
    for p in producers {
        let seen: Vec<u32> = got.iter().copied().filter(|x| p.contains(x)).collect();
        assert_eq!(&seen, p, "per-producer FIFO");
    }
}

/// Producer A pushes `a`, producer B pushes `b`; one consumer pops them all.
fn two_producers_one_consumer(capacity: usize, a: &'static [u32], b: &'static [u32]) {
    loom_model(move || {
        let q = Arc::new(Q::with_capacity(capacity));
        let producers: Vec<_> = [a, b]
            .into_iter()
            .map(|items| {
                let q = q.clone();
                thread::spawn(move || {
                    for &x in items {
                        q.push(x).unwrap();
                    }
                })
            })
            .collect();
        let n = a.len() + b.len();
        let got: Vec<u32> = (0..n).map(|_| q.pop().unwrap()).collect();
        for p in producers {
            p.join().unwrap();
        }
        assert_delivery(&got, &[a, b]);
        assert_eq!((q.pushed(), q.popped(), q.len()), (n, n, 0));
    });
}

#[test]
fn work_queue_two_producers_capacity_1() {
    two_producers_one_consumer(1, &[1, 2], &[11]);
}

#[test]
fn work_queue_two_producers_capacity_2() {
    two_producers_one_consumer(2, &[1, 2], &[11, 12]);
}

/// One producer laps a capacity-1 and a capacity-2 ring twice against a blocking
/// consumer, then closes: the consumer drains and sees end of stream.
#[test]
fn work_queue_wraps_and_closes() {
    for capacity in [1, 2] {
        loom_model(move || {
            let q = Arc::new(Q::with_capacity(capacity));
            let producer = {
                let q = q.clone();
                thread::spawn(move || {
                    for x in 0..3 {
                        q.push(x).unwrap();
                    }
                    q.close();
                })
            };
            let got: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
            producer.join().unwrap();
            assert_eq!(got, vec![0, 1, 2]);
            assert_eq!(q.try_pop(), Err(cllm::queue::PopError::Closed));
        });
    }
}

/// A consumer parked on an empty queue and a producer parked on a full one are both
/// released by close; the producer gets its item back.
#[test]
fn work_queue_close_releases_parked_waiters() {
    loom_model(|| {
        let q = Arc::new(Q::with_capacity(1));
        q.push(7).unwrap();
        let pusher = {
            let q = q.clone();
            thread::spawn(move || q.push(8))
        };
        let closer = {
            let q = q.clone();
            thread::spawn(move || q.close())
        };
        // Either 8 got in before close (then it is drained after 7) or it came back.
        let drained: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
        let pushed = pusher.join().unwrap();
        closer.join().unwrap();
        match pushed {
            Ok(()) => assert_eq!(drained, vec![7, 8]),
            Err(cllm::queue::Closed(item)) => {
                assert_eq!(item, 8);
                assert_eq!(drained, vec![7]);
            }
        }
    });
}

/// try_push racing close: the item is either delivered or handed back, never lost.
#[test]
fn work_queue_push_racing_close_never_loses_an_item() {
    loom_model(|| {
        let q = Arc::new(Q::with_capacity(2));
        let pusher = {
            let q = q.clone();
            thread::spawn(move || q.try_push(5))
        };
        q.close();
        let drained: Vec<u32> = std::iter::from_fn(|| q.pop()).collect();
        match pusher.join().unwrap() {
            Ok(()) => assert_eq!(drained, vec![5]),
            Err(PushError::Closed(5)) => assert!(drained.is_empty()),
            Err(other) => panic!("unexpected {other:?}"),
        }
    });
}

/// Two consumers parked on an empty queue, one producer: both get one item each.
#[test]
fn work_queue_two_parked_consumers() {
    loom_model(|| {
        let q = Arc::new(Q::with_capacity(1));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.pop())
            })
            .collect();
        q.push(1).unwrap();
        q.push(2).unwrap();
        let mut got: Vec<u32> = consumers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
    });
}

/// The Event handshake: a waiter on a flag set by another thread is always woken.
#[test]
fn event_has_no_lost_wake_up() {
    loom_model(|| {
        let state = Arc::new((
            <Loom as Platform>::AtomicBool::new(false),
            Event::<Loom>::new(),
        ));
        let setter = {
            let state = state.clone();
            thread::spawn(move || {
                state.0.store(true, std::sync::atomic::Ordering::Relaxed);
                state.1.notify();
            })
        };
        state
            .1
            .wait_until(|| state.0.load(std::sync::atomic::Ordering::Relaxed));
        setter.join().unwrap();
    });
}

/// Drop-counting item for leak checks.
struct Counted(u32, Arc<loom::sync::atomic::AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every item in order, then the producer's error, then end of stream; at capacity 1
/// and 2 (the ring wraps).
#[test]
fn prefetch_delivers_in_order_then_the_error() {
    for capacity in [1, 2] {
        loom_model(move || {
            let mut q = PrefetchQueue::<u32, &'static str, Loom>::spawn(capacity, |tx| {
                for x in 0..3 {
                    tx.send(x).map_err(|_| "stopped")?;
                }
                Err("boom")
            })
            .unwrap();
            for want in 0..3 {
                assert_eq!(q.recv().unwrap(), Some(want));
            }
            assert!(matches!(q.recv(), Err(PrefetchError::Producer("boom"))));
            assert!(matches!(q.recv(), Ok(None)));
        });
    }
}

/// Dropping the consumer early, with the producer parked on a full ring, stops and
/// joins the producer and drops every item exactly once.
#[test]
fn prefetch_early_drop_joins_and_leaks_nothing() {
    for (capacity, take) in [(1, 0), (1, 1), (2, 1)] {
        loom_model(move || {
            let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let made = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let (d, m) = (drops.clone(), made.clone());
            let mut q = PrefetchQueue::<Counted, (), Loom>::spawn(capacity, move |tx| {
                for x in 0..3 {
                    m.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if tx.send(Counted(x, d.clone())).is_err() {
                        return Ok(());
                    }
                }
                Ok(())
            })
            .unwrap();
            for want in 0..take {
                assert_eq!(q.recv().unwrap().map(|c| c.0), Some(want));
            }
            drop(q);
            let ordering = std::sync::atomic::Ordering::Relaxed;
            assert_eq!(
                drops.load(ordering),
                made.load(ordering),
                "every item dropped once"
            );
        });
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

/// Two workers fill one slot each, then each reduces one part, for two steps (so a
/// worker may claim its slot for step 1 while the other still reduces step 0).
#[test]
fn segments_two_workers_two_steps() {
    loom_model(|| {
        let (n_slots, len, n_parts) = (2, 2, 2);
        let seg = Arc::new(GradientSegments::<Loom>::new(n_slots, len, n_parts).unwrap());
        let value = |step: usize, slot: usize, i: usize| {
            [1.0e8f32, -1.0e8, 3.0, 0.5][(step + slot + i) % 4]
        };
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let seg = seg.clone();
                thread::spawn(move || {
                    let mut outs = Vec::new();
                    for step in 0..2 {
                        let mut slot = seg.claim(step, w).unwrap();
                        slot.write(|g| {
                            for (i, x) in g.iter_mut().enumerate() {
                                *x = value(step, w, i);
                            }
                        });
                        slot.publish();
                        let mut out = vec![0.0; seg.part_range(w).len()];
                        seg.reduce_part(step, w, &mut out).unwrap();
                        outs.push(out);
                    }
                    outs
                })
            })
            .collect();
        let outs: Vec<Vec<Vec<f32>>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for step in 0..2 {
            let mut got = Vec::new();
            for w_out in &outs {
                got.extend_from_slice(&w_out[step]);
            }
            let want: Vec<f32> = (0..len)
                .map(|i| tree_sum(&(0..n_slots).map(|s| value(step, s, i)).collect::<Vec<_>>()))
                .collect();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        assert_eq!(seg.completed_steps(), 2);
    });
}
