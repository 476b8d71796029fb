//! Training: optimizer, learning-rate schedule, gradient norm, the
//! single-threaded trainer, checkpoints and run reports. Composes `model`, `data` and
//! `segments`; knows nothing of atomics; only the schedulers (`barrier`, `lockfree`)
//! spawn threads.
//!
//! # Who depends on whom (one way, no loops)
//! * [`types`]: the shared types (configuration, state, step statistics, errors, the
//!   scheduler choice, run reports). Depends on no other training module but `optim`
//!   and `schedule`.
//! * [`apply`] (the single-thread update arithmetic), [`faults`] (where a run can be
//!   made to fail), [`workers`] (the reference forward/backward phase): depend on
//!   [`types`].
//! * [`barrier`], [`lockfree`]: the two schedulers; depend on the modules above,
//!   never on [`trainer`] or on each other.
//! * [`trainer`]: the facade ([`trainer::Trainer`]); depends on both schedulers and
//!   re-exports the shared types under their old paths.
//! * [`checkpoint`] uses the shared types (through `trainer`'s re-exports); [`report`]
//!   and [`generate`] use none of these; no scheduler uses any of the three.
//! * [`driver`]: the run loop every front end trains through (the [`driver::Engine`]
//!   trait, implemented for [`trainer::Trainer`]); depends on [`trainer`],
//!   [`checkpoint`] and [`report`], and nothing else in training depends on it.

pub mod apply;
pub mod barrier;
pub mod checkpoint;
pub mod checkpoint_io;
pub mod driver;
pub mod faults;
pub mod generate;
pub mod lockfree;
pub mod norm;
pub mod optim;
pub mod report;
pub mod schedule;
pub mod trainer;
pub mod types;
pub mod workers;
