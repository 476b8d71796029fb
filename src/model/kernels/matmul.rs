//! Owns the dense layers: [`matmul_forward`]/[`matmul_backward`] (weights stored
//! `[in, out]` like HF GPT-2's `Conv1D`) and the tied LM head
//! [`lm_head_forward`]/[`lm_head_backward`] (`wte` stored `[vocab, c]`).
//! Must never compute a product other than through [`gemm`] (one summation order for
//! every matmul), and never thread itself: the `_split` variants hand disjoint output
//! rows to a caller-supplied [`RowSplit`], which gives the same bits as one call.
//!
//! Row independence: every output row of a forward, and every row of `dinp`, is a
//! function of the matching input row alone (see [`super::gemm`]), so splitting the
//! `n` rows over calls gives the same bits. The weight gradients sum over all `n` rows
//! in row order; a caller that splits rows gets per-part partial sums instead.

use crate::isa::kernel;

use super::gemm::{gemm, gemm_then_add, Init};
use super::split::{rows, RowSplit, Serial, SharedMut};

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
    matmul_forward_split(&Serial, out, inp, weight, bias, n, ic, oc)
}

/// [`matmul_forward`] with its `n` output rows split over `split`'s parts.
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward_split(
    split: &dyn RowSplit,
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    ic: usize,
    oc: usize,
) {
    dense_forward(split, out, inp, weight, bias, n, ic, oc, None);
}

/// `out = residual + (inp @ weight + bias)`: [`matmul_forward_split`] followed by the
/// residual connection, fused into the matmul's final store (bitwise the same as
/// `matmul_forward` into `proj`, then `residual_forward(out, residual, proj)`; one pass
/// over memory fewer).
///
/// Shapes: as [`matmul_forward`], and `residual [n, oc]`.
///
/// # Panics
/// If a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward_residual_split(
    split: &dyn RowSplit,
    out: &mut [f32],
    residual: &[f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    ic: usize,
    oc: usize,
) {
    assert!(residual.len() >= n * oc, "matmul: residual too short");
    dense_forward(split, out, inp, weight, bias, n, ic, oc, Some(residual));
}

/// The body of both dense forwards: chains from the bias (or zero), plus `add` when
/// given.
#[allow(clippy::too_many_arguments)]
fn dense_forward(
    split: &dyn RowSplit,
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    ic: usize,
    oc: usize,
    add: Option<&[f32]>,
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
    forward_rows(split, out, inp, n, ic, oc, (weight, oc, 1), init, add);
}

/// `out[n, oc] = inp[n, ic] @ B` from `init` (see [`Init`]), plus `add[n, oc]` when
/// given, its `n` rows split over `split`'s parts; `B[kk, j] = b.0[kk * b.1 + j * b.2]`
/// (the weight, or a transposed `wte` for the LM head).
///
/// # Panics
/// If `out` or `inp` is shorter than its shape (or `B` than its strides, in `gemm`).
#[allow(clippy::too_many_arguments)]
fn forward_rows(
    split: &dyn RowSplit,
    out: &mut [f32],
    inp: &[f32],
    n: usize,
    ic: usize,
    oc: usize,
    b: (&[f32], usize, usize),
    init: Init<'_>,
    add: Option<&[f32]>,
) {
    let parts = split.parts().max(1);
    assert!(
        out.len() >= n * oc && inp.len() >= n * ic,
        "matmul: buffer too short"
    );
    let out = SharedMut(out.as_mut_ptr());
    split.run(&|i| {
        let r = rows(n, parts, i);
        // SAFETY: parts own disjoint row ranges of `out` (checked long enough above).
        let o = unsafe { out.rows(&r, oc) };
        let a = &inp[r.start * ic..r.end * ic];
        match add {
            None => gemm(r.len(), oc, ic, a, ic, 1, b.0, b.1, b.2, o, oc, init),
            Some(add) => {
                let add = &add[r.start * oc..r.end * oc];
                gemm_then_add(r.len(), oc, ic, a, ic, 1, b.0, b.1, b.2, o, oc, init, add)
            }
        }
    });
}

/// Backward of [`matmul_forward`]: overwrites `dinp = dout @ weight^T`,
/// `dweight = inp^T @ dout` and `dbias = sum_rows(dout)` (every element is written,
/// old contents are ignored, so the caller zeroes nothing).
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
    matmul_backward_split(&Serial, dinp, dweight, dbias, dout, inp, weight, n, ic, oc)
}

