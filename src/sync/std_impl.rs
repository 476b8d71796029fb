//! Owns [`Std`], the production [`Platform`]: thin, inlined forwarding to
//! `core::sync::atomic`, `core::cell::UnsafeCell`, `parking_lot` and `std::thread`.
//! Must never add behaviour of its own: every line here is a one-to-one mapping.

use super::{AtomicFlag, AtomicWord, Join, Platform, SyncCell, WaitCell};
use core::sync::atomic::{self, Ordering};

/// The production platform. Zero-sized; every operation inlines to the std one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Std;

impl AtomicWord for atomic::AtomicUsize {
    #[inline(always)]
    fn new(v: usize) -> Self {
        atomic::AtomicUsize::new(v)
    }
    #[inline(always)]
    fn load(&self, order: Ordering) -> usize {
        atomic::AtomicUsize::load(self, order)
    }
    #[inline(always)]
    fn store(&self, v: usize, order: Ordering) {
        atomic::AtomicUsize::store(self, v, order)
    }
    #[inline(always)]
    fn fetch_add(&self, v: usize, order: Ordering) -> usize {
        atomic::AtomicUsize::fetch_add(self, v, order)
    }
    #[inline(always)]
    fn fetch_sub(&self, v: usize, order: Ordering) -> usize {
        atomic::AtomicUsize::fetch_sub(self, v, order)
    }
    #[inline(always)]
    fn fetch_or(&self, v: usize, order: Ordering) -> usize {
        atomic::AtomicUsize::fetch_or(self, v, order)
    }
    #[inline(always)]
    fn compare_exchange(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        atomic::AtomicUsize::compare_exchange(self, current, new, success, failure)
    }
    #[inline(always)]
    fn compare_exchange_weak(
        &self,
        current: usize,
        new: usize,
        success: Ordering,
        failure: Ordering,
    ) -> Result<usize, usize> {
        atomic::AtomicUsize::compare_exchange_weak(self, current, new, success, failure)
    }
}

impl AtomicFlag for atomic::AtomicBool {
    #[inline(always)]
    fn new(v: bool) -> Self {
        atomic::AtomicBool::new(v)
    }
    #[inline(always)]
    fn load(&self, order: Ordering) -> bool {
        atomic::AtomicBool::load(self, order)
    }
    #[inline(always)]
    fn store(&self, v: bool, order: Ordering) {
        atomic::AtomicBool::store(self, v, order)
    }
    #[inline(always)]
    fn swap(&self, v: bool, order: Ordering) -> bool {
        atomic::AtomicBool::swap(self, v, order)
    }
}

/// `core::cell::UnsafeCell` behind the [`SyncCell`] interface.
#[derive(Debug)]
pub struct StdCell<T>(core::cell::UnsafeCell<T>);

impl<T> SyncCell<T> for StdCell<T> {
    #[inline(always)]
    fn new(value: T) -> Self {
        StdCell(core::cell::UnsafeCell::new(value))
    }
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline(always)]
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// `parking_lot` mutex + condvar behind the [`WaitCell`] interface.
#[derive(Debug, Default)]
pub struct StdWaitCell {
    lock: parking_lot::Mutex<()>,
    cond: parking_lot::Condvar,
}

impl WaitCell for StdWaitCell {
    fn new() -> Self {
        Self::default()
    }
    fn wait_until(&self, ready: &mut dyn FnMut() -> bool) {
        let mut guard = self.lock.lock();
        while !ready() {
            self.cond.wait(&mut guard);
        }
    }
    fn notify_all(&self) {
        let _guard = self.lock.lock();
        self.cond.notify_all();
    }
}

impl<T> Join<T> for std::thread::JoinHandle<T> {
    fn join(self) -> std::thread::Result<T> {
        std::thread::JoinHandle::join(self)
    }
}

impl Platform for Std {
    type AtomicUsize = atomic::AtomicUsize;
    type AtomicBool = atomic::AtomicBool;
    type Cell<T> = StdCell<T>;
    type WaitCell = StdWaitCell;
    type JoinHandle<T: Send + 'static> = std::thread::JoinHandle<T>;

    const SPIN_LIMIT: u32 = 128;

    #[inline(always)]
    fn fence(order: Ordering) {
        atomic::fence(order)
    }
    #[inline(always)]
    fn spin_loop() {
        core::hint::spin_loop()
    }
    #[inline(always)]
    fn yield_now() {
        std::thread::yield_now()
    }
    fn spawn<F, T>(name: &str, f: F) -> std::io::Result<Self::JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        std::thread::Builder::new().name(name.to_owned()).spawn(f)
    }
}
