//! Owns [`StepProtocol`]: the lock-free step boundary of data-parallel training
//! (the seed notes' Phases 2B-2D): jobs through a [`WorkQueue`], one gradient slot
//! per job in [`GradientSegments`], parallel reduction by parameter part, a decision
//! every worker computes identically, a sharded update, and the gate that keeps the
//! next step's readers out until every part is updated.
//! Must never know what the floats mean (no model, optimizer or data types: those
//! come in through [`StepHooks`]), and never let timing choose a number.
//!
//! # Types
//! * Three flat `f32` buffers of one length: the *weights* (read by every job,
//!   written only in the update), the reduced *gradient*, and any number of *aux*
//!   buffers (optimizer moments), all cut into the same contiguous parts as the
//!   segments ([`GradientSegments::part_range`]).
//! * Per part, two access tokens (`P::Cell<()>`): one guards the part's weights, one
//!   its gradient and aux floats. Every access to those floats holds the token (shared
//!   for a read, exclusive for a write), so a model checker sees each access where it
//!   happens; with [`Std`] they cost nothing.
//! * Per part, a summary (`Vec<f64>`, written by the part's reducer); per slot, the
//!   job's loss.
//!
//! # Protocol for step `g` (counters only grow; `n` parts, `M` slots)
//! 1. *Feed* (the leader only, after step `g - 1` is complete): push `M` jobs
//!    `(g, m, payload)` into the work queue, then `fed = g + 1` (Relaxed: a signal to
//!    start looking, not a carrier of data).
//! 2. *Compute*: a worker waits for `fed > g`, then pops jobs until the queue is empty
//!    or hands it a job of a later step (kept for that step). Every update of step
//!    `g - 1` happened before the job it pops: the queue's push (Release) / pop
//!    (Acquire) pair carries it, since the leader pushes only after acquiring
//!    `updated`. This holds as well for a worker that was late in step `g - 1` and pops
//!    a job of `g` before `fed` is stored. A worker that finds no job goes on to step
//!    3, whose `published` Acquire orders it after those pops; the leader pops any job
//!    nobody else took. For job `m`: claim slot `m`, run [`StepHooks::compute`] with shared
//!    access to every weight part, store the loss, publish the slot.
//! 3. *Reduce*: wait until every slot of `g` is published; then, starting at its own
//!    index, claim parts (CAS `claim[p]: g -> g + 1`, exactly once per step), reduce
//!    each into the gradient in the fixed pairwise order, summarize it
//!    ([`StepHooks::summarize`]) and count it in `summarized` (Release).
//! 4. *Decide*: a worker that claimed a part (and the leader) waits for
//!    `summarized = (g + 1) n` (Acquire) and runs [`StepHooks::decide`] over every
//!    loss and summary. It is a pure function of those, so every worker decides the
//!    same. An error aborts the run for everyone.
//! 5. *Update*: each worker updates the parts it reduced ([`StepHooks::update`],
//!    exclusive access to the part's weights, gradient and aux), then counts each in
//!    `updated` (Release).
//! 6. *Step end*: the leader waits for `updated = (g + 1) n` (Acquire); only then may
//!    it feed step `g + 1`. So no job of `g + 1` reads a weight before the last update
//!    of `g` is written, and no update of `g` starts before every job of `g` has
//!    finished reading (publish -> reduce -> summarize -> decide -> update is a chain
//!    of Release/Acquire pairs).
//!
//! A worker that claimed nothing skips steps 4-5 and may run late into the next step;
//! it touches nothing of step `g` after step 3, so that is safe.
//! [`StepProtocol::stop`] ends the run between steps; [`StepProtocol::abort`] ends it
//! at once (every wait returns [`StepError::Aborted`]).

pub mod team;

pub use team::Team;

