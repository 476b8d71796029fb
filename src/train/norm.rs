//! Owns the gradient-norm computation used for clipping, defined so that it gives the
//! same bits however the parameters are split between threads.
//! Must never depend on the partition it is evaluated over.
//!
//! The squared norm is a sum over fixed blocks of [`NORM_BLOCK`] floats (aligned to
//! index 0). Within a block, each element is scaled in f32 and squared in f64;
//! lane `l` of 16 sums the squares of elements `l, l + 16, ...` left to right,
//! the lanes are added pairwise in a fixed tree (`lane l + lane l + 8`, then `+ 4`,
//! `+ 2`, `+ 1`), and a short final block's tail (`len % 16` elements) is added left to
//! right. The block sums are added in block order. A thread that owns whole blocks can
//! compute its block sums independently; the final sum over blocks is one sequential
//! pass. Sixteen independent lanes let the f64 adds overlap (one in-order chain was
//! bound by the add latency, about 1% of a training step at shape S). Tested in
//! `tests/train_optim.rs` (partition independence, and the order against an
//! independent transcription of this paragraph).

use crate::isa::kernel;

/// Floats per block of the norm computation (and the alignment of parameter parts).
pub const NORM_BLOCK: usize = 256;

/// Interleaved partial sums within a block.
const LANES: usize = 16;

kernel! {
    /// Sum of squares of each block of `grad` that starts in `range` (`range.start` must
    /// be a multiple of [`NORM_BLOCK`]; `range.end` a multiple or the buffer end),
    /// scaled by `scale` before squaring. One value per block, in order.
    pub fn block_sums(grad: &[f32], range: core::ops::Range<usize>, scale: f32, out: &mut Vec<f64>) {
        debug_assert_eq!(range.start % NORM_BLOCK, 0);
        let grad = &grad[range];
        out.clear();
        out.extend(grad.chunks(NORM_BLOCK).map(|block| block_sum(block, scale)));
    }
}

/// One block's sum of squares, in the order of the module doc.
#[inline(always)]
fn block_sum(block: &[f32], scale: f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = block.chunks_exact(LANES);
    let tail = chunks.remainder();
    for ch in chunks {
        for (a, &g) in acc.iter_mut().zip(ch) {
            let x = (g * scale) as f64;
            *a += x * x;
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    let mut s = acc[0];
    for &g in tail {
        let x = (g * scale) as f64;
        s += x * x;
    }
    s
}

/// The L2 norm from every block sum, in block order.
pub fn norm_from_blocks(blocks: &[f64]) -> f64 {
    blocks.iter().sum::<f64>().sqrt()
}

/// The L2 norm of `grad * scale`.
pub fn grad_norm(grad: &[f32], scale: f32) -> f64 {
    let mut blocks = Vec::new();
    block_sums(grad, 0..grad.len(), scale, &mut blocks);
    norm_from_blocks(&blocks)
}
