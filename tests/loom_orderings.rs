//! loom models for the atomic orderings the other loom files cannot see, over
//! `LoomPoint` (a schedule point before every fence; see `tests/loom_point`),
//! exhaustive within a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides).
//!
//! Owns: one small model per protocol whose counters publish data right before an
//! `Event::notify` (the step protocol's `summarized` and `updated`, the team's
//! `generation` and `done`, the prefetch ring's `head` and `done`), and the
//! segments' unpublished-slot hand-back. In each, the data a counter publishes sits
//! in loom-tracked cells, so a reader that sees the count without a happens-before
//! edge to the writer is a loom causality report; the models also check their
//! results (every part updated once per step, every item in order). The seeded bugs
//! these kill are listed in `verification/mutants/catalogue-orderings.tsv`.
//! Must never touch: `tests/common` (used, not changed) or any protocol's source.

mod common;
#[path = "loom_point/mod.rs"]
mod loom_point;
mod step_toy;

use cllm::queue::{PrefetchError, PrefetchQueue, WorkQueue};
use cllm::segments::{GradientSegments, SegmentsError, PART_ALIGN};
use cllm::step::{StepHooks, StepProtocol, Team, WorkerStats};
use cllm::sync::SyncCell;
use common::{loom_model, LoomCell};
use core::ops::Range;
use loom::sync::Arc;
use loom::thread;
use loom_point::LoomPoint;
use step_toy::*;

// ---- the step protocol ------------------------------------------------------------

#[derive(Debug)]
struct Never;

/// Hooks that record which (step, part) each participant updated.
#[derive(Default)]
struct Hooks {
    updates: Vec<(usize, usize)>,
}

impl StepHooks<Payload> for Hooks {
    type Error = Never;
    type Decision = Decision;

    fn compute(&mut self, w: &[f32], job: &Payload, grad: &mut [f32]) -> Result<f32, Never> {
        Ok(job_gradient(w, *job, grad))
    }
    fn summarize(&mut self, range: Range<usize>, grad: &[f32], out: &mut Vec<f64>) {
        part_summary(range, grad, out);
    }
    fn decide(&self, step: usize, losses: &[f32], s: &[&Vec<f64>]) -> Result<Decision, Never> {
        Ok(decision(step, losses, s))
    }
    fn update(
        &mut self,
        d: &Decision,
        range: Range<usize>,
        weights: &mut [f32],
        grad: &[f32],
        aux: &mut [&mut [f32]],
    ) {
        part_update(d.c, weights, grad, aux[0]);
        self.updates.push((d.step, range.start / PART_ALIGN));
    }
}

/// The leader feeds and leads two steps while one worker runs `work`: a reader that
/// sees `summarized` or `updated` before the summaries or weight updates they count
/// are ordered before it (the next step's job reads every weight) is a causality
/// report. Every (step, part) is updated exactly once and both participants agree on
/// each step's decision.
#[test]
fn step_counters_order_what_they_count() {
    const N_PARTS: usize = 2;
    const STEPS: usize = 2;
    loom_model(|| {
        let len = N_PARTS * PART_ALIGN;
        let protocol = Arc::new(
            StepProtocol::<Payload, LoomPoint>::new(
                2,
                N_PARTS,
                initial_weights(len),
                vec![vec![0.0; len]],
            )
            .unwrap(),
        );
        let worker = {
            let protocol = protocol.clone();
            thread::spawn(move || {
                let mut hooks = Hooks::default();
                let mut stats = WorkerStats::default();
                protocol.work(1, &mut hooks, &mut stats).unwrap();
                hooks.updates
            })
        };
        let mut hooks = Hooks::default();
        let mut stats = WorkerStats::default();
        for step in 0..STEPS {
            protocol
                .feed(step, (0..2).map(|slot| Payload { step, slot }))
                .unwrap();
            protocol.lead(step, &mut hooks, &mut stats).unwrap();
        }
        protocol.stop();
        let mut updates = worker.join().unwrap();
        updates.extend(hooks.updates);
        updates.sort_unstable();
        let want: Vec<_> = (0..STEPS)
            .flat_map(|s| (0..N_PARTS).map(move |p| (s, p)))
            .collect();
        assert_eq!(updates, want, "each part updated once per step");
    });
}

