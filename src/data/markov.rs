//! Owns [`MarkovSource`]: the built-in corpus, a seeded order-k character Markov chain
//! over 28 symbols (a-z, space, newline) whose entropy rate is known exactly, so a
//! trained model's loss can be compared with the best any predictor can reach.
//! Must never touch files, tokens or models: it produces bytes and numbers only.
//!
//! # Construction (as /work/shared/peers/markov_corpus.py, not byte-identical)
//! * `base ~ Dirichlet(1, ..., 1)`: one global symbol distribution.
//! * For each of the `28^k` contexts, `p(. | ctx) ~ Dirichlet(alpha * 28 * base)`, drawn
//!   as normalised Gamma variates (Marsaglia-Tsang, with the `U^(1/a)` boost for
//!   shape `a < 1`, computed in log space so that small shapes do not underflow), and
//!   every probability clamped to at least `f64::MIN_POSITIVE`. All transitions are
//!   positive, so the chain is irreducible and aperiodic and has one stationary
//!   distribution `pi` over contexts.
//! * A context is the last `k` symbols as a base-28 number, oldest first; emitting `c`
//!   from context `s` moves to `(28 s + c) mod 28^k`.
//! * `pi` by lazy power iteration (`pi <- (pi + pi P) / 2`) until `|pi P - pi|_1 < 1e-13`.
//! * Entropy rate `H = sum_s pi(s) H(p(. | s))` nats per character.
//! * Text: the first context is drawn from `pi` (the text is stationary from its
//!   first byte), then each symbol from its context's distribution by inverse CDF.
//!
//! The chain and the text are pure functions of the seeds through [`Rng`] and IEEE
//! arithmetic; only `ln`, `exp` and `sqrt` come from the platform (the last two are
//! correctly rounded or nearly so, so a different libm could change a byte only with
//! vanishing probability).

use super::{DataError, Rng};

/// The 28 output symbols, in symbol-index order.
pub const ALPHABET: &[u8; 28] = b"abcdefghijklmnopqrstuvwxyz \n";

/// Number of symbols of the Markov source.
pub const N_SYMBOLS: usize = ALPHABET.len();

/// Highest supported Markov order (28^4 = 614,656 contexts, 138 MB of probabilities).
pub const MAX_ORDER: usize = 4;

/// Largest accepted concentration `alpha` (beyond it every context is the base
/// distribution to many digits anyway, and `alpha * 28` must stay finite).
pub const MAX_ALPHA: f64 = 1e12;

/// Power iteration stops at the first iterate with `|pi P - pi|_1` below this.
pub const STATIONARY_TOL: f64 = 1e-13;

/// Power iteration gives up (with [`DataError::NoConvergence`]) after about this many
/// multiply-adds (a second or two; only nearly decomposable chains, from a tiny
/// `alpha`, get there)...
pub const STATIONARY_MAX_WORK: usize = 2_000_000_000;

/// ...but never before this many iterations.
pub const STATIONARY_MIN_ITER: usize = 500;

/// Seed of the built-in corpus (chain and text).
pub const DEFAULT_CORPUS_SEED: u64 = 1;
/// Markov order of the built-in corpus. Order 2 (784 contexts), not the peer script's
/// order 3 (21,952 contexts): in a one-minute run of shape S the loss visibly moves
/// from the order-0 entropy toward the floor, whereas at order 3 both cllm and the
/// PyTorch peer were still at the order-0 entropy after 600 steps (measured).
pub const DEFAULT_CORPUS_ORDER: usize = 2;
/// Dirichlet concentration of the built-in corpus (smaller = more predictable).
pub const DEFAULT_CORPUS_ALPHA: f64 = 0.15;
/// Length of the built-in corpus in bytes.
pub const DEFAULT_CORPUS_BYTES: usize = 2_000_000;

/// Stream constant separating the text's random stream from the chain's ("mark").
const TEXT_STREAM: u64 = 0x6D61_726B;

