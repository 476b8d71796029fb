//! Proves that the queues' waiting operations stop spinning: a `WorkQueue::pop` on an
//! empty queue and a `WorkQueue::push` on a full one spin at most their platform's
//! `SPIN_LIMIT` times and then park (enter the wait cell), so a waiting thread gives
//! its core back to the workers; likewise the pre-fetch queue's producer on a full ring
//! and consumer on an empty one. The model checkers cannot see this (a popper that
//! spins forever returns the same values), and neither can a test of results.
//!
//! The platform is production's `Std` with a wait cell that counts how often a thread
//! enters it. Each check starts the waiter, waits (bounded: 30 s, then it fails) until
//! the count shows the waiter parked, and only then lets it finish; a waiter that never
//! parks is released by closing the queue, and the check fails.
//!
//! On the same seam it checks two things results do not show either: `close` marks the
//! queue closed and ends a parked popper (`is_closed`, `None`, a refused push), and a
//! notify with no thread waiting does not signal the wait cell (the `Event` module's
//! fast path: a waiter that has returned no longer counts as waiting). And on plain
//! `Std` (production's flag type), a helper's panic in a `Team` task reaches the leader
//! for that task only: the next task runs clean.
//! Must never touch: the queues' internals (public API only).

use cllm::queue::{PrefetchQueue, WorkQueue};
use cllm::step::Team;
use cllm::sync::{Ordering, Platform, Std, WaitCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// Threads that have entered a [`CountingCell`] (every check in this binary runs in
/// the one test below, so the count is not shared with another test).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Calls of [`CountingCell::notify_all`].
static NOTIFIED: AtomicUsize = AtomicUsize::new(0);

/// `Std`'s wait cell, counting entries.
struct CountingCell(<Std as Platform>::WaitCell);

impl WaitCell for CountingCell {
    fn new() -> Self {
        CountingCell(<<Std as Platform>::WaitCell as WaitCell>::new())
    }
    fn wait_until(&self, ready: &mut dyn FnMut() -> bool) {
        PARKED.fetch_add(1, Ordering::SeqCst);
        self.0.wait_until(ready)
    }
    fn notify_all(&self) {
        NOTIFIED.fetch_add(1, Ordering::SeqCst);
        self.0.notify_all()
    }
}

/// `Std` with [`CountingCell`] and a small spin bound.
struct Counting;

impl Platform for Counting {
    type AtomicUsize = <Std as Platform>::AtomicUsize;
    type AtomicBool = <Std as Platform>::AtomicBool;
    type Cell<T> = <Std as Platform>::Cell<T>;
    type WaitCell = CountingCell;
    type JoinHandle<T: Send + 'static> = <Std as Platform>::JoinHandle<T>;
    const SPIN_LIMIT: u32 = 16;
    fn fence(order: Ordering) {
        <Std as Platform>::fence(order)
    }
    fn spin_loop() {
        <Std as Platform>::spin_loop()
    }
    fn yield_now() {
        <Std as Platform>::yield_now()
    }
    fn spawn<F, T>(name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        <Std as Platform>::spawn(name, f)
    }
}

/// Waits until some thread has parked since `before` entries: false after 30 s.
fn parked_since(before: usize) -> bool {
    let start = Instant::now();
    while PARKED.load(Ordering::SeqCst) == before {
        if start.elapsed() > Duration::from_secs(30) {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

#[test]
fn waiting_closing_and_notifying_on_std() {
    a_waiting_pop_or_push_parks_after_its_spin_bound();
    close_marks_the_queue_and_ends_a_parked_popper();
    a_notify_with_nobody_waiting_does_not_signal();
    the_prefetch_producer_and_consumer_park_after_their_spin_bound();
}

fn a_waiting_pop_or_push_parks_after_its_spin_bound() {
    // pop on an empty queue.
    let q = WorkQueue::<u32, Counting>::with_capacity(2);
    let before = PARKED.load(Ordering::SeqCst);
    let parked = std::thread::scope(|s| {
        let popper = s.spawn(|| q.pop());
        let parked = parked_since(before);
        if parked {
            q.push(7).expect("open");
            assert_eq!(popper.join().expect("popper"), Some(7));
        } else {
            // Release the spinning popper (end of stream) so the scope can end.
            q.close();
        }
        parked
    });
    assert!(
        parked,
        "a popper on an empty queue never parked in 30 s: it spins"
    );

    // push on a full queue.
    let q = WorkQueue::<u32, Counting>::with_capacity(1);
    q.push(1).expect("open");
    let before = PARKED.load(Ordering::SeqCst);
    let parked = std::thread::scope(|s| {
        let pusher = s.spawn(|| q.push(2));
        let parked = parked_since(before);
        if parked {
            assert_eq!(q.pop(), Some(1));
            assert!(pusher.join().expect("pusher").is_ok());
            assert_eq!(q.pop(), Some(2));
        } else {
            // Release the spinning pusher (its push fails on a closed queue).
            q.close();
        }
        parked
    });
    assert!(
        parked,
        "a pusher on a full queue never parked in 30 s: it spins"
    );
}

fn close_marks_the_queue_and_ends_a_parked_popper() {
    let q = WorkQueue::<u32, Counting>::with_capacity(2);
    let before = PARKED.load(Ordering::SeqCst);
    let (closed, popped) = std::thread::scope(|s| {
        let popper = s.spawn(|| q.pop());
        assert!(
            parked_since(before),
            "a popper on an empty queue never parked"
        );
        q.close();
        let closed = q.is_closed();
        if !closed {
            // Release the popper that close did not end, so the scope can end.
            q.push(9).expect("an unmarked queue takes the item");
        }
        (closed, popper.join().expect("popper"))
    });
    assert!(closed, "close did not mark the queue closed");
    assert_eq!(
        popped, None,
        "a parked popper gets end of stream after close"
    );
    assert!(
        matches!(q.push(1), Err(cllm::queue::Closed(1))),
        "a closed queue refuses a push"
    );
    assert_eq!(q.pop(), None);
}

fn a_notify_with_nobody_waiting_does_not_signal() {
    let q = WorkQueue::<u32, Counting>::with_capacity(2);
    let before = PARKED.load(Ordering::SeqCst);
    std::thread::scope(|s| {
        let popper = s.spawn(|| q.pop());
        assert!(
            parked_since(before),
            "a popper on an empty queue never parked"
        );
        q.push(3).expect("open");
        assert_eq!(popper.join().expect("popper"), Some(3));
    });
    // The popper has returned (joined): nobody waits on either side now, so pushes and
    // pops must not enter the wait cell's notify.
    let notified = NOTIFIED.load(Ordering::SeqCst);
    for i in 0..4 {
        q.push(i).expect("open");
        assert_eq!(q.pop(), Some(i));
    }
    assert_eq!(
        NOTIFIED.load(Ordering::SeqCst),
        notified,
        "a notify with no waiter signalled the wait cell (a returned waiter still counts)"
    );
}

#[test]
fn a_helpers_panic_reaches_the_leader_once_on_std() {
    let team: Team<Std> = Team::new(2);
    let (first, second) = std::thread::scope(|s| {
        s.spawn(|| team.help(1));
        let first = catch_unwind(AssertUnwindSafe(|| {
            team.run(&|part| {
                if part == 1 {
                    panic!("the helper's part panics (expected by this test)");
                }
            })
        }));
        let second = catch_unwind(AssertUnwindSafe(|| team.run(&|_| {})));
        // Stop before asserting, so a failed check does not leave the helper waiting.
        team.stop();
        (first, second)
    });
    assert!(first.is_err(), "a helper's panic did not reach the leader");
    assert!(
        second.is_ok(),
        "a clean task after a helper's panic panicked: the flag was not cleared"
    );
}

fn the_prefetch_producer_and_consumer_park_after_their_spin_bound() {
    // A producer on a full ring (capacity 1, two items, nobody receiving yet).
    let before = PARKED.load(Ordering::SeqCst);
    let mut q = PrefetchQueue::<u32, (), Counting>::spawn(1, |p| {
        for i in 0..2 {
            if p.send(i).is_err() {
                break;
            }
        }
        Ok(())
    })
    .expect("spawn the producer");
    let parked = parked_since(before);
    // Drain either way, so a producer that never parked still ends.
    let mut got = Vec::new();
    while let Some(item) = q.recv().expect("the producer fails nothing") {
        got.push(item);
    }
    assert!(parked, "a producer on a full pre-fetch ring never parked");
    assert_eq!(got, [0, 1]);

    // A consumer on an empty ring: the producer sends only once the watcher has seen
    // the consumer park (or has given up).
    let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
    let mut q = PrefetchQueue::<u32, (), Counting>::spawn(1, move |p| {
        if wait_for_go.recv().is_ok() {
            let _ = p.send(7);
        }
        Ok(())
    })
    .expect("spawn the producer");
    let before = PARKED.load(Ordering::SeqCst);
    let (parked, got) = std::thread::scope(|s| {
        let watcher = s.spawn(move || {
            let parked = parked_since(before);
            let _ = go.send(());
            parked
        });
        let got = q.recv();
        (watcher.join().expect("watcher"), got)
    });
    assert!(parked, "a consumer on an empty pre-fetch ring never parked");
    assert_eq!(got.expect("the producer fails nothing"), Some(7));
}
