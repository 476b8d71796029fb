//! Owns [`PrefetchQueue`]: a background producer thread filling a bounded
//! single-producer single-consumer ring (the seed's batch pre-fetch, capacity 128).
//! Must never know what is produced; never leak the thread or an item.
//!
//! # Types
//! * [`PrefetchQueue`] is the consumer handle. It owns the producer thread.
//! * [`Producer`] is what the producer closure gets: `send` blocks while the ring is
//!   full and fails with [`Stopped`] once the consumer is gone.
//!
//! # Protocol
//! `head` (written only by the consumer) and `tail` (written only by the producer)
//! are monotonically increasing positions; slot = position % capacity.
//! * send: wait until `tail - head < capacity` (Acquire on `head`: the consumer has
//!   finished reading that slot), write the slot, store `tail + 1` with Release.
//! * recv: wait until `head < tail` (Acquire on `tail`: the value is written), read
//!   the slot, store `head + 1` with Release.
//! * producer done (the seed's `producer_done`): when the closure returns (or panics)
//!   the producer thread stores its outcome in `outcome`, then sets `done` with Release
//!   after its last `tail` store. The consumer, on an empty ring, loads `done` with
//!   Acquire, re-checks `tail`, and only then reports end of stream or the error.
//! * stop: dropping the consumer sets `stop`, wakes the producer, joins it, and the
//!   shared state's destructor drops any items still in the ring.
//!
//! # Orderings
//! Three Release/Acquire pairs carry everything: `tail` (a slot is written), `head` (a
//! slot is read) and `done` (the last `tail` and `outcome` are written). Everything else
//! is `Relaxed`: `stop` is a flag with no data behind it (what the producer does after
//! seeing it is ordered by the join in `Drop`); the parking conditions are read after
//! the waiter's SeqCst fence in [`Event`], so the fence-fence rule makes them see the
//! notifier's change whatever their ordering, and the loop re-reads with Acquire before
//! touching a slot or the outcome; the re-read of `tail` after `done` is ordered by
//! `done`'s Acquire. `verification/orderings.md` gives each argument, and each
//! ordering that remains has a seeded bug that weakens it and dies.

use crate::sync::{
    AtomicFlag, AtomicWord, CachePadded, Event, Join, Ordering, Platform, Std, SyncCell,
};
use core::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Default capacity of the seed design's pre-fetch queue.
pub const DEFAULT_CAPACITY: usize = 128;

