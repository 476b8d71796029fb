//! loom model checks of `cllm::queue::PrefetchQueue` over the `Loom` platform,
//! exhaustive within a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides), at
//! capacities 1 and 2 so that full, empty and ring wrap-around are all reached.
//!
//! Owns: the PrefetchQueue loom properties only (ordered delivery then end of stream,
//! the producer's error or panic after its items and then end of stream, early consumer
//! drop stops and joins a producer parked on a full ring, every item dropped exactly
//! once). A lost wake-up shows up as a loom deadlock report, an unordered slot access
//! as a loom causality violation on the queue's tracked cells.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;

use cllm::queue::{PrefetchError, PrefetchQueue, Stopped};
use common::{loom_model, Loom};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// How many distinct items any test here produces at most.
const MAX_ITEMS: usize = 8;

/// Per-item creation and drop counts. Plain std atomics are enough: loom runs every
/// modelled thread on one OS thread, and the counts are read only after the producer
/// thread has been joined (which loom orders).
struct Ledger {
    created: [AtomicUsize; MAX_ITEMS],
    dropped: [AtomicUsize; MAX_ITEMS],
}

impl Ledger {
    fn new() -> Arc<Ledger> {
        Arc::new(Ledger {
            created: Default::default(),
            dropped: Default::default(),
        })
    }

    /// Every item created was dropped exactly once, items were created as a prefix
    /// `0..n` (each at most once), and `n` is returned.
    fn assert_balanced(&self) -> usize {
        let created: Vec<usize> = self.created.iter().map(|c| c.load(SeqCst)).collect();
        let dropped: Vec<usize> = self.dropped.iter().map(|c| c.load(SeqCst)).collect();
        assert_eq!(
            created, dropped,
            "each created item is dropped exactly once"
        );
        let n = created.iter().take_while(|&&c| c == 1).count();
        assert!(
            created[n..].iter().all(|&c| c == 0),
            "items are created once each, as a prefix: {created:?}"
        );
        n
    }
}

/// A drop-counted item.
struct Counted {
    value: usize,
    ledger: Arc<Ledger>,
}

impl Counted {
    fn new(value: usize, ledger: &Arc<Ledger>) -> Counted {
        ledger.created[value].fetch_add(1, SeqCst);
        Counted {
            value,
            ledger: Arc::clone(ledger),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ledger.dropped[self.value].fetch_add(1, SeqCst);
    }
}

type Queue<E> = PrefetchQueue<Counted, E, Loom>;

/// Receive exactly `n` items and check they are `0..n` in order.
fn expect_items<E: std::fmt::Debug>(q: &mut Queue<E>, n: usize) {
    for want in 0..n {
        match q.recv() {
            Ok(Some(item)) => assert_eq!(item.value, want, "items arrive in order"),
            other => panic!(
                "expected item {want}, got {:?}",
                other.map(|o| o.map(|c| c.value))
            ),
        }
    }
}

/// The producer sends 3 items (the ring of capacity 1 or 2 wraps) and returns Ok:
/// the consumer sees 0, 1, 2, then end of stream, and end of stream again.
#[test]
fn delivers_every_item_in_order_then_end_of_stream() {
    for capacity in [1, 2] {
        loom_model(move || {
            let ledger = Ledger::new();
            let l = Arc::clone(&ledger);
            let mut q = Queue::<()>::spawn(capacity, move |tx| {
                for x in 0..3 {
                    if tx.send(Counted::new(x, &l)).is_err() {
                        panic!("the consumer is alive: send must not fail");
                    }
                }
                Ok(())
            })
            .unwrap();
            expect_items(&mut q, 3);
            assert!(matches!(q.recv(), Ok(None)), "end of stream");
            assert!(matches!(q.recv(), Ok(None)), "end of stream is sticky");
            assert_eq!(q.received(), 3);
            drop(q);
            assert_eq!(ledger.assert_balanced(), 3);
        });
    }
}

/// The producer sends 3 items and then fails: the error comes after every item, once,
/// and is followed by end of stream (never a hang).
#[test]
fn producer_error_arrives_after_the_items_then_end_of_stream() {
    for capacity in [1, 2] {
        loom_model(move || {
            let ledger = Ledger::new();
            let l = Arc::clone(&ledger);
            let mut q = Queue::<&'static str>::spawn(capacity, move |tx| {
                for x in 0..3 {
                    tx.send(Counted::new(x, &l)).map_err(|_| "stopped")?;
                }
                Err("disk on fire")
            })
            .unwrap();
            expect_items(&mut q, 3);
            assert!(
                matches!(q.recv(), Err(PrefetchError::Producer("disk on fire"))),
                "the producer's own error, after the items"
            );
            assert!(matches!(q.recv(), Ok(None)), "then end of stream");
            assert!(
                matches!(q.recv(), Ok(None)),
                "and the error is reported once"
            );
            drop(q);
            assert_eq!(ledger.assert_balanced(), 3);
        });
    }
}

