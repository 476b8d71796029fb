//! Owns the tanh-approximated GELU (GPT-2's `gelu_new`): [`gelu_forward`],
//! [`gelu_backward`]. Must never call the platform's libm (results would depend on it).
//!
//! `gelu(x) = 0.5 x (1 + tanh(u))`, `u = sqrt(2/pi) (x + 0.044715 x^3)`, evaluated as
//! the algebraically equal `x * s` with `s = 1 / (1 + e^(-2u))` (since
//! `(1 + tanh u) / 2 = sigmoid(2u)`): one vectorisable [`exp`] and no cancellation
//! for very negative `x`.

use crate::isa::kernel;

use super::exp;

/// `sqrt(2 / pi)`.
const K0: f32 = 0.797_884_6;
/// The cubic coefficient of `u`.
const K1: f32 = 0.044_715;

/// `sigmoid(2u)` for the `u` of `x`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let u = K0 * (x + K1 * (x * x) * x);
    1.0 / (1.0 + exp(-2.0 * u))
}

kernel! {
    /// `out[i] = gelu(inp[i]) = inp[i] * s[i]`, and `s[i] = sigmoid(2u)` saved for
    /// [`gelu_backward`] (and for [`gelu_recompute`]). Shapes: all `[len]`.
    pub fn gelu_forward(out: &mut [f32], s: &mut [f32], inp: &[f32]) {
        debug_assert!(out.len() == inp.len() && s.len() == inp.len());
        for ((o, si), &x) in out.iter_mut().zip(s.iter_mut()).zip(inp) {
            *si = sigmoid(x);
            *o = x * *si;
        }
    }
}

kernel! {
    /// `out[i] = inp[i] * s[i]`: the forward's output again from its saved `s`, bitwise
    /// (the same single multiply). Shapes: all `[len]`.
    pub fn gelu_recompute(out: &mut [f32], inp: &[f32], s: &[f32]) {
        debug_assert!(out.len() == inp.len() && s.len() == inp.len());
        for ((o, &x), &si) in out.iter_mut().zip(inp).zip(s) {
            *o = x * si;
        }
    }
}

kernel! {
    /// Backward of [`gelu_forward`], overwriting: `dinp[i] = gelu'(inp[i]) * dout[i]`,
    /// with `gelu'(x) = s + x * 2 s (1 - s) du/dx`, `du/dx = sqrt(2/pi) (1 + 3 * 0.044715
    /// x^2)` and `s` the forward's saved sigmoid (no exponential here). Shapes: all
    /// `[len]`.
    pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], s: &[f32], dout: &[f32]) {
        debug_assert!(dinp.len() == inp.len() && inp.len() == dout.len() && s.len() == inp.len());
        for (((d, &x), &s), &g) in dinp.iter_mut().zip(inp).zip(s).zip(dout) {
            let du = K0 * (1.0 + 3.0 * K1 * (x * x));
            let grad = s + x * 2.0 * s * (1.0 - s) * du;
            *d = grad * g;
        }
    }
}
