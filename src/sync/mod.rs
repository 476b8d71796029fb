//! The atomics seam: everything the concurrency protocols touch, behind one trait.
//!
//! Owns: the [`Platform`] trait and its capability traits, the zero-cost [`Std`]
//! implementation, and the two small building blocks every protocol shares
//! ([`Event`] for blocking wait/notify, [`CachePadded`] for false-sharing control).
//! Must never touch: models, tensors, training, or any test-only crate. The loom and
//! shuttle implementations of [`Platform`] live under `tests/`, never here, so the
//! production build carries neither.
//!
//! # Design
//! A protocol is written once as `Thing<T, P: Platform = Std>` and only ever reaches
//! shared memory through `P`:
//!
//! | capability | trait | std | loom / shuttle (tests) |
//! |---|---|---|---|
//! | word-sized atomic integer | [`AtomicWord`] | `AtomicUsize` | their `AtomicUsize` |
//! | atomic flag | [`AtomicFlag`] | `AtomicBool` | their `AtomicBool` |
//! | interior-mutable cell with tracked access | [`SyncCell`] | `UnsafeCell` | `loom::cell::UnsafeCell` / plain cell |
//! | memory fence | [`Platform::fence`] | `atomic::fence` | their `fence` |
//! | spin / yield hints | [`Platform::spin_loop`], [`Platform::yield_now`] | `hint` / `thread` | their `yield_now` |
//! | block until a condition holds | [`WaitCell`] | `parking_lot` mutex + condvar | their `Mutex` + `Condvar` |
//! | threads | [`Platform::spawn`], [`Join`] | `std::thread` | their `thread` |
//!
//! `parking_lot` rather than `std::sync` backs [`WaitCell`] for [`Std`] because it is
//! compiled from source and therefore visible to ThreadSanitizer (std's own mutex is
//! not, and produces false reports under contention).
//!
//! [`Platform::SPIN_LIMIT`] (and [`Platform::LONG_SPIN_LIMIT`]) bound how long a
//! blocking operation spins before it parks; the model checkers' default platforms set
//! them to 0 because spinning explodes their state space, and their spinning variants
//! (tests only) to 1 or 2 so that the spin-then-park path production runs is checked.

mod event;
mod padded;
mod std_impl;

pub use event::Event;
pub use padded::CachePadded;
pub use std_impl::Std;

pub use core::sync::atomic::Ordering;

/// A word-sized atomic integer (the subset of `AtomicUsize` the protocols use).
pub trait AtomicWord: Send + Sync {
    /// A new atomic holding `v`. Not `const`: loom's constructors are not.
    fn new(v: usize) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> usize;
    /// Atomic store.
    fn store(&self, v: usize, order: Ordering);
    /// Atomic add returning the previous value (wrapping).
    fn fetch_add(&self, v: usize, order: Ordering) -> usize;
    /// Atomic subtract returning the previous value (wrapping).
    fn fetch_sub(&self, v: usize, order: Ordering) -> usize;
    /// Atomic bitwise or returning the previous value.
    fn fetch_or(&self, v: usize, order: Ordering) -> usize;
    /// Strong compare-and-exchange.
    fn compare_exchange(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize>;
    /// Weak compare-and-exchange (may fail spuriously on std; never does under loom).
    fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize>;
}

/// An atomic boolean (the subset of `AtomicBool` the protocols use).
pub trait AtomicFlag: Send + Sync {
    /// A new flag holding `v`.
    fn new(v: bool) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> bool;
    /// Atomic store.
    fn store(&self, v: bool, order: Ordering);
    /// Atomic swap returning the previous value.
    fn swap(&self, v: bool, order: Ordering) -> bool;
}

/// An `UnsafeCell` whose accesses a model checker can track.
///
/// Access goes through closures over raw pointers (loom's shape), so loom can report
/// two overlapping accesses where one is a write.
pub trait SyncCell<T> {
    /// A new cell holding `value`.
    fn new(value: T) -> Self;
    /// Shared (read) access to the contents.
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R;
    /// Exclusive (write) access to the contents.
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R;
}

/// The blocking primitive: a mutex protecting nothing plus a condition variable.
///
/// Callers never use it directly; [`Event`] adds the lock-free fast path on top.
pub trait WaitCell: Send + Sync {
    /// A new, unlocked wait cell.
    fn new() -> Self;
    /// Lock, then wait on the condition variable until `ready()` returns true
    /// (`ready` is evaluated with the lock held), then unlock.
    fn wait_until(&self, ready: &mut dyn FnMut() -> bool);
    /// Lock, wake every waiter, unlock.
    fn notify_all(&self);
}

/// A joinable thread handle.
pub trait Join<T> {
    /// Wait for the thread; `Err` carries its panic payload.
    fn join(self) -> std::thread::Result<T>;
}

/// Everything a protocol may use to talk to other threads.
pub trait Platform: Sized + Send + Sync + 'static {
    /// Word-sized atomic integer.
    type AtomicUsize: AtomicWord;
    /// Atomic boolean.
    type AtomicBool: AtomicFlag;
    /// Interior-mutable cell with tracked access.
    type Cell<T>: SyncCell<T>;
    /// Mutex + condition variable, for parking.
    type WaitCell: WaitCell;
    /// Handle of a spawned thread.
    type JoinHandle<T: Send + 'static>: Join<T>;

    /// How many times a blocking operation retries with [`Platform::spin_loop`]
    /// before it parks. Model checkers use 0 (or, on their spinning variants, 1 or 2).
    const SPIN_LIMIT: u32;

    /// The same for waits expected to be long (the step boundary, where the other
    /// workers are finishing a job's worth of work): `32 * SPIN_LIMIT` unless a
    /// platform says otherwise. The model checkers' spinning variants keep it as
    /// small as `SPIN_LIMIT`, so the spin path is explored, not unrolled.
    const LONG_SPIN_LIMIT: u32 = Self::SPIN_LIMIT.saturating_mul(32);

    /// A memory fence.
    fn fence(order: Ordering);
    /// A busy-wait hint (one iteration of a spin loop).
    fn spin_loop();
    /// Give the rest of this time slice to another thread.
    fn yield_now();
    /// Spawn a named thread.
    fn spawn<F, T>(name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;
}
