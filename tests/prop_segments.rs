//! Property tests of `cllm::segments::reduce` and `cllm::segments::GradientSegments`
//! against an independent model: a plain recursive f32 tree sum written here, compared
//! bitwise.
//!
//! Owns: (a) the reduction kernels (scalar and, where the CPU has it, AVX2) against the
//! model over 1..=33 slots and 0..=5000 floats (tails that are not a multiple of 8,
//! lengths past the 4096-float chunk); (b) real std threads filling and reducing the
//! segments for 1..=3 steps, equal to the model and the same for every thread count;
//! (c) every misuse is a typed error and leaves the segments usable; (d) parts tile
//! `0..len` in order on the PART_ALIGN grid. A deterministic test shows the generated
//! values make summation order visible in the bits, so the bitwise checks can fail.
//! Properties that could hang (threads waiting on each other) run forked with a timeout.
//! Must never touch: the library's own code or any other protocol's tests.

use cllm::isa::Isa;
use cllm::segments::reduce::{pairwise_sum_into, pairwise_sum_range_into};
use cllm::segments::{GradientSegments, SegmentsError, PART_ALIGN};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---- the independent model ----------------------------------------------------------

/// The documented order: tree(x) = x[0] for one input, else
/// tree(x[..n/2]) + tree(x[n/2..]). Plain f32 adds, one element at a time.
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

/// Left-to-right: ((x0 + x1) + x2) + ... -- the order the reduction must NOT use.
fn sequential_sum(values: &[f32]) -> f32 {
    values[1..].iter().fold(values[0], |acc, &x| acc + x)
}

/// Bits of the model's output for element `i` of every slot.
fn model_bits(inputs: &[Vec<f32>], len: usize, sum: fn(&[f32]) -> f32) -> Vec<u32> {
    (0..len)
        .map(|i| {
            let column: Vec<f32> = inputs.iter().map(|s| s[i]).collect();
            sum(&column).to_bits()
        })
        .collect()
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// splitmix64: a seeded stream for the values.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A float for (seed, slot, element): negative about half the time; mostly moderate
/// magnitudes (2^-24..2^24, where rounding of sums is visible), some huge (up to 2^100,
/// so no sum of 33 overflows), some tiny (down to subnormals), some exact zeros of
/// either sign, and some exact negations of a neighbour's value (cancellation).
fn value(seed: u64, slot: usize, i: usize) -> f32 {
    let z = mix(seed ^ mix((slot as u64) << 32 ^ i as u64));
    let mantissa = 1.0 + (z & 0xff_ffff) as f32 / (1u32 << 24) as f32;
    let sign = if z >> 63 == 0 { 1.0f32 } else { -1.0 };
    let pick = (z >> 24) % 100;
    let exponent = ((z >> 32) % 49) as i32;
    // 2^e computed in f64 (exact for every e used here, including subnormal f32s).
    let pow2 = |e: i32| 2f64.powi(e) as f32;
    match pick {
        0..=69 => sign * mantissa * pow2(exponent - 24),
        70..=79 => sign * mantissa * pow2(52 + exponent),
        80..=89 => sign * mantissa * pow2(-149 + exponent * 2),
        90..=93 => sign * 0.0,
        _ if slot > 0 => -value(seed, slot - 1, i),
        _ => sign,
    }
}

fn inputs(seed: u64, n_slots: usize, len: usize) -> Vec<Vec<f32>> {
    (0..n_slots)
        .map(|s| (0..len).map(|i| value(seed, s, i)).collect())
        .collect()
}

/// Every instruction-set path this CPU runs (portable always).
fn kernels() -> Vec<Isa> {
    Isa::available()
}

/// Lengths biased to the interesting places: short (SIMD tails), around the
/// 4096-float chunk, and anywhere up to 5000.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=40, 4090usize..=4105, 0usize..=5000]
}

// ---- meaningfulness: order is visible in the bits -----------------------------------