/// What can go wrong between the producer and the consumer.
#[derive(Debug, thiserror::Error)]
pub enum PrefetchError<E> {
    /// The producer closure returned this error (delivered after every item it sent).
    #[error("pre-fetch producer failed: {0}")]
    Producer(#[source] E),
    /// The producer closure panicked with this message.
    #[error("pre-fetch producer panicked: {0}")]
    ProducerPanicked(String),
    /// The producer thread could not be started.
    #[error("could not start the pre-fetch thread")]
    Spawn(#[source] std::io::Error),
    /// A capacity of 0 was requested.
    #[error("pre-fetch capacity must be at least 1")]
    ZeroCapacity,
}

/// `send` after the consumer was dropped; carries the item back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pre-fetch consumer has gone away")]
pub struct Stopped<T>(pub T);

/// How the producer ended, as seen by the consumer.
enum Outcome<E> {
    Running,
    Finished,
    Failed(PrefetchError<E>),
    Reported,
}

struct Shared<T, E, P: Platform> {
    head: CachePadded<P::AtomicUsize>,
    tail: CachePadded<P::AtomicUsize>,
    slots: Box<[P::Cell<MaybeUninit<T>>]>,
    done: P::AtomicBool,
    stop: P::AtomicBool,
    outcome: P::Cell<Outcome<E>>,
    not_empty: Event<P>,
    not_full: Event<P>,
}

// SAFETY: items cross from the producer thread to the consumer (needs `T: Send`), the
// error crosses likewise (`E: Send`); each slot and `outcome` is accessed by one side
// at a time as ordered by the head/tail/done protocol in the module doc.
unsafe impl<T: Send, E: Send, P: Platform> Send for Shared<T, E, P> {}
// SAFETY: as above.
unsafe impl<T: Send, E: Send, P: Platform> Sync for Shared<T, E, P> {}

/// The producer's end: passed to the producer closure.
pub struct Producer<T, E, P: Platform = Std> {
    shared: Arc<Shared<T, E, P>>,
    tail: usize,
    cached_head: usize,
}

/// The consumer's end, owning the background producer thread (see the module doc).
///
/// ```
/// use cllm::queue::{PrefetchError, PrefetchQueue};
/// let batches = PrefetchQueue::<u32, String>::spawn(4, |tx| {
///     for i in 0..3 {
///         if tx.send(i).is_err() {
///             return Ok(()); // the consumer went away
///         }
///     }
///     Err("disk on fire".to_owned())
/// })
/// .unwrap();
/// let got: Vec<_> = batches.collect();
/// assert!(matches!(got[..], [Ok(0), Ok(1), Ok(2), Err(PrefetchError::Producer(_))]));
/// ```
pub struct PrefetchQueue<T, E, P: Platform = Std> {
    shared: Arc<Shared<T, E, P>>,
    head: usize,
    cached_tail: usize,
    thread: Option<P::JoinHandle<()>>,
}

impl<T: Send + 'static, E: Send + 'static, P: Platform> PrefetchQueue<T, E, P> {
    /// Start `produce` on a new thread named `cllm-prefetch`, feeding a ring of
    /// `capacity` items. The closure sends with [`Producer::send`] and returns
    /// `Ok(())` when done or `Err(e)` to hand `e` to the consumer after the items.
    pub fn spawn<F>(capacity: usize, produce: F) -> Result<Self, PrefetchError<E>>
    where
        F: FnOnce(&mut Producer<T, E, P>) -> Result<(), E> + Send + 'static,
    {
        if capacity == 0 {
            return Err(PrefetchError::ZeroCapacity);
        }
        let shared = Arc::new(Shared {
            head: CachePadded(P::AtomicUsize::new(0)),
            tail: CachePadded(P::AtomicUsize::new(0)),
            slots: (0..capacity)
                .map(|_| P::Cell::new(MaybeUninit::uninit()))
                .collect(),
            done: P::AtomicBool::new(false),
            stop: P::AtomicBool::new(false),
            outcome: P::Cell::new(Outcome::Running),
            not_empty: Event::new(),
            not_full: Event::new(),
        });
        let mut producer = Producer {
            shared: Arc::clone(&shared),
            tail: 0,
            cached_head: 0,
        };
        let thread = P::spawn("cllm-prefetch", move || {
            let result = catch_unwind(AssertUnwindSafe(|| produce(&mut producer)));
            producer.finish(result);
        })
        .map_err(PrefetchError::Spawn)?;
        Ok(PrefetchQueue {
            shared,
            head: 0,
            cached_tail: 0,
            thread: Some(thread),
        })
    }
}

impl<T, E, P: Platform> PrefetchQueue<T, E, P> {
    /// The next item, blocking while the ring is empty. `Ok(None)` is end of stream;
    /// an `Err` (the producer's error or panic) comes once, after every item sent
    /// before it, and is followed by `Ok(None)`.
    pub fn recv(&mut self) -> Result<Option<T>, PrefetchError<E>> {
        let shared = &*self.shared;
        let mut spins = 0;
        loop {
            if self.head == self.cached_tail {
                // Acquire: pairs with the producer's Release tail store (slot written).
                self.cached_tail = shared.tail.load(Ordering::Acquire);
            }
            if self.head != self.cached_tail {
                return Ok(Some(self.take_one()));
            }
            // Acquire: pairs with the producer's Release `done` store, which follows
            // its last tail store and its write of `outcome`.
            if shared.done.load(Ordering::Acquire) {
                // Relaxed: `done`'s Acquire above already orders every slot write
                // before the final tail, and coherence makes this read see that tail.
                self.cached_tail = shared.tail.load(Ordering::Relaxed);
                if self.head != self.cached_tail {
                    continue;
                }
                return self.report_outcome();
            }
            if spins < P::SPIN_LIMIT {
                spins += 1;
                P::spin_loop();
            } else {
                let head = self.head;
                // Relaxed: a wait condition, read after `Event`'s fence; the loop
                // re-reads `tail` and `done` with Acquire before using them.
                shared.not_empty.wait_until(|| {
                    shared.tail.load(Ordering::Relaxed) != head
                        || shared.done.load(Ordering::Relaxed)
                });
            }
        }
    }

    /// Capacity fixed at construction.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Items received so far.
    pub fn received(&self) -> usize {
        self.head
    }

    /// Read the slot at `head` and hand it back to the producer.
    fn take_one(&mut self) -> T {
        let shared = &*self.shared;
        let slot = &shared.slots[self.head % shared.slots.len()];
        // SAFETY: head < tail, observed with Acquire (on `tail`, or on `done` before a
        // Relaxed re-read of the final tail), so the producer has written this slot and
        // will not touch it again until we advance `head`.
        let value = slot.with(|cell| unsafe { (*cell).assume_init_read() });
        self.head += 1;
        // Release: the producer's Acquire head load sees our read as finished.
        shared.head.store(self.head, Ordering::Release);
        shared.not_full.notify();
        value
    }

    /// End of stream or the producer's error, once.
    fn report_outcome(&mut self) -> Result<Option<T>, PrefetchError<E>> {
        let outcome = self.shared.outcome.with_mut(|cell| {
            // SAFETY: `done` was observed with Acquire, so the producer has finished
            // writing `outcome` and never touches it again; only this consumer reads it.
            unsafe { core::mem::replace(&mut *cell, Outcome::Reported) }
        });
        match outcome {
            Outcome::Failed(err) => Err(err),
            Outcome::Running | Outcome::Finished | Outcome::Reported => Ok(None),
        }
    }
}

impl<T, E, P: Platform> Iterator for PrefetchQueue<T, E, P> {
    type Item = Result<T, PrefetchError<E>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.recv().transpose()
    }
}

impl<T, E, P: Platform> Drop for PrefetchQueue<T, E, P> {
    fn drop(&mut self) {
        // Relaxed: a flag with no data behind it; the join below orders what the
        // producer does after seeing it.
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.not_full.notify();
        if let Some(thread) = self.thread.take() {
            // The producer catches its own panics, so join only fails if `finish`
            // itself panicked; there is nothing left to report to anyone then.
            let _ = thread.join();
        }
        // Items still in the ring are dropped by `Shared::drop` with the last Arc.
    }
}

impl<T, E, P: Platform> Producer<T, E, P> {
    /// Send one item, blocking while the ring is full. Fails (returning the item)
    /// once the consumer has been dropped: the closure should then return.
    pub fn send(&mut self, value: T) -> Result<(), Stopped<T>> {
        let shared = &*self.shared;
        let capacity = shared.slots.len();
        let mut spins = 0;
        loop {
            // Relaxed: `stop` is a flag (see `Drop for PrefetchQueue`).
            if shared.stop.load(Ordering::Relaxed) {
                return Err(Stopped(value));
            }
            if self.tail - self.cached_head == capacity {
                // Acquire: pairs with the consumer's Release head store (slot read).
                self.cached_head = shared.head.load(Ordering::Acquire);
            }
            if self.tail - self.cached_head < capacity {
                let slot = &shared.slots[self.tail % capacity];
                // SAFETY: tail - head < capacity, so the consumer has finished with
                // this slot and will not read it until we publish the new tail.
                slot.with_mut(|cell| unsafe { (*cell).write(value) });
                self.tail += 1;
                // Release: publishes the slot to the consumer's Acquire tail load.
                shared.tail.store(self.tail, Ordering::Release);
                shared.not_empty.notify();
                return Ok(());
            }
            if spins < P::SPIN_LIMIT {
                spins += 1;
                P::spin_loop();
            } else {
                let tail = self.tail;
                // Relaxed: a wait condition, read after `Event`'s fence; the loop
                // re-reads `head` with Acquire before writing a slot.
                shared.not_full.wait_until(|| {
                    tail - shared.head.load(Ordering::Relaxed) < capacity
                        || shared.stop.load(Ordering::Relaxed)
                });
            }
        }
    }

