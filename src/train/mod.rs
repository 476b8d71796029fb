//! Training: optimizer, learning-rate schedule, gradient norm, the
//! single-threaded trainer, checkpoints and run reports. Composes `model`, `data` and
//! `segments`; knows nothing of atomics; only `workers` spawns threads.

pub mod barrier;
pub mod checkpoint;
pub mod checkpoint_io;
pub mod generate;
pub mod lockfree;
pub mod norm;
pub mod optim;
pub mod report;
pub mod schedule;
pub mod trainer;
pub mod workers;
