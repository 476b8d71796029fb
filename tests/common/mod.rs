//! Test-only implementations of the `cllm::sync::Platform` seam: `Loom` and `Shuttle`
//! (which never spin), and `Spinning<P, N>` (`LoomSpin`, `ShuttleSpin`), the same
//! checkers spinning `N` times before every park as production does.
//! Owns the newtypes that satisfy the orphan rule and the model-checker settings.
//! Must never be used by production code (this directory is not part of the library).
#![allow(dead_code)]

#[path = "../watchdog/mod.rs"]
pub mod watchdog;

use cllm::sync::{AtomicFlag, AtomicWord, Join, Ordering, Platform, Std, SyncCell, WaitCell};

/// Implements the seam for one model checker whose API mirrors std's
/// (`$krate::sync::{atomic, Mutex, Condvar}`, `$krate::thread`).
macro_rules! checker_platform {
    ($platform:ident, $krate:ident, $usize:ident, $bool:ident, $wait:ident, $join:ident, cell = $cell:ty) => {
        /// Model-checked platform.
        pub struct $platform;
        /// Atomic word newtype (orphan rule).
        pub struct $usize($krate::sync::atomic::AtomicUsize);
        /// Atomic flag newtype (orphan rule).
        pub struct $bool($krate::sync::atomic::AtomicBool);
        /// Mutex + condvar.
        pub struct $wait {
            lock: $krate::sync::Mutex<()>,
            cond: $krate::sync::Condvar,
        }
        /// Join handle newtype.
        pub struct $join<T>($krate::thread::JoinHandle<T>);

        impl AtomicWord for $usize {
            fn new(v: usize) -> Self {
                $usize($krate::sync::atomic::AtomicUsize::new(v))
            }
            fn load(&self, o: Ordering) -> usize {
                self.0.load(o)
            }
            fn store(&self, v: usize, o: Ordering) {
                self.0.store(v, o)
            }
            fn fetch_add(&self, v: usize, o: Ordering) -> usize {
                self.0.fetch_add(v, o)
            }
            fn fetch_sub(&self, v: usize, o: Ordering) -> usize {
                self.0.fetch_sub(v, o)
            }
            fn fetch_or(&self, v: usize, o: Ordering) -> usize {
                self.0.fetch_or(v, o)
            }
            fn compare_exchange(
                &self,
                c: usize,
                n: usize,
                s: Ordering,
                f: Ordering,
            ) -> Result<usize, usize> {
                self.0.compare_exchange(c, n, s, f)
            }
            fn compare_exchange_weak(
                &self,
                c: usize,
                n: usize,
                s: Ordering,
                f: Ordering,
            ) -> Result<usize, usize> {
                self.0.compare_exchange_weak(c, n, s, f)
            }
        }

        impl AtomicFlag for $bool {
            fn new(v: bool) -> Self {
                $bool($krate::sync::atomic::AtomicBool::new(v))
            }
            fn load(&self, o: Ordering) -> bool {
                self.0.load(o)
            }
            fn store(&self, v: bool, o: Ordering) {
                self.0.store(v, o)
            }
            fn swap(&self, v: bool, o: Ordering) -> bool {
                self.0.swap(v, o)
            }
        }

        impl WaitCell for $wait {
            fn new() -> Self {
                $wait {
                    lock: $krate::sync::Mutex::new(()),
                    cond: $krate::sync::Condvar::new(),
                }
            }
            fn wait_until(&self, ready: &mut dyn FnMut() -> bool) {
                let mut guard = self.lock.lock().unwrap();
                while !ready() {
                    guard = self.cond.wait(guard).unwrap();
                }
            }
            fn notify_all(&self) {
                let _guard = self.lock.lock().unwrap();
                self.cond.notify_all();
            }
        }

        impl<T> Join<T> for $join<T> {
            fn join(self) -> std::thread::Result<T> {
                self.0.join()
            }
        }

        impl Platform for $platform {
            type AtomicUsize = $usize;
            type AtomicBool = $bool;
            type Cell<T> = $cell;
            type WaitCell = $wait;
            type JoinHandle<T: Send + 'static> = $join<T>;
            const SPIN_LIMIT: u32 = 0;
            fn fence(o: Ordering) {
                $krate::sync::atomic::fence(o)
            }
            fn spin_loop() {
                $krate::thread::yield_now()
            }
            fn yield_now() {
                $krate::thread::yield_now()
            }
            fn spawn<F, T>(_name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
            where
                F: FnOnce() -> T + Send + 'static,
                T: Send + 'static,
            {
                Ok($join($krate::thread::spawn(f)))
            }
        }
    };
}

/// loom's tracked `UnsafeCell`.
pub struct LoomCell<T>(loom::cell::UnsafeCell<T>);

impl<T> SyncCell<T> for LoomCell<T> {
    fn new(value: T) -> Self {
        LoomCell(loom::cell::UnsafeCell::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

checker_platform!(Loom, loom, LoomUsize, LoomBool, LoomWait, LoomJoin, cell = LoomCell<T>);
// shuttle has no tracked cell; std's plain cell is enough (shuttle finds lost items
// and lost wake-ups, loom finds data races).
checker_platform!(Shuttle, shuttle, ShuttleUsize, ShuttleBool, ShuttleWait, ShuttleJoin, cell = <Std as Platform>::Cell<T>);

/// Run `f` under loom, exhaustively within a preemption bound (default 2;
/// `LOOM_MAX_PREEMPTIONS` overrides it when set and non-empty).
pub fn loom_model<F: Fn() + Sync + Send + 'static>(f: F) {
    let _w = bound(std::time::Duration::from_secs(900));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
    );
    builder.check(f);
}

/// A watchdog over the calling test (libtest names its thread after the test): a model
/// check that stops making progress fails with the test named instead of stalling CI.
fn bound(limit: std::time::Duration) -> watchdog::Watchdog {
    let name = std::thread::current()
        .name()
        .unwrap_or("a model-checked test")
        .to_owned();
    watchdog::Watchdog::arm(name, limit)
}

/// Iterations per shuttle scheduler (`CLLM_SHUTTLE_ITERS` overrides; default 1000).
pub fn shuttle_iterations() -> usize {
    std::env::var("CLLM_SHUTTLE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Run `f` under shuttle's random scheduler and then its PCT scheduler, with a stack
/// large enough for real code; a failure prints the schedule to replay it.
pub fn shuttle_check<F: Fn() + Send + Sync + 'static>(f: F) {
    use shuttle::scheduler::{PctScheduler, RandomScheduler};
    let f = std::sync::Arc::new(f);
    let iterations = shuttle_iterations();
    // Shuttle reports a deadlock itself; this bounds a livelock (300 s per 1,000 iterations).
    let _w =
        bound(std::time::Duration::from_secs(300).mul_f64(iterations.max(1000) as f64 / 1000.0));
    let mut config = shuttle::Config::new();
    config.stack_size = 1 << 20;
    let g = std::sync::Arc::clone(&f);
    shuttle::Runner::new(RandomScheduler::new(iterations), config.clone()).run(move || g());
    shuttle::Runner::new(PctScheduler::new(3, iterations), config).run(move || f());
}

/// Silence the default panic message of panics a test injects on purpose (payloads
/// starting with one of `prefixes`); every other panic still prints. Installed once
/// per test binary.
#[allow(dead_code)]
pub fn quiet_panics(prefixes: &'static [&'static str]) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            let injected = text.is_some_and(|s| prefixes.iter().any(|p| s.starts_with(p)));
            if !injected {
                previous(info);
            }
        }));
    });
}

