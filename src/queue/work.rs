//! Owns [`WorkQueue`]: the bounded lock-free MPMC queue workers pull micro-batches from.
//! Must never touch what it carries, and never block inside `try_*`.
//!
//! # Layout
//! `capacity` slots, each a sequence *stamp* plus a cell for one `T`; `head` and
//! `tail` each on their own cache lines. A position packs `lap | index`:
//! `mark_bit = (capacity + 1).next_power_of_two()`, `one_lap = 2 * mark_bit`,
//! index in the low bits below `mark_bit`, laps in multiples of `one_lap`. The
//! `mark_bit` of `tail` is the *closed* flag (the seed's `epoch_done`), so closing and
//! claiming a slot are ordered by the same atomic and no push can slip in after close.
//! Because `one_lap > capacity`, the stamps "free at this lap" (`pos`) and "full at
//! this lap" (`pos + 1`) differ even at capacity 1.
//!
//! # Protocol (per slot, Vyukov)
//! * push at tail `t`: the slot is free iff `stamp == t`. CAS `tail` from `t` to the
//!   next position (this claims the slot), write the value, then store
//!   `stamp = t + 1` with Release (publishes the value to the popper).
//! * pop at head `h`: the slot is full iff `stamp == h + 1`. CAS `head` to the next
//!   position, read the value, then store `stamp = h + one_lap` with Release (hands
//!   the empty slot to the pusher of the next lap).
//! * A `try_*` that finds the slot still owned by an operation in flight reports
//!   `Full`/`Empty` instead of spinning; blocking `push`/`pop` retry a bounded number
//!   of times, then park on an [`Event`] (`not_full` / `not_empty`). Every completed
//!   pop notifies `not_full`, every completed push and `close` notify both as needed.
//! * A stale view of `head`/`tail` (another thread moved on) is re-read after a spin
//!   hint. Under loom the hint is `yield_now`, after which loads stop returning values
//!   the thread already saw; without it the retry loop is an unbounded spin there.
//! * Totals: `tail` and `head` count positions, so pushed/popped totals are decoded
//!   from them; no extra shared counter sits on the hot path.
//!
//! # Orderings
//! Only the stamps carry data: each push's Release stamp store pairs with the popper's
//! Acquire stamp load (the value is written), each pop's Release stamp store with the
//! next lap's pusher's Acquire stamp load (the old value has been read). Everything on
//! `head` and `tail` is `Relaxed`: the claiming CASes and `close`'s `fetch_or` are
//! read-modify-writes on one word each, so coherence alone makes a claim unique and
//! orders every claim on `tail` with the close mark (a push claims before the mark and
//! is delivered, or fails); a marked `tail` equal to `head` means no push ever claimed
//! `head` and none can, whatever else the thread has seen, so `Closed` is never
//! premature (the one fence left, before that check, is stronger than needed; its
//! comment says why it stays); the parking conditions are read after the waiter's
//! `SeqCst` fence in [`Event`], and each state change they wait for precedes the
//! notifier's fence, so by the fence-fence rule they see it whatever their own
//! ordering (and after waking, `try_*` re-reads the stamp with Acquire); the totals
//! and `len` are snapshots that read no data. `verification/orderings.md` gives each
//! argument; every other ordering that remains has a seeded bug that weakens it and
//! dies.

use crate::sync::{AtomicWord, CachePadded, Event, Ordering, Platform, Std, SyncCell};
use core::mem::MaybeUninit;

/// Default capacity of the seed design's work queue.
pub const DEFAULT_CAPACITY: usize = 256;

/// Why a `try_push` failed; carries the item back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// No free slot at this instant.
    #[error("work queue is full")]
    Full(T),
    /// The queue was closed; it accepts nothing more.
    #[error("work queue is closed")]
    Closed(T),
}

/// Why a `try_pop` returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    /// Nothing to pop at this instant (more may come).
    #[error("work queue is empty")]
    Empty,
    /// Closed and drained: nothing will ever come (end of stream).
    #[error("work queue is closed and drained")]
    Closed,
}

/// A blocking `push` into a closed queue; carries the item back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("work queue is closed")]
pub struct Closed<T>(pub T);

