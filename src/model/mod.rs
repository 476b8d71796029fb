//! GPT-2 model: config, flat parameter layout, initialization, kernels,
//! training context and the forward/backward composition.
//! Must never use threads or atomics: every function here is a deterministic,
//! single-threaded function of its arguments (the trainer parallelizes across
//! micro-batches, one [`TrainingContext`] per worker).
//!
//! * [`config`]: [`GptConfig`] and [`ModelError`].
//! * [`layout`]: [`ParamLayout`], the flat buffer's tensors with Hugging Face names.
//! * [`init`]: [`init_params`], GPT-2 initialization from a seed.
//! * [`kernels`]: the numerical kernels (forward overwrites, backward accumulates).
//! * [`context`]: [`TrainingContext`], the per-worker activation buffers.
//! * [`gpt2`]: [`forward_backward`], [`forward_loss`], [`next_token_logits`].

pub mod config;
pub mod context;
pub mod gpt2;
pub mod init;
pub mod kernels;
pub mod layout;

pub use config::{GptConfig, ModelError, MAX_PARAMS};
pub use context::TrainingContext;
pub use gpt2::{forward_backward, forward_backward_split, forward_loss, next_token_logits};
pub use init::{init_params, try_init_params, INIT_STD};
pub use kernels::{RowSplit, Serial};
pub use layout::{ParamLayout, TensorInfo};
