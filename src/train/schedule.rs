//! Owns the learning-rate schedule: linear warm-up, then cosine decay to a floor.
//! Must never depend on wall-clock time or thread count.
//!
//! # Why warm-up is a fixed number of steps
//! [`DEFAULT_WARMUP`] fixes the *slope* of the warm-up, not its share of the run. With
//! the earlier default (5% of the steps: 75 of 1,500, peak 2e-3) the default model's
//! loss jumped from 2.8 to 6.4 near step 44 on four seeds of five: early in training
//! the first layer's attention is sharp, and AdamW's near-sign-sized update (every
//! weight moved by about the learning rate, 1.1e-3 there) on its query/key/value
//! weights saturated the attention softmax (gradient norm about 300 on the next
//! step). Undoing only that tensor's update removes the jump; undoing any other
//! tensor's does not. Changing the other defaults one at a time on seeds 1-5
//! (measured over the first 120-400 steps): epsilon 1e-6 still jumps on four seeds;
//! beta2 0.99 or 0.999 moves the jump to other seeds; a peak of 1e-3 on the same
//! 75-step ramp still jumps once (seed 3, step 54, learning rate 7.2e-4); beta1 0.8
//! removes it. The jump comes when the learning rate passes about 7e-4 within the
//! first 55 steps, so the fix is the ramp: 300 steps to the same peak reach 3.7e-4
//! by step 55, none of seeds 1-5 jumps in the first 400 steps, the betas stay the
//! usual ones, and the 1,500-step default run ends at the same validation loss
//! (1.8316 against 1.8298 nats per byte on the letter-level corpus). A run shorter
//! than the warm-up simply does not reach the peak.

/// Default warm-up steps: the learning rate rises to its peak over this many steps,
/// whatever the run's length (see the module doc).
pub const DEFAULT_WARMUP: u64 = 300;

/// Linear warm-up for `warmup` steps to `max_lr`, then cosine decay to `min_lr` at
/// step `total` (and `min_lr` after it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub max_lr: f32,
    /// Final learning rate.
    pub min_lr: f32,
    /// Warm-up steps.
    pub warmup: u64,
    /// Total steps of the run.
    pub total: u64,
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.max_lr * (step + 1) as f32 / self.warmup as f32;
        }
        if step >= self.total || self.total <= self.warmup {
            return self.min_lr;
        }
        let progress = (step - self.warmup) as f64 / (self.total - self.warmup) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (self.min_lr as f64 + (self.max_lr - self.min_lr) as f64 * cosine) as f32
    }
}