struct Slot<T, P: Platform> {
    stamp: P::AtomicUsize,
    value: P::Cell<MaybeUninit<T>>,
}

/// Bounded lock-free multi-producer multi-consumer queue (see the module doc).
///
/// ```
/// use cllm::queue::WorkQueue;
/// let queue: WorkQueue<u32> = WorkQueue::with_capacity(2);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         for i in 0..10 {
///             queue.push(i).unwrap(); // blocks while full
///         }
///         queue.close(); // epoch done: poppers drain, then see end of stream
///     });
///     let got: Vec<u32> = std::iter::from_fn(|| queue.pop()).collect();
///     assert_eq!(got, (0..10).collect::<Vec<_>>());
/// });
/// assert_eq!((queue.pushed(), queue.popped()), (10, 10));
/// ```
pub struct WorkQueue<T, P: Platform = Std> {
    head: CachePadded<P::AtomicUsize>,
    tail: CachePadded<P::AtomicUsize>,
    slots: Box<[Slot<T, P>]>,
    mark_bit: usize,
    one_lap: usize,
    not_empty: Event<P>,
    not_full: Event<P>,
}

// SAFETY: values move between threads through the slots (so `T: Send` is needed and
// enough); each slot's cell is accessed by exactly one thread at a time, as granted by
// the stamp protocol in the module doc.
unsafe impl<T: Send, P: Platform> Send for WorkQueue<T, P> {}
// SAFETY: as above; `&WorkQueue` only ever moves whole `T`s in and out, never shares
// a `&T`, so `T: Sync` is not required.
unsafe impl<T: Send, P: Platform> Sync for WorkQueue<T, P> {}

impl<T, P: Platform> WorkQueue<T, P> {
    /// A queue holding at most `capacity` items.
    ///
    /// # Panics
    /// If `capacity == 0` or so large that positions would not fit a `usize`
    /// (more than `usize::MAX / 4`); use [`WorkQueue::try_with_capacity`] to get
    /// `None` instead.
    pub fn with_capacity(capacity: usize) -> Self {
        match Self::try_with_capacity(capacity) {
            Some(q) => q,
            None => panic!("WorkQueue capacity must be in 1..=usize::MAX/4, got {capacity}"),
        }
    }

    /// A queue holding at most `capacity` items, or `None` if `capacity` is 0, too
    /// large for the positions (more than `usize::MAX / 4`), or more slots than the
    /// allocator can give (the slot array's size overflows or is refused).
    pub fn try_with_capacity(capacity: usize) -> Option<Self> {
        if capacity == 0 || capacity > usize::MAX / 4 {
            return None;
        }
        let mark_bit = (capacity + 1).next_power_of_two();
        let one_lap = mark_bit * 2;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        slots.extend((0..capacity).map(|i| Slot {
            stamp: P::AtomicUsize::new(i),
            value: P::Cell::new(MaybeUninit::uninit()),
        }));
        Some(WorkQueue {
            head: CachePadded(P::AtomicUsize::new(0)),
            tail: CachePadded(P::AtomicUsize::new(0)),
            slots: slots.into_boxed_slice(),
            mark_bit,
            one_lap,
            not_empty: Event::new(),
            not_full: Event::new(),
        })
    }