/// A seeded order-k Markov chain over [`ALPHABET`] with its stationary distribution
/// and exact entropy rate (see the module doc).
///
/// ```
/// use cllm::data::MarkovSource;
/// let m = MarkovSource::new(3, 2, 0.2).unwrap();
/// assert!(m.entropy_rate() <= m.order0_entropy() + 1e-12);
/// let text = m.generate(100, 9);
/// assert_eq!(text, m.generate(100, 9));
/// ```
#[derive(Clone, Debug)]
pub struct MarkovSource {
    seed: u64,
    order: usize,
    alpha: f64,
    n_contexts: usize,
    /// `probs[s * 28 + c] = p(c | s)`.
    probs: Vec<f64>,
    /// Per context cumulative sums of `probs`, the last one set to exactly 1.
    cdf: Vec<f64>,
    /// Stationary distribution over contexts.
    pi: Vec<f64>,
    iterations: usize,
    residual: f64,
    entropy_rate: f64,
    order0_entropy: f64,
}

impl MarkovSource {
    /// Builds the chain for `seed`, of `order` 0..=4 and concentration `alpha` in
    /// `(0, 1e12]`, and computes its stationary distribution and entropy rate.
    pub fn new(seed: u64, order: usize, alpha: f64) -> Result<Self, DataError> {
        if order > MAX_ORDER {
            return Err(DataError::BadOrder {
                order,
                max: MAX_ORDER,
            });
        }
        if !(alpha.is_finite() && alpha > 0.0 && alpha <= MAX_ALPHA) {
            return Err(DataError::BadAlpha {
                alpha,
                max: MAX_ALPHA,
            });
        }
        let n_contexts = N_SYMBOLS.pow(order as u32);
        let mut rng = Rng::new(seed);
        let base = dirichlet(&mut rng, &[1.0; N_SYMBOLS]);
        let conc: Vec<f64> = base.iter().map(|b| alpha * N_SYMBOLS as f64 * b).collect();
        let mut probs = Vec::with_capacity(n_contexts * N_SYMBOLS);
        for _ in 0..n_contexts {
            probs.extend(dirichlet(&mut rng, &conc));
        }
        let mut cdf = Vec::with_capacity(probs.len());
        for row in probs.chunks_exact(N_SYMBOLS) {
            let mut acc = 0.0;
            for p in row {
                acc += p;
                cdf.push(acc);
            }
            if let Some(last) = cdf.last_mut() {
                *last = 1.0;
            }
        }
        let (pi, iterations, residual) = stationary(&probs, n_contexts)?;
        let entropy_rate = probs
            .chunks_exact(N_SYMBOLS)
            .zip(&pi)
            .map(|(row, w)| w * entropy(row))
            .sum();
        let order0_entropy = entropy(&symbol_marginal(&probs, &pi));
        Ok(MarkovSource {
            seed,
            order,
            alpha,
            n_contexts,
            probs,
            cdf,
            pi,
            iterations,
            residual,
            entropy_rate,
            order0_entropy,
        })
    }

    /// Exact entropy rate in nats per character: `sum_s pi(s) H(p(. | s))`, the
    /// lowest expected per-character cross-entropy any predictor can reach.
    pub fn entropy_rate(&self) -> f64 {
        self.entropy_rate
    }

    /// Entropy (nats) of the stationary symbol distribution
    /// `q(c) = sum_s pi(s) p(c | s)`: what the best context-free predictor reaches.
    /// Never below [`MarkovSource::entropy_rate`] (conditioning reduces entropy);
    /// equal to it for order 0.
    pub fn order0_entropy(&self) -> f64 {
        self.order0_entropy
    }