/// For [1e8, 1, -1e8, 1] the tree gives (1e8 + 1) + (-1e8 + 1) = 1e8 - 1e8 = 0 (each
/// +1 is absorbed: the f32 spacing at 1e8 is 8), while left to right gives
/// ((1e8 + 1) - 1e8) + 1 = 1. The library must give the tree's 0.
#[test]
fn summation_order_is_visible_and_the_tree_is_used() {
    let xs = [1.0e8f32, 1.0, -1.0e8, 1.0];
    assert_eq!(tree_sum(&xs), 0.0);
    assert_eq!(sequential_sum(&xs), 1.0);
    let columns: Vec<[f32; 1]> = xs.iter().map(|&x| [x]).collect();
    let refs: Vec<&[f32]> = columns.iter().map(|c| &c[..]).collect();
    for kernel in kernels() {
        let mut out = [f32::NAN];
        pairwise_sum_into(&refs, &mut out, kernel);
        assert_eq!(out[0].to_bits(), 0.0f32.to_bits(), "{kernel:?}");
    }
}

/// The generated values make order matter: for every slot count from 3 up, left to
/// right differs from the tree in many elements (and the library agrees with the
/// tree, not with left to right).
#[test]
fn generated_values_make_order_matter() {
    let len = 2000;
    for n_slots in 3..=33 {
        let ins = inputs(0x5eed + n_slots as u64, n_slots, len);
        let tree = model_bits(&ins, len, tree_sum);
        let seq = model_bits(&ins, len, sequential_sum);
        let differ = tree.iter().zip(&seq).filter(|(a, b)| a != b).count();
        assert!(differ >= len / 20, "{n_slots} slots: only {differ} differ");
        let refs: Vec<&[f32]> = ins.iter().map(|s| &s[..]).collect();
        let mut out = vec![0.0; len];
        pairwise_sum_into(&refs, &mut out, cllm::isa::active());
        assert_eq!(bits(&out), tree, "{n_slots} slots");
    }
}

// ---- (a) the kernels against the model ----------------------------------------------

proptest! {
    #![proptest_config(Config { cases: 128, ..Config::default() })]

    /// Scalar and AVX2 equal the model bitwise, for the whole length and for a random
    /// sub-range (the per-part entry point).
    #[test]
    fn kernels_equal_the_tree_sum_bitwise(
        n_slots in 1usize..=33,
        len in length(),
        seed in any::<u64>(),
        cut in any::<(usize, usize)>(),
    ) {
        let ins = inputs(seed, n_slots, len);
        let refs: Vec<&[f32]> = ins.iter().map(|s| &s[..]).collect();
        let want = model_bits(&ins, len, tree_sum);
        let (a, b) = (cut.0 % (len + 1), cut.1 % (len + 1));
        let range = a.min(b)..a.max(b);
        for kernel in kernels() {
            let mut out = vec![f32::NAN; len];
            pairwise_sum_into(&refs, &mut out, kernel);
            prop_assert_eq!(bits(&out), want.clone(), "{:?}", kernel);

            let mut part = vec![f32::NAN; range.len()];
            pairwise_sum_range_into(&refs, range.clone(), &mut part, kernel);
            prop_assert_eq!(bits(&part), want[range.clone()].to_vec(), "{:?} {:?}", kernel, range);
        }
    }
}

// ---- (b) real threads ---------------------------------------------------------------

