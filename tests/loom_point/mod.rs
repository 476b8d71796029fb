//! `LoomPoint`: the `Loom` platform with a loom schedule point in front of every fence.
//!
//! Owns only this platform. Must never be used outside the loom tests, and never
//! changes `tests/common` (it reuses its newtypes).
//!
//! Why: under plain `Loom`, `Event::notify` runs its `fence(SeqCst)` in the same loom
//! step as the counter increment just before it (a fence is no schedule point), and
//! loom joins every SeqCst fence into one global causality. So a Relaxed increment
//! followed by `notify` behaves like a Release one: no schedule exists in which a
//! reader sees the new count before the fence. Here every fence first does a Relaxed
//! `fetch_add` on one shared per-execution loom atomic. That is a schedule point, and,
//! being an RMW on a shared location, it conflicts with every other fence's, so
//! loom's partial-order reduction explores switching to another thread between the
//! increment and the fence. It adds no synchronization (Relaxed carries no
//! happens-before), so a correct protocol stays correct and a counter whose
//! Release/Acquire pair is weakened shows as a loom causality report.
#![allow(dead_code)]

use crate::common::{Loom, LoomBool, LoomCell, LoomJoin, LoomUsize, LoomWait};
use cllm::sync::{Ordering, Platform};

loom::lazy_static! {
    /// The shared location every fence's schedule point touches (reset per execution).
    static ref POINT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
}

/// `Loom` with a schedule point before each fence (see the module doc).
pub struct LoomPoint;

impl Platform for LoomPoint {
    type AtomicUsize = LoomUsize;
    type AtomicBool = LoomBool;
    type Cell<T> = LoomCell<T>;
    type WaitCell = LoomWait;
    type JoinHandle<T: Send + 'static> = LoomJoin<T>;
    const SPIN_LIMIT: u32 = 0;

    fn fence(order: Ordering) {
        // Relaxed: a schedule point only; it must order nothing.
        POINT.fetch_add(1, Ordering::Relaxed);
        Loom::fence(order)
    }
    fn spin_loop() {
        Loom::spin_loop()
    }
    fn yield_now() {
        Loom::yield_now()
    }
    fn spawn<F, T>(name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Loom::spawn(name, f)
    }
}
