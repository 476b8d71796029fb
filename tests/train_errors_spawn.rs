//! A thread the OS refuses to start is a typed error on every scheduler, not a panic.
//!
//! Owns one property: when the OS refuses a thread part-way through starting a run,
//! `Trainer::run` returns `TrainError::Spawn` naming the refused thread and the count
//! (or `SpawnPrefetch` for the lock-free pre-fetch thread), every thread already
//! started is joined (the call returns), no step ran, the state is untouched, and the
//! trainer is still usable: with the limit lifted it trains the reference's first step.
//!
//! How, without exhausting the machine: each case runs in a child process (this test
//! binary again, running only the ignored `child_refused_spawn`) with every thread
//! stack made large (`RUST_MIN_STACK`, 256 MiB of address space each, none of it
//! touched) and one malloc arena (`MALLOC_ARENA_MAX=1`); the child caps its own
//! address space (`RLIMIT_AS`) at its current size plus room for `allowed` stacks, so
//! the next start fails with the OS's own error. (`RLIMIT_NPROC` would not work here:
//! it counts every process of the user machine-wide and does not bind root.) Both
//! processes are bounded by the watchdog.
//! Must never run the child body in the parent, or touch other tests' files.
#![cfg(target_os = "linux")]

#[path = "watchdog/mod.rs"]
mod watchdog;

use cllm::data::MarkovSource;
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainError, TrainState, Trainer};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const STACK: u64 = 256 << 20;
const CASE_VAR: &str = "CLLM_SPAWN_CASE";

fn config() -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            n_positions: 8,
            vocab_size: 256,
        },
        batch: 2,
        micro_batches: 8,
        seq: 8,
        steps: 4,
        schedule: Schedule {
            max_lr: 1e-3,
            min_lr: 0.0,
            warmup: 0,
            total: 4,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 5,
    }
}

fn tokens() -> Arc<[u32]> {
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    source
        .generate(2_000, 1)
        .into_iter()
        .map(u32::from)
        .collect::<Vec<_>>()
        .into()
}

/// A case: scheduler, threads, how many thread stacks fit under the cap, and the
/// error expected (`Some(index)` for `Spawn`, `None` for `SpawnPrefetch`).
struct Case {
    scheduler: Scheduler,
    threads: usize,
    allowed: u64,
    refused: Option<usize>,
}

fn parse_case(s: &str) -> Case {
    let f: Vec<&str> = s.split(',').collect();
    let scheduler = match f[0] {
        "Barrier" => Scheduler::Barrier,
        "LockFree" => Scheduler::LockFree,
        other => panic!("unknown scheduler {other}"),
    };
    Case {
        scheduler,
        threads: f[1].parse().unwrap(),
        allowed: f[2].parse().unwrap(),
        refused: f[3].parse().ok(),
    }
}

/// This process's address-space size (`VmSize` in /proc/self/status), in bytes.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("a VmSize line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize in kB");
    kb * 1024
}

fn set_address_space_limit(bytes: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) };
    assert_eq!(rc, 0, "getrlimit");
    let new = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; lowering the soft limit needs no privilege.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &new) };
    assert_eq!(rc, 0, "setrlimit");
    old
}

fn restore_address_space_limit(old: libc::rlimit) {
    // SAFETY: `old` is the limit read by `set_address_space_limit` (soft <= hard).
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) };
    assert_eq!(rc, 0, "setrlimit (restore)");
}

/// The child's body (see the module doc); does nothing unless the parent set the case.
#[test]
#[ignore = "run by refused_thread_starts_are_typed_errors in a child process"]
fn child_refused_spawn() {
    let Ok(spec) = std::env::var(CASE_VAR) else {
        return;
    };
    // A case takes well under a second; a start that hangs instead of failing is
    // reported within 20 s.
    let _w = watchdog::Watchdog::arm(format!("child {spec}"), Duration::from_secs(20));
    let case = parse_case(&spec);
    let cfg = config();
    let data = tokens();
    let initial = TrainState::initial(&cfg).unwrap();
    let mut reference = Trainer::new(cfg, initial.clone()).unwrap();
    let first_loss = reference.step(&data).unwrap().loss;
    let mut trainer =
        Trainer::with_scheduler(cfg, initial.clone(), case.threads, case.scheduler).unwrap();
    let (workers, threads) = (trainer.workers(), trainer.threads());

    let cap = address_space() + case.allowed * (STACK + (1 << 20)) + (48 << 20);
    let old = set_address_space_limit(cap as libc::rlim_t);
    let mut steps = 0;
    let result = trainer.run(&data, 3, &mut |_| {
        steps += 1;
        true
    });
    restore_address_space_limit(old);

    let err = result.expect_err("the capped address space must refuse a thread");
    println!("refused: {err}");
    match (&err, case.refused) {
        (
            TrainError::Spawn {
                index,
                threads,
                source,
            },
            Some(want),
        ) => {
            assert_eq!((*index, *threads), (want, case.threads), "{err}");
            assert_eq!(
                err.to_string(),
                format!(
                    "could not start thread {want} of {}: {source}",
                    case.threads
                )
            );
        }
        (TrainError::SpawnPrefetch { .. }, None) => {}
        (other, _) => panic!("{spec}: {other:?}"),
    }
    assert_eq!(steps, 0, "no step may run");
    assert_eq!(trainer.step_count(), 0);
    assert_eq!(trainer.state(), &initial, "the state is untouched");
    assert_eq!(
        (trainer.workers(), trainer.threads()),
        (workers, threads),
        "every worker's context came back"
    );

    // Nothing half-done: with the limit lifted the same trainer takes the reference's
    // first step.
    let mut losses = Vec::new();
    trainer
        .run(&data, 1, &mut |s| {
            losses.push(s.loss.to_bits());
            true
        })
        .expect("the trainer is usable after a refused start");
    assert_eq!(losses, vec![first_loss.to_bits()]);
}

#[test]
fn refused_thread_starts_are_typed_errors() {
    let _w = watchdog::Watchdog::arm("refused thread starts", Duration::from_secs(240));
    let exe = std::env::current_exe().unwrap();
    // Start order: lock-free helpers, then workers, then the pre-fetch thread;
    // barrier workers 1.. in order. `allowed` stacks fit, so thread `allowed + 1`
    // (counting the caller as 0) is refused.
    let cases = [
        "Barrier,3,0,1",     // the first worker is refused
        "Barrier,8,2,3",     // workers 1, 2 start; worker 3 of 8 is refused
        "LockFree,3,1,2",    // 3 workers: worker 1 starts, worker 2 is refused
        "LockFree,12,2,3",   // 8 workers + 4 helpers: helpers 1, 2 start, 3 refused
        "LockFree,1,0,none", // no worker to start: the pre-fetch thread is refused
    ];
    for spec in cases {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "child_refused_spawn",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE_VAR, spec)
            .env("RUST_MIN_STACK", STACK.to_string())
            .env("MALLOC_ARENA_MAX", "1")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("running the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{spec}: child {:?}\n{stdout}\n{stderr}",
            out.status
        );
        // libtest prints the test's name on the same line, before the child's output.
        let refused = stdout
            .lines()
            .find_map(|l| l.find("refused: ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("{spec}: no error reported\n{stdout}"));
        let want = match spec.rsplit(',').next().unwrap() {
            "none" => "refused: could not start the pre-fetch thread: ".to_owned(),
            index => {
                let threads = spec.split(',').nth(1).unwrap();
                format!("refused: could not start thread {index} of {threads}: ")
            }
        };
        assert!(refused.starts_with(&want), "{spec}: {refused}");
    }
}
