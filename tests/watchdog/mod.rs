//! Test-only: a bounded wait for tests that can block.
//!
//! Owns [`Watchdog`]: a guard that ends the whole test process with a message naming the
//! test if it is still alive after its limit, so a lost wake-up or a deadlock is a failure
//! with a name, not a CI job stuck until its hard limit. Dropping the guard (the test
//! finished, passed or panicked) disarms it.
//! Must never be used by production code, and never waits for a thread to "get somewhere":
//! it only bounds how long a test may take.
#![allow(dead_code)]

use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status of a process ended by a watchdog (distinct from a failed test's 101).
pub const HUNG_EXIT: i32 = 124;

/// Armed while alive; see the module doc.
pub struct Watchdog {
    disarmed: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Arm a watchdog for `what` (the test's name and case). After `limit` the process
    /// prints `watchdog: WHAT still running after LIMIT` and exits with [`HUNG_EXIT`].
    /// `CLLM_TEST_TIMEOUT_SCALE` (a float, default 1) stretches every limit, for slow
    /// machines and sanitizer builds.
    pub fn arm(what: impl Into<String>, limit: Duration) -> Watchdog {
        let limit = limit.mul_f64(scale());
        let what = what.into();
        let disarmed = Arc::new((Mutex::new(false), Condvar::new()));
        let shared = Arc::clone(&disarmed);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let (lock, cond) = &*shared;
                let deadline = Instant::now() + limit;
                let mut done = lock.lock();
                while !*done {
                    if cond.wait_until(&mut done, deadline).timed_out() && !*done {
                        // Straight to the process's stderr: `eprintln!` would go to
                        // libtest's capture buffer (inherited by spawned threads),
                        // which `exit` discards.
                        let mut err = std::io::stderr().lock();
                        let _ = writeln!(
                            err,
                            "watchdog: {what} still running after {limit:?} (hung?)"
                        );
                        let _ = err.flush();
                        std::process::exit(HUNG_EXIT);
                    }
                }
            })
            .expect("starting the watchdog thread");
        Watchdog {
            disarmed,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cond) = &*self.disarmed;
        *lock.lock() = true;
        cond.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn scale() -> f64 {
    std::env::var("CLLM_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}
