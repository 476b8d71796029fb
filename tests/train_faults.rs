//! Faults in a threaded run end it cleanly: a worker that hits an error (here, a
//! token outside the vocabulary) ends `Trainer::run` with an error naming the step
//! and the worker, every thread is joined (the call returns), and the trainer refuses
//! to continue; a loss that stops being finite stops both schedulers at the same step
//! as the single-threaded reference, with the same error; a caller's callback that
//! panics unwinds to the caller after every thread is joined. (A worker that panics is
//! covered at the protocol level in the loom and shuttle step tests, and on the real
//! trainer, hook by hook, in `train_errors.rs`.)

use cllm::data::MarkovSource;
use cllm::model::{GptConfig, ModelError};
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainError, TrainState, Trainer};
use std::sync::Arc;
use std::time::Duration;

#[path = "watchdog/mod.rs"]
mod watchdog;

fn config(lr: f32) -> TrainConfig {
    TrainConfig {
        model: GptConfig {
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            n_positions: 8,
            vocab_size: 256,
        },
        batch: 2,
        micro_batches: 4,
        seq: 8,
        steps: 50,
        schedule: Schedule {
            max_lr: lr,
            min_lr: 0.0,
            warmup: 0,
            total: 50,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 0.0,
        seed: 3,
    }
}

fn tokens() -> Vec<u32> {
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    source
        .generate(5_000, 1)
        .into_iter()
        .map(u32::from)
        .collect()
}

#[test]
fn a_failing_worker_names_step_and_worker_and_poisons_the_trainer() {
    let _w = watchdog::Watchdog::arm(
        "a_failing_worker_names_step_and_worker_and_poisons_the_trainer",
        Duration::from_secs(120),
    );
    let cfg = config(1e-3);
    // Every token is out of range, so whichever worker takes a micro-batch fails.
    let bad: Arc<[u32]> = vec![300u32; 1_000].into();
    for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
        for threads in [1, 2, 4] {
            let state = TrainState::initial(&cfg).unwrap();
            let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler).unwrap();
            let mut steps = 0;
            let err = trainer
                .run(&bad, 5, &mut |_| {
                    steps += 1;
                    true
                })
                .unwrap_err();
            assert_eq!(steps, 0, "{scheduler:?}: no step may complete");
            match &err {
                TrainError::WorkerFailed {
                    step,
                    worker,
                    source,
                } => {
                    assert_eq!(*step, 0, "{scheduler:?}");
                    assert!(*worker < threads, "{scheduler:?}: worker {worker}");
                    assert!(
                        matches!(
                            **source,
                            TrainError::Model(ModelError::TokenOutOfRange { .. })
                        ),
                        "{scheduler:?}: {source:?}"
                    );
                }
                other => panic!("{scheduler:?}, {threads} threads: {other:?}"),
            }
            let message = err.to_string();
            assert!(
                message.contains("step 0") && message.contains("worker"),
                "{message}"
            );
            let good: Arc<[u32]> = tokens().into();
            assert!(matches!(
                trainer.run(&good, 1, &mut |_| true),
                Err(TrainError::Poisoned)
            ));
        }
    }
}

#[test]
fn a_diverging_run_stops_at_the_reference_step_with_the_same_error() {
    let _w = watchdog::Watchdog::arm(
        "a_diverging_run_stops_at_the_reference_step_with_the_same_error",
        Duration::from_secs(120),
    );
    let cfg = config(1e6);
    let data = tokens();
    let mut reference = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let want = loop {
        match reference.step(&data) {
            Ok(_) => assert!(reference.step_count() < 50, "never diverged"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(want.contains("not finite"), "{want}");
    let data: Arc<[u32]> = data.into();
    for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
        let state = TrainState::initial(&cfg).unwrap();
        let mut trainer = Trainer::with_scheduler(cfg, state, 3, scheduler).unwrap();
        let err = trainer.run(&data, 50, &mut |_| true).unwrap_err();
        assert_eq!(err.to_string(), want, "{scheduler:?}");
    }
}

/// A caller's callback that panics (it runs on the calling thread between steps)
/// unwinds out of `run` with every worker joined (before the fix, the workers waited
/// for a next step forever and the call never returned), for both schedulers and any
/// thread count; the trainer keeps the state after the last step and trains on.
#[test]
fn a_panicking_callback_unwinds_out_of_run_without_a_hang() {
    let _w = watchdog::Watchdog::arm(
        "a_panicking_callback_unwinds_out_of_run_without_a_hang",
        Duration::from_secs(120),
    );
    let cfg = config(1e-3);
    let good: Arc<[u32]> = tokens().into();
    for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
        for threads in [1, 2, 4] {
            let state = TrainState::initial(&cfg).unwrap();
            let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler).unwrap();
            let mut calls = 0;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                trainer.run(&good, 5, &mut |_| {
                    calls += 1;
                    if calls == 2 {
                        panic!("callback gave up");
                    }
                    true
                })
            }));
            let payload = outcome.expect_err("the callback's panic must reach the caller");
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"callback gave up"),
                "{scheduler:?}, {threads} threads"
            );
            assert_eq!(calls, 2);
            assert_eq!(trainer.state().step, 2, "{scheduler:?}, {threads} threads");
            trainer
                .run(&good, 1, &mut |_| true)
                .expect("the trainer trains on");
            assert_eq!(trainer.state().step, 3);
        }
    }
}
