//! Error paths of the real trainer, end to end (real model, real AdamW, real threads).
//!
//! Owns three properties:
//! * A data error raised on the lock-free scheduler's pre-fetch thread reaches the
//!   caller as that error, with its message and its step (and a panic there as a panic
//!   naming the step), after exactly the steps before it, at 1, 2 and 4 threads.
//! * The same bad input gives the same typed error on every path: the single-threaded
//!   reference (`Trainer::step`), the barrier and the lock-free scheduler at 1, 2 and 4
//!   threads (a proptest over generated bad inputs: data too short for a window,
//!   tokens outside the vocabulary, non-finite weights).
//! * A panic or an error in any hook after `compute` (summarize, decide, update) of the
//!   lock-free trainer, and a panic or error in a barrier worker's forward/backward or
//!   on its main thread, ends the run for every thread with an error naming the step
//!   and the worker, every context comes back, and nothing hangs (watchdog-bounded).
//!
//! Faults are injected through `cllm::train::faults::Faults` (the schedulers'
//! `run_with_faults`), never through the production `Trainer`.
//! Must never touch other tests' files; uses `tests/watchdog` unchanged.

#[path = "watchdog/mod.rs"]
mod watchdog;

use cllm::data::{DataError, MarkovSource, Sampler};
use cllm::model::{GptConfig, ParamLayout, TrainingContext};
use cllm::segments::GradientSegments;
use cllm::sync::Std;
use cllm::train::barrier::{self, BarrierRun};
use cllm::train::faults::Faults;
use cllm::train::lockfree;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{
    decay_ranges, Scheduler, StepStats, TrainConfig, TrainError, TrainState, Trainer,
};
use core::ops::Range;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MICRO_BATCHES: usize = 4;

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
        micro_batches: MICRO_BATCHES,
        seq: 8,
        steps: 10,
        schedule: Schedule {
            max_lr: 1e-3,
            min_lr: 0.0,
            warmup: 0,
            total: 10,
        },
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        seed: 3,
    }
}

