//! The run driver (`cllm::train::driver`): a driven run ends in the same bits as the
//! reference step repeated, whatever its evaluation and checkpoint points; a process
//! that does not write makes exactly the collective calls a writer makes and touches no
//! file; a stop agreed on another process (its Ctrl-C) ends every process at the same
//! step; a plain interrupt checkpoints where it stopped; a failed start removes what it
//! created (and only that) and tells the engine when the error was not its own; the
//! cadence is resolved from flags over saved settings over defaults.

use cllm::train::checkpoint;
use cllm::train::driver::{
    drive, Cadence, CadenceError, CadenceOverrides, DriverError, Engine, Evaluation, Observer,
    Outcome, RunPlan, StepProgress,
};
use cllm::train::trainer::{StepStats, TrainConfig, TrainError, TrainState, Trainer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[path = "fixtures/mod.rs"]
mod fixtures;
use fixtures::{corpus, tiny};
#[path = "watchdog/mod.rs"]
mod watchdog;

/// Bound one test (a step waits on its workers; the two-process test waits on a
/// barrier): a lost wake-up or a mismatched collective exits 124 naming the test.
fn bound(name: &str) -> watchdog::Watchdog {
    watchdog::Watchdog::arm(name, Duration::from_secs(120))
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cllm-driver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cadence(eval_every: u64, checkpoint_every: u64) -> Cadence {
    Cadence {
        eval_every,
        eval_windows: 2,
        checkpoint_every,
        sample_tokens: 0,
    }
}

/// The state after `steps` reference steps ([`Trainer::step`], one thread).
fn reference(cfg: TrainConfig, train: &[u32], steps: u64) -> (TrainState, Vec<u32>) {
    let mut t = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let losses = (0..steps)
        .map(|_| t.step(train).unwrap().loss.to_bits())
        .collect();
    (t.into_state(), losses)
}

fn metrics(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The per-step records' (step, loss bits) and the steps that have a `val_loss`.
fn logged(records: &[serde_json::Value]) -> (Vec<(u64, u32)>, Vec<u64>) {
    let steps = records.iter().filter(|r| r.get("loss").is_some());
    let losses = steps
        .clone()
        .map(|r| {
            let loss = r["loss"].as_f64().unwrap() as f32;
            (r["step"].as_u64().unwrap(), loss.to_bits())
        })
        .collect();
    let evals = steps
        .filter(|r| r.get("val_loss").is_some())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    (losses, evals)
}

#[test]
fn a_driven_run_ends_in_the_reference_steps_bits() {
    let _w = bound("train_driver::a_driven_run_ends_in_the_reference_steps_bits");
    let cfg = tiny(10, 2);
    let data = corpus();
    let train: Arc<[u32]> = data.train.clone().into();
    let (want, want_losses) = reference(cfg, &data.train, 7);
    // Evaluation every 2 and checkpoints every 3 split the run at 2, 3, 4, 6; it stops
    // at 7 of 10 (two threads, so the scheduler's run is what is compared).
    let dir = scratch("reference");
    let mut trainer = Trainer::with_threads(cfg, TrainState::initial(&cfg).unwrap(), 2).unwrap();
    let plan = RunPlan {
        val: Some(&data.val),
        out: Some(dir.clone()),
        cadence: cadence(2, 3),
        ..RunPlan::new(&train, 7)
    };
    let out = drive(&mut trainer, &plan, &AtomicBool::new(false), &mut ()).unwrap();
    assert_eq!(out.summary.step, 7);
    assert!(!out.interrupted());
    assert_eq!(bits(&out.state.params), bits(&want.params));
    assert_eq!(bits(&out.state.opt.m), bits(&want.opt.m));
    assert_eq!(bits(&out.state.opt.v), bits(&want.opt.v));
    assert_eq!(out.state.sampler, want.sampler);
    assert_eq!(bits(&trainer.state().params), bits(&want.params));
    // The final checkpoint holds the same state, with the cadence as its settings.
    let (_, saved) = checkpoint::load(&dir).unwrap().training.unwrap();
    assert_eq!(saved.step, 7);
    assert_eq!(bits(&saved.params), bits(&want.params));
    let settings = checkpoint::load_settings(&dir).unwrap().unwrap();
    assert_eq!(settings["checkpoint_every"], 3);
    assert_eq!(settings["eval_every"], 2);
    // Every step logged once, with the reference loss; evaluations at 2, 4, 6 and the
    // stop step; then one summary record.
    let records = metrics(&dir);
    let (losses, evals) = logged(&records);
    let want_logged: Vec<(u64, u32)> = (1..=7).zip(want_losses).collect();
    assert_eq!(losses, want_logged);
    assert_eq!(evals, [2, 4, 6, 7]);
    let last = records.last().unwrap();
    assert_eq!(last["step"], 7);
    assert_eq!(last["threads"], 2);
    assert!(last.get("worker_utilization").is_some(), "{last}");
    assert!(dir.join("loss.svg").is_file());
    assert_eq!(out.last_val, Some(trainer.eval(&data.val, 2).unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// One call an engine received.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Run {
        at: u64,
        steps: u64,
    },
    /// What the processes agreed.
    Agree {
        stop: bool,
    },
    Snapshot {
        at: u64,
    },
    Eval {
        at: u64,
    },
}

/// A group of in-process "ranks" whose collectives meet at a barrier.
struct Group {
    barrier: Barrier,
    votes: Mutex<Vec<bool>>,
}

impl Group {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Group {
            barrier: Barrier::new(n),
            votes: Mutex::new(vec![false; n]),
        })
    }

    /// True on every rank if `vote` is true on any.
    fn any(&self, rank: usize, vote: bool) -> bool {
        self.votes.lock().unwrap()[rank] = vote;
        self.barrier.wait();
        let any = self.votes.lock().unwrap().iter().any(|&v| v);
        // Nobody votes again before everyone has read this round.
        self.barrier.wait();
        any
    }
}

/// A trainer as one rank of a run: records every call, writes only if `writes`, and
/// (with a group) makes `run`'s stop and `agree` collective. `agree_true_at` makes the
/// n-th `agree` (0-based) vote to stop, as a Ctrl-C seen by this rank only would.
struct Rank {
    trainer: Trainer,
    writes: bool,
    rank: usize,
    group: Option<Arc<Group>>,
    agree_true_at: Option<usize>,
    agrees: usize,
    calls: Vec<Call>,
    /// `run` fails at once (as a refused thread start would).
    run_fails: bool,
    /// What [`Engine::fail`] was told.
    failed: Vec<String>,
}

impl Rank {
    fn new(cfg: TrainConfig, writes: bool) -> Self {
        Rank {
            trainer: Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap(),
            writes,
            rank: 0,
            group: None,
            agree_true_at: None,
            agrees: 0,
            calls: Vec::new(),
            run_fails: false,
            failed: Vec::new(),
        }
    }
}

impl Engine for Rank {
    fn config(&self) -> &TrainConfig {
        self.trainer.config()
    }

    fn step_count(&self) -> u64 {
        self.trainer.step_count()
    }

    fn run(
        &mut self,
        train: &cllm::data::Tokens,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<(), TrainError> {
        self.calls.push(Call::Run {
            at: self.trainer.step_count(),
            steps,
        });
        if self.run_fails {
            return Err(TrainError::Aborted);
        }
        let Some(group) = self.group.clone() else {
            return self.trainer.run(train, steps, on_step).map(|_| ());
        };
        // One step at a time, the stop decided by every rank after each.
        for _ in 0..steps {
            let mut go_on = true;
            self.trainer.run(train, 1, &mut |s| {
                go_on = on_step(s);
                go_on
            })?;
            if group.any(self.rank, !go_on) {
                break;
            }
        }
        Ok(())
    }

    fn eval(
        &mut self,
        val: &dyn cllm::data::TokenSource,
        windows: usize,
    ) -> Result<f32, TrainError> {
        self.calls.push(Call::Eval {
            at: self.trainer.step_count(),
        });
        self.trainer.eval(val, windows)
    }

    fn snapshot(&mut self) -> Result<TrainState, TrainError> {
        self.calls.push(Call::Snapshot {
            at: self.trainer.step_count(),
        });
        if let Some(group) = &self.group {
            group.any(self.rank, false);
        }
        Ok(self.trainer.state().clone())
    }

    fn agree(&mut self, stop: bool) -> Result<bool, TrainError> {
        let vote = stop || self.agree_true_at == Some(self.agrees);
        self.agrees += 1;
        let agreed = match &self.group {
            Some(group) => group.any(self.rank, vote),
            None => vote,
        };
        self.calls.push(Call::Agree { stop: agreed });
        Ok(agreed)
    }

    fn writes(&self) -> bool {
        self.writes
    }

    fn fail(&mut self, error: &DriverError) {
        self.failed.push(error.to_string());
    }
}

#[test]
fn a_non_writer_makes_the_writers_calls_and_touches_no_file() {
    let _w = bound("train_driver::a_non_writer_makes_the_writers_calls_and_touches_no_file");
    let cfg = tiny(9, 2);
    let data = corpus();
    let train: Arc<[u32]> = data.train.clone().into();
    let (want, _) = reference(cfg, &data.train, 9);
    let (writer_dir, reader_dir) = (scratch("writer"), scratch("reader"));
    // An existing empty directory stays empty too.
    let empty = scratch("reader-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let plan = |out: &PathBuf| RunPlan {
        val: Some(&data.val),
        out: Some(out.clone()),
        cadence: cadence(4, 3),
        ..RunPlan::new(&train, 9)
    };
    let never = AtomicBool::new(false);
    let mut writer = Rank::new(cfg, true);
    let w = drive(&mut writer, &plan(&writer_dir), &never, &mut ()).unwrap();
    let mut reader = Rank::new(cfg, false);
    let r = drive(&mut reader, &plan(&reader_dir), &never, &mut ()).unwrap();
    let mut reader2 = Rank::new(cfg, false);
    drive(&mut reader2, &plan(&empty), &never, &mut ()).unwrap();

    // Segments end at 3, 4, 6, 8 (evaluations at 4 and 8) and the stop at 9;
    // checkpoints at 3 and 6 and the final one at 9.
    let seg = |at, steps| Call::Run { at, steps };
    let want_calls = vec![
        Call::Agree { stop: false },
        seg(0, 3),
        Call::Snapshot { at: 3 },
        Call::Agree { stop: false },
        seg(3, 1),
        Call::Eval { at: 4 },
        Call::Agree { stop: false },
        seg(4, 2),
        Call::Snapshot { at: 6 },
        Call::Agree { stop: false },
        seg(6, 2),
        Call::Eval { at: 8 },
        Call::Agree { stop: false },
        seg(8, 1),
        Call::Eval { at: 9 },
        Call::Snapshot { at: 9 },
    ];
    assert_eq!(writer.calls, want_calls);
    assert_eq!(reader.calls, writer.calls);
    assert_eq!(reader2.calls, writer.calls);
    assert!(!reader_dir.exists(), "the non-writer created its --out");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!((r.checkpoint.is_none() && r.metrics.is_none()) && r.plot.is_none());
    // The writer wrote; both ended in the reference bits.
    assert!(writer_dir.join("metrics.jsonl").is_file());
    assert_eq!(w.checkpoint, Some(writer_dir.join("step-00000009")));
    assert_eq!(bits(&w.state.params), bits(&want.params));
    assert_eq!(bits(&r.state.params), bits(&want.params));
    assert_eq!((w.last_val, w.summary.step), (r.last_val, r.summary.step));
    for d in [writer_dir, empty] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Records what the front end is shown.
#[derive(Default)]
struct Seen {
    steps: Vec<u64>,
    evals: Vec<u64>,
    /// Set at this step (as a Ctrl-C handler would).
    interrupt_at: Option<(u64, Arc<AtomicBool>)>,
}

impl Observer for Seen {
    fn on_step(&mut self, p: &StepProgress) {
        self.steps.push(p.done);
        if let Some((at, flag)) = &self.interrupt_at {
            if p.done == *at {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    fn on_eval(&mut self, e: &Evaluation) {
        self.evals.push(e.step);
    }
}

#[test]
fn another_ranks_stop_ends_every_rank_at_the_same_step() {
    let _w = bound("train_driver::another_ranks_stop_ends_every_rank_at_the_same_step");
    let cfg = tiny(12, 2);
    let data = corpus();
    let train: Arc<[u32]> = data.train.clone().into();
    let (writer_dir, reader_dir) = (scratch("rank0"), scratch("rank1"));
    let group = Group::new(2);
    let plan = |out: &PathBuf| RunPlan {
        val: Some(&data.val),
        out: Some(out.clone()),
        cadence: cadence(2, 0),
        ..RunPlan::new(&train, 12)
    };
    let (plan0, plan1) = (plan(&writer_dir), plan(&reader_dir));
    let mut ranks: Vec<Rank> = (0..2)
        .map(|rank| Rank {
            rank,
            group: Some(Arc::clone(&group)),
            // Rank 1's third agree (before step 5) votes to stop; rank 0 never does.
            agree_true_at: (rank == 1).then_some(2),
            ..Rank::new(cfg, rank == 0)
        })
        .collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .iter_mut()
            .zip([&plan0, &plan1])
            .map(|(rank, plan)| {
                s.spawn(move || drive(rank, plan, &AtomicBool::new(false), &mut ()).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outcomes {
        assert_eq!(o.summary.step, 4, "every rank stops after step 4");
        assert!(o.interrupted());
    }
    assert_eq!(ranks[0].calls, ranks[1].calls);
    assert_eq!(
        ranks[0].calls.last(),
        Some(&Call::Snapshot { at: 4 }),
        "{:?}",
        ranks[0].calls
    );
    let agreed: Vec<&Call> = ranks[0]
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Agree { .. }))
        .collect();
    assert_eq!(
        agreed,
        [
            &Call::Agree { stop: false },
            &Call::Agree { stop: false },
            &Call::Agree { stop: true }
        ],
        "rank 0 saw rank 1's stop"
    );
    // The writer checkpointed where the run stopped; the other wrote nothing.
    let (_, saved) = checkpoint::load(&writer_dir).unwrap().training.unwrap();
    assert_eq!(saved.step, 4);
    assert!(!reader_dir.exists());
    let _ = std::fs::remove_dir_all(&writer_dir);
}

#[test]
fn an_interrupt_stops_after_the_step_and_checkpoints_there() {
    let _w = bound("train_driver::an_interrupt_stops_after_the_step_and_checkpoints_there");
    let cfg = tiny(12, 2);
    let data = corpus();
    let train: Arc<[u32]> = data.train.clone().into();
    let (want, _) = reference(cfg, &data.train, 5);
    let dir = scratch("interrupt");
    let flag = Arc::new(AtomicBool::new(false));
    let mut seen = Seen {
        interrupt_at: Some((5, Arc::clone(&flag))),
        ..Seen::default()
    };
    let plan = RunPlan {
        val: Some(&data.val),
        out: Some(dir.clone()),
        cadence: cadence(4, 0),
        ..RunPlan::new(&train, 12)
    };
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let out = drive(&mut trainer, &plan, &flag, &mut seen).unwrap();
    assert!(out.interrupted());
    assert_eq!(out.summary.step, 5);
    assert_eq!(seen.steps, [1, 2, 3, 4, 5]);
    assert_eq!(seen.evals, [4], "no evaluation at an interrupted step");
    let (_, saved) = checkpoint::load(&dir).unwrap().training.unwrap();
    assert_eq!(saved.step, 5);
    assert_eq!(bits(&saved.params), bits(&want.params));
    // Resumed to the end: the log is cut back and continued, each step once.
    let mut resumed = Trainer::new(cfg, saved).unwrap();
    let plan = RunPlan {
        val: Some(&data.val),
        out: Some(dir.clone()),
        cadence: cadence(4, 0),
        ..RunPlan::new(&train, 8)
    };
    drive(&mut resumed, &plan, &AtomicBool::new(false), &mut ()).unwrap();
    let (losses, evals) = logged(&metrics(&dir));
    let steps: Vec<u64> = losses.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    assert_eq!(evals, [4, 8]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_start_removes_what_it_created_and_only_that() {
    let _w = bound("train_driver::a_failed_start_removes_what_it_created_and_only_that");
    let cfg = tiny(4, 2);
    let train: Arc<[u32]> = corpus().train.into();
    let plan_to = |out: &PathBuf, stop| RunPlan {
        out: Some(out.clone()),
        ..RunPlan::new(&train, stop)
    };
    let plan = |out: &PathBuf| plan_to(out, 4);
    let failing = || Rank {
        run_fails: true,
        ..Rank::new(cfg, true)
    };
    let never = AtomicBool::new(false);
    // A directory the run created goes again.
    let new = scratch("fail-new");
    let mut engine = failing();
    let err = drive(&mut engine, &plan(&new), &never, &mut ()).unwrap_err();
    assert!(matches!(err, DriverError::Train { step: 1, .. }), "{err}");
    assert!(!new.exists(), "a failed start left {}", new.display());
    assert!(
        engine.failed.is_empty(),
        "the engine's own error is not reported back"
    );
    // In an empty directory only the log it started goes.
    let empty = scratch("fail-empty");
    std::fs::create_dir_all(&empty).unwrap();
    drive(&mut failing(), &plan(&empty), &never, &mut ()).unwrap_err();
    assert!(empty.is_dir());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // An earlier run's directory is left as it was: resumed from its checkpoint, the
    // failed run keeps the log (cut back to the checkpoint, where it ends anyway).
    let earlier = scratch("fail-earlier");
    let mut first = Rank::new(cfg, true);
    drive(&mut first, &plan_to(&earlier, 2), &never, &mut ()).unwrap();
    let log = std::fs::read(earlier.join("metrics.jsonl")).unwrap();
    let (_, saved) = checkpoint::load(&earlier).unwrap().training.unwrap();
    let mut resumed = Rank {
        trainer: Trainer::new(cfg, saved).unwrap(),
        ..failing()
    };
    drive(&mut resumed, &plan(&earlier), &never, &mut ()).unwrap_err();
    assert_eq!(std::fs::read(earlier.join("metrics.jsonl")).unwrap(), log);
    assert_eq!(
        checkpoint::load(&earlier).unwrap().training.unwrap().1.step,
        2
    );
    // A directory that is not cllm's is refused before any collective, and the engine
    // is told (so a rank engine can release its peers).
    let foreign = scratch("fail-foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let mut engine = Rank::new(cfg, true);
    let err = drive(&mut engine, &plan(&foreign), &never, &mut ()).unwrap_err();
    assert!(matches!(err, DriverError::OutDir { .. }), "{err}");
    assert!(engine.calls.is_empty(), "{:?}", engine.calls);
    assert_eq!(engine.failed, [err.to_string()]);
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    for d in [empty, earlier, foreign] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_bad_stop_step_is_refused_before_any_file() {
    let cfg = tiny(4, 2);
    let train: Arc<[u32]> = corpus().train.into();
    let dir = scratch("badstop");
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    for stop in [0, 5] {
        let plan = RunPlan {
            out: Some(dir.clone()),
            ..RunPlan::new(&train, stop)
        };
        let err = drive(&mut trainer, &plan, &AtomicBool::new(false), &mut ()).unwrap_err();
        assert!(matches!(err, DriverError::Stop { .. }), "{err}");
        assert!(!dir.exists());
    }
}

#[test]
fn the_cadence_is_flags_over_saved_over_defaults() {
    let saved = serde_json::json!({"eval_every": 7, "checkpoint_every": 3});
    let flags = CadenceOverrides {
        checkpoint_every: Some(5),
        ..CadenceOverrides::default()
    };
    let c = Cadence::resolve(&flags, Some(&saved)).unwrap();
    let d = Cadence::default();
    assert_eq!(
        c,
        Cadence {
            eval_every: 7,
            checkpoint_every: 5,
            ..d
        }
    );
    assert_eq!(
        Cadence::resolve(&flags, None).unwrap().eval_every,
        d.eval_every
    );
    // A saved cadence round-trips through its own json.
    let back = serde_json::to_value(c).unwrap();
    assert_eq!(
        Cadence::resolve(&CadenceOverrides::default(), Some(&back)).unwrap(),
        c
    );
    let zero = CadenceOverrides {
        eval_windows: Some(0),
        ..CadenceOverrides::default()
    };
    assert!(matches!(
        Cadence::resolve(&zero, None),
        Err(CadenceError::Zero {
            field: "eval_windows"
        })
    ));
    let bad = serde_json::json!({"eval_every": "often"});
    assert!(matches!(
        Cadence::resolve(&CadenceOverrides::default(), Some(&bad)),
        Err(CadenceError::Saved(_))
    ));
}
