//! Property: every public sequence of [`Trainer`] calls follows the reference's bits.
//!
//! Owns a model-based property over the calls a library user can make on a trainer:
//! `step`, `run` for several steps, `run` stopped by its callback (returning `false`,
//! or panicking), `eval`, `state` (which refreshes the sampler position), a restart
//! from the trainer's state in memory (possibly with another thread count), and a
//! checkpoint `save` then `load` into a new trainer. Random sequences of these calls,
//! under both schedulers and 1-4 threads, must give, bit for bit, what a
//! single-threaded reference that only ever calls `Trainer::step` gives: every step's
//! [`StepStats`] (every field), the summed gradient after every call that stepped, the
//! step count after every call, every evaluation loss, and at the end the weights,
//! AdamW moments, update count, step count and sampler position.
//!
//! Deliberately, `state()` is only one of the calls, so most sequences never refresh
//! the sampler position between a `step` and a `run`: a position carried only by
//! `state()` is a bug this property must see.
//!
//! Every case runs under a [`watchdog::Watchdog`]: a lost wake-up or a deadlock ends the
//! process with status 124 and the case's description instead of hanging CI.
//! Must never touch the library's internals: only its public API is used.
//! `CLLM_PROP_API_MIX_CASES=N` runs N cases instead of the default.

mod bitwise;
#[path = "watchdog/mod.rs"]
mod watchdog;

use bitwise::{bits, stat_bits, tokens, StatBits};
use cllm::model::GptConfig;
use cllm::train::checkpoint;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One call (or short group of calls) a user can make on a trainer.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `step` once (on the calling thread).
    Step,
    /// `run(k)` with a callback that never stops it.
    Run(u64),
    /// `run(k)` whose callback returns `false` after step `j + 1` of the run.
    RunStop(u64, u64),
    /// `run(k)` whose callback panics after step `j + 1` of the run (caught here).
    RunPanic(u64, u64),
    /// `eval` on the evaluation tokens.
    Eval,
    /// `state()` (refreshes the sampler position).
    State,
    /// A new trainer with `threads` threads from `state().clone()`.
    Restart(usize),
    /// `checkpoint::save`, `checkpoint::load` and a new trainer with `threads`.
    Checkpoint(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let stop = (2u64..=3).prop_flat_map(|k| (Just(k), 0..k - 1));
    prop_oneof![
        3 => Just(Op::Step),
        3 => (1u64..=3).prop_map(Op::Run),
        2 => stop.clone().prop_map(|(k, j)| Op::RunStop(k, j)),
        1 => stop.prop_map(|(k, j)| Op::RunPanic(k, j)),
        1 => Just(Op::Eval),
        1 => Just(Op::State),
        1 => (1usize..=4).prop_map(Op::Restart),
        1 => (1usize..=4).prop_map(Op::Checkpoint),
    ]
}

/// One random case: a configuration, the first trainer's thread count, the calls.
#[derive(Debug, Clone)]
struct Case {
    cfg: TrainConfig,
    threads: usize,
    data_seed: u64,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    let shape = (1usize..=2, 2usize..=4, 8usize..=40, 2usize..=6).prop_flat_map(
        |(n_head, hs, vocab_size, ctx)| {
            (1usize..=ctx).prop_map(move |seq| {
                let model = GptConfig {
                    n_layer: 1,
                    n_head,
                    n_embd: n_head * hs,
                    n_positions: ctx,
                    vocab_size,
                };
                (model, seq)
            })
        },
    );
    let clip = prop_oneof![Just(0.0f32), Just(1e-2f32), Just(1e3f32)];
    let geometry = (1usize..=2, 1usize..=5, 1usize..=4);
    let ops = proptest::collection::vec(op(), 1..=7);
    (shape, geometry, clip, any::<u64>(), any::<u64>(), ops).prop_map(
        |((model, seq), (batch, micro_batches, threads), grad_clip, seed, data_seed, ops)| {
            // Long enough for warmup, the cosine and the floor (steps past the end).
            let total = 8;
            Case {
                cfg: TrainConfig {
                    model,
                    batch,
                    micro_batches,
                    seq,
                    steps: total,
                    schedule: Schedule {
                        max_lr: 1e-2,
                        min_lr: 1e-3,
                        warmup: 2,
                        total,
                    },
                    adamw: AdamWConfig::default(),
                    grad_clip,
                    seed,
                },
                threads,
                data_seed,
                ops,
            }
        },
    )
}

/// The reference: `Trainer::step` alone, one step at a time, recording each step.
struct Reference {
    trainer: Trainer,
    /// Per completed step: its stats and the summed gradient after it.
    steps: Vec<(StatBits, Vec<u32>)>,
}

impl Reference {
    fn new(cfg: TrainConfig) -> Reference {
        let state = TrainState::initial(&cfg).unwrap();
        Reference {
            trainer: Trainer::new(cfg, state).unwrap(),
            steps: Vec::new(),
        }
    }

    /// Advance to `n` completed steps.
    fn advance_to(&mut self, n: u64, train: &[u32]) {
        while (self.steps.len() as u64) < n {
            let stats = self.trainer.step(train).unwrap();
            self.steps
                .push((stat_bits(&stats), bits(self.trainer.last_gradient_sum())));
        }
    }
}

/// A fresh scratch directory for one checkpoint.
fn scratch() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cllm-prop-api-mix-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Payload of the callback panics this property injects.
const INJECTED: &str = "injected callback panic";