fn tokens() -> Arc<[u32]> {
    let source = MarkovSource::new(2, 2, 0.2).unwrap();
    source
        .generate(3_000, 1)
        .into_iter()
        .map(u32::from)
        .collect::<Vec<_>>()
        .into()
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// What a lock-free run with faults returned.
struct Outcome {
    result: Result<u64, TrainError>,
    stats: Vec<StepStats>,
    contexts: usize,
    state: TrainState,
}

/// The lock-free trainer over `threads` threads (one worker per micro-batch at most,
/// the rest helpers, as `Trainer` arranges them) with `faults`, for `steps` steps.
fn lockfree_run<F: Faults>(threads: usize, steps: u64, faults: &Arc<F>) -> Outcome {
    let cfg = config();
    let mut state = TrainState::initial(&cfg).unwrap();
    let decay: Arc<[Range<usize>]> = decay_ranges(&ParamLayout::new(&cfg.model)).into();
    let workers = threads.min(cfg.micro_batches);
    let contexts: Vec<TrainingContext> = (0..workers)
        .map(|_| TrainingContext::new(&cfg.model, cfg.batch, cfg.seq).unwrap())
        .collect();
    let mut stats = Vec::new();
    let mut last_grad = Vec::new();
    let (contexts, result) = lockfree::run_with_faults::<Std, F, _>(
        &cfg,
        &mut state,
        &decay,
        contexts,
        threads - workers,
        &tokens(),
        steps,
        &mut last_grad,
        &mut |s| {
            stats.push(*s);
            true
        },
        faults,
    );
    Outcome {
        result: result.map(|r| r.steps),
        stats,
        contexts: contexts.len(),
        state,
    }
}

/// The reference state after `steps` steps on the same data.
fn reference_state(steps: u64) -> TrainState {
    let cfg = config();
    let data = tokens();
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    for _ in 0..steps {
        trainer.step(&data).unwrap();
    }
    trainer.into_state()
}

// ---- 1. errors on the pre-fetch thread ------------------------------------------------

/// Fails (or panics) when asked to draw micro-batch `micro_batch` of `step`.
struct FailingDraw {
    step: u64,
    micro_batch: usize,
    panic: bool,
}

impl Faults for FailingDraw {
    fn draw(&self, step: u64, micro_batch: usize) -> Result<(), DataError> {
        if (step, micro_batch) != (self.step, self.micro_batch) {
            return Ok(());
        }
        if self.panic {
            panic!("the sampler blew up drawing step {step}");
        }
        Err(DataError::Io {
            path: "injected-corpus.txt".into(),
            source: std::io::Error::other("disk on fire"),
        })
    }
}

#[test]
fn a_data_error_on_the_prefetch_thread_reaches_the_caller_with_its_step() {
    let _w = watchdog::Watchdog::arm("prefetch data error", Duration::from_secs(60));
    let want_state = reference_state(2);
    for threads in [1, 2, 4] {
        let faults = Arc::new(FailingDraw {
            step: 2,
            micro_batch: 1,
            panic: false,
        });
        let out = lockfree_run(threads, 5, &faults);
        let err = out.result.expect_err("the injected error must end the run");
        match &err {
            TrainError::Batch {
                step: 2,
                source: DataError::Io { path, source },
            } => {
                assert_eq!(path.to_str(), Some("injected-corpus.txt"), "{threads}");
                assert_eq!(source.to_string(), "disk on fire", "{threads}");
            }
            other => panic!("{threads} threads: expected the sampler's error, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with("step 2: ")
                && message.contains("injected-corpus.txt")
                && message.contains("disk on fire"),
            "{threads} threads: {message}"
        );
        assert_eq!(
            out.stats.iter().map(|s| s.step).collect::<Vec<_>>(),
            vec![0, 1],
            "{threads} threads: exactly the steps before the failing draw"
        );
        assert_eq!(
            out.contexts,
            threads.min(MICRO_BATCHES),
            "{threads} threads"
        );
        assert_eq!(out.state.step, 2);
        assert_eq!(
            bits(&out.state.params),
            bits(&want_state.params),
            "{threads}"
        );
        assert_eq!(out.state.sampler, want_state.sampler, "{threads} threads");
    }
}

#[test]
fn a_panic_on_the_prefetch_thread_reaches_the_caller_with_its_step() {
    let _w = watchdog::Watchdog::arm("prefetch panic", Duration::from_secs(60));
    for threads in [1, 2, 4] {
        let faults = Arc::new(FailingDraw {
            step: 1,
            micro_batch: 3,
            panic: true,
        });
        let out = lockfree_run(threads, 5, &faults);
        match out.result {
            Err(TrainError::PrefetchPanicked { step: 1, message }) => {
                assert_eq!(message, "the sampler blew up drawing step 1", "{threads}")
            }
            other => panic!("{threads} threads: {other:?}"),
        }
        assert_eq!(out.stats.len(), 1, "{threads} threads");
        assert_eq!(
            out.contexts,
            threads.min(MICRO_BATCHES),
            "{threads} threads"
        );
    }
}

// ---- 2. the same bad input, the same error, on every path ------------------------------

/// A bad input every scheduler sees.
#[derive(Debug, Clone)]
enum BadInput {
    /// Training data shorter than one window of `seq + 1` tokens.
    TooShort { len: usize },
    /// Every token outside the vocabulary.
    AllOutOfVocabulary { len: usize, value: u32 },
    /// Exactly one window of data (so every micro-batch draws it), one token in it
    /// outside the vocabulary.
    OneBadToken { position: usize, value: u32 },
    /// A non-finite weight in a tensor every forward pass reads.
    NonFiniteWeight { pick: usize, value: f32 },
}

fn bad_input() -> impl Strategy<Value = BadInput> {
    let cfg = config();
    let (seq, vocab) = (cfg.seq, cfg.model.vocab_size as u32);
    prop_oneof![
        (0..=seq).prop_map(|len| BadInput::TooShort { len }),
        (seq + 1..64, vocab..=u32::MAX)
            .prop_map(|(len, value)| BadInput::AllOutOfVocabulary { len, value }),
        (0..=seq, vocab..=u32::MAX)
            .prop_map(|(position, value)| BadInput::OneBadToken { position, value }),
        (
            any::<usize>(),
            prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)]
        )
            .prop_map(|(pick, value)| BadInput::NonFiniteWeight { pick, value }),
    ]
}

