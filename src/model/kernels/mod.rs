//! Owns the GPT-2 compute kernels: forward and backward of every operation of the
//! model, single-threaded, `f32`, row-major, on flat slices.
//! Must never thread, never know about parameters' layout in memory (callers pass
//! each tensor's slice) and never sum in an order that depends on anything but the
//! shapes: every result is bitwise reproducible for the same inputs, whatever the
//! process's thread count.
//!
//! # Conventions
//! * Shapes are given as `[rows, cols]`, row-major; `b` batch, `t` time, `c` channels,
//!   `n` rows (`b * t`), `v` vocabulary, `nh` heads.
//! * Forward functions overwrite their outputs. The matmul and LM-head backwards
//!   *overwrite* their parameter gradients (weights and biases: every element
//!   written, old contents ignored, so the large matrices need no zeroing pass); the
//!   layernorm and encoder backwards *accumulate* (`+=`) into theirs (small vectors,
//!   `wpe`, and `wte`, which the LM head wrote first), which the caller zeroes.
//!   Input gradients: the matmul, LM head, GELU and attention backwards overwrite
//!   theirs; layernorm, residual and encoder backwards accumulate into theirs (the
//!   residual stream's gradient sums two paths).
//! * Wrong slice lengths are caught by `debug_assert!`; in release a wrong length
//!   either panics (bounds check) or processes fewer elements (iterators stop at the
//!   shortest slice), never undefined behaviour (every `unsafe` access is guarded by an
//!   unconditional check).
//! * Matmuls all go through [`gemm`], whose per-element summation order is fixed (a
//!   row of a result never depends on which other rows are computed with it).
//! * Reductions over a row (sums, dot products) use [`sum`]/[`dot`]: eight interleaved
//!   partial sums combined in a fixed order, so the compiler can vectorise them
//!   without changing the result. [`sum_rows`]/[`dot_rows`] reduce several rows at
//!   once, each row bitwise as alone (the layer norm uses them to overlap rows).
//! * Exponentials use [`exp`], a branch-free vectorisable `expf` (a few ulp), so the
//!   softmaxes and GELU vectorise and do not depend on the platform's libm. The only
//!   libm call is one `ln` per row for the cross-entropy loss value (no gradient
//!   depends on it); `sqrt` is correctly rounded everywhere.
//! * Elementwise and row kernels run through `dispatch!` (compiled for the
//!   [`crate::isa::active`] path: 16-wide AVX-512, 8-wide AVX2 or portable, same
//!   bits); matmuls through [`gemm`]'s register tiles for the same paths.

pub mod attention;
pub mod crossentropy;
pub mod encoder;
pub mod gelu;
pub mod gemm;
pub mod layernorm;
pub mod matmul;
pub mod residual;
pub mod split;
pub mod transpose;

pub use attention::{attention_backward, attention_forward};
pub use crossentropy::{crossentropy_forward, crossentropy_forward_backward, softmax_row};
pub use encoder::{encoder_backward, encoder_forward};
pub use gelu::{gelu_backward, gelu_forward, gelu_recompute};
pub use layernorm::{layernorm_backward, layernorm_forward};
pub use matmul::{
    lm_head_backward, lm_head_backward_split, lm_head_forward, lm_head_forward_split,
    matmul_backward, matmul_backward_split, matmul_forward, matmul_forward_residual_split,
    matmul_forward_split,
};
pub use residual::{residual_backward, residual_forward};
pub use split::{RowSplit, Serial};

/// Lanes of the interleaved partial sums in [`sum`] and [`dot`].
const LANES: usize = 8;

/// `sum(x)` in a fixed order: lane `l` sums `x[l], x[l + 8], ...` left to right, the
/// lanes are then added as `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`, then
/// the tail (`len % 8` elements) left to right.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += v;
        }
    }
    let mut s = combine(acc);
    for &v in tail {
        s += v;
    }
    s
}

/// `sum(a[i] * b[i])` over `min(a.len(), b.len())` elements, in the order of [`sum`]
/// (products rounded separately, no FMA, so every platform gives the same bits).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, &p), &q) in acc.iter_mut().zip(xa).zip(xb) {
            *s += p * q;
        }
    }
    let mut s = combine(acc);
    for (&p, &q) in ta.iter().zip(tb) {
        s += p * q;
    }
    s
}

