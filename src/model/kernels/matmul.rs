//! Owns the dense layers: [`matmul_forward`]/[`matmul_backward`] (weights stored
//! `[in, out]` like HF GPT-2's `Conv1D`) and the tied LM head
//! [`lm_head_forward`]/[`lm_head_backward`] (`wte` stored `[vocab, c]`).
//! Must never compute a product other than through [`gemm`] (one summation order for
//! every matmul), and never thread.
//!
//! Row independence: every output row of a forward, and every row of `dinp`, is a
//! function of the matching input row alone (see [`super::gemm`]), so splitting the
//! `n` rows over calls gives the same bits. The weight gradients sum over all `n` rows
//! in row order; a caller that splits rows gets per-part partial sums instead.

use super::gemm::{gemm, Init};
use std::cell::RefCell;

thread_local! {
    /// Per-thread buffer for transposed weights (reused across calls, so a steady
    /// training loop does not allocate).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `src [rows, cols]` transposed into a `[cols, rows]` buffer.
fn with_transposed<R>(src: &[f32], rows: usize, cols: usize, f: impl FnOnce(&[f32]) -> R) -> R {
    let src = &src[..rows * cols];
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        buf.resize(rows * cols, 0.0);
        // Blocked so both sides stay in cache lines.
        const BLK: usize = 16;
        for r0 in (0..rows).step_by(BLK) {
            for c0 in (0..cols).step_by(BLK) {
                for r in r0..(r0 + BLK).min(rows) {
                    let srow = &src[r * cols..(r + 1) * cols];
                    for c in c0..(c0 + BLK).min(cols) {
                        buf[c * rows + r] = srow[c];
                    }
                }
            }
        }
        f(buf)
    })
}

/// `out[n, oc] = inp[n, ic] @ weight[ic, oc] + bias[oc]` (bias omitted when `None`);
/// overwrites `out`.
///
/// Shapes: `out [n, oc]`, `inp [n, ic]`, `weight [ic, oc]`, `bias [oc]`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn matmul_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    ic: usize,
    oc: usize,
) {
    debug_assert_eq!(out.len(), n * oc);
    debug_assert_eq!(inp.len(), n * ic);
    debug_assert_eq!(weight.len(), ic * oc);
    let init = match bias {
        Some(bias) => {
            debug_assert_eq!(bias.len(), oc);
            Init::Bias(bias)
        }
        None => Init::Zero,
    };
    gemm(n, oc, ic, inp, ic, 1, weight, oc, out, oc, init);
}

/// Backward of [`matmul_forward`], accumulating:
/// `dinp += dout @ weight^T`, `dweight += inp^T @ dout`, `dbias += sum_rows(dout)`.
///
/// Shapes: `dinp [n, ic]`, `dweight [ic, oc]`, `dbias [oc]`, `dout [n, oc]`,
/// `inp [n, ic]`, `weight [ic, oc]`.
///
/// # Panics
/// If a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    ic: usize,
    oc: usize,
) {
    debug_assert_eq!(dinp.len(), n * ic);
    debug_assert_eq!(dweight.len(), ic * oc);
    debug_assert_eq!(dout.len(), n * oc);
    debug_assert_eq!(inp.len(), n * ic);
    debug_assert_eq!(weight.len(), ic * oc);
    // dinp[n, ic] += dout[n, oc] @ weight^T[oc, ic]
    with_transposed(weight, ic, oc, |wt| {
        gemm(n, ic, oc, dout, oc, 1, wt, ic, dinp, ic, Init::Accumulate)
    });
    // dweight[ic, oc] += inp^T[ic, n] @ dout[n, oc]; A(i, kk) = inp[kk * ic + i].
    gemm(
        ic,
        oc,
        n,
        inp,
        1,
        ic,
        dout,
        oc,
        dweight,
        oc,
        Init::Accumulate,
    );
    if let Some(dbias) = dbias {
        debug_assert_eq!(dbias.len(), oc);
        let dbias = &mut dbias[..oc];
        for row in dout.chunks_exact(oc).take(n) {
            for (d, &g) in dbias.iter_mut().zip(row) {
                *d += g;
            }
        }
    }
}

/// Tied LM head: `logits[n, v] = inp[n, c] @ wte[v, c]^T`; overwrites `logits`.
///
/// Shapes: `logits [n, v]`, `inp [n, c]`, `wte [v, c]`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn lm_head_forward(logits: &mut [f32], inp: &[f32], wte: &[f32], n: usize, c: usize, v: usize) {
    debug_assert_eq!(logits.len(), n * v);
    debug_assert_eq!(inp.len(), n * c);
    debug_assert!(wte.len() >= v * c);
    with_transposed(wte, v, c, |wt| {
        gemm(n, v, c, inp, c, 1, wt, v, logits, v, Init::Zero)
    });
}

/// Backward of [`lm_head_forward`], accumulating: `dinp += dlogits @ wte`,
/// `dwte += dlogits^T @ inp`.
///
/// Shapes: `dinp [n, c]`, `dwte [v, c]`, `dlogits [n, v]`, `inp [n, c]`, `wte [v, c]`.
///
/// # Panics
/// If a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn lm_head_backward(
    dinp: &mut [f32],
    dwte: &mut [f32],
    dlogits: &[f32],
    inp: &[f32],
    wte: &[f32],
    n: usize,
    c: usize,
    v: usize,
) {
    debug_assert_eq!(dinp.len(), n * c);
    debug_assert!(dwte.len() >= v * c);
    debug_assert_eq!(dlogits.len(), n * v);
    debug_assert_eq!(inp.len(), n * c);
    debug_assert!(wte.len() >= v * c);
    gemm(n, c, v, dlogits, v, 1, wte, c, dinp, c, Init::Accumulate);
    // dwte[v, c] += dlogits^T[v, n] @ inp[n, c]; A(i, kk) = dlogits[kk * v + i].
    gemm(v, c, n, dlogits, 1, v, inp, c, dwte, c, Init::Accumulate);
}