/// The data and initial state of a case.
fn materialize(case: &BadInput) -> (Arc<[u32]>, TrainState) {
    let cfg = config();
    let mut state = TrainState::initial(&cfg).unwrap();
    let good = tokens();
    let data: Vec<u32> = match *case {
        BadInput::TooShort { len } => good[..len].to_vec(),
        BadInput::AllOutOfVocabulary { len, value } => vec![value; len],
        BadInput::OneBadToken { position, value } => {
            let mut d = good[..cfg.seq + 1].to_vec();
            d[position] = value;
            d
        }
        BadInput::NonFiniteWeight { pick, value } => {
            let layout = ParamLayout::new(&cfg.model);
            // Every tensor but the embeddings (whose rows a batch may not read).
            let read_by_every_pass: Vec<Range<usize>> = layout
                .tensors()
                .iter()
                .filter(|t| !t.name.starts_with("wte") && !t.name.starts_with("wpe"))
                .map(|t| t.range())
                .collect();
            let all: usize = read_by_every_pass.iter().map(|r| r.len()).sum();
            let mut k = pick % all;
            for r in &read_by_every_pass {
                if k < r.len() {
                    state.params[r.start + k] = value;
                    break;
                }
                k -= r.len();
            }
            good.to_vec()
        }
    };
    (data.into(), state)
}

/// The error's Debug and Display with every worker index replaced by `#`: the only
/// thing allowed to differ between paths (which worker meets a failing micro-batch
/// first depends on timing). Also returns the worker indices found.
fn normalized(e: &TrainError) -> (String, String, Vec<usize>) {
    fn scrub(text: &str, key: &str, workers: &mut Vec<usize>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(key) {
            let (head, tail) = rest.split_at(i + key.len());
            out.push_str(head);
            let digits = tail.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 {
                workers.push(tail[..digits].parse().unwrap());
                out.push('#');
            }
            rest = &tail[digits..];
        }
        out.push_str(rest);
        out
    }
    let mut workers = Vec::new();
    let debug = scrub(&format!("{e:?}"), "worker: ", &mut workers);
    let mut ignored = Vec::new();
    let display = scrub(&e.to_string(), "worker ", &mut ignored);
    (debug, display, workers)
}

const CASE_STEPS: u64 = 3;

/// What one path did with a case: the losses of the completed steps and the error.
type PathOutcome = (Vec<u32>, Option<TrainError>);

fn reference_path(case: &BadInput) -> PathOutcome {
    let cfg = config();
    let (data, state) = materialize(case);
    let mut trainer = Trainer::new(cfg, state).unwrap();
    let mut losses = Vec::new();
    for _ in 0..CASE_STEPS {
        match trainer.step(&data) {
            Ok(s) => losses.push(s.loss.to_bits()),
            Err(e) => return (losses, Some(e)),
        }
    }
    (losses, None)
}

fn scheduler_path(case: &BadInput, scheduler: Scheduler, threads: usize) -> PathOutcome {
    let cfg = config();
    let (data, state) = materialize(case);
    let mut trainer = Trainer::with_scheduler(cfg, state, threads, scheduler).unwrap();
    let mut losses = Vec::new();
    let result = trainer.run(&data, CASE_STEPS, &mut |s| {
        losses.push(s.loss.to_bits());
        true
    });
    (losses, result.err())
}

fn same_outcome_on_every_path(case: BadInput) -> Result<(), TestCaseError> {
    let (want_losses, want) = reference_path(&case);
    let want_err = want.as_ref().map(normalized);
    for scheduler in [Scheduler::Barrier, Scheduler::LockFree] {
        for threads in [1, 2, 4] {
            let (losses, got) = scheduler_path(&case, scheduler, threads);
            let at = format!("{scheduler:?}, {threads} threads, {case:?}");
            prop_assert_eq!(&losses, &want_losses, "completed steps: {}", at);
            let got_err = got.as_ref().map(normalized);
            match (&want_err, &got_err) {
                (Some((wd, ws, _)), Some((gd, gs, workers))) => {
                    prop_assert_eq!(gd, wd, "typed error: {}", at);
                    prop_assert_eq!(gs, ws, "message: {}", at);
                    prop_assert!(
                        workers.iter().all(|&w| w < threads),
                        "{:?}: {}",
                        workers,
                        at
                    );
                }
                (None, None) => {}
                _ => prop_assert!(false, "reference {:?}, path {:?}: {}", want, got, at),
            }
        }
    }
    Ok(())
}

