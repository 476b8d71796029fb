//! cllm: a CPU training engine for small GPT-style language models, built to be verified.
//!
//! Layers, bottom up (each module's doc says what it owns and must never touch):
//! * [`sync`]: the atomics seam ([`sync::Platform`]) with the production [`sync::Std`];
//!   loom and shuttle implementations live only under `tests/`.
//! * [`queue`] and [`segments`]: the concurrency protocols, generic over payloads and
//!   over the platform; they know nothing of models.
//! * `model`, `data`, `train`: the GPT-2 model, its data path and the trainer (later
//!   issues), which know nothing of atomics.

pub mod data;
pub mod model;
pub mod queue;
pub mod segments;
pub mod step;
pub mod sync;
pub mod train;
