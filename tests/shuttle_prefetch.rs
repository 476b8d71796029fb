//! shuttle randomized model checks of `cllm::queue::PrefetchQueue` over the `Shuttle`
//! platform (random and PCT schedulers, `CLLM_SHUTTLE_ITERS` iterations each, default
//! 1000), over shapes larger than loom can afford: capacities 1 to 8, 0 to 20 items,
//! the producer ending with Ok, an error or a panic, and the consumer sometimes
//! dropping the queue early.
//!
//! Owns: the PrefetchQueue shuttle properties only: the consumer sees exactly the items
//! sent, in order, then the producer's outcome once, then end of stream; an early drop
//! stops and joins the producer; every item created is dropped exactly once. shuttle
//! treats atomics as SeqCst, so this hunts lost items and lost wake-ups (a hang is a
//! shuttle deadlock report); ordering bugs are loom's job. The shape of each iteration
//! is drawn from shuttle's own RNG, so a printed failing schedule replays its shape.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

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

use cllm::queue::{PrefetchError, PrefetchQueue, Stopped};
use common::{shuttle_check, Shuttle};
use shuttle::rand::RngCore;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// How the producer closure ends after sending its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Ok,
    Fail,
    Panic,
}

/// One iteration's shape.
#[derive(Debug, Clone, Copy)]
struct Shape {
    capacity: usize,
    items: usize,
    end: End,
    /// Drop the consumer after receiving this many items (if it gets that far).
    stop_after: Option<usize>,
}

/// Per-item creation and drop counts (std atomics: shuttle runs every task on one OS
/// thread, and the counts are read after the producer has been joined).
struct Ledger {
    created: Vec<AtomicUsize>,
    dropped: Vec<AtomicUsize>,
}

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

/// Run one shape to completion and check every property.
fn run(shape: Shape) {
    let Shape {
        capacity,
        items,
        end,
        stop_after,
    } = shape;
    let ledger = Arc::new(Ledger {
        created: (0..items).map(|_| AtomicUsize::new(0)).collect(),
        dropped: (0..items).map(|_| AtomicUsize::new(0)).collect(),
    });
    let stopped_at = Arc::new(AtomicUsize::new(usize::MAX));
    let finished = Arc::new(AtomicBool::new(false));
    let (l, s, f) = (ledger.clone(), stopped_at.clone(), finished.clone());
    let q = PrefetchQueue::<Counted, usize, Shuttle>::spawn(capacity, move |tx| {
        for x in 0..items {
            assert_eq!(tx.sent(), x);
            if let Err(Stopped(item)) = tx.send(Counted::new(x, &l)) {
                assert_eq!(item.value, x, "send hands back its item");
                s.store(x, SeqCst);
                f.store(true, SeqCst);
                return Ok(());
            }
        }
        f.store(true, SeqCst);
        match end {
            End::Ok => Ok(()),
            End::Fail => Err(items),
            End::Panic => panic!("producer exploded after {items}"),
        }
    })
    .unwrap();
    assert_eq!(q.capacity(), capacity);

    let mut q = Some(q);
    let mut received = 0;
    loop {
        if stop_after == Some(received) {
            drop(q.take());
            break;
        }
        let q = q.as_mut().unwrap();
        match q.recv() {
            Ok(Some(item)) => {
                assert_eq!(item.value, received, "{shape:?}: items in order");
                received += 1;
                assert_eq!(q.received(), received);
            }
            Ok(None) => {
                assert_eq!(end, End::Ok, "{shape:?}: end of stream hides the outcome");
                break;
            }
            Err(PrefetchError::Producer(e)) => {
                assert_eq!((end, e), (End::Fail, items), "{shape:?}");
                assert!(
                    matches!(q.recv(), Ok(None)),
                    "{shape:?}: then end of stream"
                );
                break;
            }
            Err(PrefetchError::ProducerPanicked(msg)) => {
                assert_eq!(end, End::Panic, "{shape:?}");
                assert_eq!(msg, format!("producer exploded after {items}"));
                assert!(
                    matches!(q.recv(), Ok(None)),
                    "{shape:?}: then end of stream"
                );
                break;
            }
            Err(other) => panic!("{shape:?}: unexpected {other}"),
        }
    }
    let dropped_early = q.is_none();
    if let Some(mut q) = q {
        assert_eq!(received, items, "{shape:?}: every item before the outcome");
        assert!(
            matches!(q.recv(), Ok(None)),
            "{shape:?}: end of stream is sticky"
        );
        drop(q);
    }
    assert!(finished.load(SeqCst), "{shape:?}: the producer was joined");

    let created: Vec<usize> = ledger.created.iter().map(|c| c.load(SeqCst)).collect();
    let dropped: Vec<usize> = ledger.dropped.iter().map(|c| c.load(SeqCst)).collect();
    assert_eq!(
        created, dropped,
        "{shape:?}: each item dropped exactly once"
    );
    let made = created.iter().take_while(|&&c| c == 1).count();
    assert!(
        created[made..].iter().all(|&c| c == 0),
        "{shape:?}: {created:?}"
    );
    match stopped_at.load(SeqCst) {
        usize::MAX => assert_eq!(made, items, "{shape:?}"),
        stopped => {
            assert!(dropped_early, "{shape:?}: Stopped while the consumer lived");
            assert!(
                (received..=received + capacity).contains(&stopped),
                "{shape:?}: stopped at {stopped} after {received} received"
            );
            assert_eq!(made, stopped + 1, "{shape:?}");
        }
    }
}

/// Capacity 1..=8, 0..=20 items, any ending, and an early drop in about half the
/// iterations, drawn per iteration from shuttle's RNG.
#[test]
fn random_shapes() {
    let _w = bound("shuttle_prefetch::random_shapes");
    shuttle_check(|| {
        let mut rng = shuttle::rand::thread_rng();
        let mut draw = |n: u64| (rng.next_u64() % n) as usize;
        let capacity = 1 + draw(8);
        let items = draw(21);
        let end = [End::Ok, End::Fail, End::Panic][draw(3)];
        let stop_after = (draw(2) == 0).then(|| draw(items as u64 + 1));
        run(Shape {
            capacity,
            items,
            end,
            stop_after,
        });
    });
}

/// The corners, each under both schedulers: an empty stream, the smallest ring
/// lapped 20 times, a drop before the first item with the producer parked on a full
/// ring, and a drop mid-stream at the largest capacity.
#[test]
fn corner_shapes() {
    let _w = bound("shuttle_prefetch::corner_shapes");
    let shapes = [
        (1, 0, End::Ok, None),
        (1, 0, End::Fail, None),
        (1, 20, End::Ok, None),
        (1, 20, End::Fail, None),
        (1, 20, End::Ok, Some(0)),
        (2, 20, End::Panic, Some(3)),
        (8, 20, End::Fail, Some(9)),
        (8, 20, End::Ok, Some(20)),
    ];
    for (capacity, items, end, stop_after) in shapes {
        shuttle_check(move || {
            run(Shape {
                capacity,
                items,
                end,
                stop_after,
            })
        });
    }
}