/// [`dot`] of `R` pairs of rows at once, each bitwise as [`dot`] computes it alone:
/// the `R` independent accumulator chains are interleaved, so a row kernel that
/// reduces several rows at a time overlaps their add latencies (one row's chain alone
/// is latency-bound at the widths of the model). `a[r]` and `b[r]` must have equal
/// lengths, the same for every `r`.
#[inline(always)]
pub fn dot_rows<const R: usize>(a: [&[f32]; R], b: [&[f32]; R]) -> [f32; R] {
    let len = a[0].len();
    debug_assert!(a.iter().chain(&b).all(|x| x.len() == len));
    let full = len - len % LANES;
    let mut acc = [[0.0f32; LANES]; R];
    let mut i = 0;
    while i < full {
        for (r, lanes) in acc.iter_mut().enumerate() {
            let (x, y) = (&a[r][i..i + LANES], &b[r][i..i + LANES]);
            for ((s, &p), &q) in lanes.iter_mut().zip(x).zip(y) {
                *s += p * q;
            }
        }
        i += LANES;
    }
    core::array::from_fn(|r| {
        let mut s = combine(acc[r]);
        for (&p, &q) in a[r][full..].iter().zip(&b[r][full..]) {
            s += p * q;
        }
        s
    })
}

/// [`sum`] of `R` rows at once, each bitwise as [`sum`] computes it alone (see
/// [`dot_rows`]).
#[inline(always)]
pub fn sum_rows<const R: usize>(x: [&[f32]; R]) -> [f32; R] {
    let len = x[0].len();
    debug_assert!(x.iter().all(|v| v.len() == len));
    let full = len - len % LANES;
    let mut acc = [[0.0f32; LANES]; R];
    let mut i = 0;
    while i < full {
        for (r, lanes) in acc.iter_mut().enumerate() {
            for (s, &v) in lanes.iter_mut().zip(&x[r][i..i + LANES]) {
                *s += v;
            }
        }
        i += LANES;
    }
    core::array::from_fn(|r| {
        let mut s = combine(acc[r]);
        for &v in &x[r][full..] {
            s += v;
        }
        s
    })
}

/// Asks the CPU to start loading `data`'s cache lines into its L2 cache, ahead of
/// their use (one hint per 64-byte line; a hint never faults and changes no result).
/// For the memory-bound kernels that walk large buffers block by block: the next
/// block's lines are requested while the current one is computed.
#[inline(always)]
pub fn prefetch_l2(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: `_mm_prefetch` is a hint: it never faults and never writes, and the
        // address comes from a live slice.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast::<i8>())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `max(row)` (`-inf` for an empty row; NaN entries are skipped by `f32::max`), over
/// eight interleaved lanes so it vectorises (the maximum does not depend on the order,
/// except possibly the sign of a zero maximum, which changes no result here).
#[inline(always)]
pub fn max(row: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &x) in m.iter_mut().zip(ch) {
            *a = a.max(x);
        }
    }
    let mut best = m.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    for &x in tail {
        best = best.max(x);
    }
    best
}

/// The fixed pairwise combination of the eight lanes.
#[inline(always)]
fn combine(a: [f32; LANES]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// `e^x` in single precision, branch-free (vectorisable), within a few ulp of the true
/// value for `x` in `[-87.3, 88]`. Inputs are clamped to that range first, so very
/// negative `x` gives about `1.2e-38` instead of a denormal or zero, and large `x` gives
/// about `1.65e38` instead of infinity. NaN gives NaN.
///
/// Method (Cephes `expf`): `x = n ln2 + r` with `n` rounded to nearest by the
/// `1.5 * 2^23` trick and a two-part `ln2`, a degree-6 polynomial for `e^r` on
/// `|r| <= ln2 / 2` in Horner form, and `2^n` built from its exponent bits. The
/// reduction and the polynomial use fused multiply-adds ([`f32::mul_add`], exact on
/// every platform: a hardware FMA under `dispatch!`'s AVX2 and AVX-512 paths, libm's `fmaf`
/// elsewhere), which halves the dependent chain that bounds this function's speed.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
                                     // `clamp` keeps NaN.
    let xc = x.clamp(-87.3, 88.0);
    let t = xc.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    // The low mantissa bits of `t` hold `n` (|n| <= 127) in two's complement.
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (-n).mul_add(C2, (-n).mul_add(C1, xc));
    let p = 1.987_569_2e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let er = (p * r).mul_add(r, r) + 1.0;
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    er * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        // 4 ulp of f32 is about 4.8e-7 relative.
        assert!(worst < 4.8e-7, "worst relative error {worst}");
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(-1e30), exp(-87.3));
        assert!(exp(1e30).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn sum_and_dot_match_f64() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let s64: f64 = x.iter().map(|&v| v as f64).sum();
        let d64: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
        approx::assert_abs_diff_eq!(sum(&x) as f64, s64, epsilon = 1e-5);
        approx::assert_abs_diff_eq!(dot(&x, &y) as f64, d64, epsilon = 1e-5);
    }
}
