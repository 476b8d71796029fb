//! Owns [`Event`]: "block until a condition over shared atomics holds", with a
//! lock-free fast path for the side that makes conditions true.
//!
//! Must never hold protocol state itself: the condition lives in the caller's atomics.
//!
//! # Protocol (a Dekker handshake over two SeqCst fences)
//! Waiter: `waiters += 1; fence(SeqCst); lock; while !ready() { wait }; unlock; waiters -= 1`.
//! Notifier (after its state change): `fence(SeqCst); if waiters != 0 { lock; notify_all }`.
//!
//! Either the notifier's fence precedes the waiter's in the single total order of
//! SeqCst fences, and then every read `ready()` makes sees the state change; or the
//! waiter's fence comes first, and then the notifier's load sees `waiters != 0` and
//! takes the lock, which either happens before the waiter evaluates `ready()` (mutex
//! hand-off makes the change visible) or after it started waiting (the notify wakes
//! it). So no wake-up is lost, and a notifier with no waiters pays one fence and one
//! load of a line nobody writes.

use super::{AtomicWord, Ordering, Platform, WaitCell};

/// A wait/notify point for one kind of condition (for example "queue not empty").
pub struct Event<P: Platform> {
    waiters: P::AtomicUsize,
    cell: P::WaitCell,
}

impl<P: Platform> Default for Event<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Platform> Event<P> {
    /// A new event with no waiters.
    pub fn new() -> Self {
        Event {
            waiters: P::AtomicUsize::new(0),
            cell: P::WaitCell::new(),
        }
    }

    /// Block until `ready()` is true. `ready` must read the shared state afresh.
    pub fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst: pairs with the fence in `notify` (Dekker: registration vs state change).
        P::fence(Ordering::SeqCst);
        self.cell.wait_until(&mut ready);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wake every waiter. Call after the state change that may make their condition true.
    pub fn notify(&self) {
        // SeqCst: pairs with the fence in `wait_until` (Dekker: state change vs registration).
        P::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.cell.notify_all();
        }
    }
}