    /// `n_bytes` bytes of text from the stream `seed` (independent of the chain's
    /// seed). The first context is drawn from `pi`, so the text is stationary from
    /// its first byte.
    pub fn generate(&self, n_bytes: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0; n_bytes];
        self.stream(seed).fill(&mut out);
        out
    }

    /// The text of [`MarkovSource::generate`] as a stream: filling pieces of any sizes
    /// gives the same bytes as one call, holding only the pieces.
    pub fn stream(&self, seed: u64) -> LetterStream<'_> {
        let mut rng = Rng::new(seed ^ TEXT_STREAM);
        let ctx = draw(&self.pi, rng.next_f64());
        LetterStream {
            source: self,
            rng,
            ctx,
        }
    }

    /// The seed the chain was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The Markov order `k`.
    pub fn order(&self) -> usize {
        self.order
    }

    /// The Dirichlet concentration per symbol.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Number of contexts, `28^k`.
    pub fn n_contexts(&self) -> usize {
        self.n_contexts
    }

    /// `p(. | ctx)` over symbol indices, or `None` past the last context.
    pub fn transition(&self, ctx: usize) -> Option<&[f64]> {
        self.probs.get(ctx * N_SYMBOLS..(ctx + 1) * N_SYMBOLS)
    }

    /// The stationary distribution over contexts.
    pub fn stationary(&self) -> &[f64] {
        &self.pi
    }

    /// Power iterations used and the final residual `|pi P - pi|_1`.
    pub fn convergence(&self) -> (usize, f64) {
        (self.iterations, self.residual)
    }

    /// The context after emitting symbol index `sym` from context `ctx`.
    pub fn next_context(&self, ctx: usize, sym: usize) -> usize {
        (ctx * N_SYMBOLS + sym) % self.n_contexts
    }

    /// The context (base-28 number of the last `k` symbol indices, oldest first) of
    /// `history`, or `None` if it is shorter than `k` or holds a byte outside
    /// [`ALPHABET`].
    pub fn context_of(&self, history: &[u8]) -> Option<usize> {
        let tail = history.get(history.len().checked_sub(self.order)?..)?;
        tail.iter()
            .try_fold(0usize, |acc, &b| Some(acc * N_SYMBOLS + symbol_index(b)?))
    }
}

/// The symbol index of byte `b` in [`ALPHABET`], if it is one of its 28 bytes.
pub fn symbol_index(b: u8) -> Option<usize> {
    match b {
        b'a'..=b'z' => Some(usize::from(b - b'a')),
        b' ' => Some(26),
        b'\n' => Some(27),
        _ => None,
    }
}

/// The built-in corpus ([`DEFAULT_CORPUS_BYTES`] bytes of the chain with
/// [`DEFAULT_CORPUS_SEED`], [`DEFAULT_CORPUS_ORDER`], [`DEFAULT_CORPUS_ALPHA`]) and its
/// entropy rate in nats per character.
pub fn default_corpus() -> Result<(Vec<u8>, f64), DataError> {
    let m = MarkovSource::new(
        DEFAULT_CORPUS_SEED,
        DEFAULT_CORPUS_ORDER,
        DEFAULT_CORPUS_ALPHA,
    )?;
    Ok((
        m.generate(DEFAULT_CORPUS_BYTES, DEFAULT_CORPUS_SEED),
        m.entropy_rate(),
    ))
}

/// Entropy in nats of a probability vector (zero entries contribute nothing).
pub fn entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

/// `q(c) = sum_s pi(s) p(c | s)`.
fn symbol_marginal(probs: &[f64], pi: &[f64]) -> Vec<f64> {
    let mut q = vec![0.0; N_SYMBOLS];
    for (row, w) in probs.chunks_exact(N_SYMBOLS).zip(pi) {
        for (qc, p) in q.iter_mut().zip(row) {
            *qc += w * p;
        }
    }
    q
}

/// Index `i` with `cum(i - 1) <= u < cum(i)` over the cumulative sums of `weights`
/// (the last index if rounding leaves `u` past the total).
/// The text of a [`MarkovSource`], produced piece by piece ([`MarkovSource::stream`]).
pub struct LetterStream<'a> {
    source: &'a MarkovSource,
    rng: Rng,
    ctx: usize,
}

