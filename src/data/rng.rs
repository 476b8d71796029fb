//! Owns [`Rng`]: the crate's one pseudo-random generator (xoshiro256**, seeded through
//! SplitMix64), written out here so that a seed gives the same stream forever,
//! whatever the versions of the crate's dependencies.
//! Must never read the clock, the environment or any other entropy source: every
//! stream is a pure function of its seed.
//!
//! # Streams
//! * [`Rng::new`]`(seed)`: four SplitMix64 outputs from `seed` fill the state (never
//!   all zero, since SplitMix64 is a bijection of its counter and the four outputs
//!   are distinct).
//! * [`Rng::next_u64`]: xoshiro256** (Blackman and Vigna), period 2^256 - 1.
//! * [`Rng::next_f64`]: the top 53 bits, so every value is a multiple of 2^-53 in
//!   `[0, 1)`.
//! * [`Rng::below`]: Lemire's multiply-and-reject, exactly uniform.
//! * [`Rng::normal`]: Marsaglia's polar method (only `ln` and `sqrt`).
//!
//! The state is four `u64` words ([`Rng::state`], [`Rng::from_state`]) and serializes
//! as that array.

use serde::{Deserialize, Serialize};

/// Seeded xoshiro256** generator (see the module doc).
///
/// ```
/// use cllm::data::Rng;
/// let (mut a, mut b) = (Rng::new(7), Rng::new(7));
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.below(10);
/// assert!(x < 10);
/// let resumed = Rng::from_state(a.state());
/// assert_eq!(resumed, a);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 4]", into = "[u64; 4]")]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for `seed`: its state is four successive SplitMix64 outputs.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = splitmix64(&mut x);
        }
        Rng { s }
    }

    /// Resumes from a state returned by [`Rng::state`]. The all-zero state is a fixed
    /// point of xoshiro and no generator ever reaches it; it is replaced by the state
    /// of `Rng::new(0)` instead of producing zeros forever.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            Rng::new(0)
        } else {
            Rng { s }
        }
    }

    /// The full state: `Rng::from_state(r.state())` continues exactly where `r` is.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, a multiple of 2^-53.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `(0, 1]`: safe to take the logarithm of.
    pub fn next_f64_open0(&mut self) -> f64 {
        1.0 - self.next_f64()
    }

    /// Exactly uniform in `0..n` (Lemire's method: one multiplication, and a
    /// rejection with probability below `n / 2^64`). The empty range `n == 0` has no
    /// value; it returns 0 without consuming randomness, so callers check `n` first.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n; // 2^64 mod n
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        // m >> 64 < n, and n came from a usize.
        (m >> 64) as usize
    }

    /// A standard normal draw (mean 0, variance 1), by Marsaglia's polar method.
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.next_f64() - 1.0;
            let v = 2.0 * self.next_f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }
}

impl From<[u64; 4]> for Rng {
    fn from(s: [u64; 4]) -> Self {
        Rng::from_state(s)
    }
}

impl From<Rng> for [u64; 4] {
    fn from(r: Rng) -> Self {
        r.s
    }
}

/// One SplitMix64 step (Steele, Lea and Flood): advances `x` and returns its mix.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference outputs of xoshiro256** from state [1, 2, 3, 4] (from the
    /// reference C implementation, xoshiro256starstar.c).
    #[test]
    fn matches_reference_xoshiro256starstar() {
        let mut r = Rng::from_state([1, 2, 3, 4]);
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240, 1215971899390074240]);
    }

    /// Reference SplitMix64 outputs for seed 0.
    #[test]
    fn matches_reference_splitmix64() {
        let mut x = 0u64;
        assert_eq!(splitmix64(&mut x), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut x), 0x6E78_9E6A_A1B9_65F4);
    }
}