use crate::queue::WorkQueue;
use crate::segments::{GradientSegments, SegmentsError};
use crate::sync::{AtomicFlag, AtomicWord, CachePadded, Event, Ordering, Platform, Std, SyncCell};
use core::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// One unit of work of step `step`: fills gradient slot `slot`.
#[derive(Debug)]
pub struct Job<J> {
    /// The step (0-based, counted from this protocol's creation).
    pub step: usize,
    /// The gradient slot it fills (the job's fixed index in the step).
    pub slot: usize,
    /// What the hooks need to compute it.
    pub payload: J,
}

/// What a worker plugs into the protocol (one instance per worker).
pub trait StepHooks<J> {
    /// A failure inside a hook.
    type Error;
    /// What every worker concludes from the step's losses and summaries.
    type Decision;

    /// Overwrite `grad` (one slot) with the job's gradient; return its loss.
    fn compute(&mut self, weights: &[f32], job: &J, grad: &mut [f32]) -> Result<f32, Self::Error>;
    /// Summarize a reduced gradient part (`range` of the full buffer) into `out`.
    fn summarize(&mut self, range: Range<usize>, grad: &[f32], out: &mut Vec<f64>);
    /// The step's decision from every slot's loss (slot order) and every part's
    /// summary (part order). Must be a pure function of its arguments.
    fn decide(
        &self,
        step: usize,
        losses: &[f32],
        summaries: &[&Vec<f64>],
    ) -> Result<Self::Decision, Self::Error>;
    /// Apply the decision to one part: `weights`, `grad` and each `aux` are that
    /// part's `range` of the full buffers.
    fn update(
        &mut self,
        decision: &Self::Decision,
        range: Range<usize>,
        weights: &mut [f32],
        grad: &[f32],
        aux: &mut [&mut [f32]],
    );
}

/// Why a participant stopped.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E> {
    /// Another participant aborted the run.
    #[error("the run was aborted by another participant")]
    Aborted,
    /// The protocol was misused (a bug, reported instead of racing).
    #[error(transparent)]
    Protocol(#[from] SegmentsError),
    /// The leader fed the wrong number of jobs or out of order.
    #[error("feeding step {step}: {what}")]
    Feed {
        /// The step.
        step: usize,
        /// What was wrong.
        what: String,
    },
    /// A hook failed (the run is aborted for everyone).
    #[error("a step hook failed")]
    Hook(#[source] E),
    /// A hook panicked in this participant (the run is aborted for everyone; the
    /// panic message went to stderr).
    #[error("step {step}: worker {worker} panicked")]
    Panicked {
        /// The step (0-based, counted from this protocol's creation).
        step: usize,
        /// The participant (0 is the leader).
        worker: usize,
    },
}

/// What one participant did over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WorkerStats {
    /// Time spent computing jobs, reducing, summarizing, deciding and updating.
    pub busy: Duration,
    /// Jobs computed.
    pub jobs: usize,
    /// Parts reduced and updated.
    pub parts: usize,
    /// Steps taken part in.
    pub steps: usize,
}

/// The step protocol's shared state (see the module doc).
pub struct StepProtocol<J, P: Platform = Std> {
    segments: GradientSegments<P>,
    jobs: WorkQueue<Job<J>, P>,
    weights: RawBuf,
    grad: RawBuf,
    aux: Box<[RawBuf]>,
    weight_tokens: Box<[P::Cell<()>]>,
    part_tokens: Box<[P::Cell<()>]>,
    claims: Box<[P::AtomicUsize]>,
    summaries: Box<[P::Cell<Vec<f64>>]>,
    losses: Box<[P::Cell<f32>]>,
    fed: CachePadded<P::AtomicUsize>,
    summarized: CachePadded<P::AtomicUsize>,
    updated: CachePadded<P::AtomicUsize>,
    stopped: P::AtomicBool,
    aborted: P::AtomicBool,
    fed_event: Event<P>,
    summarized_event: Event<P>,
    updated_event: Event<P>,
}

// SAFETY: the raw buffers are plain floats; every access holds the matching token and
// is ordered by the protocol in the module doc. Jobs move between threads (J: Send).
unsafe impl<J: Send, P: Platform> Send for StepProtocol<J, P> {}
// SAFETY: as above.
unsafe impl<J: Send, P: Platform> Sync for StepProtocol<J, P> {}