/// A checker platform `P` that spins like production before it parks: every blocking
/// operation re-checks its condition up to `N` times (`SPIN_LIMIT` and
/// `LONG_SPIN_LIMIT` both `N`, so the step protocol's longer spins stay small too),
/// with `P::spin_loop` (the checker's yield) between. Everything else is `P`'s.
pub struct Spinning<P, const N: u32>(core::marker::PhantomData<P>);

impl<P: Platform, const N: u32> Platform for Spinning<P, N> {
    type AtomicUsize = P::AtomicUsize;
    type AtomicBool = P::AtomicBool;
    type Cell<T> = P::Cell<T>;
    type WaitCell = P::WaitCell;
    type JoinHandle<T: Send + 'static> = P::JoinHandle<T>;
    const SPIN_LIMIT: u32 = N;
    const LONG_SPIN_LIMIT: u32 = N;
    fn fence(o: Ordering) {
        P::fence(o)
    }
    fn spin_loop() {
        P::spin_loop()
    }
    fn yield_now() {
        P::yield_now()
    }
    fn spawn<F, T>(name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        P::spawn(name, f)
    }
}

/// loom, spinning once before every park (the spin-then-park path production runs).
pub type LoomSpin = Spinning<Loom, 1>;
/// shuttle, spinning twice before every park.
pub type ShuttleSpin = Spinning<Shuttle, 2>;
