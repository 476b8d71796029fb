//! Owns the residual connection ([`residual_forward`], [`residual_backward`]).
//! Must never do more than elementwise adds.

use crate::isa::kernel;

kernel! {
    /// `out[i] = a[i] + b[i]`. Shapes: all `[len]`, equal lengths.
    pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
        debug_assert!(out.len() == a.len() && a.len() == b.len());
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
}

kernel! {
    /// Backward of [`residual_forward`], accumulating: `da[i] += dout[i]`,
    /// `db[i] += dout[i]`. Shapes: all `[len]`, equal lengths.
    pub fn residual_backward(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
        debug_assert!(da.len() == dout.len() && db.len() == dout.len());
        for ((x, y), &g) in da.iter_mut().zip(db.iter_mut()).zip(dout) {
            *x += g;
            *y += g;
        }
    }
}
