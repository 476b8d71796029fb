//! Training (issue 3): optimizer, learning-rate schedule, the single-threaded trainer and checkpoints. Composes `model` and `data`; knows nothing of atomics.

pub mod checkpoint_io;
pub mod norm;
pub mod optim;
pub mod report;
pub mod schedule;
