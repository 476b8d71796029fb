//! Data-parallel training across ranks (processes, or threads standing in for them in
//! tests), bitwise identical to the single-process run for any number of ranks.
//! Owns the cross-rank step: which rank computes which micro-batches, how partial
//! gradient sums travel and are combined in the single-process tree order, the sharded
//! optimizer (each rank updates its own range of parameters), and the transports
//! that move the bytes. Must never touch files or the CLI (the run driver does), and
//! never let the number of ranks, or which rank answers first, change a number.

pub mod launch;
pub mod memory;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod plan;
pub mod rank;
pub mod transport;

pub use memory::MemoryTransport;
pub use plan::Plan;
pub use rank::{CommStats, RankTrainer};
pub use transport::{Blocks, CommError, Transport};
