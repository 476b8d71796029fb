//! Owns [`Faults`]: the points where a threaded run can be made to fail on purpose
//! (before a micro-batch is drawn, and at the start of each step hook), and
//! [`NoFaults`], what every production run uses: each method is an empty default, so
//! the calls compile away. Tests supply their own implementation to show that an error
//! or a panic at any of these points ends the run for every thread, with the step and
//! the worker named, instead of hanging or losing the cause.
//! Must never carry state of its own, spawn a thread, or be consulted by anything but
//! the schedulers ([`barrier`](super::barrier), [`lockfree`](super::lockfree)).

use crate::data::DataError;
use crate::train::types::TrainError;

/// Where a run calls out before doing real work (see the module doc). Every method may
/// also panic; the schedulers must turn that into an error like any other panic there.
/// Steps are training steps (0-based, as in [`StepStats::step`]); workers are the
/// schedulers' worker indices (0 is the calling thread).
///
/// [`StepStats::step`]: crate::train::types::StepStats::step
pub trait Faults: Send + Sync + 'static {
    /// Before micro-batch `micro_batch` of `step` is drawn (on the pre-fetch thread of
    /// the lock-free scheduler, on the calling thread of the barrier scheduler). An
    /// error is reported as the sampler's own would be ([`TrainError::Batch`]).
    fn draw(&self, step: u64, micro_batch: usize) -> Result<(), DataError> {
        let _ = (step, micro_batch);
        Ok(())
    }

    /// Before `worker` runs forward/backward for a micro-batch of `step`. An error is
    /// reported as the model's own would be ([`TrainError::WorkerFailed`]).
    fn compute(&self, step: u64, worker: usize) -> Result<(), TrainError> {
        let _ = (step, worker);
        Ok(())
    }

    /// Before `worker` summarizes a reduced gradient part (lock-free scheduler).
    fn summarize(&self, worker: usize) {
        let _ = worker;
    }

    /// Before `worker` decides `step` (the error is the run's error).
    fn decide(&self, step: u64, worker: usize) -> Result<(), TrainError> {
        let _ = (step, worker);
        Ok(())
    }

    /// Before `worker` applies the decision of `step` to a part of the weights.
    fn update(&self, step: u64, worker: usize) {
        let _ = (step, worker);
    }
}

/// No faults: what [`Trainer`](crate::train::trainer::Trainer) runs with.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl Faults for NoFaults {}
