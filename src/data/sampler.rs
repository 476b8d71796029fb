//! Owns [`Sampler`] (seeded random training windows, resumable from a
//! [`SamplerState`]) and [`eval_windows`] (fixed evaluation windows).
//! Must never copy or own the token stream: it only reads the slice it is given and
//! writes the caller's batch buffers.
//!
//! # Windows
//! A window is `seq + 1` consecutive tokens starting at `start`: the inputs are
//! `data[start..start + seq]`, the targets `data[start + 1..start + seq + 1]`.
//! [`Sampler::next_batch`] draws each start with [`Rng::below`]`(len - seq)`, exactly
//! uniform over the `len - seq` windows that fit. Arguments are checked before any
//! randomness is used, so a rejected call leaves the sampler unchanged.

use super::{DataError, Rng, TokenSource};
use serde::{Deserialize, Serialize};

/// Everything needed to resume a [`Sampler`] exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The generator state ([`Rng::state`]).
    pub rng: [u64; 4],
    /// Batches drawn so far (informational: the stream depends only on `rng`).
    pub batches: u64,
}

/// Seeded batch sampler of uniformly placed windows (see the module doc).
///
/// ```
/// use cllm::data::Sampler;
/// let data: Vec<u32> = (0..100).collect();
/// let (mut tokens, mut targets) = (vec![0; 2 * 8], vec![0; 2 * 8]);
/// let mut s = Sampler::new(5);
/// s.next_batch(&data, 2, 8, &mut tokens, &mut targets).unwrap();
/// assert!(tokens.iter().zip(&targets).all(|(x, y)| y == &(x + 1)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    rng: Rng,
    batches: u64,
}

impl Sampler {
    /// A sampler whose windows are a pure function of `seed` (and of the arguments of
    /// each call).
    pub fn new(seed: u64) -> Self {
        Sampler {
            rng: Rng::new(seed),
            batches: 0,
        }
    }

    /// Fills `tokens[b * seq + t] = data[start_b + t]` and
    /// `targets[b * seq + t] = data[start_b + t + 1]` for `b` in `0..batch`, `t` in
    /// `0..seq`, with fresh uniform starts. Errors (and changes nothing) if `batch` or
    /// `seq` is zero, `data` is shorter than `seq + 1`, or either output slice is not
    /// `batch * seq` long.
    pub fn next_batch(
        &mut self,
        data: &(impl TokenSource + ?Sized),
        batch: usize,
        seq: usize,
        tokens: &mut [u32],
        targets: &mut [u32],
    ) -> Result<(), DataError> {
        let expected = batch_len(batch, seq)?;
        let need = seq
            .checked_add(1)
            .ok_or(DataError::BadShape { batch, seq })?;
        if data.len() < need {
            return Err(DataError::DataTooShort {
                have: data.len(),
                need,
            });
        }
        check_len("tokens", tokens.len(), expected)?;
        check_len("targets", targets.len(), expected)?;
        let n_starts = data.len() - seq;
        // One read of `seq + 1` tokens per window: inputs and targets overlap.
        let mut window = vec![0; need];
        for (tok, tgt) in tokens
            .chunks_exact_mut(seq)
            .zip(targets.chunks_exact_mut(seq))
        {
            let start = self.rng.below(n_starts);
            data.read(start, &mut window);
            tok.copy_from_slice(&window[..seq]);
            tgt.copy_from_slice(&window[1..]);
        }
        self.batches += 1;
        Ok(())
    }

    /// The state to resume from: `Sampler::from_state(s.state())` draws exactly what
    /// `s` would draw next.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            rng: self.rng.state(),
            batches: self.batches,
        }
    }

    /// Resumes from a saved state.
    pub fn from_state(state: SamplerState) -> Self {
        Sampler {
            rng: Rng::from_state(state.rng),
            batches: state.batches,
        }
    }

    /// Batches drawn so far.
    pub fn batches(&self) -> u64 {
        self.batches
    }
}

/// Start offsets of up to `max_windows` non-overlapping windows of `seq + 1` tokens,
/// spread evenly over `0..data_len`: the first starts at 0, the last (if there are
/// two or more) ends at `data_len`, the gaps differ by at most one token. As many windows as fit (at most
/// `data_len / (seq + 1)`), none if not even one fits. The same arguments always give
/// the same windows.
///
/// ```
/// assert_eq!(cllm::data::eval_windows(20, 3, 3), vec![0, 8, 16]);
/// ```
pub fn eval_windows(data_len: usize, seq: usize, max_windows: usize) -> Vec<usize> {
    let Some(width) = seq.checked_add(1) else {
        return Vec::new();
    };
    let n = max_windows.min(data_len / width);
    if n == 0 {
        return Vec::new();
    }
    let slack = (data_len - n * width) as u128;
    let gaps = (n - 1) as u128;
    (0..n)
        .map(|i| {
            // i * slack / (n - 1) <= slack < data_len, so it fits back in a usize;
            // with one window (no gap) there is no slack to share.
            let extra = (i as u128 * slack).checked_div(gaps).unwrap_or(0) as usize;
            i * width + extra
        })
        .collect()
}

/// `batch * seq`, or an error if either is zero or the product overflows.
fn batch_len(batch: usize, seq: usize) -> Result<usize, DataError> {
    match batch.checked_mul(seq) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(DataError::BadShape { batch, seq }),
    }
}

fn check_len(which: &'static str, have: usize, expected: usize) -> Result<(), DataError> {
    if have == expected {
        Ok(())
    } else {
        Err(DataError::SliceLength {
            which,
            have,
            expected,
        })
    }
}