    /// Capacity fixed at construction.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Push without blocking. `Full` if no slot is free (or the next slot's previous
    /// item is still being read by a popper), `Closed` after [`WorkQueue::close`].
    pub fn try_push(&self, value: T) -> Result<(), PushError<T>> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            if tail & self.mark_bit != 0 {
                return Err(PushError::Closed(value));
            }
            let index = tail & (self.mark_bit - 1);
            let slot = &self.slots[index];
            // Acquire: pairs with the popper's Release stamp store, so its read of the
            // previous value happens before we overwrite the cell.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == tail {
                let next = self.next_position(tail);
                // Relaxed: the CAS's uniqueness and its order against `close` (same
                // word) are coherence's; the value travels on the stamps.
                match self.tail.compare_exchange_weak(
                    tail,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS made this thread the only owner of the slot
                        // until it stores the new stamp below.
                        slot.value.with_mut(|cell| unsafe { (*cell).write(value) });
                        // Release: publishes the value to the popper's Acquire stamp load.
                        slot.stamp.store(tail + 1, Ordering::Release);
                        self.not_empty.notify();
                        return Ok(());
                    }
                    Err(current) => tail = current,
                }
            } else if stamp.wrapping_add(self.one_lap) == tail + 1 {
                // The slot still holds the previous lap's item: full (or its popper is
                // still reading it).
                return Err(PushError::Full(value));
            } else {
                // Our view is stale: another pusher moved on. Back off, then re-read.
                // The spin hint is also what lets a model checker stop returning values
                // this thread has already seen (under loom it is `yield_now`).
                P::spin_loop();
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pop without blocking. `Empty` if nothing is ready, `Closed` once the queue was
    /// closed and everything pushed before has been popped.
    pub fn try_pop(&self) -> Result<T, PopError> {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let index = head & (self.mark_bit - 1);
            let slot = &self.slots[index];
            // Acquire: pairs with the pusher's Release stamp store (the value is written).
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head + 1 {
                let next = self.next_position(head);
                // Relaxed: uniqueness is the CAS's; the value travels on the stamps.
                match self.head.compare_exchange_weak(
                    head,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let value = slot.value.with(|cell| {
                            // SAFETY: the CAS made this thread the only owner of the slot,
                            // and the stamp (Acquire above) says the pusher finished
                            // writing it.
                            unsafe { (*cell).assume_init_read() }
                        });
                        // Release: hands the empty slot to the next lap's pusher.
                        slot.stamp
                            .store(head.wrapping_add(self.one_lap), Ordering::Release);
                        self.not_full.notify();
                        return Ok(value);
                    }
                    Err(current) => head = current,
                }
            } else if stamp == head {
                // Not yet written at this lap: empty, closed, or a push in flight.
                // Relaxed load: a marked `tail` is the final one (no claim succeeds
                // after the mark), so if it equals `head` nothing was or will be pushed
                // there; any older value only makes this `Empty`, which is always
                // allowed. SeqCst fence: not needed for that, but it makes the load
                // see every tail a SeqCst-fenced notifier published, so a waiter's
                // spin sees a fresh `tail`; without it loom explores every stale tail
                // on every spin (the spinning step model: 10 s, and over 300 s).
                P::fence(Ordering::SeqCst);
                let tail = self.tail.load(Ordering::Relaxed);
                if tail & !self.mark_bit == head && tail & self.mark_bit != 0 {
                    return Err(PopError::Closed);
                }
                return Err(PopError::Empty);
            } else {
                // Stale view: another popper moved on. Back off and re-read (as in
                // `try_push`).
                P::spin_loop();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Push, waiting while the queue is full (bounded spin, then park). Returns the
    /// item back if the queue is or becomes closed.
    pub fn push(&self, mut value: T) -> Result<(), Closed<T>> {
        let mut spins = 0;
        loop {
            match self.try_push(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Closed(v)) => return Err(Closed(v)),
                Err(PushError::Full(v)) => value = v,
            }
            if spins < P::SPIN_LIMIT {
                spins += 1;
                P::spin_loop();
            } else {
                self.not_full.wait_until(|| self.push_may_proceed());
            }
        }
    }

    /// Pop, waiting while the queue is empty (bounded spin, then park). `None` once
    /// the queue is closed and drained (end of stream).
    pub fn pop(&self) -> Option<T> {
        let mut spins = 0;
        loop {
            match self.try_pop() {
                Ok(v) => return Some(v),
                Err(PopError::Closed) => return None,
                Err(PopError::Empty) => {}
            }
            if spins < P::SPIN_LIMIT {
                spins += 1;
                P::spin_loop();
            } else {
                self.not_empty.wait_until(|| self.pop_may_proceed());
            }
        }
    }

    /// Close the queue (the seed's `epoch_done`): later pushes fail and return their
    /// item; poppers drain what is left, then see end of stream. Idempotent.
    pub fn close(&self) {
        // Relaxed: an RMW on `tail`, so coherence orders it with every claiming CAS (a
        // push claims before the mark and is delivered, or fails); the notifies' fences
        // wake the waiters.
        self.tail.fetch_or(self.mark_bit, Ordering::Relaxed);
        self.not_empty.notify();
        self.not_full.notify();
    }

    /// Whether [`WorkQueue::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.tail.load(Ordering::Relaxed) & self.mark_bit != 0
    }

    /// Total number of successful pushes so far.
    pub fn pushed(&self) -> usize {
        self.count(self.tail.load(Ordering::Relaxed) & !self.mark_bit)
    }

    /// Total number of successful pops so far.
    pub fn popped(&self) -> usize {
        self.count(self.head.load(Ordering::Relaxed))
    }

    /// Items currently in the queue (a snapshot; exact when no operation is running).
    pub fn len(&self) -> usize {
        loop {
            // Relaxed: a snapshot of two counters; no data is read on its strength.
            let tail = self.tail.load(Ordering::Relaxed) & !self.mark_bit;
            let head = self.head.load(Ordering::Relaxed);
            if self.tail.load(Ordering::Relaxed) & !self.mark_bit == tail {
                return self.count(tail).saturating_sub(self.count(head));
            }
        }
    }

    /// Whether the queue holds no items (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // ---- helpers ----------------------------------------------------------------

    /// The position after `pos`: next index, or index 0 of the next lap.
    fn next_position(&self, pos: usize) -> usize {
        let index = pos & (self.mark_bit - 1);
        if index + 1 < self.slots.len() {
            pos + 1
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Number of positions before `pos` (laps * capacity + index).
    fn count(&self, pos: usize) -> usize {
        let lap = pos / self.one_lap;
        lap.wrapping_mul(self.slots.len()) + (pos & (self.mark_bit - 1))
    }

    /// Parking condition for `push`: the tail slot is free, or the queue is closed,
    /// or our view was stale. False only while the tail slot holds an unpopped item.
    fn push_may_proceed(&self) -> bool {
        // Relaxed (here and below): read after the waiter's SeqCst fence in `Event`, so
        // the fence-fence rule makes them see every change a notifier made before its
        // own fence; `try_push` re-reads the stamp with Acquire before writing.
        let tail = self.tail.load(Ordering::Relaxed);
        if tail & self.mark_bit != 0 {
            return true;
        }
        let stamp = self.slots[tail & (self.mark_bit - 1)]
            .stamp
            .load(Ordering::Relaxed);
        stamp.wrapping_add(self.one_lap) != tail + 1
    }

    /// Parking condition for `pop`: the head slot is full, or the queue is closed, or
    /// our view was stale. False only while the head slot is unwritten and open.
    fn pop_may_proceed(&self) -> bool {
        // Relaxed: as in `push_may_proceed`; `try_pop` re-reads the stamp with Acquire.
        let head = self.head.load(Ordering::Relaxed);
        let stamp = self.slots[head & (self.mark_bit - 1)]
            .stamp
            .load(Ordering::Relaxed);
        if stamp != head {
            return true;
        }
        let tail = self.tail.load(Ordering::Relaxed);
        tail & self.mark_bit != 0 && tail & !self.mark_bit == head
    }
}

impl<T, P: Platform> Drop for WorkQueue<T, P> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight, so every slot between head and tail
        // holds an initialised item that nobody will pop.
        let mut head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed) & !self.mark_bit;
        while head != tail {
            let slot = &self.slots[head & (self.mark_bit - 1)];
            // SAFETY: positions in [head, tail) were published by completed pushes and
            // not popped; we own the queue exclusively.
            slot.value
                .with_mut(|cell| unsafe { (*cell).assume_init_drop() });
            head = self.next_position(head);
        }
    }
}

impl<T, P: Platform> core::fmt::Debug for WorkQueue<T, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WorkQueue")
            .field("capacity", &self.capacity())
            .field("pushed", &self.pushed())
            .field("popped", &self.popped())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T, P: Platform> Default for WorkQueue<T, P> {
    /// A queue of the seed design's default capacity (256).
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}
