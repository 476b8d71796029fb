//! Owns the AdamW optimizer over flat parameter buffers: its hyper-parameters, its
//! moment state, and the elementwise update. Must never know tensor names or threads.
//!
//! Every operation is elementwise and evaluates the same scalar expression per element,
//! so updating `0..n` at once or as any set of disjoint ranges (a sharded optimizer)
//! gives bitwise identical parameters.

use crate::isa::kernel;
use core::ops::Range;

/// AdamW hyper-parameters (defaults: the GPT-2/nanoGPT choice).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Decoupled weight decay, applied only inside the decay mask.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// The optimizer's state for a flat parameter buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    /// First moments, one per parameter.
    pub m: Vec<f32>,
    /// Second moments, one per parameter.
    pub v: Vec<f32>,
    /// Updates applied so far.
    pub t: u64,
}

/// The per-step scalars of an update, computed once and shared by every shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepScalars {
    /// Learning rate of this step.
    pub lr: f32,
    /// Factor applied to every gradient first (gradient-norm clipping; 1 if none).
    pub grad_scale: f32,
    /// `1 - beta1^t` for this step's `t`.
    pub bias1: f32,
    /// `1 - beta2^t` for this step's `t`.
    pub bias2: f32,
}

impl AdamState {
    /// Zero moments for `n` parameters, before the first update.
    pub fn new(n: usize) -> Self {
        AdamState {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// The scalars of the next update (`t + 1`).
    pub fn next_scalars(&self, cfg: &AdamWConfig, lr: f32, grad_scale: f32) -> StepScalars {
        StepScalars::for_update(cfg, self.t + 1, lr, grad_scale)
    }
}

impl StepScalars {
    /// The scalars of update number `t` (1-based).
    pub fn for_update(cfg: &AdamWConfig, t: u64, lr: f32, grad_scale: f32) -> StepScalars {
        let t = t as i32;
        StepScalars {
            lr,
            grad_scale,
            bias1: 1.0 - cfg.beta1.powi(t),
            bias2: 1.0 - cfg.beta2.powi(t),
        }
    }
}

/// Apply one AdamW update to `params[range]` with `grads[range]`, updating the moments
/// `m[range]`, `v[range]`. `decay` lists the (sorted, disjoint) ranges that get weight
/// decay. Does not advance `t`: the caller does once per step, after every shard.
#[allow(clippy::too_many_arguments)]
pub fn update_range(
    cfg: &AdamWConfig,
    s: &StepScalars,
    range: Range<usize>,
    decay: &[Range<usize>],
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let r = range.clone();
    update_part(
        cfg,
        s,
        range,
        decay,
        &mut params[r.clone()],
        &grads[r.clone()],
        &mut m[r.clone()],
        &mut v[r],
    );
}

/// As [`update_range`], but the four slices hold only `range` (element `i` of each is
/// parameter `range.start + i`): the shape a sharded optimizer owns.
#[allow(clippy::too_many_arguments)]
pub fn update_part(
    cfg: &AdamWConfig,
    s: &StepScalars,
    range: Range<usize>,
    decay: &[Range<usize>],
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let base = range.start;
    let mut span = |wd: f32, abs: Range<usize>| {
        let local = abs.start - base..abs.end - base;
        update_span(cfg, s, wd, local, params, grads, m, v);
    };
    let mut at = range.start;
    for d in decay
        .iter()
        .chain(core::iter::once(&(range.end..range.end)))
    {
        let d = d.start.clamp(range.start, range.end)..d.end.clamp(range.start, range.end);
        if d.start > at {
            span(0.0, at..d.start);
        }
        if !d.is_empty() {
            span(cfg.weight_decay, d.start.max(at)..d.end);
            at = d.end;
        } else {
            at = at.max(d.start);
        }
    }
}

kernel! {
    /// The elementwise update over one span with one weight-decay value, compiled for
    /// every instruction-set path (16 lanes on AVX-512, 8 on AVX2, 4 portable). The
    /// expression and so the bits are the same on every path: Rust does not fuse or
    /// reorder float operations, only the vector width changes.
    #[allow(clippy::too_many_arguments)]
    fn update_span(
        cfg: &AdamWConfig,
        s: &StepScalars,
        weight_decay: f32,
        span: Range<usize>,
        params: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let decay_factor = 1.0 - s.lr * weight_decay;
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let p = &mut params[span.clone()];
        let g = &grads[span.clone()];
        let m = &mut m[span.clone()];
        let v = &mut v[span];
        for i in 0..p.len() {
            let grad = g[i] * s.grad_scale;
            m[i] = b1 * m[i] + (1.0 - b1) * grad;
            v[i] = b2 * v[i] + (1.0 - b2) * (grad * grad);
            let m_hat = m[i] / s.bias1;
            let v_hat = v[i] / s.bias2;
            p[i] = p[i] * decay_factor - s.lr * (m_hat / (v_hat.sqrt() + cfg.eps));
        }
    }
}
