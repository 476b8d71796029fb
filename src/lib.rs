//! cllm: a CPU training engine for small GPT-style language models, built to be verified.
//!
//! Layers, bottom up (each module's doc says what it owns and must never touch):
//! * [`sync`]: the atomics seam ([`sync::Platform`]) with the production [`sync::Std`];
//!   loom and shuttle implementations live only under `tests/`.
//! * [`queue`], [`segments`] and [`step`]: the concurrency protocols (work and pre-fetch
//!   queues, gradient slots, the lock-free step boundary, the intra-batch team),
//!   generic over payloads and over the platform; they know nothing of models.
//! * [`model`] and [`data`]: the GPT-2 model and kernels, and the data path; they know
//!   nothing of threads or atomics.
//! * [`isa`]: which instruction-set path the kernels run (AVX-512, AVX2, portable),
//!   chosen at run time; every path gives the same bits.
//! * [`train`]: optimizer, schedules, checkpoints, the single-threaded reference step
//!   and the two schedulers that compose the protocols with the model.
//! * [`dist`]: data-parallel training across ranks (MPI processes, or threads in tests)
//!   with the same bits as one process.

pub mod data;
pub mod dist;
pub mod isa;
pub mod model;
pub mod queue;
pub mod segments;
pub mod step;
pub mod sync;
pub mod train;
