//! The watchdog (`tests/watchdog/mod.rs`) itself: an armed guard ends a hung test
//! process with status 124 and the test's name on stderr (also when libtest captures
//! the test's output), `CLLM_TEST_TIMEOUT_SCALE` stretches its limit, and a dropped
//! guard never fires and disarms at once.
//!
//! Owns only these checks. Each one re-runs this test binary as a child process
//! (`std::env::current_exe()`, filtered to one test, with `CHILD_ENV` naming what the
//! child does) so a firing watchdog ends the child, never this process. The parent waits
//! for the child with a deadline and kills it if it is still running then, so a broken
//! watchdog fails these tests instead of hanging them.

#[path = "watchdog/mod.rs"]
mod watchdog;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use watchdog::{Watchdog, HUNG_EXIT};

/// Set in the child: which role it plays.
const CHILD_ENV: &str = "CLLM_WATCHDOG_SELF_CHILD";

/// Name the hung child's watchdog reports.
const HUNG_NAME: &str = "watchdog_self: a wait nobody ends";

/// Block forever: a condition variable that is never notified (a lost wake-up).
fn block_forever() -> ! {
    let lock = parking_lot::Mutex::new(false);
    let cond = parking_lot::Condvar::new();
    let mut woken = lock.lock();
    loop {
        // Spurious wake-ups only loop again: nothing ever sets `woken`.
        cond.wait(&mut woken);
        if *woken {
            unreachable!("nobody notifies this condition variable");
        }
    }
}

/// Run test `test` of this binary as a child with `CHILD_ENV=role` (and `scale` as
/// `CLLM_TEST_TIMEOUT_SCALE`, or none), in libtest's default capturing mode. Returns its
/// output and how long it ran; kills it and fails if it runs longer than `deadline`.
fn run_child(
    test: &str,
    role: &str,
    scale: Option<&str>,
    deadline: Duration,
) -> (Output, Duration) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env_remove("CLLM_TEST_TIMEOUT_SCALE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = scale {
        cmd.env("CLLM_TEST_TIMEOUT_SCALE", s);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting the child test process");
    // Poll the child process (not a thread of ours) against the deadline.
    loop {
        match child.try_wait().expect("waiting for the child") {
            Some(_) => break,
            None if started.elapsed() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reaping the child");
                panic!(
                    "child {role} still running after {deadline:?}: the watchdog did not end it\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let ran = started.elapsed();
    (child.wait_with_output().expect("the child's output"), ran)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_hung_test_is_ended_with_124_and_its_name() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("hang") {
        let _w = Watchdog::arm(HUNG_NAME, Duration::from_millis(300));
        block_forever();
    }
    let (out, ran) = run_child(
        "a_hung_test_is_ended_with_124_and_its_name",
        "hang",
        None,
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(HUNG_EXIT), "stderr: {err}");
    assert!(
        err.contains(&format!("watchdog: {HUNG_NAME} still running after 300ms")),
        "stderr: {err}"
    );
    // It fired at the limit, not before.
    assert!(ran >= Duration::from_millis(300), "ended after {ran:?}");
}

#[test]
fn the_timeout_scale_stretches_the_limit() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("scaled") {
        let _w = Watchdog::arm(HUNG_NAME, Duration::from_millis(100));
        block_forever();
    }
    let (out, ran) = run_child(
        "the_timeout_scale_stretches_the_limit",
        "scaled",
        Some("4"),
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(HUNG_EXIT), "stderr: {err}");
    assert!(
        err.contains(&format!("watchdog: {HUNG_NAME} still running after 400ms")),
        "stderr: {err}"
    );
    assert!(ran >= Duration::from_millis(400), "ended after {ran:?}");
}

#[test]
fn a_dropped_watchdog_never_fires() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("disarmed") {
        let w = Watchdog::arm("watchdog_self: finished in time", Duration::from_millis(50));
        drop(w);
        // Outlive the limit several times over: an armed guard would have fired.
        std::thread::sleep(Duration::from_millis(500));
        return;
    }
    let (out, _) = run_child(
        "a_dropped_watchdog_never_fires",
        "disarmed",
        None,
        Duration::from_secs(60),
    );
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "status {:?}, stderr: {err}",
        out.status
    );
    assert!(!err.contains("watchdog:"), "stderr: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran the test"
    );
}

#[test]
fn dropping_a_watchdog_disarms_it_at_once() {
    let started = Instant::now();
    let w = Watchdog::arm("watchdog_self: dropped at once", Duration::from_secs(3600));
    drop(w);
    // Dropping wakes and joins the guard's thread; it does not wait for the limit.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "disarming took {:?}",
        started.elapsed()
    );
}
