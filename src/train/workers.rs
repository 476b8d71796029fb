//! Owns [`MicroBatch`] and the reference forward/backward phase: every micro-batch
//! of a step, in order, on the calling thread, into its own [`GradientSegments`] slot.
//! The schedulers ([`barrier`](super::barrier), [`lockfree`](super::lockfree)) must
//! give exactly these bits. Must never reduce or update (the caller does both).

use crate::model::{self, GptConfig, TrainingContext};
use crate::segments::GradientSegments;
use crate::train::types::TrainError;

/// One micro-batch's inputs: `batch * seq` tokens and their targets.
#[derive(Debug, Clone, Default)]
pub struct MicroBatch {
    /// Input tokens.
    pub tokens: Vec<u32>,
    /// Next-token targets.
    pub targets: Vec<u32>,
}

/// Run forward/backward for every micro-batch of segment step `seg_step` on this
/// thread, writing micro-batch `m`'s mean loss to `losses[m]` and its gradient to
/// slot `m`.
pub fn forward_backward_serial(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    segments: &GradientSegments,
    seg_step: usize,
    batches: &[MicroBatch],
    losses: &mut [f32],
) -> Result<(), TrainError> {
    for (m, b) in batches.iter().enumerate() {
        let mut slot = segments.claim(seg_step, m)?;
        losses[m] =
            slot.write(|g| model::forward_backward(cfg, params, ctx, &b.tokens, &b.targets, g))?;
        slot.publish();
    }
    Ok(())
}