impl<J: Send, P: Platform> StepProtocol<J, P> {
    /// A protocol for steps of `n_slots` jobs over `weights` (and `aux` buffers of the
    /// same length), reduced and updated in `n_parts` parts.
    pub fn new(
        n_slots: usize,
        n_parts: usize,
        weights: Vec<f32>,
        aux: Vec<Vec<f32>>,
    ) -> Result<Self, SegmentsError> {
        let len = weights.len();
        if aux.iter().any(|a| a.len() != len) {
            return Err(SegmentsError::Layout(
                "aux buffers must be as long as the weights",
            ));
        }
        let segments = GradientSegments::new(n_slots, len, n_parts)?;
        let jobs = WorkQueue::try_with_capacity(n_slots)
            .ok_or(SegmentsError::Layout("too many slots for the work queue"))?;
        let cells = |n: usize| (0..n).map(|_| P::Cell::new(())).collect();
        Ok(StepProtocol {
            segments,
            jobs,
            weights: RawBuf::new(weights),
            grad: RawBuf::new(vec![0.0; len]),
            aux: aux.into_iter().map(RawBuf::new).collect(),
            weight_tokens: cells(n_parts),
            part_tokens: cells(n_parts),
            claims: (0..n_parts).map(|_| P::AtomicUsize::new(0)).collect(),
            summaries: (0..n_parts).map(|_| P::Cell::new(Vec::new())).collect(),
            losses: (0..n_slots).map(|_| P::Cell::new(0.0)).collect(),
            fed: CachePadded(P::AtomicUsize::new(0)),
            summarized: CachePadded(P::AtomicUsize::new(0)),
            updated: CachePadded(P::AtomicUsize::new(0)),
            stopped: P::AtomicBool::new(false),
            aborted: P::AtomicBool::new(false),
            fed_event: Event::new(),
            summarized_event: Event::new(),
            updated_event: Event::new(),
        })
    }

    /// Jobs per step.
    pub fn n_slots(&self) -> usize {
        self.segments.n_slots()
    }

    /// Parts per step.
    pub fn n_parts(&self) -> usize {
        self.segments.n_parts()
    }

    /// Steps fed so far (the step a failing participant was in is at most this - 1).
    pub fn steps_fed(&self) -> usize {
        // Relaxed: informational (error reports), orders nothing.
        self.fed.load(Ordering::Relaxed)
    }

    /// Leader, step 1: push step `step`'s jobs (exactly `n_slots`, slot order) and
    /// open the step. `step` must be the number of steps fed so far, and the previous
    /// step must have ended ([`StepProtocol::lead`] returned).
    pub fn feed(
        &self,
        step: usize,
        payloads: impl IntoIterator<Item = J>,
    ) -> Result<(), StepError<core::convert::Infallible>> {
        if self.steps_fed() != step {
            return Err(StepError::Feed {
                step,
                what: format!("{} steps were fed before", self.steps_fed()),
            });
        }
        // Count first: a rejected step must leave nothing in the queue.
        let payloads: Vec<J> = payloads.into_iter().collect();
        if payloads.len() != self.n_slots() {
            return Err(StepError::Feed {
                step,
                what: format!("{} jobs, expected {}", payloads.len(), self.n_slots()),
            });
        }
        for (slot, payload) in payloads.into_iter().enumerate() {
            let job = Job {
                step,
                slot,
                payload,
            };
            if self.jobs.push(job).is_err() {
                return Err(StepError::Aborted);
            }
        }
        // Relaxed: `fed` only lets waiting workers start looking. What they read is
        // ordered by the queue's stamps (each job was pushed after the Acquire of
        // `updated` in `lead`) or by `published`; a worker that does not yet see a
        // job goes on to the reduction, and the leader, which pushed them, pops
        // whatever is left.
        self.fed.store(step + 1, Ordering::Relaxed);
        self.fed_event.notify();
        Ok(())
    }