/// An error with no item before it still arrives, then end of stream.
#[test]
fn immediate_producer_error() {
    loom_model(|| {
        let mut q = Queue::<u8>::spawn(1, |_tx| Err(7)).unwrap();
        assert!(matches!(q.recv(), Err(PrefetchError::Producer(7))));
        assert!(matches!(q.recv(), Ok(None)));
    });
}

/// The consumer takes `take` items and drops the queue while the producer offers
/// `offered` items. With `offered > capacity + take` the producer must end up parked
/// on a full ring (or about to be) and at least one send must fail; with fewer it may
/// finish first and leave items in the ring for the queue's destructor. Either way
/// dropping returns only after the producer closure has finished (joined), a failed
/// send hands its item back, and every item created is dropped exactly once (none
/// leaked in the ring, none dropped twice).
#[test]
fn early_consumer_drop_stops_and_joins_the_producer_without_leaks() {
    // (capacity, items taken before the drop, items offered)
    let cases = [
        (1, 0, 2),
        (1, 1, 3),
        (2, 0, 3),
        (2, 1, 4),
        (1, 0, 1),
        (2, 0, 2),
    ];
    for (capacity, take, offered) in cases {
        loom_model(move || {
            let ledger = Ledger::new();
            let stopped_at = Arc::new(AtomicUsize::new(usize::MAX));
            let finished = Arc::new(AtomicBool::new(false));
            let (l, s, f) = (
                Arc::clone(&ledger),
                Arc::clone(&stopped_at),
                Arc::clone(&finished),
            );
            let mut q = Queue::<()>::spawn(capacity, move |tx| {
                for x in 0..offered {
                    if let Err(Stopped(item)) = tx.send(Counted::new(x, &l)) {
                        assert_eq!(item.value, x, "send hands back the item it was given");
                        assert!(tx.is_stopped());
                        s.store(x, SeqCst);
                        break;
                    }
                }
                f.store(true, SeqCst);
                Ok(())
            })
            .unwrap();
            expect_items(&mut q, take);
            drop(q);
            assert!(finished.load(SeqCst), "drop joined the producer");
            let created = ledger.assert_balanced();
            match stopped_at.load(SeqCst) {
                usize::MAX => {
                    assert!(offered <= take + capacity, "more items accepted than fit");
                    assert_eq!(created, offered);
                }
                stopped => {
                    assert!(
                        (take..=take + capacity).contains(&stopped),
                        "the producer was stopped at item {stopped}"
                    );
                    assert_eq!(created, stopped + 1);
                }
            }
        });
    }
}

/// A producer that panics after one item: the item, then `ProducerPanicked` with the
/// panic message, then end of stream. The closure's panic unwinds inside loom's
/// modelled thread and is caught by the queue's `catch_unwind`; the panic message is
/// printed by the default hook on every iteration (captured by the test harness).
#[test]
fn producer_panic_arrives_as_producer_panicked() {
    for capacity in [1, 2] {
        loom_model(move || {
            let ledger = Ledger::new();
            let l = Arc::clone(&ledger);
            let mut q = Queue::<()>::spawn(capacity, move |tx| {
                if tx.send(Counted::new(0, &l)).is_err() {
                    return Ok(());
                }
                panic!("producer exploded");
            })
            .unwrap();
            expect_items(&mut q, 1);
            match q.recv() {
                Err(PrefetchError::ProducerPanicked(msg)) => assert_eq!(msg, "producer exploded"),
                other => panic!(
                    "expected ProducerPanicked, got {:?}",
                    other.map(|o| o.map(|c| c.value))
                ),
            }
            assert!(matches!(q.recv(), Ok(None)));
            drop(q);
            assert_eq!(ledger.assert_balanced(), 1);
        });
    }
}
