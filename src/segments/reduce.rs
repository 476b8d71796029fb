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
//! [`Kernel::Avx2`] (runtime-detected) and [`Kernel::Scalar`] perform the same IEEE
//! single-precision additions in the same order (no FMA, no reassociation), so they
//! give the same bits; the tests check this on random data.

use core::ops::Range;

/// Floats per chunk of the chunked tree evaluation (16 KiB of each input).
const CHUNK: usize = 4096;

/// Which elementwise add to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust loop (the compiler may still use baseline SSE2).
    Scalar,
    /// 256-bit AVX2 adds; only valid where [`Kernel::avx2_available`] is true.
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        if Self::avx2_available() {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        }
    }

    /// Whether the CPU supports AVX2 (checked at run time).
    pub fn avx2_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `out[i] = a[i] + b[i]`.
    fn add(self, out: &mut [f32], a: &[f32], b: &[f32]) {
        debug_assert!(out.len() == a.len() && a.len() == b.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if Self::avx2_available() => {
                // SAFETY: AVX2 support was just checked at run time.
                unsafe { add_avx2(out, a, b) }
            }
            _ => add_scalar(out, a, b),
        }
    }

    /// `out[i] += b[i]`.
    fn add_assign(self, out: &mut [f32], b: &[f32]) {
        debug_assert!(out.len() == b.len());
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 if Self::avx2_available() => {
                // SAFETY: AVX2 support was just checked at run time.
                unsafe { add_assign_avx2(out, b) }
            }
            _ => add_assign_scalar(out, b),
        }
    }
}

/// `out = tree(inputs)` over the whole length (every input as long as `out`).
///
/// # Panics
/// If `inputs` is empty or any input's length differs from `out`'s.
pub fn pairwise_sum_into(inputs: &[&[f32]], out: &mut [f32], kernel: Kernel) {
    let len = out.len();
    pairwise_sum_range_into(inputs, 0..len, out, kernel)
}

/// `out = tree(inputs[..][range])`: the same order, restricted to one parameter range.
///
/// # Panics
/// If `inputs` is empty, `out.len() != range.len()`, or an input is shorter than
/// `range.end`.
pub fn pairwise_sum_range_into(
    inputs: &[&[f32]],
    range: Range<usize>,
    out: &mut [f32],
    kernel: Kernel,
) {
    assert!(!inputs.is_empty(), "pairwise sum of zero inputs");
    assert_eq!(out.len(), range.len(), "output length must match the range");
    let depth = usize::BITS - (inputs.len() - 1).leading_zeros();
    let mut scratch = vec![0.0f32; CHUNK.min(range.len()) * depth as usize];
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
            kernel,
        );
        start = end;
    }
}

/// `out = tree(inputs[..][range])` for one chunk; `scratch` holds `depth * len` floats.
fn tree(
    inputs: &[&[f32]],
    range: Range<usize>,
    out: &mut [f32],
    scratch: &mut [f32],
    kernel: Kernel,
) {
    match inputs {
        [only] => out.copy_from_slice(&only[range]),
        [a, b] => kernel.add(out, &a[range.clone()], &b[range]),
        _ => {
            let mid = inputs.len() / 2;
            let (right, rest) = scratch.split_at_mut(out.len());
            tree(&inputs[..mid], range.clone(), out, rest, kernel);
            tree(&inputs[mid..], range, right, rest, kernel);
            kernel.add_assign(out, right);
        }
    }
}

fn add_scalar(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = *x + *y;
    }
}

fn add_assign_scalar(out: &mut [f32], b: &[f32]) {
    for (o, y) in out.iter_mut().zip(b) {
        *o += *y;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(out: &mut [f32], a: &[f32], b: &[f32]) {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_loadu_ps, _mm256_storeu_ps};
    let n = out.len().min(a.len()).min(b.len());
    let body = n / 8 * 8;
    let mut i = 0;
    while i < body {
        // SAFETY: i + 8 <= n, within all three slices; unaligned loads/stores.
        unsafe {
            let v = _mm256_add_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    add_scalar(&mut out[body..n], &a[body..n], &b[body..n]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_assign_avx2(out: &mut [f32], b: &[f32]) {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_loadu_ps, _mm256_storeu_ps};
    let n = out.len().min(b.len());
    let body = n / 8 * 8;
    let mut i = 0;
    while i < body {
        // SAFETY: i + 8 <= n, within both slices; unaligned loads/stores.
        unsafe {
            let v = _mm256_add_ps(
                _mm256_loadu_ps(out.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    add_assign_scalar(&mut out[body..n], &b[body..n]);
}