    /// Leader: take part in step `step` as a worker and return once every part is
    /// updated, with the step's decision.
    pub fn lead<H: StepHooks<J>>(
        &self,
        step: usize,
        hooks: &mut H,
        stats: &mut WorkerStats,
    ) -> Result<H::Decision, StepError<H::Error>> {
        let mut pending = None;
        let decision = self.guarded(step, 0, || {
            self.take_part(step, 0, hooks, &mut pending, true, stats)
        })?;
        if let Some(job) = pending {
            // Only the leader feeds, and it has not fed step + 1 yet.
            self.abort();
            return Err(StepError::Feed {
                step: job.step,
                what: "a job of a step that was not fed".into(),
            });
        }
        let target = (step + 1) * self.n_parts();
        // Acquire: pairs with every updater's Release increment: all updates of this
        // step happen before the leader feeds the next one.
        self.wait(&self.updated_event, || {
            self.updated.load(Ordering::Acquire) >= target
        })?;
        decision.ok_or(StepError::Aborted)
    }

    /// A non-leading worker (`worker >= 1`): take part in every step until the leader
    /// stops the run (`Ok`) or someone aborts it.
    pub fn work<H: StepHooks<J>>(
        &self,
        worker: usize,
        hooks: &mut H,
        stats: &mut WorkerStats,
    ) -> Result<(), StepError<H::Error>> {
        let mut pending = None;
        let mut step = 0;
        loop {
            if pending.is_none() && !self.wait_fed(step)? {
                return Ok(());
            }
            self.guarded(step, worker, || {
                self.take_part(step, worker, hooks, &mut pending, false, stats)
            })?;
            step += 1;
        }
    }

    /// Leader: no more steps; waiting workers return `Ok`.
    pub fn stop(&self) {
        // Relaxed: a flag with no data behind it; `notify`'s SeqCst fence orders it
        // before the waiters' re-check (see `Event`).
        self.stopped.store(true, Ordering::Relaxed);
        self.jobs.close();
        self.fed_event.notify();
    }

    /// End the run now: every current and future wait fails with `Aborted`.
    pub fn abort(&self) {
        // Relaxed: as in `stop`.
        self.aborted.store(true, Ordering::Relaxed);
        self.segments.abort();
        self.jobs.close();
        self.fed_event.notify();
        self.summarized_event.notify();
        self.updated_event.notify();
    }

    /// Whether the run was aborted.
    pub fn is_aborted(&self) -> bool {
        // Relaxed: see `abort`.
        self.aborted.load(Ordering::Relaxed)
    }

