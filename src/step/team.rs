//! Owns [`Team`]: one leader thread and a fixed set of helper threads that run the
//! parts of the leader's fork/join tasks (the seed notes' intra-batch parallelism:
//! the leader is a worker computing a micro-batch, the helpers split its matmuls).
//! Must never know what a task computes, and never let a helper touch a task after
//! the leader's `run` has returned.
//!
//! # Protocol (team of `size` = 1 leader + `size - 1` helpers; task `g` = 1, 2, ...)
//! * run (leader): write the task (a pointer to the caller's closure) into the task
//!   cell, `generation = g` (Release: the task is written), notify; run part 0; wait
//!   until `done = g * (size - 1)` (Acquire: every helper's part is finished and no
//!   helper reads the task any more). Only then return, so the closure outlives every
//!   use, and only then may task `g + 1` overwrite the cell.
//! * help (helper `h`, `1 <= h < size`): wait until `generation > seen` (Acquire),
//!   `seen += 1` (it is exactly `seen + 1`: the leader waits for this helper before
//!   publishing another), read the task, run part `h`, `done += 1` (Release), notify.
//!   A panicking part is caught and recorded; `done` still counts it, and the leader
//!   re-raises the panic on its own thread after the join.
//! * stop (leader, between tasks): `stopped = true`, notify; helpers waiting for a
//!   task return.

use crate::sync::{AtomicFlag, AtomicWord, CachePadded, Event, Ordering, Platform, Std, SyncCell};

/// A task as the helpers see it: the leader's closure with its lifetime erased.
#[derive(Clone, Copy)]
struct Task(Option<*const (dyn Fn(usize) + Sync + 'static)>);

/// A leader and its helpers (see the module doc).
pub struct Team<P: Platform = Std> {
    size: usize,
    generation: CachePadded<P::AtomicUsize>,
    done: CachePadded<P::AtomicUsize>,
    task: P::Cell<Task>,
    stopped: P::AtomicBool,
    panicked: P::AtomicBool,
    task_event: Event<P>,
    done_event: Event<P>,
}

// SAFETY: the task pointer is only dereferenced by helpers between observing its
// generation and counting themselves done, while the leader's `run` keeps the closure
// alive (module doc); the closure itself is `Sync`.
unsafe impl<P: Platform> Send for Team<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for Team<P> {}

impl<P: Platform> Team<P> {
    /// A team of `size` members (at least 1): the leader and `size - 1` helpers.
    pub fn new(size: usize) -> Self {
        Team {
            size: size.max(1),
            generation: CachePadded(P::AtomicUsize::new(0)),
            done: CachePadded(P::AtomicUsize::new(0)),
            task: P::Cell::new(Task(None)),
            stopped: P::AtomicBool::new(false),
            panicked: P::AtomicBool::new(false),
            task_event: Event::new(),
            done_event: Event::new(),
        }
    }

    /// Members, leader included (the number of parts of every task).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Leader: run `f(0)` here and `f(h)` on helper `h` for every helper, and return
    /// when all have returned. Re-raises a helper's panic here.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.size == 1 {
            return f(0);
        }
        // Relaxed: only the leader writes `generation`.
        let g = self.generation.load(Ordering::Relaxed) + 1;
        // SAFETY: erases the closure's lifetime; helpers use it only until they count
        // themselves done, and this function waits for that before returning.
        let erased: &'static (dyn Fn(usize) + Sync) = unsafe { core::mem::transmute(f) };
        self.task.with_mut(|t| {
            // SAFETY: no helper reads the cell now: each finished the previous task
            // (waited for below) and the next is not published yet.
            unsafe { *t = Task(Some(erased as *const _)) }
        });
        // Release: pairs with the helpers' Acquire in `help`: the task is written.
        self.generation.store(g, Ordering::Release);
        self.task_event.notify();
        // If our own part panics, still wait for the helpers before unwinding: they
        // may be using the closure.
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        let target = g * (self.size - 1);
        // Acquire: pairs with every helper's Release increment: their parts are
        // finished and they no longer read the task.
        self.done_event
            .wait_until(|| self.done.load(Ordering::Acquire) >= target);
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
        // Relaxed: a flag read after the Acquire above, which ordered its store.
        if self.panicked.swap(false, Ordering::Relaxed) {
            panic!("a helper thread panicked in its part of a split matmul");
        }
    }

    /// Helper `helper` (`1..size`): run the parts of every task until [`Team::stop`].
    /// Returns the time spent running parts (for utilization reports).
    pub fn help(&self, helper: usize) -> std::time::Duration {
        let mut busy = std::time::Duration::ZERO;
        let mut seen = 0;
        loop {
            // Acquire: pairs with the leader's Release store of `generation`.
            let published = || self.generation.load(Ordering::Acquire) > seen;
            // Relaxed: a flag; `notify`'s fence orders it before our re-check.
            let stopped = || self.stopped.load(Ordering::Relaxed);
            self.task_event.wait_until(|| published() || stopped());
            if !published() {
                return busy;
            }
            seen += 1;
            let task = self.task.with(|t| {
                // SAFETY: the leader wrote the cell before publishing `seen` (acquired
                // above) and rewrites it only after we count ourselves done.
                unsafe { *t }
            });
            if let Task(Some(f)) = task {
                let started = std::time::Instant::now();
                // SAFETY: the closure is alive until the leader sees our `done`.
                let f = unsafe { &*f };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(helper))).is_err() {
                    // Relaxed: published by the Release increment below.
                    self.panicked.store(true, Ordering::Relaxed);
                }
                busy += started.elapsed();
            }
            // Release: pairs with the leader's Acquire wait in `run`.
            self.done.fetch_add(1, Ordering::Release);
            self.done_event.notify();
        }
    }

    /// Leader, between tasks: let every helper return from [`Team::help`].
    pub fn stop(&self) {
        // Relaxed: a flag; the notify's SeqCst fence orders it before the re-check.
        self.stopped.store(true, Ordering::Relaxed);
        self.task_event.notify();
    }
}
