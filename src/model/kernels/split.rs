//! Owns [`RowSplit`]: how a matmul may hand disjoint blocks of its output rows to
//! other threads (the seed notes' intra-batch parallelism), and the serial default.
//! Must never spawn, wait or touch an atomic itself: whoever implements [`RowSplit`]
//! (the trainer) owns the threads; this file only says which rows a part computes.
//!
//! Every output row of a [`gemm`](super::gemm) is the same FMA chain however the rows
//! are grouped into calls, so a split computes the same bits as one call.

use core::ops::Range;

/// Runs a function once for each of `parts()` parts, possibly on several threads.
pub trait RowSplit: Sync {
    /// How many parts [`RowSplit::run`] runs (1: no parallelism).
    fn parts(&self) -> usize;
    /// Call `f(i)` exactly once for every `i` in `0..parts()` and return when all
    /// calls have returned (they may run concurrently on other threads).
    fn run(&self, f: &(dyn Fn(usize) + Sync));
}

/// Everything on the calling thread, one part.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl RowSplit for Serial {
    fn parts(&self) -> usize {
        1
    }
    fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        f(0)
    }
}

/// Part `i` of `n` rows split into `parts` contiguous, nearly equal blocks.
pub fn rows(n: usize, parts: usize, i: usize) -> Range<usize> {
    let at = |k: usize| (n as u128 * k as u128 / parts as u128) as usize;
    at(i)..at(i + 1)
}

/// A mutable float pointer that may be shared with the threads of one
/// [`RowSplit::run`], each writing only its own disjoint rows.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);

// SAFETY: only used inside one `RowSplit::run`, whose parts write disjoint row ranges
// of the buffer and all finish before `run` returns (see the callers in `matmul`).
unsafe impl Sync for SharedMut {}
// SAFETY: as above.
unsafe impl Send for SharedMut {}

impl SharedMut {
    /// Rows `r` of a row-major buffer of `width` floats per row.
    ///
    /// # Safety
    /// The rows must lie inside the buffer and no other live reference may overlap
    /// them.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn rows(&self, r: &Range<usize>, width: usize) -> &mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(r.start * width), r.len() * width) }
    }
}