/// [`matmul_backward`] with the rows of `dinp` (`n`) and of `dweight` (`ic`) split
/// over `split`'s parts.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_split(
    split: &dyn RowSplit,
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
    // Part i: rows of dinp[n, ic] = dout[n, oc] @ weight^T[oc, ic], and rows of
    // dweight[ic, oc] = inp^T[ic, n] @ dout[n, oc] (A(i, kk) = inp[kk * ic + i]).
    let parts = split.parts().max(1);
    {
        assert!(
            dinp.len() >= n * ic && dweight.len() >= ic * oc && inp.len() >= n * ic,
            "matmul: buffer too short"
        );
        let (di, dw) = (
            SharedMut(dinp.as_mut_ptr()),
            SharedMut(dweight.as_mut_ptr()),
        );
        split.run(&|i| {
            let r = rows(n, parts, i);
            // SAFETY: parts own disjoint row ranges of `dinp` (length checked).
            let d = unsafe { di.rows(&r, ic) };
            let g = &dout[r.start * oc..r.end * oc];
            // B = weight^T: B[kk, j] = weight[j * oc + kk].
            gemm(r.len(), ic, oc, g, oc, 1, weight, 1, oc, d, ic, Init::Zero);
            let r = rows(ic, parts, i);
            // SAFETY: parts own disjoint row ranges of `dweight` (length checked).
            let d = unsafe { dw.rows(&r, oc) };
            let a = &inp[r.start..];
            gemm(r.len(), oc, n, a, 1, ic, dout, oc, 1, d, oc, Init::Zero);
        });
    }
    if let Some(dbias) = dbias {
        debug_assert_eq!(dbias.len(), oc);
        bias_backward(&mut dbias[..oc], dout, n, oc);
    }
}

kernel! {
    /// `dbias[j] = 0 + dout[0, j] + dout[1, j] + ...`, rows in order (the same
    /// per-element chain on every path; `dispatch!` only widens the vectors).
    fn bias_backward(dbias: &mut [f32], dout: &[f32], n: usize, oc: usize) {
        dbias.fill(0.0);
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
    lm_head_forward_split(&Serial, logits, inp, wte, n, c, v)
}

/// [`lm_head_forward`] with its `n` rows split over `split`'s parts.
pub fn lm_head_forward_split(
    split: &dyn RowSplit,
    logits: &mut [f32],
    inp: &[f32],
    wte: &[f32],
    n: usize,
    c: usize,
    v: usize,
) {
    debug_assert_eq!(logits.len(), n * v);
    debug_assert_eq!(inp.len(), n * c);
    debug_assert!(wte.len() >= v * c);
    // B = wte^T: B[kk, j] = wte[j * c + kk].
    forward_rows(split, logits, inp, n, c, v, (wte, 1, c), Init::Zero, None);
}

/// Backward of [`lm_head_forward`]: overwrites `dinp = dlogits @ wte` and
/// `dwte = dlogits^T @ inp` (every element is written; the encoder's backward then
/// adds the embedding's own gradient to `dwte`).
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
    lm_head_backward_split(&Serial, dinp, dwte, dlogits, inp, wte, n, c, v)
}

/// [`lm_head_backward`] with the rows of `dinp` (`n`) and of `dwte` (`v`) split over
/// `split`'s parts.
#[allow(clippy::too_many_arguments)]
pub fn lm_head_backward_split(
    split: &dyn RowSplit,
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
    // Part i: rows of dinp = dlogits @ wte, and rows of dwte[v, c] = dlogits^T[v, n]
    // @ inp[n, c] (A(i, kk) = dlogits[kk * v + i]).
    let parts = split.parts().max(1);
    assert!(
        dinp.len() >= n * c && dwte.len() >= v * c && dlogits.len() >= n * v,
        "lm head: buffer too short"
    );
    let (di, dw) = (SharedMut(dinp.as_mut_ptr()), SharedMut(dwte.as_mut_ptr()));
    split.run(&|i| {
        let r = rows(n, parts, i);
        // SAFETY: parts own disjoint row ranges of `dinp` (length checked).
        let d = unsafe { di.rows(&r, c) };
        let g = &dlogits[r.start * v..r.end * v];
        gemm(r.len(), c, v, g, v, 1, wte, c, 1, d, c, Init::Zero);
        let r = rows(v, parts, i);
        // SAFETY: parts own disjoint row ranges of `dwte` (length checked).
        let d = unsafe { dw.rows(&r, c) };
        gemm(
            r.len(),
            c,
            n,
            &dlogits[r.start..],
            1,
            v,
            inp,
            c,
            1,
            d,
            c,
            Init::Zero,
        );
    });
}
