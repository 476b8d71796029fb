//! Owns text generation from trained weights: autoregressive sampling with a
//! temperature and a seeded RNG. Must never modify the weights.

use crate::data::Rng;
use crate::model::{self, kernels, GptConfig, ModelError, TrainingContext};

/// Extend `prompt` by `n_tokens` tokens sampled from the model at `temperature`
/// (0 means greedy: always the most likely token). The context is the last
/// `n_positions` tokens. Returns only the new tokens. Deterministic for a seed.
pub fn generate(
    cfg: &GptConfig,
    params: &[f32],
    prompt: &[u32],
    n_tokens: usize,
    temperature: f32,
    seed: u64,
) -> Result<Vec<u32>, ModelError> {
    let mut ctx = TrainingContext::new(cfg, 1, cfg.n_positions)?;
    let mut rng = Rng::new(seed);
    let mut text: Vec<u32> = prompt.to_vec();
    if text.is_empty() {
        // An empty prompt starts from a newline, a natural document boundary.
        text.push(u32::from(b'\n'));
    }
    let start = text.len();
    let mut logits = vec![0.0f32; cfg.vocab_size];
    let mut probs = vec![0.0f32; cfg.vocab_size];
    for _ in 0..n_tokens {
        let window = &text[text.len().saturating_sub(cfg.n_positions)..];
        model::next_token_logits(cfg, params, &mut ctx, window, &mut logits)?;
        let next = if temperature <= 0.0 {
            argmax(&logits)
        } else {
            kernels::softmax_row(&mut probs, &logits, temperature);
            pick(&probs, rng.next_f64())
        };
        text.push(next as u32);
    }
    Ok(text.split_off(start))
}

// ---- helpers --------------------------------------------------------------------

/// Index of the largest value (the first on ties).
fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Inverse-CDF draw from `probs` with a uniform `u` in [0, 1).
fn pick(probs: &[f32], u: f64) -> usize {
    let mut acc = 0.0f64;
    for (i, &p) in probs.iter().enumerate() {
        acc += p as f64;
        if u < acc {
            return i;
        }
    }
    // Rounding left the total just under 1: the last token with any mass.
    probs.iter().rposition(|&p| p > 0.0).unwrap_or(0)
}
