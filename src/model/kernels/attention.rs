//! Owns causal multi-head self-attention ([`attention_forward`],
//! [`attention_backward`]) on the fused `qkv` activations.
//! Must never let position `t1` see a position `t2 > t1`, and never mix batch rows.
//!
//! Each `(batch, head)` pair is a handful of small matmuls through [`gemm`] (the
//! engine reads `q`, `k`, `v` in place through strides; keys and values are transposed
//! into a per-thread buffer where a transpose is needed) plus row softmaxes. The
//! matmuls run in causal row blocks of `ROW_BLOCK` (12) rows: those of rows `r0..r1` only
//! reach positions `< r1` (rounded up to whole column tiles for the scores, whose
//! masked entries are then overwritten). Inside a block the masked probabilities are
//! exact zeros, so a later position never changes an earlier result as long as its
//! values are finite (a NaN or infinity in a later `v` can reach earlier rows of the
//! same block through `0 * inf`; the loss is non-finite then anyway).
//! The blocks depend on `t` only, so results stay bitwise reproducible.

use crate::isa::kernel;

use super::gemm::{gemm, Init};
use super::transpose::transpose;
use super::{dot, exp, max, prefetch_l2, sum};
use std::cell::RefCell;

thread_local! {
    /// Per-thread buffer for one head's transposed keys or values (`[hs, t]`).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows per causal block: the score and value matmuls of rows `r0..r1` only run over
/// positions `< r1`, which skips most of the masked upper triangle (two AVX2 row tiles).
const ROW_BLOCK: usize = 12;

/// The causal row blocks `(r0, r1)` of `0..t`.
fn row_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(ROW_BLOCK)
        .map(move |r0| (r0, (r0 + ROW_BLOCK).min(t)))
}

/// Columns of the score matmul for a row block ending at `r1`: `r1` rounded up to a
/// multiple of 16 (whole AVX2 column tiles; the extra columns are masked anyway), at
/// most `t`.
fn causal_cols(r1: usize, t: usize) -> usize {
    r1.div_ceil(16).saturating_mul(16).min(t)
}

/// Runs `f` with the `[t, hs]` block of `qkv` starting at `off` (row stride `3c`)
/// transposed into a `[hs, t]` buffer.
fn with_head_transposed<R>(
    qkv: &[f32],
    off: usize,
    t: usize,
    hs: usize,
    c: usize,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < hs * t {
            buf.resize(hs * t, 0.0);
        }
        transpose(buf, &qkv[off..], t, hs, 3 * c);
        f(&buf[..hs * t])
    })
}