#[test]
fn every_path_reports_the_reference_error_for_the_same_bad_input() {
    let _w = watchdog::Watchdog::arm("same error on every path", Duration::from_secs(240));
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    runner
        .run(&bad_input(), same_outcome_on_every_path)
        .unwrap();
}

/// Three cases spelled out: data too short for the context (the reference's error is
/// the sampler's, with the step), tokens outside the vocabulary (the model's, with
/// the step and worker 0) and a NaN weight (non-finite loss at step 0); each is the
/// same error on every path, not a success.
#[test]
fn named_bad_inputs_are_errors_with_the_sampler_or_model_source() {
    let _w = watchdog::Watchdog::arm("named bad inputs", Duration::from_secs(60));
    let short = BadInput::TooShort { len: 5 };
    match reference_path(&short).1 {
        Some(TrainError::Batch {
            step: 0,
            source: DataError::DataTooShort { have: 5, need: 9 },
        }) => {}
        other => panic!("{other:?}"),
    }
    let bad = BadInput::AllOutOfVocabulary {
        len: 20,
        value: 300,
    };
    match reference_path(&bad).1 {
        Some(TrainError::WorkerFailed {
            step: 0,
            worker: 0,
            source,
        }) => assert!(
            matches!(*source, TrainError::Model(_)),
            "the model's error: {source:?}"
        ),
        other => panic!("{other:?}"),
    }
    // A NaN in the first layer norm's weights: the very first loss is not finite.
    let nan = BadInput::NonFiniteWeight {
        pick: 0,
        value: f32::NAN,
    };
    match reference_path(&nan) {
        (losses, Some(TrainError::NonFinite { step: 0, .. })) => assert!(losses.is_empty()),
        other => panic!("{other:?}"),
    }
    for case in [short, bad, nan] {
        same_outcome_on_every_path(case).unwrap();
    }
}

// ---- 3. panics and errors in the hooks after compute ------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hook {
    Summarize,
    DecidePanic,
    DecideError,
    Update,
}

/// Fails once, in `hook`, on worker `worker` (any worker if `None`), at the first
/// call at or after training step `from_step`, and records where it fired. (Which
/// workers reduce, and so summarize, decide and update, depends on timing; only the
/// leader is sure to decide every step.)
struct HookFault {
    hook: Hook,
    worker: Option<usize>,
    from_step: u64,
    /// Steps decided so far by anyone (summarize has no step argument: a summary of
    /// step `s` comes after every decision of step `s - 1`).
    decided: AtomicU64,
    fired: AtomicBool,
    fired_step: AtomicU64,
    fired_worker: AtomicUsize,
}

impl HookFault {
    fn new(hook: Hook, worker: Option<usize>, from_step: u64) -> Self {
        HookFault {
            hook,
            worker,
            from_step,
            decided: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            fired_step: AtomicU64::new(u64::MAX),
            fired_worker: AtomicUsize::new(usize::MAX),
        }
    }

    /// Whether to fail now (at most once).
    fn fire(&self, hook: Hook, step: u64, worker: usize) -> bool {
        let now = hook == self.hook
            && self.worker.is_none_or(|w| w == worker)
            && step >= self.from_step
            && !self.fired.swap(true, Ordering::SeqCst);
        if now {
            self.fired_step.store(step, Ordering::SeqCst);
            self.fired_worker.store(worker, Ordering::SeqCst);
        }
        now
    }
}

impl Faults for HookFault {
    fn summarize(&self, worker: usize) {
        let step = self.decided.load(Ordering::SeqCst);
        if self.fire(Hook::Summarize, step, worker) {
            panic!("injected panic in summarize, worker {worker}");
        }
    }