/// Three participants (the leader and two workers), two steps: every (step, part) is
/// updated exactly once, and any job of step 1 that reads a weight part before its
/// step-0 update is ordered after it is a causality report. This is the smallest
/// model in which the leader's Acquire on `updated` could matter (the popper of a
/// step-1 job is neither the leader nor the updater), yet it does not kill a Relaxed
/// load there: `feed` stores `fed` after its first push's `notify` fence, which
/// acquires the updates the Relaxed load saw, so a worker that waits for `fed` is
/// ordered. Only a late worker that pops step 1's job before `fed` is stored is not,
/// and that schedule needs three preemptions (`verification/orderings.md`). Preemption
/// bound 1 (`LOOM_MAX_PREEMPTIONS` overrides): at 2 the model exceeds loom's default
/// branch limit.
#[test]
fn step_leader_acquires_updates_before_a_third_participant_reads_them() {
    const N_PARTS: usize = 2;
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
    );
    builder.check(|| {
        let len = N_PARTS * PART_ALIGN;
        let protocol = Arc::new(
            StepProtocol::<Payload, LoomPoint>::new(
                2,
                N_PARTS,
                initial_weights(len),
                vec![vec![0.0; len]],
            )
            .unwrap(),
        );
        let workers: Vec<_> = (1..3)
            .map(|w| {
                let protocol = protocol.clone();
                thread::spawn(move || {
                    let mut hooks = Hooks::default();
                    let mut stats = WorkerStats::default();
                    protocol.work(w, &mut hooks, &mut stats).unwrap();
                    hooks.updates
                })
            })
            .collect();
        let mut hooks = Hooks::default();
        let mut stats = WorkerStats::default();
        for step in 0..2 {
            protocol
                .feed(step, (0..2).map(|slot| Payload { step, slot }))
                .unwrap();
            protocol.lead(step, &mut hooks, &mut stats).unwrap();
        }
        protocol.stop();
        let mut updates = hooks.updates;
        for w in workers {
            updates.extend(w.join().unwrap());
        }
        updates.sort_unstable();
        assert_eq!(updates, vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
    });
}

// ---- the team ----------------------------------------------------------------------

/// One loom-tracked result cell per part.
struct Cells(Vec<LoomCell<usize>>);
// SAFETY: every access goes through loom's tracked cell, so an access the protocol
// fails to order is reported by loom instead of racing silently.
unsafe impl Sync for Cells {}
// SAFETY: as above.
unsafe impl Send for Cells {}

/// A leader and one helper run two tasks: the helper must see the task the leader
/// wrote (`generation`), and the leader must see the helper's part finished (`done`)
/// before `run` returns and it reads the cells.
#[test]
fn team_counters_order_the_task_and_the_parts() {
    loom_model(|| {
        let team = Arc::new(Team::<LoomPoint>::new(2));
        let cells = Arc::new(Cells((0..2).map(|_| LoomCell::new(0)).collect()));
        let helper = {
            let team = team.clone();
            thread::spawn(move || team.help(1))
        };
        for t in 0..2 {
            let c = cells.clone();
            team.run(&|i| {
                // SAFETY: part i is the only writer of cell i during this task; the
                // leader reads the cells only after `run` returns.
                c.0[i].with_mut(|x| unsafe { *x = 10 * t + i })
            });
            // SAFETY: `run` returned: every part of this task finished writing.
            let seen: Vec<usize> = (0..2).map(|i| cells.0[i].with(|x| unsafe { *x })).collect();
            assert_eq!(seen, vec![10 * t, 10 * t + 1], "task {t}");
        }
        team.stop();
        helper.join().unwrap();
    });
}

// ---- the prefetch ring ---------------------------------------------------------------

/// Capacity 1, two items, then the producer's error: the second send reuses the slot
/// the consumer just read (`head`), and the error is read after `done`.
#[test]
fn prefetch_head_and_done_order_the_slot_and_the_outcome() {
    loom_model(|| {
        let mut q = PrefetchQueue::<usize, &'static str, LoomPoint>::spawn(1, |tx| {
            for x in 0..2 {
                if tx.send(x).is_err() {
                    panic!("the consumer is alive: send must not fail");
                }
            }
            Err("boom")
        })
        .unwrap();
        for want in 0..2 {
            assert_eq!(q.recv().unwrap(), Some(want), "items in order");
        }
        assert!(matches!(q.recv(), Err(PrefetchError::Producer("boom"))));
        assert!(
            matches!(q.recv(), Ok(None)),
            "end of stream after the error"
        );
    });
}

// ---- the work queue -------------------------------------------------------------------

