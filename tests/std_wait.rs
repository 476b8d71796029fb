//! Stress tests of the production waiting code: `cllm::sync::Event` over `Std` (the
//! `parking_lot` wait cell, the SeqCst fences, real spinning and parking), which the
//! model checkers only reach through their own seam implementations.
//!
//! Owns: these std-thread properties only:
//! * a token ring: `N` threads pass one token round and round through a single
//!   `Event`; each waits until the turn counter names it, checks it really is its
//!   turn (a wait that returns before its condition holds fails here), and passes the
//!   token on. Only one of the waiters can go on after each notify, so a notify that
//!   wakes only some waiters, or a wake-up lost between a waiter's last check and its
//!   sleep, stops the ring: the watchdog then fails the test (exit 124) instead of
//!   letting it hang;
//! * a broadcast: one thread opens generation after generation while several wait for
//!   each; every waiter must see every generation;
//! * the step protocol on `Std` (production spin limits) with a panic or an error in
//!   every hook, run many times: the `tests/step_faults` checks, watchdog-bounded.
//!
//! Must never touch: `tests/common`, `tests/step_toy` or `tests/step_faults` beyond
//! using them, or any other protocol's tests.

use common::watchdog;

mod common;
mod step_faults;
mod step_toy;

use cllm::segments::PART_ALIGN;
use cllm::sync::{Event, Std};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use step_faults::{check, expected, run, Fault, Shape, Tally};

/// `threads` threads pass a token `rounds` times each through one event.
fn token_ring(threads: usize, rounds: usize) {
    let event = Event::<Std>::new();
    let turn = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for me in 0..threads {
            let (event, turn) = (&event, &turn);
            s.spawn(move || {
                for round in 0..rounds {
                    let mine = round * threads + me;
                    // Acquire: pairs with the previous holder's Release increment.
                    event.wait_until(|| turn.load(Ordering::Acquire) == mine);
                    let now = turn.load(Ordering::Acquire);
                    assert_eq!(now, mine, "thread {me} woke before its turn");
                    // Release: hands the turn (and everything before it) on.
                    turn.fetch_add(1, Ordering::Release);
                    event.notify();
                }
            });
        }
    });
    assert_eq!(turn.load(Ordering::Relaxed), threads * rounds);
}

#[test]
fn token_ring_of_two_threads() {
    let _w = watchdog::Watchdog::arm("std_wait token ring of 2", Duration::from_secs(30));
    token_ring(2, 100_000);
}

#[test]
fn token_ring_of_four_threads() {
    let _w = watchdog::Watchdog::arm("std_wait token ring of 4", Duration::from_secs(30));
    token_ring(4, 20_000);
}

/// One opener, `waiters` threads waiting for each of `generations` generations.
#[test]
fn broadcast_wakes_every_waiter_every_generation() {
    let _w = watchdog::Watchdog::arm("std_wait broadcast", Duration::from_secs(30));
    const WAITERS: usize = 3;
    const GENERATIONS: usize = 20_000;
    let open = Event::<Std>::new();
    let seen = Event::<Std>::new();
    let generation = AtomicUsize::new(0);
    let arrived = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WAITERS {
            let (open, seen, generation, arrived) = (&open, &seen, &generation, &arrived);
            s.spawn(move || {
                for g in 1..=GENERATIONS {
                    // Acquire: pairs with the opener's Release store.
                    open.wait_until(|| generation.load(Ordering::Acquire) >= g);
                    assert_eq!(
                        generation.load(Ordering::Acquire),
                        g,
                        "a skipped generation"
                    );
                    // Release: pairs with the opener's Acquire wait.
                    arrived.fetch_add(1, Ordering::Release);
                    seen.notify();
                }
            });
        }
        for g in 1..=GENERATIONS {
            // Release: pairs with the waiters' Acquire.
            generation.store(g, Ordering::Release);
            open.notify();
            // Acquire: every waiter saw generation `g` before `g + 1` opens.
            seen.wait_until(|| arrived.load(Ordering::Acquire) == g * WAITERS);
        }
    });
}