    fn decide(&self, step: u64, worker: usize) -> Result<(), TrainError> {
        if self.fire(Hook::DecidePanic, step, worker) {
            panic!("injected panic in decide, step {step}, worker {worker}");
        }
        if self.fire(Hook::DecideError, step, worker) {
            return Err(TrainError::WorkerFailed {
                step,
                worker,
                source: Box::new(TrainError::Config("injected decide error".into())),
            });
        }
        self.decided.fetch_max(step + 1, Ordering::SeqCst);
        Ok(())
    }

    fn update(&self, step: u64, worker: usize) {
        if self.fire(Hook::Update, step, worker) {
            panic!("injected panic in update, step {step}, worker {worker}");
        }
    }
}

#[test]
fn a_panic_or_error_in_any_later_hook_ends_the_lockfree_run_naming_step_and_worker() {
    let hooks = [
        Hook::Summarize,
        Hook::DecidePanic,
        Hook::DecideError,
        Hook::Update,
    ];
    for hook in hooks {
        for threads in [1, 2, 4] {
            let workers = threads.min(MICRO_BATCHES);
            let leader_decides = matches!(hook, Hook::DecidePanic | Hook::DecideError);
            let targets = if leader_decides {
                vec![None, Some(0)]
            } else {
                vec![None]
            };
            for target in targets {
                let what = format!("{hook:?}, {threads} threads, worker {target:?}");
                // A case takes milliseconds; a hang is reported within 15 s.
                let _w = watchdog::Watchdog::arm(what.clone(), Duration::from_secs(15));
                let faults = Arc::new(HookFault::new(hook, target, 2));
                let out = lockfree_run(threads, 8, &faults);
                assert!(faults.fired.load(Ordering::SeqCst), "{what}: never fired");
                let step = faults.fired_step.load(Ordering::SeqCst);
                let worker = faults.fired_worker.load(Ordering::SeqCst);
                assert!(worker < workers, "{what}: fired on worker {worker}");
                assert!(target.is_none_or(|t| t == worker), "{what}");
                let err = out.result.expect_err(&what);
                match (&err, hook) {
                    (
                        TrainError::WorkerFailed {
                            step: s,
                            worker: w,
                            source,
                        },
                        Hook::DecideError,
                    ) => {
                        assert_eq!((*s, *w), (step, worker), "{what}");
                        assert_eq!(
                            source.to_string(),
                            "invalid training configuration: injected decide error"
                        );
                    }
                    (TrainError::WorkerPanicked { step: s, worker: w }, _)
                        if hook != Hook::DecideError =>
                    {
                        assert_eq!((*s, *w), (step, worker), "{what}");
                    }
                    (other, _) => panic!("{what}: {other:?}"),
                }
                let message = err.to_string();
                assert!(
                    message.contains(&format!("step {step}"))
                        && message.contains(&format!("worker {worker}")),
                    "{what}: {message}"
                );
                assert_eq!(
                    out.stats.len() as u64,
                    step,
                    "{what}: steps before the fault"
                );
                assert_eq!(out.contexts, workers, "{what}: every worker joined");
            }
        }
    }
}

// ---- the barrier scheduler ---------------------------------------------------------------

/// Fails once in `compute` on `worker` at `step`, or on the main thread (draw,
/// decide, update) at `step`.
struct BarrierFault {
    at: &'static str,
    step: u64,
    worker: usize,
    panic: bool,
    calls: AtomicUsize,
}

impl BarrierFault {
    fn hit(&self, at: &str, step: u64, worker: usize) -> bool {
        at == self.at
            && step == self.step
            && worker == self.worker
            && self.calls.fetch_add(1, Ordering::SeqCst) == 0
    }
    fn fail(&self, what: &str, step: u64, worker: usize) -> Result<(), TrainError> {
        if self.hit(what, step, worker) {
            if self.panic {
                panic!("injected panic in {what}, step {step}, worker {worker}");
            }
            return Err(TrainError::Config(format!("injected {what} error")));
        }
        Ok(())
    }
}

