//! Owns the reduction kernels: the fixed pairwise summation order over slots and the
//! SIMD elementwise add it is built from. Must never depend on timing or threads.
//!
//! # The order
//! `tree(inputs) = inputs[0]` for one input, otherwise
//! `tree(inputs[..n/2]) + tree(inputs[n/2..])` (elementwise, left operand first).
//! Evaluated chunk by chunk so the working set stays in cache; chunking changes no
//! result because every output element is computed independently.
//!
//! # Kernels
//! The elementwise adds are written once and compiled for each instruction-set path
//! ([`Isa`], through `dispatch!`): every path performs the same IEEE single-precision
//! additions in the same order (no FMA, no reassociation), so they give the same bits;
//! the tests check this on random data.

use crate::isa::{kernel, Isa};
use core::ops::Range;

/// Floats per chunk of the chunked tree evaluation (16 KiB of each input).
const CHUNK: usize = 4096;

/// `out = tree(inputs)` over the whole length (every input as long as `out`), adds
/// compiled for `isa` (see [`pairwise_sum_range_into`]).
///
/// # Panics
/// If `inputs` is empty or any input's length differs from `out`'s.
pub fn pairwise_sum_into(inputs: &[&[f32]], out: &mut [f32], isa: Isa) {
    let len = out.len();
    pairwise_sum_range_into(inputs, 0..len, out, isa)
}

/// `out = tree(inputs[..][range])`: the same order, restricted to one parameter range,
/// with the adds compiled for `isa` (a path this CPU lacks runs as portable; every
/// path gives the same bits).
///
/// # Panics
/// If `inputs` is empty, `out.len() != range.len()`, or an input is shorter than
/// `range.end`.
pub fn pairwise_sum_range_into(inputs: &[&[f32]], range: Range<usize>, out: &mut [f32], isa: Isa) {
    assert!(!inputs.is_empty(), "pairwise sum of zero inputs");
    assert_eq!(out.len(), range.len(), "output length must match the range");
    let depth = usize::BITS - (inputs.len() - 1).leading_zeros();
    let mut scratch = vec![0.0f32; CHUNK.min(range.len()) * depth as usize];
    crate::isa::on(isa, || {
        let mut start = range.start;
        while start < range.end {
            let end = (start + CHUNK).min(range.end);
            let local = start - range.start..end - range.start;
            let n = end - start;
            tree(
                inputs,
                start..end,
                &mut out[local],
                &mut scratch[..n * depth as usize],
            );
            start = end;
        }
    })
}

/// `out = tree(inputs[..][range])` for one chunk; `scratch` holds `depth * len` floats.
fn tree(inputs: &[&[f32]], range: Range<usize>, out: &mut [f32], scratch: &mut [f32]) {
    match inputs {
        [only] => out.copy_from_slice(&only[range]),
        [a, b] => add(out, &a[range.clone()], &b[range]),
        _ => {
            let mid = inputs.len() / 2;
            let (right, rest) = scratch.split_at_mut(out.len());
            tree(&inputs[..mid], range.clone(), out, rest);
            tree(&inputs[mid..], range, right, rest);
            add_assign(out, right);
        }
    }
}

kernel! {
    /// `out[i] = a[i] + b[i]` on the active path.
    fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
        debug_assert!(out.len() == a.len() && a.len() == b.len());
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = *x + *y;
        }
    }
}

kernel! {
    /// `out[i] += b[i]` on the active path.
    fn add_assign(out: &mut [f32], b: &[f32]) {
        debug_assert!(out.len() == b.len());
        for (o, y) in out.iter_mut().zip(b) {
            *o += *y;
        }
    }
}
