//! Owns the output softmax: the fused cross-entropy forward and backward
//! ([`crossentropy_forward_backward`]), the forward alone ([`crossentropy_forward`])
//! and the sampling softmax ([`softmax_row`]).
//! Must never overflow: every softmax subtracts the row maximum first, and losses are
//! computed from the logits as `ln(sum e^(x - max)) - (x[target] - max)`.

use crate::isa::kernel;

use super::{exp, max, sum};

/// The loss of one row: `-ln softmax(row)[target]`, stably.
#[inline]
fn row_loss(row: &[f32], target: usize, maxval: f32, sumexp: f32) -> f32 {
    // ln(sumexp) >= 0 because the max term contributes e^0 = 1; clamp rounding to 0.
    (sumexp.ln() - (row[target] - maxval)).max(0.0)
}

kernel! {
    /// Per-position softmax cross-entropy on `logits [n, v]`, in place.
    ///
    /// Writes `losses[i] = -ln softmax(logits[i, :])[targets[i]]` (stable for any finite
    /// logits), then overwrites `logits` with
    /// `dlogits[i, :] = (softmax(logits[i, :]) - onehot(targets[i])) * dloss`, where
    /// `dloss` is the gradient of the final loss with respect to each position's loss
    /// (`1 / n` for a mean).
    ///
    /// Shapes: `logits [n, v]`, `losses [n]`, `targets [n]` (each `< v`).
    ///
    /// # Panics
    /// If a target is `>= v` or a slice is shorter than its shape.
    pub fn crossentropy_forward_backward(
        logits: &mut [f32],
        losses: &mut [f32],
        targets: &[u32],
        n: usize,
        v: usize,
        dloss: f32,
    ) {
        debug_assert_eq!(logits.len(), n * v);
        debug_assert!(losses.len() == n && targets.len() == n);
        let rows = logits
            .chunks_exact_mut(v)
            .zip(losses.iter_mut().zip(targets))
            .take(n);
        for (row, (loss, &target)) in rows {
            let target = target as usize;
            assert!(target < v, "target {target} out of vocabulary {v}");
            let maxval = max(row);
            let target_logit = row[target];
            for x in row.iter_mut() {
                *x = exp(*x - maxval);
            }
            let s = sum(row);
            *loss = (s.ln() - (target_logit - maxval)).max(0.0);
            let scale = dloss / s;
            for x in row.iter_mut() {
                *x *= scale;
            }
            row[target] -= dloss;
        }
    }
}

kernel! {
    /// Forward only (evaluation): `losses[i] = -ln softmax(logits[i, :])[targets[i]]`;
    /// `logits` unchanged. Bitwise equal to the losses of
    /// [`crossentropy_forward_backward`].
    ///
    /// Shapes: `logits [n, v]`, `losses [n]`, `targets [n]` (each `< v`).
    ///
    /// # Panics
    /// If a target is `>= v` or a slice is shorter than its shape.
    pub fn crossentropy_forward(
        logits: &[f32],
        losses: &mut [f32],
        targets: &[u32],
        n: usize,
        v: usize,
    ) {
        debug_assert_eq!(logits.len(), n * v);
        debug_assert!(losses.len() == n && targets.len() == n);
        let mut e = vec![0.0f32; v];
        let rows = logits
            .chunks_exact(v)
            .zip(losses.iter_mut().zip(targets))
            .take(n);
        for (row, (loss, &target)) in rows {
            let target = target as usize;
            assert!(target < v, "target {target} out of vocabulary {v}");
            let maxval = max(row);
            for (ei, &x) in e.iter_mut().zip(row) {
                *ei = exp(x - maxval);
            }
            *loss = row_loss(row, target, maxval, sum(&e));
        }
    }
}

kernel! {
    /// `probs = softmax(logits / temperature)` for one row (sampling).
    ///
    /// Shapes: `probs [v]`, `logits [v]`. A `temperature` that is not a positive finite
    /// number (zero, negative, NaN) selects greedy decoding: `probs` is one-hot at the
    /// first maximum of `logits` (the limit as the temperature goes to zero). An empty row
    /// does nothing.
    pub fn softmax_row(probs: &mut [f32], logits: &[f32], temperature: f32) {
        debug_assert_eq!(probs.len(), logits.len());
        let len = probs.len().min(logits.len());
        let (probs, logits) = (&mut probs[..len], &logits[..len]);
        if len == 0 {
            return;
        }
        if !(temperature > 0.0 && temperature.is_finite()) {
            let mut best = 0;
            for (i, &x) in logits.iter().enumerate() {
                if x > logits[best] {
                    best = i;
                }
            }
            probs.fill(0.0);
            probs[best] = 1.0;
            return;
        }
        let inv_t = 1.0 / temperature;
        let maxval = max(logits);
        for (p, &x) in probs.iter_mut().zip(logits) {
            *p = exp((x - maxval) * inv_t);
        }
        let inv = 1.0 / sum(probs);
        for p in probs.iter_mut() {
            *p *= inv;
        }
    }
}
