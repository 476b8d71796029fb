//! Owns the tanh-approximated GELU (GPT-2's `gelu_new`): [`gelu_forward`],
//! [`gelu_backward`]. Must never call the platform's libm (results would depend on it).
//!
//! `gelu(x) = 0.5 x (1 + tanh(u))`, `u = sqrt(2/pi) (x + 0.044715 x^3)`, evaluated as
//! the algebraically equal `x * s` with `s = 1 / (1 + e^(-2u))` (since
//! `(1 + tanh u) / 2 = sigmoid(2u)`): one vectorisable [`exp`] and no cancellation
//! for very negative `x`.

use super::exp;

/// `sqrt(2 / pi)`.
const K0: f32 = 0.797_884_6;
/// The cubic coefficient of `u`.
const K1: f32 = 0.044_715;

/// `sigmoid(2u)` for the `u` of `x`, and `du/dx`.
#[inline(always)]
fn parts(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let u = K0 * (x + K1 * x2 * x);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    let du = K0 * (1.0 + 3.0 * K1 * x2);
    (s, du)
}

/// `out[i] = gelu(inp[i])`. Shapes: `out [len]`, `inp [len]`.
pub fn gelu_forward(out: &mut [f32], inp: &[f32]) {
    debug_assert_eq!(out.len(), inp.len());
    dispatch!(gelu_forward_impl(out: &mut [f32], inp: &[f32]))
}

/// Body of [`gelu_forward`] (inlined into the AVX2 trampoline of `dispatch!`).
#[inline(always)]
fn gelu_forward_impl(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = x * parts(x).0;
    }
}

/// Backward of [`gelu_forward`], overwriting: `dinp[i] = gelu'(inp[i]) * dout[i]`,
/// with `gelu'(x) = s + x * 2 s (1 - s) du/dx`. Shapes: all `[len]`.
pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    debug_assert!(dinp.len() == inp.len() && inp.len() == dout.len());
    dispatch!(gelu_backward_impl(dinp: &mut [f32], inp: &[f32], dout: &[f32]))
}

/// Body of [`gelu_backward`] (inlined into the AVX2 trampoline of `dispatch!`).
#[inline(always)]
fn gelu_backward_impl(dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        let (s, du) = parts(x);
        let grad = s + x * 2.0 * s * (1.0 - s) * du;
        *d = grad * g;
    }
}