/// The notify lands at a varying moment while the waiter enters its wait: both start
/// each round together from a spin barrier, then each spins a round-dependent few
/// hints (the notifier a different few), so sooner or later the notify falls between
/// the waiter's last condition check and its sleep, where only the wait cell's lock
/// keeps the wake-up from being lost.
#[test]
fn notify_racing_a_waiter_entering_its_wait() {
    let _w = watchdog::Watchdog::arm("std_wait racing notify", Duration::from_secs(30));
    const ROUNDS: usize = 100_000;
    let event = Event::<Std>::new();
    let flag = AtomicUsize::new(0);
    let start = AtomicUsize::new(0);
    // Both threads arrive at round `r`'s start (rounds count from 1, 2 arrivals each);
    // spin without yielding for a while, so that two running threads leave together.
    let barrier = |r: usize| {
        start.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        // Acquire: pairs with the other thread's AcqRel arrival.
        while start.load(Ordering::Acquire) < 2 * r {
            spins += 1;
            if spins.is_multiple_of(4096) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    };
    let delay = |n: usize| {
        for _ in 0..n {
            std::hint::spin_loop();
        }
    };
    std::thread::scope(|s| {
        let (event, flag, barrier) = (&event, &flag, &barrier);
        s.spawn(move || {
            for r in 1..=ROUNDS {
                barrier(r);
                delay((r * 13) % 31);
                // Acquire: pairs with the notifier's Release store.
                event.wait_until(|| flag.load(Ordering::Acquire) >= r);
                assert!(flag.load(Ordering::Acquire) >= r, "woke before round {r}");
            }
        });
        for r in 1..=ROUNDS {
            barrier(r);
            delay((r * 37) % 97);
            // Release: pairs with the waiter's Acquire.
            flag.store(r, Ordering::Release);
            event.notify();
        }
    });
}

// ---- the step protocol on the production platform ------------------------------------

const SHAPE: Shape = Shape {
    workers: 3,
    n_slots: 5,
    n_parts: 3,
    len: 3 * PART_ALIGN + 5,
    steps: 4,
};

/// `runs` runs of the step protocol on `Std` with `fault`, each checked; returns the
/// tally.
fn step_runs(fault: Fault, runs: usize) -> (usize, usize, usize) {
    common::quiet_panics(&[step_faults::PANIC]);
    let full = expected(SHAPE, SHAPE.steps);
    let tally = Tally::default();
    for _ in 0..runs {
        let out = run::<Std>(SHAPE, fault);
        tally.add(check(SHAPE, fault, &out, &full));
    }
    tally.get()
}

#[test]
fn step_protocol_on_std_equals_the_reference() {
    let _w = watchdog::Watchdog::arm("std_wait step protocol", Duration::from_secs(30));
    let (completed, _, _) = step_runs(Fault::None, 300);
    assert_eq!(completed, 300);
}

#[test]
fn step_protocol_on_std_survives_a_fault_in_every_hook() {
    let _w = watchdog::Watchdog::arm("std_wait step faults", Duration::from_secs(60));
    for fault in [
        Fault::ComputePanic { step: 1, slot: 2 },
        Fault::ComputeErr { step: 2, slot: 0 },
        Fault::SummarizePanic { step: 0, part: 1 },
        Fault::UpdatePanic { step: 2, part: 2 },
        Fault::UpdatePanic { step: 3, part: 0 },
        Fault::DecidePanic { step: 1, worker: 0 },
        Fault::DecidePanic { step: 3, worker: 1 },
        Fault::DecideErr { step: 2, worker: 0 },
        Fault::DecideErr { step: 0, worker: 2 },
    ] {
        let (completed, by_leader, by_worker) = step_runs(fault, 100);
        eprintln!("std_wait {fault:?}: {completed} completed, {by_leader} by the leader, {by_worker} by a worker");
        assert_eq!(completed + by_leader + by_worker, 100);
    }
}