/// Capacity 1, two items through one slot: the second push overwrites the slot the
/// popper just read, so it must acquire the popper's free-stamp.
#[test]
fn work_queue_stamps_order_the_reused_slot() {
    loom_model(|| {
        let q = Arc::new(WorkQueue::<usize, LoomPoint>::with_capacity(1));
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                for x in 0..2 {
                    q.push(x).unwrap();
                }
            })
        };
        assert_eq!(q.pop(), Some(0));
        assert_eq!(q.pop(), Some(1));
        producer.join().unwrap();
    });
}

// ---- the gradient segments --------------------------------------------------------------

/// A writer claims a slot, writes it and gives it back unpublished (a failed job); a
/// second writer, retrying while the slot is taken, claims the same slot for the same
/// step and overwrites it, so it must acquire the hand-back. The second writer's
/// values are what the reduction sees, whoever claimed first.
#[test]
fn segments_unpublished_hand_back_orders_the_rewrite() {
    loom_model(|| {
        let seg = Arc::new(GradientSegments::<LoomPoint>::new(1, 4, 1).unwrap());
        let first = {
            let seg = seg.clone();
            thread::spawn(move || {
                // If the second writer got the slot first, there is nothing to hand
                // back (it publishes, and the slot stays taken for this step).
                match seg.claim(0, 0) {
                    Ok(mut w) => {
                        w.write(|g| g.fill(1.0));
                        drop(w);
                    }
                    Err(SegmentsError::SlotTaken { .. }) => {}
                    Err(e) => panic!("claim: {e}"),
                }
            })
        };
        let mut w = loop {
            match seg.claim(0, 0) {
                Ok(w) => break w,
                Err(SegmentsError::SlotTaken { .. }) => thread::yield_now(),
                Err(e) => panic!("claim: {e}"),
            }
        };
        w.write(|g| g.fill(2.0));
        w.publish();
        first.join().unwrap();
        let mut out = vec![0.0; 4];
        seg.reduce_part(0, 0, &mut out).unwrap();
        assert_eq!(out, vec![2.0; 4]);
    });
}

/// Two workers, two slots, two parts, two steps, each fills its slot and reduces its
/// part: the last reducer of a step frees the slots (`reduced`, then the stamps), and
/// a writer of the next step must not overwrite a slot another reducer still reads.
#[test]
fn segments_reduced_count_and_stamps_order_the_slot_reuse() {
    loom_model(|| {
        let len = 2 * PART_ALIGN;
        let seg = Arc::new(GradientSegments::<LoomPoint>::new(2, len, 2).unwrap());
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let seg = seg.clone();
                thread::spawn(move || {
                    let mut sums = Vec::new();
                    for step in 0..2 {
                        let mut c = seg.claim(step, w).unwrap();
                        c.write(|g| g.fill((1 + step + 2 * w) as f32));
                        c.publish();
                        let mut out = vec![0.0; seg.part_range(w).len()];
                        seg.reduce_part(step, w, &mut out).unwrap();
                        sums.push(out[0]);
                    }
                    sums
                })
            })
            .collect();
        for w in workers {
            // Step 0 slots hold 1 and 3, step 1 slots 2 and 4.
            assert_eq!(w.join().unwrap(), vec![4.0, 6.0]);
        }
        assert_eq!(seg.completed_steps(), 2);
    });
}

/// Three threads: two reducers of step 0 (one part each) and a writer of step 1 that
/// reduces nothing. The last reducer frees the slot, so it must inherit the other
/// reducer's reads (`reduced` is AcqRel) before the writer, which acquires only the
/// freeing stamp, may overwrite the slot. With two threads the writer is always one
/// of the reducers, whose own program order or next fence hides a missing Acquire.
#[test]
fn segments_last_reducer_inherits_the_other_reducers_reads() {
    loom_model(|| {
        let len = 2 * PART_ALIGN;
        let seg = Arc::new(GradientSegments::<LoomPoint>::new(1, len, 2).unwrap());
        let mut c = seg.claim(0, 0).unwrap();
        c.write(|g| g.fill(1.0));
        c.publish();
        let reducers: Vec<_> = (0..2)
            .map(|p| {
                let seg = seg.clone();
                thread::spawn(move || {
                    let mut out = vec![0.0; seg.part_range(p).len()];
                    seg.reduce_part(0, p, &mut out).unwrap();
                    out[0]
                })
            })
            .collect();
        let mut c = seg.claim(1, 0).unwrap();
        c.write(|g| g.fill(2.0));
        c.publish();
        for r in reducers {
            assert_eq!(r.join().unwrap(), 1.0, "step 0 reads step 0's values");
        }
        let mut out = vec![0.0; len];
        seg.reduce_all(1, &mut out).unwrap();
        assert_eq!(out, vec![2.0; len]);
    });
}
