//! Fuzz target: GradientSegments with any slot count, length, part count and step
//! count, slots filled in an input-chosen order with input-chosen floats (NaNs and
//! infinities included), parts reduced in an input-chosen order: every result equals an
//! independent tree sum, and the AVX2 and scalar kernels agree.
#![no_main]

use arbitrary::Unstructured;
use cllm::isa::Isa;
use cllm::segments::reduce::pairwise_sum_into;
use cllm::segments::GradientSegments;
use libfuzzer_sys::fuzz_target;

fn tree_sum(values: &[f32]) -> f32 {
    match values {
        [one] => *one,
        _ => tree_sum(&values[..values.len() / 2]) + tree_sum(&values[values.len() / 2..]),
    }
}

/// Bitwise equality, except that any NaN equals any NaN (payload propagation through
/// additions is not specified identically for scalar and vector instructions).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn permutation(u: &mut Unstructured<'_>, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = u.int_in_range(0..=i).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let n_slots = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0) % 16);
    let len = usize::from(u.arbitrary::<u16>().unwrap_or(0) % 700);
    let n_parts = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0) % 8);
    let steps = 1 + usize::from(u.arbitrary::<u8>().unwrap_or(0) % 3);
    let seg: GradientSegments = GradientSegments::new(n_slots, len, n_parts).expect("layout");
    for step in 0..steps {
        let values: Vec<Vec<f32>> = (0..n_slots)
            .map(|_| {
                (0..len)
                    .map(|_| f32::from_bits(u.arbitrary().unwrap_or(0)))
                    .collect()
            })
            .collect();
        for slot in permutation(&mut u, n_slots) {
            let mut w = seg.claim(step, slot).expect("claim");
            w.write(|g| g.copy_from_slice(&values[slot]));
            w.publish();
        }
        let mut out = vec![0.0f32; len];
        for part in permutation(&mut u, n_parts) {
            let range = seg.part_range(part);
            seg.reduce_part(step, part, &mut out[range])
                .expect("reduce");
        }
        let views: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let mut scalar = vec![0.0f32; len];
        pairwise_sum_into(&views, &mut scalar, Isa::Portable);
        for i in 0..len {
            let want = tree_sum(&values.iter().map(|v| v[i]).collect::<Vec<_>>());
            assert!(same(out[i], want), "float {i}: {} vs {want}", out[i]);
            assert!(same(scalar[i], want), "scalar float {i}");
        }
    }
    assert_eq!(seg.completed_steps(), steps);
});