/// Run `steps` steps on `threads` std threads: slots are claimed from one shared
/// counter per step, filled with `value(seed + step, ..)` and published; parts are
/// taken from another counter and reduced (alternating the scalar and the detected
/// kernel). Returns each step's assembled output.
fn run_threads(
    n_slots: usize,
    len: usize,
    n_parts: usize,
    threads: usize,
    steps: usize,
    seed: u64,
) -> Vec<Vec<f32>> {
    let seg: GradientSegments = GradientSegments::new(n_slots, len, n_parts).unwrap();
    let next_slot: Vec<AtomicUsize> = (0..steps).map(|_| AtomicUsize::new(0)).collect();
    let next_part: Vec<AtomicUsize> = (0..steps).map(|_| AtomicUsize::new(0)).collect();
    let results: Vec<Vec<(usize, usize, Vec<f32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (seg, next_slot, next_part) = (&seg, &next_slot, &next_part);
                s.spawn(move || {
                    let mut done = Vec::new();
                    for step in 0..steps {
                        // Relaxed: ticket counters; the segments protocol orders the data.
                        loop {
                            let slot = next_slot[step].fetch_add(1, Ordering::Relaxed);
                            if slot >= n_slots {
                                break;
                            }
                            let mut w = seg.claim(step, slot).unwrap();
                            w.write(|g| {
                                for (i, x) in g.iter_mut().enumerate() {
                                    *x = value(seed.wrapping_add(step as u64), slot, i);
                                }
                            });
                            w.publish();
                        }
                        loop {
                            let part = next_part[step].fetch_add(1, Ordering::Relaxed);
                            if part >= n_parts {
                                break;
                            }
                            let kernel = if part % 2 == 0 {
                                Isa::Portable
                            } else {
                                cllm::isa::active()
                            };
                            let mut out = vec![f32::NAN; seg.part_range(part).len()];
                            seg.reduce_part_with(step, part, &mut out, kernel).unwrap();
                            done.push((step, part, out));
                        }
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = vec![vec![f32::NAN; len]; steps];
    let mut count = vec![vec![0; n_parts]; steps];
    for (step, part, values) in results.into_iter().flatten() {
        count[step][part] += 1;
        out[step][seg.part_range(part)].copy_from_slice(&values);
    }
    assert_eq!(
        count,
        vec![vec![1; n_parts]; steps],
        "each part reduced once per step"
    );
    assert_eq!(seg.completed_steps(), steps);
    out
}

fn forked(cases: u32) -> Config {
    Config {
        cases,
        fork: true,
        timeout: 20_000,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(forked(48))]

    /// Every step's output equals the model bitwise, for the drawn thread count and
    /// for every other thread count from 1 to 6.
    #[test]
    fn threads_equal_the_tree_sum_for_every_thread_count(
        n_slots in 1usize..=9,
        len in prop_oneof![0usize..=40, 250usize..=1100],
        n_parts in 1usize..=5,
        n_threads in 1usize..=6,
        steps in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let want: Vec<Vec<u32>> = (0..steps)
            .map(|step| model_bits(&inputs(seed.wrapping_add(step as u64), n_slots, len), len, tree_sum))
            .collect();
        let first = run_threads(n_slots, len, n_parts, n_threads, steps, seed);
        for (step, got) in first.iter().enumerate() {
            prop_assert_eq!(bits(got), want[step].clone(), "{} threads, step {}", n_threads, step);
        }
        for threads in (1..=6).filter(|&t| t != n_threads) {
            let other = run_threads(n_slots, len, n_parts, threads, steps, seed);
            for (step, got) in other.iter().enumerate() {
                prop_assert_eq!(bits(got), want[step].clone(), "{} threads, step {}", threads, step);
            }
        }
    }
}

// ---- (c) misuse is a typed error ----------------------------------------------------

proptest! {
    #![proptest_config(forked(64))]

    /// Out-of-range slots and parts, double claims, claims of published or passed
    /// slots, wrong output lengths and repeated reductions are all typed errors that
    /// change nothing: afterwards the step still reduces to the model's sum.
    #[test]
    fn misuse_is_a_typed_error_and_harmless(
        n_slots in 1usize..=5,
        len in prop_oneof![0usize..=20, 250usize..=600],
        n_parts in 1usize..=4,
        seed in any::<u64>(),
    ) {
        let seg: GradientSegments = GradientSegments::new(n_slots, len, n_parts).unwrap();
        prop_assert_eq!((seg.n_slots(), seg.len(), seg.n_parts()), (n_slots, len, n_parts));
        prop_assert_eq!(seg.is_empty(), len == 0);
        for step in 0..2usize {
            let ins = inputs(seed ^ step as u64, n_slots, len);
            prop_assert_eq!(
                seg.claim(step, n_slots).err(),
                Some(SegmentsError::NoSuchSlot { slot: n_slots, n_slots })
            );
            // A claim dropped unpublished gives the slot back for the same step.
            {
                let mut w = seg.claim(step, 0).unwrap();
                w.write(|g| g.fill(f32::NAN));
            }
            let mut writers = Vec::new();
            for (slot, data) in ins.iter().enumerate() {
                let mut w = seg.claim(step, slot).unwrap();
                prop_assert_eq!(
                    seg.claim(step, slot).err(),
                    Some(SegmentsError::SlotTaken { slot, step })
                );
                w.write(|g| g.copy_from_slice(data));
                writers.push(w);
            }
            for w in writers {
                w.publish();
            }
            prop_assert_eq!(seg.claim(step, 0).err(), Some(SegmentsError::SlotTaken { slot: 0, step }));
            if step > 0 {
                prop_assert_eq!(
                    seg.claim(step - 1, 0).err(),
                    Some(SegmentsError::SlotPassed { slot: 0, step: step - 1, current: step })
                );
            }
            let mut total = vec![f32::NAN; len];
            for part in 0..n_parts {
                let range = seg.part_range(part);
                let mut long = vec![0.0; range.len() + 1];
                prop_assert_eq!(
                    seg.reduce_part(step, part, &mut long).err(),
                    Some(SegmentsError::OutputLength { part, want: range.len(), got: range.len() + 1 })
                );
                // A step that is already reduced is not due any more. (A later step
                // is not an error: `reduce_part` waits for its publications.)
                if step > 0 {
                    prop_assert_eq!(
                        seg.reduce_part(step - 1, part, &mut total[range.clone()]),
                        Err(SegmentsError::PartNotDue { part, step: step - 1, next: step })
                    );
                }
                seg.reduce_part(step, part, &mut total[range.clone()]).unwrap();
                prop_assert_eq!(
                    seg.reduce_part(step, part, &mut total[range.clone()]),
                    Err(SegmentsError::PartNotDue { part, step, next: step + 1 })
                );
            }
            prop_assert_eq!(
                seg.reduce_part(step, n_parts, &mut []),
                Err(SegmentsError::NoSuchPart { part: n_parts, n_parts })
            );
            prop_assert_eq!(bits(&total), model_bits(&ins, len, tree_sum));
            prop_assert_eq!(seg.completed_steps(), step + 1);
        }
        let mut wrong = vec![0.0; len + 1];
        prop_assert_eq!(
            seg.reduce_all(2, &mut wrong),
            Err(SegmentsError::OutputLength { part: 0, want: len, got: len + 1 })
        );
    }
}

#[test]
fn zero_slots_or_parts_is_a_layout_error() {
    for (n_slots, n_parts) in [(0, 1), (1, 0), (0, 0)] {
        assert!(matches!(
            GradientSegments::<cllm::sync::Std>::new(n_slots, 8, n_parts),
            Err(SegmentsError::Layout(_))
        ));
    }
}

// ---- (d) the part grid --------------------------------------------------------------

proptest! {
    /// Parts tile 0..len contiguously and in order; interior boundaries are on the
    /// PART_ALIGN grid and within one PART_ALIGN of the even split len * p / n_parts.
    #[test]
    fn parts_tile_the_length_in_order(len in prop_oneof![0usize..=2000, 0usize..=1_000_000], n_parts in 1usize..=64) {
        let seg: GradientSegments = GradientSegments::new(1, len, n_parts).unwrap();
        let mut next = 0;
        for p in 0..n_parts {
            let r = seg.part_range(p);
            prop_assert_eq!(r.start, next, "part {} starts where {} ended", p, p.wrapping_sub(1));
            prop_assert!(r.start <= r.end);
            if p > 0 {
                prop_assert_eq!(r.start % PART_ALIGN, 0, "boundary {} on the grid", r.start);
                let even = len as f64 * p as f64 / n_parts as f64;
                prop_assert!(even - (r.start as f64) < PART_ALIGN as f64 && r.start as f64 <= even);
            }
            next = r.end;
        }
        prop_assert_eq!(next, len);
    }
}