kernel! {
    /// Causal multi-head self-attention.
    ///
    /// `qkv [b*t, 3c]` holds `[q | k | v]` per row; head `h` uses columns
    /// `h*hs..(h+1)*hs` of each, `hs = c / nh`; scores are scaled by `1 / sqrt(hs)`.
    /// Writes `att [b, nh, t, t]`, the softmax probabilities (row `t1` is zero past
    /// column `t1`; saved for [`attention_backward`]) and `out [b*t, c]`, the heads
    /// concatenated: `out[b, t1, h] = sum_{t2 <= t1} att[b, h, t1, t2] v[b, t2, h]`.
    /// Overwrites `out` and `att`.
    ///
    /// Per `(b, h)`: `scores = Q K^T` and `out = att V` through [`gemm`] in causal row
    /// blocks (see the module doc), and a row softmax over columns `0..=t1`.
    ///
    /// # Panics
    /// If `nh` is zero or a slice is shorter than its shape (`c % nh == 0` is checked by
    /// `debug_assert!`).
    pub fn attention_forward(
        out: &mut [f32],
        att: &mut [f32],
        qkv: &[f32],
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) {
        debug_assert_eq!(c % nh, 0);
        debug_assert_eq!(out.len(), b * t * c);
        debug_assert_eq!(att.len(), b * nh * t * t);
        debug_assert_eq!(qkv.len(), b * t * 3 * c);
        let hs = c / nh;
        if t == 0 || hs == 0 {
            return;
        }
        let scale = 1.0 / (hs as f32).sqrt();
        let c3 = 3 * c;
        for bi in 0..b {
            let base = bi * t * c3;
            if bi + 1 < b {
                // The next batch row's input and outputs, while this one is computed.
                let next = bi + 1;
                prefetch_l2(&qkv[next * t * c3..(next + 1) * t * c3]);
                prefetch_l2(&att[next * nh * t * t..(next + 1) * nh * t * t]);
                prefetch_l2(&out[next * t * c..(next + 1) * t * c]);
            }
            for h in 0..nh {
                let a0 = (bi * nh + h) * t * t;
                let att_bh = &mut att[a0..a0 + t * t];
                let q = &qkv[base + h * hs..];
                // scores[t1, t2] = q[t1] . k[t2] for t2 below the end of t1's row block (the
                // rest of the row is masked below).
                with_head_transposed(qkv, base + c + h * hs, t, hs, c, |kt| {
                    for (r0, r1) in row_blocks(t) {
                        let rows = &mut att_bh[r0 * t..];
                        gemm(
                            r1 - r0,
                            causal_cols(r1, t),
                            hs,
                            &q[r0 * c3..],
                            c3,
                            1,
                            kt,
                            t,
                            1,
                            rows,
                            t,
                            Init::Zero,
                        );
                    }
                });
                for (t1, row) in att_bh.chunks_exact_mut(t).enumerate() {
                    // The softmax runs over whole 8-lane groups (no scalar tail): the
                    // columns up to `padded` were written by the score matmul above (they
                    // lie inside `causal_cols` of t1's block), and the masked ones among
                    // them are zeroed after the exponential, before anything sums them.
                    let live = t1 + 1;
                    let padded = live.next_multiple_of(8).min(t);
                    let (head, masked) = row.split_at_mut(padded);
                    for s in head.iter_mut() {
                        *s *= scale;
                    }
                    let maxval = max(&head[..live]);
                    for s in head.iter_mut() {
                        *s = exp(*s - maxval);
                    }
                    head[live..].fill(0.0);
                    let inv = 1.0 / sum(head);
                    for s in head.iter_mut() {
                        *s *= inv;
                    }
                    masked.fill(0.0);
                }
                // out[t1] = sum_t2 att[t1, t2] v[t2] over t2 below the end of t1's row block
                // (masked entries inside the block are exact zeros).
                let v = &qkv[base + 2 * c + h * hs..];
                let o = &mut out[bi * t * c + h * hs..];
                for (r0, r1) in row_blocks(t) {
                    let a = &att_bh[r0 * t..];
                    gemm(
                        r1 - r0,
                        hs,
                        r1,
                        a,
                        t,
                        1,
                        v,
                        c3,
                        1,
                        &mut o[r0 * c..],
                        c,
                        Init::Zero,
                    );
                }
            }
        }
    }
}

