//! shuttle randomized model checks of `cllm::segments::GradientSegments` over the
//! `Shuttle` platform (random and PCT schedulers, `CLLM_SHUTTLE_ITERS` iterations each,
//! default 1000): 3-4 workers, 4-6 slots, 2-3 parts, 3 consecutive steps.
//!
//! Owns: the GradientSegments shuttle properties only. Workers take slot indices from a
//! per-step shared counter and part indices from a per-step `WorkQueue<_, Shuttle>`, so
//! which worker fills or reduces what, and how steps overlap, is up to the schedule.
//! Every step's output must equal, bitwise, the documented tree sum computed here with
//! plain f32 adds, whatever the schedule; a lost wake-up is a shuttle deadlock report.
//! Must never touch: `tests/common` (used, not changed) or any other protocol's tests.

mod common;

use common::watchdog;

/// Bound one shuttle test: 300 s per 1,000 iterations of each scheduler
/// (`CLLM_SHUTTLE_ITERS`), over ten times the measured time on a loaded 2-core
/// machine and far below CI's limit; a hang exits 124 naming the test.
fn bound(name: &str) -> watchdog::Watchdog {
    let iters = common::shuttle_iterations().max(1) as f64;
    watchdog::Watchdog::arm(
        name,
        std::time::Duration::from_secs_f64(300.0 * iters / 1000.0),
    )
}

use cllm::queue::WorkQueue;
use cllm::segments::{GradientSegments, PART_ALIGN};
use common::{shuttle_check, Shuttle};
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::sync::Arc;
use shuttle::thread;

const STEPS: usize = 3;

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

/// A deterministic value per (step, slot, element): random sign, mantissa and an
/// exponent spread over about 2^-20..2^20, so the order of additions changes bits.
fn value(step: usize, slot: usize, i: usize) -> f32 {
    let mut z = (step as u64) << 40 ^ (slot as u64) << 20 ^ i as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mantissa = 1.0 + (z & 0xff_ffff) as f32 / (1u32 << 24) as f32;
    let exponent = ((z >> 24) % 41) as i32 - 20;
    let sign = if z >> 63 == 0 { 1.0 } else { -1.0 };
    sign * mantissa * 2f32.powi(exponent)
}

fn expected_bits(step: usize, n_slots: usize, len: usize) -> Vec<u32> {
    (0..len)
        .map(|i| {
            let column: Vec<f32> = (0..n_slots).map(|s| value(step, s, i)).collect();
            tree_sum(&column).to_bits()
        })
        .collect()
}

/// `workers` threads run `STEPS` steps over `n_slots` slots of `len` floats reduced in
/// `n_parts` parts; every step's assembled output must match the tree sum bitwise.
fn check(workers: usize, n_slots: usize, n_parts: usize, len: usize) {
    let expected: Vec<Vec<u32>> = (0..STEPS)
        .map(|step| expected_bits(step, n_slots, len))
        .collect();
    shuttle_check(move || {
        let seg = Arc::new(GradientSegments::<Shuttle>::new(n_slots, len, n_parts).unwrap());
        let next_slot: Arc<Vec<AtomicUsize>> =
            Arc::new((0..STEPS).map(|_| AtomicUsize::new(0)).collect());
        let parts: Arc<Vec<WorkQueue<usize, Shuttle>>> = Arc::new(
            (0..STEPS)
                .map(|_| {
                    let q = WorkQueue::with_capacity(n_parts);
                    for p in 0..n_parts {
                        q.push(p).unwrap();
                    }
                    q.close();
                    q
                })
                .collect(),
        );
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (seg, next_slot, parts) = (seg.clone(), next_slot.clone(), parts.clone());
                thread::spawn(move || {
                    let mut done = Vec::new();
                    for step in 0..STEPS {
                        loop {
                            // Relaxed: a ticket counter; the slot protocol orders the data.
                            let slot = next_slot[step].fetch_add(1, Ordering::Relaxed);
                            if slot >= n_slots {
                                break;
                            }
                            let mut w = seg.claim(step, slot).unwrap();
                            w.write(|g| {
                                for (i, x) in g.iter_mut().enumerate() {
                                    *x = value(step, slot, i);
                                }
                            });
                            w.publish();
                        }
                        while let Some(part) = parts[step].pop() {
                            let mut out = vec![f32::NAN; seg.part_range(part).len()];
                            seg.reduce_part(step, part, &mut out).unwrap();
                            done.push((step, part, out));
                        }
                    }
                    done
                })
            })
            .collect();
        let mut got = vec![vec![f32::NAN; len]; STEPS];
        let mut reduced = vec![vec![0usize; n_parts]; STEPS];
        for h in handles {
            for (step, part, out) in h.join().unwrap() {
                reduced[step][part] += 1;
                got[step][seg.part_range(part)].copy_from_slice(&out);
            }
        }
        assert_eq!(
            reduced,
            vec![vec![1; n_parts]; STEPS],
            "each part once per step"
        );
        for (step, got) in got.iter().enumerate() {
            let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
            assert_eq!(
                got, expected[step],
                "step {step}: {workers} workers, {n_slots} slots, {n_parts} parts"
            );
        }
        assert_eq!(seg.completed_steps(), STEPS);
    });
}

/// A length that gives every one of `n_parts` parts a non-empty range on the
/// PART_ALIGN grid, with a tail that is not a multiple of the SIMD width.
fn len_for(n_parts: usize) -> usize {
    n_parts * PART_ALIGN + 5
}

#[test]
fn three_workers_four_slots_two_parts() {
    let _w = bound("shuttle_segments::three_workers_four_slots_two_parts");
    check(3, 4, 2, len_for(2));
}

#[test]
fn three_workers_five_slots_three_parts() {
    let _w = bound("shuttle_segments::three_workers_five_slots_three_parts");
    check(3, 5, 3, len_for(3));
}

#[test]
fn four_workers_six_slots_three_parts() {
    let _w = bound("shuttle_segments::four_workers_six_slots_three_parts");
    check(4, 6, 3, len_for(3));
}

/// More workers than there is work per step for half of them: idle workers race
/// ahead to the next step's claims while the slots are still being reduced.
#[test]
fn four_workers_five_slots_two_parts_short_len() {
    let _w = bound("shuttle_segments::four_workers_five_slots_two_parts_short_len");
    check(4, 5, 2, 7);
}
