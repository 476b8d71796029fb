//! Owns [`ParamLayout`]: where each GPT-2 tensor lives in the flat parameter buffer
//! (and, identically, in the flat gradient buffer), under its Hugging Face name and
//! shape. Must never hold or interpret the floats themselves.
//!
//! Order (offsets contiguous, starting at 0):
//! `wte.weight [V,C]`, `wpe.weight [T,C]`, then for each layer `i`:
//! `h.{i}.ln_1.weight [C]`, `h.{i}.ln_1.bias [C]`, `h.{i}.attn.c_attn.weight [C,3C]`,
//! `h.{i}.attn.c_attn.bias [3C]`, `h.{i}.attn.c_proj.weight [C,C]`,
//! `h.{i}.attn.c_proj.bias [C]`, `h.{i}.ln_2.weight [C]`, `h.{i}.ln_2.bias [C]`,
//! `h.{i}.mlp.c_fc.weight [C,4C]`, `h.{i}.mlp.c_fc.bias [4C]`,
//! `h.{i}.mlp.c_proj.weight [4C,C]`, `h.{i}.mlp.c_proj.bias [C]`;
//! then `ln_f.weight [C]`, `ln_f.bias [C]`.
//!
//! Matrices are row-major in their HF shape: embeddings are `[row, C]`, and the
//! `Conv1D` weights are `[in, out]`, the layout the matmul kernel takes.

use super::config::GptConfig;
use core::ops::Range;

/// One tensor of the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Hugging Face GPT-2 name, without the `transformer.` prefix (e.g. `h.0.ln_1.bias`).
    pub name: String,
    /// Hugging Face shape (row-major).
    pub shape: Vec<usize>,
    /// Index of its first float in the flat buffer.
    pub offset: usize,
}

impl TensorInfo {
    /// Number of floats.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Its floats in the flat buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset.saturating_add(self.numel())
    }

    /// Whether weight decay applies: the 2-D tensors (wte, wpe and the c_attn,
    /// c_proj and c_fc weights), not biases or layer-norm parameters.
    pub fn is_matrix(&self) -> bool {
        self.shape.len() == 2
    }
}

/// The ranges of one transformer block's tensors (crate-internal fast index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockRanges {
    pub(crate) ln_1_w: Range<usize>,
    pub(crate) ln_1_b: Range<usize>,
    pub(crate) c_attn_w: Range<usize>,
    pub(crate) c_attn_b: Range<usize>,
    pub(crate) attn_proj_w: Range<usize>,
    pub(crate) attn_proj_b: Range<usize>,
    pub(crate) ln_2_w: Range<usize>,
    pub(crate) ln_2_b: Range<usize>,
    pub(crate) c_fc_w: Range<usize>,
    pub(crate) c_fc_b: Range<usize>,
    pub(crate) mlp_proj_w: Range<usize>,
    pub(crate) mlp_proj_b: Range<usize>,
}

/// The ranges of every tensor, by role (crate-internal fast index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParamRanges {
    pub(crate) wte: Range<usize>,
    pub(crate) wpe: Range<usize>,
    pub(crate) blocks: Vec<BlockRanges>,
    pub(crate) ln_f_w: Range<usize>,
    pub(crate) ln_f_b: Range<usize>,
}

/// The flat parameter buffer's tensors, in order (see the module doc).
///
/// ```
/// use cllm::model::{GptConfig, ParamLayout};
/// let cfg = GptConfig { n_layer: 1, n_head: 2, n_embd: 4, n_positions: 8, vocab_size: 10 };
/// let layout = ParamLayout::new(&cfg);
/// assert_eq!(layout.len(), cfg.n_params());
/// let w = layout.get("h.0.attn.c_attn.weight").unwrap();
/// assert_eq!(w.shape, vec![4, 12]);
/// assert!(w.is_matrix());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    tensors: Vec<TensorInfo>,
    len: usize,
    ranges: ParamRanges,
}

impl ParamLayout {
    /// The layout of `cfg` (which should be validated: for a config past
    /// [`super::config::MAX_PARAMS`] the sizes saturate instead of overflowing).
    pub fn new(cfg: &GptConfig) -> Self {
        let c = cfg.n_embd;
        let mut b = Builder::default();
        let wte = b.push("wte.weight".into(), vec![cfg.vocab_size, c]);
        let wpe = b.push("wpe.weight".into(), vec![cfg.n_positions, c]);
        let c3 = c.saturating_mul(3);
        let c4 = c.saturating_mul(4);
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let mut t =
                    |suffix: &str, shape: Vec<usize>| b.push(format!("h.{i}.{suffix}"), shape);
                BlockRanges {
                    ln_1_w: t("ln_1.weight", vec![c]),
                    ln_1_b: t("ln_1.bias", vec![c]),
                    c_attn_w: t("attn.c_attn.weight", vec![c, c3]),
                    c_attn_b: t("attn.c_attn.bias", vec![c3]),
                    attn_proj_w: t("attn.c_proj.weight", vec![c, c]),
                    attn_proj_b: t("attn.c_proj.bias", vec![c]),
                    ln_2_w: t("ln_2.weight", vec![c]),
                    ln_2_b: t("ln_2.bias", vec![c]),
                    c_fc_w: t("mlp.c_fc.weight", vec![c, c4]),
                    c_fc_b: t("mlp.c_fc.bias", vec![c4]),
                    mlp_proj_w: t("mlp.c_proj.weight", vec![c4, c]),
                    mlp_proj_b: t("mlp.c_proj.bias", vec![c]),
                }
            })
            .collect();
        let ln_f_w = b.push("ln_f.weight".into(), vec![c]);
        let ln_f_b = b.push("ln_f.bias".into(), vec![c]);
        ParamLayout {
            tensors: b.tensors,
            len: b.len,
            ranges: ParamRanges {
                wte,
                wpe,
                blocks,
                ln_f_w,
                ln_f_b,
            },
        }
    }

    /// Total number of floats (equals [`GptConfig::n_params`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no floats (never, for a valid config).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every tensor, in buffer order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name` (HF name without the `transformer.` prefix).
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The ranges by role, for the forward/backward passes.
    pub(crate) fn ranges(&self) -> &ParamRanges {
        &self.ranges
    }
}

/// Appends tensors at contiguous offsets.
#[derive(Default)]
struct Builder {
    tensors: Vec<TensorInfo>,
    len: usize,
}

impl Builder {
    fn push(&mut self, name: String, shape: Vec<usize>) -> Range<usize> {
        let numel = shape.iter().fold(1usize, |a, &d| a.saturating_mul(d));
        let offset = self.len;
        self.len = offset.saturating_add(numel);
        self.tensors.push(TensorInfo {
            name,
            shape,
            offset,
        });
        offset..self.len
    }
}
