//! Owns the worker threads of one training step's forward/backward phase (the
//! barrier scheduler of issue 4, kept deliberately simple): the step's micro-batch
//! indices go into a [`WorkQueue`], scoped workers pop them, each runs
//! forward/backward with its own [`TrainingContext`] into the micro-batch's
//! [`GradientSegments`] slot, and the step waits for every worker (the barrier is
//! the scope's join). Weights are only read here.
//! Must never reduce or update (the caller does both on its own thread, in the fixed
//! order), and never let the thread count influence any number: slot `m` always
//! holds micro-batch `m`'s gradient, whoever computed it.

use crate::model::{self, GptConfig, TrainingContext};
use crate::queue::WorkQueue;
use crate::segments::GradientSegments;
use crate::train::trainer::TrainError;

/// One micro-batch's inputs: `batch * seq` tokens and their targets.
#[derive(Debug, Clone, Default)]
pub struct MicroBatch {
    /// Input tokens.
    pub tokens: Vec<u32>,
    /// Next-token targets.
    pub targets: Vec<u32>,
}

/// Run forward/backward for every micro-batch of segment step `seg_step`, on as many
/// threads as there are contexts (one context per worker), writing micro-batch `m`'s
/// mean loss to `losses[m]` and its gradient to slot `m`. `step` names the training
/// step in errors.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward_all(
    cfg: &GptConfig,
    params: &[f32],
    contexts: &mut [TrainingContext],
    segments: &GradientSegments,
    seg_step: usize,
    batches: &[MicroBatch],
    losses: &mut [f32],
    step: u64,
) -> Result<(), TrainError> {
    if let [ctx] = contexts {
        // One worker: no thread, same slots, same order of nothing to race.
        for (m, b) in batches.iter().enumerate() {
            losses[m] = fill_slot(cfg, params, ctx, segments, seg_step, m, b)?;
        }
        return Ok(());
    }
    let queue: WorkQueue<usize> = WorkQueue::with_capacity(batches.len().max(1));
    for m in 0..batches.len() {
        // Capacity equals the count: never full, never closed yet.
        if queue.try_push(m).is_err() {
            return Err(TrainError::Config(
                "work queue rejected a micro-batch".into(),
            ));
        }
    }
    queue.close();
    let results: Vec<Result<Vec<(usize, f32)>, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = contexts
            .iter_mut()
            .map(|ctx| {
                let queue = &queue;
                scope.spawn(move || -> Result<Vec<(usize, f32)>, TrainError> {
                    let mut done = Vec::new();
                    while let Some(m) = queue.pop() {
                        let loss = fill_slot(cfg, params, ctx, segments, seg_step, m, &batches[m])?;
                        done.push((m, loss));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(worker, h)| {
                h.join()
                    .unwrap_or(Err(TrainError::WorkerPanicked { step, worker }))
            })
            .collect()
    });
    for result in results {
        for (m, loss) in result? {
            losses[m] = loss;
        }
    }
    Ok(())
}

// ---- helpers --------------------------------------------------------------------

/// Claim slot `m`, run forward/backward into it, publish it.
fn fill_slot(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    segments: &GradientSegments,
    seg_step: usize,
    m: usize,
    batch: &MicroBatch,
) -> Result<f32, TrainError> {
    let mut slot = segments.claim(seg_step, m)?;
    let loss = slot
        .write(|g| model::forward_backward(cfg, params, ctx, &batch.tokens, &batch.targets, g))?;
    slot.publish();
    Ok(loss)
}