    /// Give back the weights, the last reduced gradient and the aux buffers (every
    /// participant is gone: `self` is owned).
    pub fn into_buffers(mut self) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let weights = self.weights.take();
        let grad = self.grad.take();
        let aux = self.aux.iter_mut().map(RawBuf::take).collect();
        (weights, grad, aux)
    }

    // ---- the protocol, one participant's view -----------------------------------

    /// Steps 2-5 for one participant. Returns the decision if this participant
    /// decided (the leader always does).
    fn take_part<H: StepHooks<J>>(
        &self,
        step: usize,
        worker: usize,
        hooks: &mut H,
        pending: &mut Option<Job<J>>,
        leader: bool,
        stats: &mut WorkerStats,
    ) -> Result<Option<H::Decision>, StepError<H::Error>> {
        stats.steps += 1;
        // 2. Compute.
        loop {
            let job = match pending.take() {
                Some(job) => job,
                None => match self.jobs.try_pop() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if job.step != step {
                *pending = Some(job);
                break;
            }
            let started = Instant::now();
            self.compute(&job, hooks).inspect_err(|_| self.abort())?;
            stats.busy += started.elapsed();
            stats.jobs += 1;
        }
        // 3. Reduce.
        self.segments.wait_published(step).map_err(aborted)?;
        let started = Instant::now();
        let n_parts = self.n_parts();
        let mut mine = Vec::new();
        for p in (0..n_parts).map(|i| (i + worker) % n_parts) {
            // Relaxed: mutual exclusion per step only; the data is ordered by
            // `published`, `summarized` and `updated`.
            if self.claims[p]
                .compare_exchange(step, step + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.reduce(step, p, hooks).inspect_err(|_| self.abort())?;
                mine.push(p);
            }
        }
        stats.busy += started.elapsed();
        stats.parts += mine.len();
        if mine.is_empty() && !leader {
            return Ok(None);
        }
        // 4. Decide.
        let target = (step + 1) * n_parts;
        // Acquire: pairs with every reducer's Release increment: every summary (and,
        // through `published`, every loss) is written.
        self.wait(&self.summarized_event, || {
            self.summarized.load(Ordering::Acquire) >= target
        })?;
        let started = Instant::now();
        let decision = self.decide(step, hooks).inspect_err(|_| self.abort())?;
        // 5. Update.
        for &p in &mine {
            self.update(p, &decision, hooks);
            // Release: pairs with the leader's Acquire in `lead`.
            self.updated.fetch_add(1, Ordering::Release);
        }
        if !mine.is_empty() {
            self.updated_event.notify();
        }
        stats.busy += started.elapsed();
        Ok(Some(decision))
    }

    // ---- helpers ------------------------------------------------------------------

    /// Run `f`; if it panics, abort the run and report which participant panicked in
    /// which step (instead of leaving the others waiting forever).
    fn guarded<R, E>(
        &self,
        step: usize,
        worker: usize,
        f: impl FnOnce() -> Result<R, StepError<E>>,
    ) -> Result<R, StepError<E>> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(_) => {
                self.abort();
                Err(StepError::Panicked { step, worker })
            }
        }
    }

    /// Wait for `fed > step`; `false` if the run was stopped first.
    fn wait_fed<E>(&self, step: usize) -> Result<bool, StepError<E>> {
        // Relaxed: see the store in `feed`; no data is read on the strength of `fed`.
        let fed = || self.fed.load(Ordering::Relaxed) > step;
        // Relaxed: a flag (see `stop`).
        let stopped = || self.stopped.load(Ordering::Relaxed);
        block_on(&self.fed_event, || fed() || stopped() || self.is_aborted());
        if fed() {
            Ok(true)
        } else if self.is_aborted() {
            Err(StepError::Aborted)
        } else {
            Ok(false)
        }
    }

    /// Block on `event` until `ready()`, or fail once the run is aborted.
    fn wait<E>(&self, event: &Event<P>, ready: impl Fn() -> bool) -> Result<(), StepError<E>> {
        block_on(event, || ready() || self.is_aborted());
        if ready() {
            Ok(())
        } else {
            Err(StepError::Aborted)
        }
    }

    /// Claim the job's slot, run the compute hook with every weight part shared,
    /// store the loss, publish.
    fn compute<H: StepHooks<J>>(
        &self,
        job: &Job<J>,
        hooks: &mut H,
    ) -> Result<(), StepError<H::Error>> {
        let mut slot = self.segments.claim(job.step, job.slot).map_err(aborted)?;
        let weights = &self.weights;
        let loss = with_all(&self.weight_tokens, &mut |_| {
            // SAFETY: every weight part's token is held shared; writers hold a token
            // exclusively, so no part is written meanwhile (the protocol orders the
            // update after every publish of this step).
            let w = unsafe { weights.slice(0..weights.len) };
            slot.write(|grad| hooks.compute(w, &job.payload, grad))
        })
        .map_err(StepError::Hook)?;
        self.losses[job.slot].with_mut(|l| {
            // SAFETY: slot `job.slot` is claimed by this thread: nobody else writes its
            // loss in this step, and readers wait for the publish below.
            unsafe { *l = loss }
        });
        slot.publish();
        Ok(())
    }

    /// Reduce part `p` (claimed) into the gradient and summarize it.
    fn reduce<H: StepHooks<J>>(
        &self,
        step: usize,
        p: usize,
        hooks: &mut H,
    ) -> Result<(), StepError<H::Error>> {
        let range = self.segments.part_range(p);
        let grad = &self.grad;
        self.part_tokens[p].with_mut(|_| {
            // SAFETY: part `p` is claimed by this thread for this step and its token is
            // held exclusively; the previous step's updater of the part finished
            // before this step was fed.
            let g = unsafe { grad.slice_mut(range.clone()) };
            self.segments.reduce_part(step, p, g)?;
            self.summaries[p].with_mut(|s| {
                // SAFETY: only the claimer of part `p` writes its summary; readers wait
                // for the `summarized` increment below.
                hooks.summarize(range.clone(), g, unsafe { &mut *s })
            });
            Ok::<_, SegmentsError>(())
        })?;
        // Release: pairs with the deciders' Acquire (summary and gradient written).
        self.summarized.fetch_add(1, Ordering::Release);
        self.summarized_event.notify();
        Ok(())
    }

    /// Run the decide hook over every loss and summary.
    fn decide<H: StepHooks<J>>(
        &self,
        step: usize,
        hooks: &H,
    ) -> Result<H::Decision, StepError<H::Error>> {
        with_all(&self.losses, &mut |losses| {
            let losses: Vec<f32> = losses.iter().map(|&&l| l).collect();
            with_all(&self.summaries, &mut |summaries| {
                hooks.decide(step, &losses, summaries)
            })
        })
        .map_err(StepError::Hook)
    }

    /// Run the update hook on part `p` (claimed by this thread this step).
    fn update<H: StepHooks<J>>(&self, p: usize, decision: &H::Decision, hooks: &mut H) {
        let range = self.segments.part_range(p);
        self.weight_tokens[p].with_mut(|_| {
            self.part_tokens[p].with_mut(|_| {
                // SAFETY: both tokens of part `p` are held exclusively by its claimer;
                // every reader of this step's weights published before the reduction,
                // and the next step is fed only after this update is counted.
                let (w, g) = unsafe {
                    (
                        self.weights.slice_mut(range.clone()),
                        self.grad.slice(range.clone()),
                    )
                };
                let mut aux: Vec<&mut [f32]> = self
                    .aux
                    .iter()
                    // SAFETY: as above; each aux buffer is a distinct allocation.
                    .map(|a| unsafe { a.slice_mut(range.clone()) })
                    .collect();
                hooks.update(decision, range.clone(), w, g, &mut aux);
            })
        });
    }
}