/// Run `ops` on a trainer under `scheduler`, checking each call against `reference`.
fn check_sequence(
    c: &Case,
    scheduler: Scheduler,
    train: &Arc<[u32]>,
    val: &[u32],
    reference: &mut Reference,
) -> Result<(), TestCaseError> {
    let cfg = c.cfg;
    let make = |state: TrainState, threads: usize| {
        Trainer::with_scheduler(cfg, state, threads, scheduler).unwrap()
    };
    let mut trainer = make(TrainState::initial(&cfg).unwrap(), c.threads);
    // Steps completed so far (what the reference says the trainer is at).
    let mut at = 0u64;
    for (i, &op) in c.ops.iter().enumerate() {
        let what = format!("{scheduler:?}, call {i} ({op:?})");
        let before = at;
        let mut seen: Vec<StatBits> = Vec::new();
        match op {
            Op::Step => {
                let stats = trainer.step(train).unwrap();
                seen.push(stat_bits(&stats));
                at += 1;
            }
            Op::Run(k) => {
                let report = trainer
                    .run(train, k, &mut |s| {
                        seen.push(stat_bits(s));
                        true
                    })
                    .unwrap();
                prop_assert_eq!(report.steps, k, "{}: steps reported", what);
                at += k;
            }
            Op::RunStop(k, j) => {
                let mut calls = 0u64;
                let report = trainer
                    .run(train, k, &mut |s| {
                        seen.push(stat_bits(s));
                        calls += 1;
                        calls <= j
                    })
                    .unwrap();
                prop_assert_eq!(report.steps, j + 1, "{}: steps reported", what);
                at += j + 1;
            }
            Op::RunPanic(k, j) => {
                let mut calls = 0u64;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    trainer.run(train, k, &mut |s| {
                        seen.push(stat_bits(s));
                        calls += 1;
                        if calls > j {
                            std::panic::panic_any(INJECTED);
                        }
                        true
                    })
                }));
                let payload = match outcome {
                    Ok(r) => return Err(TestCaseError::fail(format!("{what}: returned {r:?}"))),
                    Err(payload) => payload,
                };
                prop_assert_eq!(payload.downcast_ref::<&str>(), Some(&INJECTED), "{}", what);
                at += j + 1;
            }
            Op::Eval => {
                let got = trainer.eval(val, 4).unwrap();
                reference.advance_to(at, train);
                let want = reference.trainer.eval(val, 4).unwrap();
                prop_assert_eq!(got.to_bits(), want.to_bits(), "{}: eval loss", what);
            }
            Op::State => {
                let _ = trainer.state();
            }
            Op::Restart(threads) => {
                let state = trainer.state().clone();
                trainer = make(state, threads);
            }
            Op::Checkpoint(threads) => {
                let dir = scratch();
                let own = *trainer.config();
                checkpoint::save(&dir, &own, trainer.state()).unwrap();
                let loaded = checkpoint::load(&dir).unwrap();
                let _ = std::fs::remove_dir_all(&dir);
                let (cfg2, state) = loaded.training.expect("a training checkpoint");
                prop_assert_eq!(cfg2, cfg, "{}: configuration", what);
                trainer = make(state, threads);
            }
        }
        reference.advance_to(at, train);
        let want: Vec<StatBits> = reference.steps[before as usize..at as usize]
            .iter()
            .map(|s| s.0)
            .collect();
        prop_assert_eq!(seen, want, "{}: step stats", what);
        prop_assert_eq!(trainer.step_count(), at, "{}: step count", what);
        if at > before {
            let want = &reference.steps[at as usize - 1].1;
            prop_assert!(
                &bits(trainer.last_gradient_sum()) == want,
                "{}: summed gradient",
                what
            );
        }
    }
    let got = trainer.into_state();
    let want = reference.trainer.state();
    prop_assert!(
        bits(&got.params) == bits(&want.params),
        "{:?}: weights",
        scheduler
    );
    prop_assert!(
        bits(&got.opt.m) == bits(&want.opt.m),
        "{:?}: first moments",
        scheduler
    );
    prop_assert!(
        bits(&got.opt.v) == bits(&want.opt.v),
        "{:?}: second moments",
        scheduler
    );
    prop_assert_eq!(
        (got.step, got.opt.t, got.sampler),
        (want.step, want.opt.t, want.sampler),
        "{:?}: step, update count, sampler",
        scheduler
    );
    Ok(())
}

/// Cases of the property (override with `CLLM_PROP_API_MIX_CASES=N`).
fn cases() -> u32 {
    std::env::var("CLLM_PROP_API_MIX_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

/// Silence the default panic message of the injected callback panics.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED) {
                previous(info);
            }
        }));
    });
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    #[test]
    fn every_sequence_of_trainer_calls_gives_the_reference_bits(c in case()) {
        // A case takes milliseconds; a minute means a lost wake-up or a deadlock.
        let _w = watchdog::Watchdog::arm(format!("prop_api_mix case {c:?}"), Duration::from_secs(30));
        quiet_injected_panics();
        let all = tokens(c.data_seed, 400, c.cfg.model.vocab_size);
        let (train, val): (Arc<[u32]>, Vec<u32>) = (all[..300].into(), all[300..].to_vec());
        for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
            let mut reference = Reference::new(c.cfg);
            check_sequence(&c, scheduler, &train, &val, &mut reference)?;
        }
    }
}
