//! loom model checks of `cllm::step::Team` (the intra-batch fork/join of a worker and
//! its helpers) over the `Loom` platform, exhaustive within a preemption bound of 2
//! (`LOOM_MAX_PREEMPTIONS` overrides).
//!
//! Owns: the Team properties only. A leader and 2 helpers run 2 tasks in a row; each
//! part writes its own loom-tracked cell, and the leader reads every cell right after
//! `run` returns, so a `run` that returned before a helper finished (or a helper that
//! ran a task twice, or read the task after the leader moved on) is a loom causality
//! report or a wrong value. A helper that panics must make the leader's `run` panic,
//! never hang. Must never touch: `tests/common` (used, not changed).

mod common;

use cllm::step::Team;
use cllm::sync::SyncCell;
use common::{loom_model, Loom, LoomCell};
use loom::sync::Arc;
use loom::thread;

const SIZE: usize = 3;

/// One loom-tracked result cell per part.
struct Cells(Vec<LoomCell<usize>>);

// SAFETY: every access goes through loom's tracked cell, so an access the Team
// protocol fails to order is reported by loom instead of racing silently.
unsafe impl Sync for Cells {}
// SAFETY: as above.
unsafe impl Send for Cells {}
const TASKS: usize = 2;

/// Run `TASKS` tasks on a team of `SIZE`; part `i` of task `t` stores `10 t + i` (and
/// panics instead if `(t, i) == panic_at`). Returns what the leader saw after each
/// `run`, or the task whose `run` panicked.
fn scenario(panic_at: Option<(usize, usize)>) -> Result<Vec<Vec<usize>>, usize> {
    let team = Arc::new(Team::<Loom>::new(SIZE));
    let cells = Arc::new(Cells((0..SIZE).map(|_| LoomCell::new(0)).collect()));
    let helpers: Vec<_> = (1..SIZE)
        .map(|h| {
            let team = Arc::clone(&team);
            thread::spawn(move || team.help(h))
        })
        .collect();
    let mut seen = Vec::new();
    let mut outcome = Ok(());
    for t in 0..TASKS {
        let cells2 = Arc::clone(&cells);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(&|i| {
                if panic_at == Some((t, i)) {
                    panic!("injected panic");
                }
                // SAFETY: part i is the only writer of cell i during this task, and
                // the leader reads the cells only after `run` returns.
                cells2.0[i].with_mut(|c| unsafe { *c = 10 * t + i });
            })
        }));
        if run.is_err() {
            outcome = Err(t);
            break;
        }
        // SAFETY: `run` returned, so every part of this task has finished writing.
        seen.push(
            (0..SIZE)
                .map(|i| cells.0[i].with(|c| unsafe { *c }))
                .collect(),
        );
    }
    team.stop();
    for h in helpers {
        h.join().unwrap();
    }
    outcome.map(|()| seen)
}

#[test]
fn every_part_runs_once_per_task_and_finishes_before_run_returns() {
    loom_model(|| {
        let seen = scenario(None).unwrap();
        let want: Vec<Vec<usize>> = (0..TASKS)
            .map(|t| (0..SIZE).map(|i| 10 * t + i).collect())
            .collect();
        assert_eq!(seen, want);
    });
}

#[test]
fn a_helper_panic_reaches_the_leader_instead_of_hanging() {
    common::quiet_panics(&["injected panic", "a helper thread panicked"]);
    loom_model(|| {
        assert_eq!(scenario(Some((1, 2))), Err(1));
    });
}