fn aborted<E>(e: SegmentsError) -> StepError<E> {
    match e {
        SegmentsError::Aborted => StepError::Aborted,
        other => StepError::Protocol(other),
    }
}

/// Run `f` with shared views of every cell's contents, holding each cell's tracked
/// read access for the duration.
fn with_all<T, C: SyncCell<T>, R>(cells: &[C], f: &mut dyn FnMut(&[&T]) -> R) -> R {
    fn go<'a, T, C: SyncCell<T>, R>(
        cells: &'a [C],
        acc: &mut Vec<&'a T>,
        f: &mut dyn FnMut(&[&T]) -> R,
    ) -> R {
        match cells.split_first() {
            None => f(acc),
            Some((first, rest)) => first.with(|p| {
                // SAFETY: the callers hold these cells only for reading, at points
                // where the protocol excludes writers (see each caller).
                acc.push(unsafe { &*p });
                let r = go(rest, acc, f);
                acc.pop();
                r
            }),
        }
    }
    go(cells, &mut Vec::with_capacity(cells.len()), f)
}

/// A heap buffer of floats reached through a raw pointer, so disjoint parts can be
/// borrowed by different threads without ever forming a reference to the whole.
struct RawBuf {
    ptr: *mut f32,
    len: usize,
}

impl RawBuf {
    fn new(v: Vec<f32>) -> Self {
        let b = v.into_boxed_slice();
        let len = b.len();
        RawBuf {
            ptr: Box::into_raw(b) as *mut f32,
            len,
        }
    }

