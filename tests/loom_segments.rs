//! loom model checks of `cllm::segments::GradientSegments` over the `Loom` platform,
//! exhaustive within a preemption bound of 2 (`LOOM_MAX_PREEMPTIONS` overrides).
//!
//! Owns: the GradientSegments loom properties only. Two workers, two slots, two parts,
//! two consecutive steps, so a worker may claim a slot for step 1 while the other is
//! still reducing step 0: the slot buffers are loom-tracked cells, so if the protocol
//! let a slot be rewritten while a reduction may still read it, loom reports a
//! causality violation. A lost wake-up is a loom deadlock report. Every step's output
//! must equal, bitwise, the documented tree sum computed here with plain f32 adds; and
//! an `abort` must end a waiting reducer and a waiting writer with `Aborted`.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;

use cllm::segments::{GradientSegments, SegmentsError, PART_ALIGN};
use common::{loom_model, Loom};
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering::SeqCst;

const N_SLOTS: usize = 2;
const N_PARTS: usize = 2;
const STEPS: usize = 2;

/// The documented order, written independently of the library:
/// tree(x) = x[0] for one input, else tree(x[..n/2]) + tree(x[n/2..]).
fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [] => unreachable!("no inputs"),
        [one] => *one,
        _ => {
            let mid = values.len() / 2;
            tree_sum(&values[..mid]) + tree_sum(&values[mid..])
        }
    }
}

/// The value slot `slot` holds at element `i` in step `step`: mixed signs and
/// magnitudes, different per step so a stale slot would show in the result.
fn value(step: usize, slot: usize, i: usize) -> f32 {
    const V: [f32; 7] = [1.0e8, -1.0e8, 3.0, 0.5, -7.25e-3, 2.5e7, 1.0];
    V[(3 * step + 2 * slot + i) % V.len()] * (1 + step) as f32
}

/// Bits of the expected output of `step` over `0..len`.
fn expected_bits(step: usize, len: usize) -> Vec<u32> {
    (0..len)
        .map(|i| {
            let column: Vec<f32> = (0..N_SLOTS).map(|s| value(step, s, i)).collect();
            tree_sum(&column).to_bits()
        })
        .collect()
}

fn fill(seg: &GradientSegments<Loom>, step: usize, slot: usize) {
    let mut w = seg.claim(step, slot).unwrap();
    assert_eq!((w.step(), w.slot()), (step, slot));
    w.write(|g| {
        for (i, x) in g.iter_mut().enumerate() {
            *x = value(step, slot, i);
        }
    });
    w.publish();
}

/// Assemble each step's parts and compare with the independent tree sum, bitwise;
/// then check the segments' own bookkeeping and that the finished steps are closed.
fn check_outputs(seg: &GradientSegments<Loom>, len: usize, parts: &[(usize, usize, Vec<f32>)]) {
    for step in 0..STEPS {
        let mut got = vec![f32::NAN; len];
        let mut seen = [false; N_PARTS];
        for (s, p, out) in parts {
            if *s == step {
                assert!(!seen[*p], "part {p} reduced twice in step {step}");
                seen[*p] = true;
                got[seg.part_range(*p)].copy_from_slice(out);
            }
        }
        assert!(seen.iter().all(|&x| x), "every part reduced in step {step}");
        let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, expected_bits(step, len), "step {step} output");
    }
    assert_eq!(seg.completed_steps(), STEPS);
    assert!(matches!(
        seg.claim(STEPS - 1, 0),
        Err(SegmentsError::SlotPassed { .. })
    ));
    let mut out = vec![0.0; seg.part_range(0).len()];
    assert!(matches!(
        seg.reduce_part(STEPS - 1, 0, &mut out),
        Err(SegmentsError::PartNotDue { .. })
    ));
}