kernel! {
    /// Backward of [`attention_forward`], overwriting `dqkv [b*t, 3c]` (every element is
    /// written once: each row block of each head's `dq`, `dk` and `dv` by one matmul).
    ///
    /// `datt_scratch [b, nh, t, t]` is caller-provided scratch (its contents on entry are
    /// irrelevant; on return it holds the gradients of the scaled scores, zero above the
    /// diagonal). `dout [b*t, c]`, `qkv [b*t, 3c]` and `att [b, nh, t, t]` are the
    /// forward's input and saved output.
    ///
    /// Per `(b, h)`, through [`gemm`]: `datt = dout V^T`, `dV = att^T dout`, the softmax
    /// backward `dpre = att * (datt - sum(att * datt)) * scale` row by row, then
    /// `dQ = dpre K` and `dK = dpre^T Q`.
    ///
    /// # Panics
    /// As [`attention_forward`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        dqkv: &mut [f32],
        datt_scratch: &mut [f32],
        dout: &[f32],
        qkv: &[f32],
        att: &[f32],
        b: usize,
        t: usize,
        c: usize,
        nh: usize,
    ) {
        debug_assert_eq!(c % nh, 0);
        debug_assert_eq!(dqkv.len(), b * t * 3 * c);
        debug_assert_eq!(datt_scratch.len(), b * nh * t * t);
        debug_assert_eq!(dout.len(), b * t * c);
        debug_assert_eq!(qkv.len(), b * t * 3 * c);
        debug_assert_eq!(att.len(), b * nh * t * t);
        let hs = c / nh;
        if t == 0 || hs == 0 {
            return;
        }
        let scale = 1.0 / (hs as f32).sqrt();
        let c3 = 3 * c;
        for bi in 0..b {
            let base = bi * t * c3;
            if bi + 1 < b {
                // The next batch row's inputs and outputs, while this one is computed.
                let next = bi + 1;
                prefetch_l2(&att[next * nh * t * t..(next + 1) * nh * t * t]);
                prefetch_l2(&qkv[next * t * c3..(next + 1) * t * c3]);
                prefetch_l2(&dout[next * t * c..(next + 1) * t * c]);
                prefetch_l2(&datt_scratch[next * nh * t * t..(next + 1) * nh * t * t]);
                prefetch_l2(&dqkv[next * t * c3..(next + 1) * t * c3]);
            }
            for h in 0..nh {
                let a0 = (bi * nh + h) * t * t;
                let att_bh = &att[a0..a0 + t * t];
                let datt = &mut datt_scratch[a0..a0 + t * t];
                let g = &dout[bi * t * c + h * hs..];
                let (qo, ko, vo) = (base + h * hs, base + c + h * hs, base + 2 * c + h * hs);
                // datt[t1, t2] = dout[t1] . v[t2] (up to the end of t1's row block).
                with_head_transposed(qkv, vo, t, hs, c, |vt| {
                    for (r0, r1) in row_blocks(t) {
                        let rows = &mut datt[r0 * t..];
                        gemm(
                            r1 - r0,
                            causal_cols(r1, t),
                            hs,
                            &g[r0 * c..],
                            c,
                            1,
                            vt,
                            t,
                            1,
                            rows,
                            t,
                            Init::Zero,
                        );
                    }
                });
                // dv[t2] = sum_{t1 >= r0} att[t1, t2] dout[t1] for t2 in the block r0..r1
                // (att[t1, t2] = 0 for t1 < t2). A(i, kk) = att[(r0 + kk) t + r0 + i].
                for (r0, r1) in row_blocks(t) {
                    let a = &att_bh[r0 * t + r0..];
                    let dst = &mut dqkv[vo + r0 * c3..];
                    gemm(
                        r1 - r0,
                        hs,
                        t - r0,
                        a,
                        1,
                        t,
                        &g[r0 * c..],
                        c,
                        1,
                        dst,
                        c3,
                        Init::Zero,
                    );
                }
                // Through the softmax and the scale.
                for (t1, (drow, arow)) in datt
                    .chunks_exact_mut(t)
                    .zip(att_bh.chunks_exact(t))
                    .enumerate()
                {
                    let (live, masked) = drow.split_at_mut(t1 + 1);
                    let s = dot(&arow[..=t1], live);
                    for (d, &p) in live.iter_mut().zip(arow) {
                        *d = p * (*d - s) * scale;
                    }
                    masked.fill(0.0);
                }
                // dq[t1] = sum_t2 dpre[t1, t2] k[t2];  dk[t2] = sum_t1 dpre[t1, t2] q[t1],
                // over the same ranges as the forward's `att V` and the `dv` above.
                for (r0, r1) in row_blocks(t) {
                    let a = &datt[r0 * t..];
                    let dst = &mut dqkv[qo + r0 * c3..];
                    gemm(
                        r1 - r0,
                        hs,
                        r1,
                        a,
                        t,
                        1,
                        &qkv[ko..],
                        c3,
                        1,
                        dst,
                        c3,
                        Init::Zero,
                    );
                }
                for (r0, r1) in row_blocks(t) {
                    let a = &datt[r0 * t + r0..];
                    let q = &qkv[qo + r0 * c3..];
                    let dst = &mut dqkv[ko + r0 * c3..];
                    gemm(r1 - r0, hs, t - r0, a, 1, t, q, c3, 1, dst, c3, Init::Zero);
                }
            }
        }
    }
}
