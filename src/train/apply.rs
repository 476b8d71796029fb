//! Owns the step arithmetic every scheduler shares once the summed gradient exists:
//! [`apply_update`] (steps 3-5 of a step on one thread: mean loss, gradient norm,
//! clipping, the non-finite check, AdamW) and [`clip_scale`] (the factor applied to the
//! summed gradient, which the lock-free scheduler's decision also uses). Depends only
//! on [`types`](super::types), the norm and the optimizer; must never spawn a thread,
//! touch an atomic or know which scheduler calls it.

use crate::train::norm;
use crate::train::optim::{update_range, AdamState, StepScalars};
use crate::train::types::{StepStats, TrainConfig, TrainError};
use core::ops::Range;

/// Steps 3-5 of a step on one thread: the mean loss, the norm of the mean gradient,
/// clipping, the non-finite check, and AdamW over every parameter (advancing `t`).
/// `grad` is the summed gradient and `losses` the micro-batch losses.
pub fn apply_update(
    cfg: &TrainConfig,
    decay: &[Range<usize>],
    params: &mut [f32],
    opt: &mut AdamState,
    grad: &[f32],
    losses: &[f32],
    step: u64,
) -> Result<StepStats, TrainError> {
    let mean_scale = 1.0 / cfg.micro_batches as f32;
    let grad_norm = norm::grad_norm(grad, mean_scale);
    let (stats, s) = decide(cfg, losses, grad_norm, step, opt.t)?;
    let n = params.len();
    update_range(
        &cfg.adamw,
        &s,
        0..n,
        decay,
        params,
        grad,
        &mut opt.m,
        &mut opt.v,
    );
    opt.t += 1;
    Ok(stats)
}

/// The step decision, a pure function of every micro-batch loss (`losses`, in
/// micro-batch order) and the mean gradient's norm: the mean loss (summed in order in
/// f64), the non-finite checks (an error names the step; the caller must not update),
/// the learning rate, the clip factor and the scalars of AdamW update number `t + 1`.
/// Every process of a data-parallel run evaluates it on the same inputs.
pub fn decide(
    cfg: &TrainConfig,
    losses: &[f32],
    grad_norm: f64,
    step: u64,
    t: u64,
) -> Result<(StepStats, StepScalars), TrainError> {
    let m = cfg.micro_batches;
    let loss = (losses.iter().map(|&l| l as f64).sum::<f64>() / m as f64) as f32;
    let non_finite = |what, value: f64| TrainError::NonFinite {
        step,
        what,
        value,
        last_good: step,
    };
    if !loss.is_finite() {
        return Err(non_finite("loss", loss as f64));
    }
    if !grad_norm.is_finite() {
        return Err(non_finite("gradient norm", grad_norm));
    }
    let mean_scale = 1.0 / m as f32;
    let scale = clip_scale(mean_scale, grad_norm, cfg.grad_clip);
    let lr = cfg.schedule.lr(step);
    let scalars = StepScalars::for_update(&cfg.adamw, t + 1, lr, scale);
    let stats = StepStats {
        step,
        loss,
        grad_norm,
        lr,
        tokens: cfg.tokens_per_step(),
    };
    Ok((stats, scalars))
}

/// The factor applied to the summed gradient: the micro-batch mean, shrunk so the
/// norm is at most `clip` (when `clip > 0`). `norm` is the mean gradient's norm.
pub fn clip_scale(mean_scale: f32, norm: f64, clip: f32) -> f32 {
    if clip > 0.0 && norm > clip as f64 {
        (mean_scale as f64 * (clip as f64 / norm)) as f32
    } else {
        mean_scale
    }
}