/// Worker `w` fills slot `w` and then reduces part `w`, for each of two steps.
fn fixed_assignment(len: usize) {
    loom_model(move || {
        let seg = Arc::new(GradientSegments::<Loom>::new(N_SLOTS, len, N_PARTS).unwrap());
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let seg = seg.clone();
                thread::spawn(move || {
                    let mut parts = Vec::new();
                    for step in 0..STEPS {
                        fill(&seg, step, w);
                        let mut out = vec![0.0; seg.part_range(w).len()];
                        seg.reduce_part(step, w, &mut out).unwrap();
                        parts.push((step, w, out));
                    }
                    parts
                })
            })
            .collect();
        let parts: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        check_outputs(&seg, len, &parts);
    });
}

/// With len < PART_ALIGN the first part is empty and the second holds everything
/// (parts are cut on the PART_ALIGN grid); both reducers still hold tracked read
/// access to every slot while they run.
#[test]
fn two_workers_two_steps_small_len() {
    for len in [3, 5] {
        fixed_assignment(len);
    }
}

/// With len = 2 * PART_ALIGN + 3 both parts are non-empty (and the second is not a
/// multiple of the SIMD width), so each worker really sums its own range.
#[test]
fn two_workers_two_steps_both_parts_non_empty() {
    let len = 2 * PART_ALIGN + 3;
    let seg = GradientSegments::<cllm::sync::Std>::new(N_SLOTS, len, N_PARTS).unwrap();
    assert!(!seg.part_range(0).is_empty() && !seg.part_range(1).is_empty());
    fixed_assignment(len);
}

/// Workers take slot and part indices from shared per-step counters, so either may
/// fill both slots or reduce both parts, and which worker claims which slot in step 1
/// is decided by the schedule.
#[test]
fn two_workers_two_steps_dynamic_assignment() {
    loom_model(|| {
        let len = 4;
        let seg = Arc::new(GradientSegments::<Loom>::new(N_SLOTS, len, N_PARTS).unwrap());
        let next_slot = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let next_part = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (seg, next_slot, next_part) =
                    (seg.clone(), next_slot.clone(), next_part.clone());
                thread::spawn(move || {
                    let mut parts = Vec::new();
                    for step in 0..STEPS {
                        loop {
                            // Relaxed: a ticket counter; the slot protocol orders the data.
                            let slot =
                                next_slot[step].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if slot >= N_SLOTS {
                                break;
                            }
                            fill(&seg, step, slot);
                        }
                        loop {
                            // Relaxed: a ticket counter, as above.
                            let part =
                                next_part[step].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if part >= N_PARTS {
                                break;
                            }
                            let mut out = vec![0.0; seg.part_range(part).len()];
                            seg.reduce_part(step, part, &mut out).unwrap();
                            parts.push((step, part, out));
                        }
                    }
                    parts
                })
            })
            .collect();
        let parts: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        check_outputs(&seg, len, &parts);
        assert_eq!(next_slot[1].load(SeqCst), N_SLOTS + 2);
    });
}

/// A participant that fails calls `abort`: a reducer waiting for a slot nobody will
/// publish and a writer waiting for a slot of the next step both return `Aborted`
/// (a lost wake-up is a loom deadlock report), and every later wait fails at once.
#[test]
fn abort_ends_a_waiting_reducer_and_a_waiting_writer() {
    loom_model(|| {
        let len = 4;
        let seg = Arc::new(GradientSegments::<Loom>::new(N_SLOTS, len, N_PARTS).unwrap());
        // Slot 0 of step 0 is published and never reduced; slot 1 never is.
        fill(&seg, 0, 0);
        let reducer = {
            let seg = seg.clone();
            thread::spawn(move || {
                let mut out = vec![0.0; seg.part_range(1).len()];
                seg.reduce_part(0, 1, &mut out)
            })
        };
        let writer = {
            let seg = seg.clone();
            thread::spawn(move || seg.claim(1, 0).map(|w| w.step()))
        };
        seg.abort();
        assert!(matches!(
            reducer.join().unwrap(),
            Err(SegmentsError::Aborted)
        ));
        assert!(matches!(
            writer.join().unwrap(),
            Err(SegmentsError::Aborted)
        ));
        assert!(seg.is_aborted());
        assert!(matches!(seg.wait_published(0), Err(SegmentsError::Aborted)));
    });
}
