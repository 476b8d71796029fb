//! Owns the GPT-2 initialization of the flat parameter buffer from a seed.
//! Must never read any entropy but the seed: the same seed gives the same bits forever.
//!
//! # Definition
//! * Matrices (the 2-D tensors: `wte`, `wpe`, `c_attn`, `c_fc` and both `c_proj`
//!   weights) are drawn from normal(0, 0.02), except the two `c_proj` weights (the
//!   projections back into the residual stream), whose std is `0.02 / sqrt(2 * L)`.
//! * Biases are 0; layer-norm weights are 1 and biases 0.
//! * Draws: one stream of standard normals from [`crate::data::Rng::new`]`(seed)`, by
//!   Box-Muller in f64 (`u1 = 1 - next_f64()` in (0, 1], `u2 = next_f64()`,
//!   `r = sqrt(-2 ln u1)`, giving `r cos(2 pi u2)` then `r sin(2 pi u2)`), consumed
//!   by the matrices in layout order, each in storage order; `(z * std) as f32`.

use super::config::{GptConfig, ModelError};
use super::layout::ParamLayout;
use crate::data::Rng;

/// Std of every initialized matrix except the residual projections.
pub const INIT_STD: f64 = 0.02;

/// GPT-2 initial parameters for `cfg` (see the module doc), `cfg.n_params()` floats.
/// A config that fails [`GptConfig::validate`] gives an empty vector (which every
/// model call then rejects by its length); use [`try_init_params`] to get the error.
///
/// ```
/// use cllm::model::{init_params, GptConfig};
/// let cfg = GptConfig { n_layer: 1, n_head: 1, n_embd: 4, n_positions: 4, vocab_size: 5 };
/// assert_eq!(init_params(&cfg, 1), init_params(&cfg, 1));
/// assert_eq!(init_params(&cfg, 1).len(), cfg.n_params());
/// ```
pub fn init_params(cfg: &GptConfig, seed: u64) -> Vec<f32> {
    try_init_params(cfg, seed).unwrap_or_default()
}

/// As [`init_params`], refusing an invalid config.
pub fn try_init_params(cfg: &GptConfig, seed: u64) -> Result<Vec<f32>, ModelError> {
    cfg.validate()?;
    let layout = ParamLayout::new(cfg);
    let mut params = vec![0.0f32; layout.len()];
    let mut normals = Normals::new(seed);
    let proj_std = INIT_STD / ((2 * cfg.n_layer) as f64).sqrt();
    for t in layout.tensors() {
        let dst = &mut params[t.range()];
        if t.is_matrix() {
            let std = if t.name.ends_with(".c_proj.weight") {
                proj_std
            } else {
                INIT_STD
            };
            for x in dst {
                *x = (normals.next() * std) as f32;
            }
        } else if t.name.ends_with(".weight") {
            // Layer-norm gains (the only 1-D weights).
            dst.fill(1.0);
        }
        // Biases stay 0.
    }
    Ok(params)
}

/// A stream of standard normals by Box-Muller (see the module doc).
struct Normals {
    rng: Rng,
    spare: Option<f64>,
}

impl Normals {
    fn new(seed: u64) -> Self {
        Normals {
            rng: Rng::new(seed),
            spare: None,
        }
    }

    fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.rng.next_f64();
        let u2 = self.rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * core::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}