    /// Whether the consumer has gone away.
    pub fn is_stopped(&self) -> bool {
        // Relaxed: a flag (see `Drop for PrefetchQueue`).
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Items sent so far.
    pub fn sent(&self) -> usize {
        self.tail
    }

    /// Record how the closure ended and raise `done` (runs on the producer thread).
    fn finish(&mut self, result: std::thread::Result<Result<(), E>>) {
        let outcome = match result {
            Ok(Ok(())) => Outcome::Finished,
            Ok(Err(e)) => Outcome::Failed(PrefetchError::Producer(e)),
            Err(payload) => Outcome::Failed(PrefetchError::ProducerPanicked(panic_message(
                payload.as_ref(),
            ))),
        };
        self.shared.outcome.with_mut(|cell| {
            // SAFETY: the consumer reads `outcome` only after observing `done`, which is
            // stored below; until then the producer thread is its only accessor.
            unsafe { *cell = outcome }
        });
        // Release: publishes the last tail store and `outcome` to the consumer.
        self.shared.done.store(true, Ordering::Release);
        self.shared.not_empty.notify();
    }
}

impl<T, E, P: Platform> Drop for Shared<T, E, P> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for pos in head..tail {
            // SAFETY: `&mut self` (last Arc): both threads are gone; positions in
            // [head, tail) were written by the producer and never read.
            self.slots[pos % self.slots.len()]
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Iterating yields every item in order, then the producer's error once, then
    /// nothing: the same sequence `recv` gives, as `Option<Result<..>>`.
    #[test]
    fn iteration_yields_the_items_then_the_error_then_ends() {
        let q = PrefetchQueue::<u32, &'static str, Std>::spawn(2, |p| {
            for i in 0..5 {
                if p.send(i).is_err() {
                    return Ok(());
                }
            }
            Err("corpus ended")
        })
        .expect("the producer thread starts");
        let got: Vec<Result<u32, String>> = q.map(|r| r.map_err(|e| e.to_string())).collect();
        let mut want: Vec<Result<u32, String>> = (0..5).map(Ok).collect();
        want.push(Err(
            PrefetchError::<&str>::Producer("corpus ended").to_string()
        ));
        assert_eq!(got, want);
    }

    /// A producer that returns `Ok` ends the iteration after its last item.
    #[test]
    fn iteration_ends_after_a_finished_producer() {
        let q = PrefetchQueue::<u32, (), Std>::spawn(1, |p| {
            let _ = p.send(7);
            Ok(())
        })
        .expect("the producer thread starts");
        let got: Vec<u32> = q.map(|r| r.expect("no error")).collect();
        assert_eq!(got, vec![7]);
    }
}
