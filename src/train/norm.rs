//! Owns the gradient-norm computation used for clipping, defined so that it gives the
//! same bits however the parameters are split between threads.
//! Must never depend on the partition it is evaluated over.
//!
//! The squared norm is a sum over fixed blocks of [`NORM_BLOCK`] floats (aligned to
//! index 0): each block's sum of squares is accumulated in f64 in index order, and the
//! block sums are added in block order. A thread that owns whole blocks can compute
//! its block sums independently; the final sum over blocks is one sequential pass.

/// Floats per block of the norm computation (and the alignment of parameter parts).
pub const NORM_BLOCK: usize = 256;

/// Sum of squares of each block of `grad` that starts in `range` (`range.start` must
/// be a multiple of [`NORM_BLOCK`]; `range.end` a multiple or the buffer end),
/// scaled by `scale` before squaring. One value per block, in order.
pub fn block_sums(grad: &[f32], range: core::ops::Range<usize>, scale: f32, out: &mut Vec<f64>) {
    debug_assert_eq!(range.start % NORM_BLOCK, 0);
    out.clear();
    for block in grad[range].chunks(NORM_BLOCK) {
        let mut s = 0.0f64;
        for &g in block {
            let x = (g * scale) as f64;
            s += x * x;
        }
        out.push(s);
    }
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
