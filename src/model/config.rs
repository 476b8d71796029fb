//! Owns [`GptConfig`] (the shape of a GPT-2 model) and [`ModelError`] (every way a
//! model call can be refused). Must never allocate model memory or touch floats.
//!
//! A config is only usable once [`GptConfig::validate`] accepts it: every field is
//! positive, the width splits evenly over the heads, and the parameter count is at
//! most [`MAX_PARAMS`] (so every offset fits comfortably in `usize` and in memory).

/// The largest parameter count a config may have (2^31 floats, 8 GiB of weights).
pub const MAX_PARAMS: usize = 1 << 31;

/// The shape of a GPT-2 model (the Hugging Face `GPT2Config` fields that matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GptConfig {
    /// Number of transformer blocks (`L`).
    pub n_layer: usize,
    /// Number of attention heads per block (`NH`); divides `n_embd`.
    pub n_head: usize,
    /// Width of the residual stream (`C`).
    pub n_embd: usize,
    /// Longest sequence the position embedding covers (`T` max).
    pub n_positions: usize,
    /// Number of tokens (`V`); token ids are `0..vocab_size`.
    pub vocab_size: usize,
}

/// Why a model call was refused. Every message is one line naming the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A config field (or a context dimension) that must be positive is zero.
    #[error("{field} must be positive, got 0")]
    Zero {
        /// The field's name.
        field: &'static str,
    },
    /// The width does not split evenly over the heads.
    #[error("n_embd {n_embd} is not divisible by n_head {n_head}")]
    HeadsDoNotDivide {
        /// The width.
        n_embd: usize,
        /// The head count.
        n_head: usize,
    },
    /// The config has more than [`MAX_PARAMS`] parameters (`None`: overflows `usize`).
    #[error("model has {} parameters, more than the maximum {max}", fmt_count(.n_params))]
    TooManyParams {
        /// The parameter count, if it fits in `usize`.
        n_params: Option<usize>,
        /// The maximum allowed.
        max: usize,
    },
    /// A sequence is longer than the model (or the context) supports.
    #[error("sequence length {seq} exceeds the maximum {max} ({limit})")]
    SequenceTooLong {
        /// The length asked for.
        seq: usize,
        /// The maximum.
        max: usize,
        /// What sets the maximum (`n_positions` or the context's `seq`).
        limit: &'static str,
    },
    /// A buffer passed in has the wrong number of elements.
    #[error("{what} has {got} elements, expected {want}")]
    Length {
        /// Which buffer (`tokens`, `targets`, `params`, `grads`, `logits`).
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length required.
        want: usize,
    },
    /// A token (or target) id is not below the vocabulary size.
    #[error("{what}[{index}] = {value} is out of the vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// `tokens` or `targets`.
        what: &'static str,
        /// Its position in the buffer.
        index: usize,
        /// The id.
        value: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The context was built for another config.
    #[error("context was built for {built:?}, called with {called:?}")]
    ContextMismatch {
        /// The config the context was built for.
        built: GptConfig,
        /// The config of the call.
        called: GptConfig,
    },
    /// The activation memory of a context cannot be counted or allocated.
    #[error("cannot allocate a training context of {} bytes", fmt_count(.bytes))]
    OutOfMemory {
        /// The bytes asked for, if the count fits in `usize`.
        bytes: Option<usize>,
    },
}

impl GptConfig {
    /// Accept the config, or name the first field that is wrong.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fields = [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("n_positions", self.n_positions),
            ("vocab_size", self.vocab_size),
        ];
        for (field, value) in fields {
            if value == 0 {
                return Err(ModelError::Zero { field });
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ModelError::HeadsDoNotDivide {
                n_embd: self.n_embd,
                n_head: self.n_head,
            });
        }
        match self.checked_n_params() {
            Some(n) if n <= MAX_PARAMS => Ok(()),
            n_params => Err(ModelError::TooManyParams {
                n_params,
                max: MAX_PARAMS,
            }),
        }
    }

    /// Number of parameters: `V*C + T*C + L*(12*C^2 + 13*C) + 2*C` (wte, wpe, the
    /// blocks, ln_f). Saturates at `usize::MAX` for a config too large to count
    /// (which [`GptConfig::validate`] rejects).
    pub fn n_params(&self) -> usize {
        self.checked_n_params().unwrap_or(usize::MAX)
    }

    /// Size of one attention head (`C / NH`).
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// The parameter count, or `None` if it overflows `usize`.
    fn checked_n_params(&self) -> Option<usize> {
        let c = self.n_embd;
        let embeddings = self
            .vocab_size
            .checked_add(self.n_positions)?
            .checked_mul(c)?;
        let per_layer = c
            .checked_mul(c)?
            .checked_mul(12)?
            .checked_add(c.checked_mul(13)?)?;
        let blocks = per_layer.checked_mul(self.n_layer)?;
        embeddings
            .checked_add(blocks)?
            .checked_add(c.checked_mul(2)?)
    }
}

/// `Some(n)` as `n`, `None` as "more than usize::MAX".
fn fmt_count(n: &Option<usize>) -> String {
    match n {
        Some(n) => n.to_string(),
        None => "more than usize::MAX".to_string(),
    }
}
