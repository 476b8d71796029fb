//! Owns the token + position embedding ([`encoder_forward`], [`encoder_backward`]).
//! Must never check token ids against the vocabulary beyond the slice bounds check
//! (the data path guarantees them).

use crate::isa::kernel;

kernel! {
    /// `out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]`.
    ///
    /// Shapes: `out [b*t, c]`, `tokens [b*t]` (each `< vocab`, guaranteed by the caller),
    /// `wte [vocab, c]`, `wpe [>= t, c]`.
    ///
    /// # Panics
    /// If a token is out of range of `wte` or a slice is shorter than its shape.
    pub fn encoder_forward(
        out: &mut [f32],
        tokens: &[u32],
        wte: &[f32],
        wpe: &[f32],
        b: usize,
        t: usize,
        c: usize,
    ) {
        debug_assert_eq!(out.len(), b * t * c);
        debug_assert_eq!(tokens.len(), b * t);
        debug_assert!(wpe.len() >= t * c);
        for (i, (row, &tok)) in out.chunks_exact_mut(c).zip(tokens).take(b * t).enumerate() {
            let pos = i % t;
            let tok = tok as usize;
            let e = &wte[tok * c..(tok + 1) * c];
            let p = &wpe[pos * c..(pos + 1) * c];
            for ((o, &x), &y) in row.iter_mut().zip(e).zip(p) {
                *o = x + y;
            }
        }
    }
}

kernel! {
    /// Backward of [`encoder_forward`], accumulating in row order:
    /// `dwte[tokens[b, t], :] += dout[b, t, :]`, `dwpe[t, :] += dout[b, t, :]`.
    ///
    /// Shapes: `dwte [vocab, c]`, `dwpe [>= t, c]`, `dout [b*t, c]`, `tokens [b*t]`.
    ///
    /// # Panics
    /// If a token is out of range of `dwte` or a slice is shorter than its shape.
    pub fn encoder_backward(
        dwte: &mut [f32],
        dwpe: &mut [f32],
        dout: &[f32],
        tokens: &[u32],
        b: usize,
        t: usize,
        c: usize,
    ) {
        debug_assert_eq!(dout.len(), b * t * c);
        debug_assert_eq!(tokens.len(), b * t);
        debug_assert!(dwpe.len() >= t * c);
        for (i, (row, &tok)) in dout.chunks_exact(c).zip(tokens).take(b * t).enumerate() {
            let pos = i % t;
            let tok = tok as usize;
            for (d, &g) in dwte[tok * c..(tok + 1) * c].iter_mut().zip(row) {
                *d += g;
            }
            for (d, &g) in dwpe[pos * c..(pos + 1) * c].iter_mut().zip(row) {
                *d += g;
            }
        }
    }
}