impl LetterStream<'_> {
    /// Fills `buf` with the next bytes of the text.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let m = self.source;
        for b in buf {
            let row = &m.cdf[self.ctx * N_SYMBOLS..(self.ctx + 1) * N_SYMBOLS];
            let u = self.rng.next_f64();
            let c = row.partition_point(|&x| x <= u).min(N_SYMBOLS - 1);
            *b = ALPHABET[c];
            self.ctx = m.next_context(self.ctx, c);
        }
    }
}

fn draw(weights: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len().saturating_sub(1)
}

/// Stationary distribution over contexts by lazy power iteration from uniform:
/// `(pi, iterations, |pi P - pi|_1)`. Each step is `pi <- (pi + pi P) / 2`, which has
/// the same fixed point but no eigenvalue on the unit circle other than 1, so nearly
/// periodic chains (small `alpha`) converge too. The returned `pi` is the iterate
/// whose residual was measured below [`STATIONARY_TOL`].
fn stationary(probs: &[f64], n_contexts: usize) -> Result<(Vec<f64>, usize, f64), DataError> {
    let work_per_iter = n_contexts * N_SYMBOLS;
    let max_iter = (STATIONARY_MAX_WORK / work_per_iter).max(STATIONARY_MIN_ITER);
    let mut pi = vec![1.0 / n_contexts as f64; n_contexts];
    let mut next = vec![0.0; n_contexts];
    let mut diff = f64::INFINITY;
    for it in 1..=max_iter {
        next.fill(0.0);
        for (s, (row, w)) in probs.chunks_exact(N_SYMBOLS).zip(&pi).enumerate() {
            if n_contexts == 1 {
                next[0] += w * row.iter().sum::<f64>();
            } else {
                // Successors of s are the 28 consecutive contexts from (28 s) mod 28^k.
                let first = (s * N_SYMBOLS) % n_contexts;
                for (t, p) in next[first..first + N_SYMBOLS].iter_mut().zip(row) {
                    *t += w * p;
                }
            }
        }
        let total: f64 = next.iter().sum();
        next.iter_mut().for_each(|x| *x /= total);
        diff = next.iter().zip(&pi).map(|(a, b)| (a - b).abs()).sum();
        if diff < STATIONARY_TOL {
            return Ok((pi, it, diff));
        }
        for (p, n) in pi.iter_mut().zip(&next) {
            *p = 0.5 * (*p + n);
        }
    }
    Err(DataError::NoConvergence {
        iterations: max_iter,
        residual: diff,
    })
}

/// A Dirichlet draw with parameters `conc`, as Gamma draws normalised in log space,
/// each probability clamped to at least `f64::MIN_POSITIVE`.
fn dirichlet(rng: &mut Rng, conc: &[f64]) -> Vec<f64> {
    // ln of each Gamma draw, kept finite so that the shift below is defined.
    let logs: Vec<f64> = conc
        .iter()
        .map(|&a| ln_gamma_draw(rng, a).max(-f64::MAX))
        .collect();
    let max = logs.iter().copied().fold(-f64::MAX, f64::max);
    let w: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = w.iter().sum(); // >= 1: the maximum contributes exp(0)
    w.iter()
        .map(|x| (x / total).max(f64::MIN_POSITIVE))
        .collect()
}

/// The natural log of a Gamma(`shape`, 1) draw (Marsaglia and Tsang 2000; for
/// `shape < 1`, `Gamma(shape) = Gamma(shape + 1) * U^(1 / shape)`, added in log space).
fn ln_gamma_draw(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = rng.next_f64_open0().ln() / shape;
        return ln_gamma_draw(rng, shape + 1.0) + boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = rng.normal();
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.next_f64_open0();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d.ln() + v.ln();
        }
    }
}