    /// # Safety
    /// No exclusive borrow of an overlapping range may be live.
    unsafe fn slice(&self, r: Range<usize>) -> &[f32] {
        assert!(r.start <= r.end && r.end <= self.len);
        // SAFETY: in bounds (checked); aliasing is the caller's contract.
        unsafe { core::slice::from_raw_parts(self.ptr.add(r.start), r.len()) }
    }

    /// # Safety
    /// No other borrow of an overlapping range may be live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, r: Range<usize>) -> &mut [f32] {
        assert!(r.start <= r.end && r.end <= self.len);
        // SAFETY: in bounds (checked); aliasing is the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len()) }
    }

    /// Move the floats out, leaving an empty buffer.
    fn take(&mut self) -> Vec<f32> {
        let empty = RawBuf::new(Vec::new());
        let full = core::mem::replace(self, empty);
        let full = core::mem::ManuallyDrop::new(full);
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed slice in `new`, and
        // ownership moves back exactly once (`full` is never dropped).
        unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(full.ptr, full.len)).into_vec() }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: as in `take`: the pointer came from `Box::into_raw` and is released
        // exactly once (`take` swaps in a fresh empty buffer).
        unsafe {
            drop(Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                self.ptr, self.len,
            )))
        }
    }
}

/// Block until `done()` holds: re-check it up to [`Platform::LONG_SPIN_LIMIT`] times
/// (tens of microseconds with std; once or twice on the model checkers' spinning
/// platforms, never on their default ones) with a spin hint between, then park on
/// `event`. A step's waits are usually short (the other workers are finishing the
/// same amount of work), and parking costs a futex sleep and wake-up each time. Spin
/// and park re-check the same condition, so a waiter leaves only once it held.
fn block_on<P: Platform>(event: &Event<P>, done: impl Fn() -> bool) {
    if !spin_until::<P>(P::LONG_SPIN_LIMIT, &done) {
        event.wait_until(done);
    }
}

/// Re-check `ready()` up to `limit` times, with [`Platform::spin_loop`] after each
/// miss; whether it held.
fn spin_until<P: Platform>(limit: u32, ready: impl Fn() -> bool) -> bool {
    for _ in 0..limit {
        if ready() {
            return true;
        }
        P::spin_loop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Std;

    /// The leader's misuses the trainer never makes (a wrong job count, a step out of
    /// order, a step fed twice) are rejected with the step named, and a rejected step
    /// leaves nothing in the queue: the next correct feed queues exactly its jobs.
    #[test]
    fn feed_rejects_a_wrong_count_or_step_and_queues_nothing() {
        let p = StepProtocol::<u32, Std>::new(2, 1, vec![0.0; 8], vec![]).unwrap();
        let feed_error = |r: Result<(), StepError<core::convert::Infallible>>| match r {
            Err(StepError::Feed { step, what }) => (step, what),
            other => panic!("expected a feed error, got {other:?}"),
        };
        let (step, what) = feed_error(p.feed(0, [7]));
        assert_eq!((step, what.as_str()), (0, "1 jobs, expected 2"));
        let (step, what) = feed_error(p.feed(0, [7, 8, 9]));
        assert_eq!((step, what.as_str()), (0, "3 jobs, expected 2"));
        let (step, what) = feed_error(p.feed(1, [7, 8]));
        assert_eq!((step, what.as_str()), (1, "0 steps were fed before"));
        assert_eq!(p.steps_fed(), 0);
        assert!(p.jobs.try_pop().is_err(), "a rejected feed queued a job");

        p.feed(0, [7, 8]).unwrap();
        assert_eq!(p.steps_fed(), 1);
        let (step, _) = feed_error(p.feed(0, [7, 8]));
        assert_eq!(step, 0);
        let queued: Vec<(usize, usize, u32)> = core::iter::from_fn(|| p.jobs.try_pop().ok())
            .map(|j| (j.step, j.slot, j.payload))
            .collect();
        assert_eq!(queued, vec![(0, 0, 7), (0, 1, 8)]);
    }
}