impl Faults for BarrierFault {
    fn draw(&self, step: u64, _mb: usize) -> Result<(), DataError> {
        self.fail("draw", step, 0)
            .map_err(|_| DataError::DataTooShort { have: 0, need: 1 })
    }
    fn compute(&self, step: u64, worker: usize) -> Result<(), TrainError> {
        self.fail("compute", step, worker)
    }
    fn decide(&self, step: u64, worker: usize) -> Result<(), TrainError> {
        self.fail("decide", step, worker)
    }
    fn update(&self, step: u64, worker: usize) {
        // update cannot return an error: only a panic is possible here.
        let _ = self.fail("update", step, worker);
    }
}

fn barrier_run(threads: usize, fault: &BarrierFault) -> (Result<u64, TrainError>, usize) {
    let cfg = config();
    let mut state = TrainState::initial(&cfg).unwrap();
    let layout = ParamLayout::new(&cfg.model);
    let decay = decay_ranges(&layout);
    let segments = GradientSegments::new(cfg.micro_batches, layout.len(), 1).unwrap();
    let mut sampler = Sampler::from_state(state.sampler);
    let mut grad = vec![0.0; layout.len()];
    let data = tokens();
    let mut contexts: Vec<TrainingContext> = (0..threads.min(cfg.micro_batches))
        .map(|_| TrainingContext::new(&cfg.model, cfg.batch, cfg.seq).unwrap())
        .collect();
    let mut steps = 0;
    let result = barrier::run_with_faults(
        BarrierRun {
            cfg: &cfg,
            decay: &decay,
            segments: &segments,
            sampler: &mut sampler,
            grad: &mut grad,
            train: &data,
        },
        &mut state,
        &mut contexts,
        5,
        &mut |_| {
            steps += 1;
            true
        },
        fault,
    );
    assert_eq!(
        state.step, steps as u64,
        "the state counts the completed steps"
    );
    (result.map(|r| r.steps), steps)
}

/// A barrier worker whose forward/backward panics or fails (the `catch_unwind` in
/// `barrier.rs`) ends the run after that step's barrier with the step and worker
/// named; a fault on the main thread (draw, decide, update) ends it as worker 0.
#[test]
fn barrier_worker_and_main_thread_faults_end_the_run_naming_step_and_worker() {
    for threads in [1, 2, 4] {
        let workers = threads.min(MICRO_BATCHES);
        let mut cases = vec![];
        for worker in [0, workers - 1] {
            cases.push(("compute", worker, true));
            cases.push(("compute", worker, false));
        }
        cases.extend([
            ("draw", 0, true),
            ("draw", 0, false),
            ("decide", 0, true),
            ("decide", 0, false),
            ("update", 0, true),
        ]);
        for (at, worker, panic) in cases {
            let what = format!("barrier {at} panic={panic}, {threads} threads, worker {worker}");
            // A case takes milliseconds; a hang is reported within 15 s.
            let _w = watchdog::Watchdog::arm(what.clone(), Duration::from_secs(15));
            let fault = BarrierFault {
                at,
                step: 1,
                worker,
                panic,
                calls: AtomicUsize::new(0),
            };
            let (result, steps) = barrier_run(threads, &fault);
            assert_eq!(fault.calls.load(Ordering::SeqCst), 1, "{what}: fired once");
            assert_eq!(steps, 1, "{what}: only the step before the fault completed");
            let err = result.expect_err(&what);
            match (&err, at, panic) {
                (TrainError::WorkerPanicked { step: 1, worker: w }, _, true) => {
                    assert_eq!(*w, worker, "{what}")
                }
                (
                    TrainError::WorkerFailed {
                        step: 1,
                        worker: w,
                        source,
                    },
                    "compute",
                    false,
                ) => {
                    assert_eq!(*w, worker, "{what}");
                    assert!(
                        matches!(**source, TrainError::Config(_)),
                        "{what}: {source:?}"
                    );
                }
                (TrainError::Batch { step: 1, .. }, "draw", false) => {}
                (TrainError::Config(m), "decide", false) => {
                    assert_eq!(m, "injected decide error", "{what}")
                }
                (other, _, _) => panic!("{what}: {other:?}"),
            }
        }
    }
}
