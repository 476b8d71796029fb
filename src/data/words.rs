//! Owns [`WordSource`]: the default built-in corpus, a seeded first-order Markov chain
//! over a generated lexicon of pronounceable words and punctuation, written out as
//! sentences ("Tava ko rimel, sa nobe. Kesu ...") whose entropy rate in nats per
//! byte is known exactly, so a trained model's loss can be compared with the best
//! any predictor can reach. Must never touch files, tokens or models: it produces
//! bytes and numbers only (the `cllm corpus` command streams [`WordStream`] to disk).
//!
//! # Entries
//! Entry [`PERIOD`] is ".", [`PARAGRAPH`] is ".\n" (a sentence end that also ends the
//! line), [`COMMA`] is ",", and entries `FIRST_WORD..` are the `n_words` words.
//!
//! # Lexicon
//! Each word is one to three syllables (`onset? vowel coda?` from fixed tables of
//! consonants, clusters and vowels), 2 to 9 lowercase ASCII letters, all distinct
//! (rejection, with [`DataError::LexiconExhausted`] if a bounded number of attempts
//! is not enough). Words get popularity ranks roughly shortest first (sort key
//! `length + 6 U`, U uniform, as in Zipf's law of abbreviation), and the word of rank
//! `r` (0-based) has popularity `1 / (r + 1)^zipf`.
//!
//! # Transitions (sparse, seeded)
//! * A word `w` goes to "." with probability `e_w (1 - newline)`, to ".\n" with
//!   `e_w newline` and to "," with `c_w`, where `e_w = sentence_end * f`,
//!   `c_w = comma * g`, `f, g` uniform in `[0.5, 1.5)`. The rest of its mass goes to
//!   `successors` words: its successor on a random cycle through all words, plus
//!   `successors - 1` other distinct words (never `w` itself) drawn by popularity
//!   without replacement (Efraimidis-Spirakis: the largest keys `ln U / popularity`),
//!   with weights `Exp(1)` normalised, i.e. Dirichlet(1, ..., 1): popular words are
//!   the successors of many words, so word frequencies follow a Zipf-like profile.
//! * "." and ".\n" have one row of sentence starts, "," a row of continuations:
//!   `successors` words each, drawn and weighted the same way (no punctuation follows
//!   punctuation).
//!
//! The chain is irreducible: every word reaches "." and ".\n" and "," directly,
//! those reach some word, and the cycle reaches every word from any word. It is
//! aperiodic: a sentence start `s` has the cycles `s . s` (length 2) and `s x . s`
//! (length 3, `x` the cycle successor of `s`), and gcd(2, 3) = 1. So it has one
//! stationary distribution `pi`, found by lazy power iteration
//! (`pi <- (pi + pi P) / 2`, same fixed point, no eigenvalue of modulus 1 but 1)
//! until `|pi P - pi|_1 <` [`STATIONARY_TOL`](super::STATIONARY_TOL).
//!
//! # Spelling (a sliding code)
//! Entry `e` after entry `p` is written as `spell(p, e)`:
//! * a word: `" "` then its letters, except right after ".\n" (no space: it starts a
//!   line); its first letter is upper case right after "." or ".\n";
//! * "," as `","`, "." as `"."`, ".\n" as `".\n"`.
//!
//! Capitalization and the leading space are deterministic functions of the previous
//! entry, so they add bytes but no randomness. The text starts as if after ".\n" (a
//! fresh paragraph: a renewal state, so the text is a sequence of independent
//! paragraphs), and is the spellings concatenated, cut at the length asked for.
//!
//! # The floor, exactly
//! Let `h = sum_a pi(a) H(P(a, .))` nats per entry and
//! `L = sum_a pi(a) sum_b P(a, b) |spell(a, b)|` bytes per entry. The floor reported
//! is `h / L` nats per byte ([`WordSource::entropy_rate`]). Proof sketch:
//! * The code is uniquely decodable with one byte of delay, from the bytes alone:
//!   after an entry boundary, "," is a comma; "." is ".\n" if a newline follows and
//!   "." otherwise (a "." is always followed by a space, a word never follows "."
//!   without one); a space or a letter starts a word, which is the maximal run of
//!   letters that follows, lowercased (words are distinct and the byte after a word
//!   is never a letter). So the first `m` bytes `Y^m` determine the entries
//!   `X_1..X_{N-1}`, where `N = N(m)` counts the entries begun within them, and are
//!   determined by `X_1..X_N` (and `m`).
//! * Hence `P(X_1..X_N) <= P(Y^m) <= P(X_1..X_{N-1})` on every realisation. By the
//!   Shannon-McMillan-Breiman theorem for the ergodic chain,
//!   `-ln P(X_1..X_n) / n -> h` almost surely, and by the ergodic theorem applied to
//!   the pair chain `(X_{i-1}, X_i)`, `m / N(m) -> L`. So `-ln P(Y^m) / m -> h / L`
//!   almost surely: the per-byte log-loss of the exact predictor given the whole
//!   past converges to `h / L`, and no predictor has a lower expected per-byte
//!   log-loss in the limit (the entropy rate of the byte process is `h / L`).
//! * A model that sees only a window of `T` bytes pays more: the excess
//!   `(H(Y^T) - T h / L) / T`, the process's excess entropy spread over the window
//!   (a few nats over 64 bytes for the default source).
//!   [`WordSource::windowed_floor`] estimates that bound by exact forward filtering
//!   over the hidden states "entry pair, byte offset" (the byte process is a
//!   deterministic function of that Markov chain).
//!
//! The chain and the text are pure functions of the parameters, the seeds and the
//! length through [`Rng`] and IEEE arithmetic (only `ln` comes from the platform).

use super::{DataError, Rng, STATIONARY_MAX_WORK, STATIONARY_MIN_ITER, STATIONARY_TOL};
use std::io::{self, Write};

/// Entry index of "." (a sentence end followed by a space).
pub const PERIOD: usize = 0;
/// Entry index of ".\n" (a sentence end that ends the line).
pub const PARAGRAPH: usize = 1;
/// Entry index of ",".
pub const COMMA: usize = 2;
/// Entry index of the first word; word `i` is entry `FIRST_WORD + i`.
pub const FIRST_WORD: usize = 3;

/// Most words a lexicon may have.
pub const MAX_WORDS: usize = 4096;
/// Most successors per entry.
pub const MAX_SUCCESSORS: usize = 256;
/// Largest Zipf exponent accepted.
pub const MAX_ZIPF: f64 = 4.0;
/// Largest `sentence_end + comma` accepted (each word keeps at least 10% of its mass
/// for words, since the per-word factors reach 1.5).
pub const MAX_PUNCTUATION: f64 = 0.6;

/// Seed of the default word corpus (lexicon, chain and text).
pub const DEFAULT_WORDS_SEED: u64 = 1;

/// Stream constant separating the text's random stream from the chain's ("word").
const TEXT_STREAM: u64 = 0x776F_7264;
/// Lexicon attempts per word before giving up.
const ATTEMPTS_PER_WORD: usize = 1000;

const ONSETS: &[&str] = &[
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch",
    "dr", "gr", "kl", "pl", "sh", "st", "th", "tr",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ea"];
const CODAS: &[&str] = &["n", "r", "s", "l", "t", "m", "k", "nd", "st"];

/// Parameters of a [`WordSource`]; [`Default`] gives the built-in corpus's.
#[derive(Clone, Debug, PartialEq)]
pub struct WordParams {
    /// Seed of the lexicon and the chain.
    pub seed: u64,
    /// Words in the lexicon, `2..=MAX_WORDS`.
    pub n_words: usize,
    /// Word successors of every entry, `1..=min(n_words, MAX_SUCCESSORS)`.
    pub successors: usize,
    /// Zipf exponent of word popularity, `[0, MAX_ZIPF]` (0: all equally popular).
    pub zipf: f64,
    /// Mean probability that a word ends the sentence, `(0, 0.5]`.
    pub sentence_end: f64,
    /// Mean probability that a word is followed by a comma, `(0, 0.5]`;
    /// `sentence_end + comma <= MAX_PUNCTUATION`.
    pub comma: f64,
    /// Fraction of sentence ends that also end the line, `(0, 1)`.
    pub newline: f64,
}

/// The defaults were tuned on the default `cllm train` run (2 layers, width 128,
/// context 64, 1,500 steps): 200 words with 8 successors gave a floor of 0.478
/// nats/byte and a final validation loss 0.098 above it; 150 words with 6 successors
/// give 0.398 and 0.079 above it (the best a 64-byte window allows is about 0.435,
/// [`WordSource::windowed_floor`]), with samples that read as sentences.
impl Default for WordParams {
    fn default() -> Self {
        WordParams {
            seed: DEFAULT_WORDS_SEED,
            n_words: 150,
            successors: 6,
            zipf: 1.0,
            sentence_end: 0.12,
            comma: 0.06,
            newline: 0.2,
        }
    }
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// ".".
    Period,
    /// ".\n".
    Paragraph,
    /// ",".
    Comma,
    /// A word of the lexicon.
    Word,
}

/// A seeded word-level Markov source with its stationary distribution and exact
/// entropy rate per byte (see the module doc).
///
/// ```
/// use cllm::data::{WordParams, WordSource};
/// let w = WordSource::new(&WordParams::default()).unwrap();
/// let text = w.generate(200, 7);
/// assert_eq!(text, w.generate(200, 7));
/// assert!(w.entropy_rate() > 0.0 && w.entropy_rate() < 1.5);
/// ```
#[derive(Clone, Debug)]
pub struct WordSource {
    params: WordParams,
    words: Vec<String>,
    /// Per entry, `(successor, probability)` in a fixed order.
    rows: Vec<Vec<(usize, f64)>>,
    /// Per entry, cumulative sums of its row's probabilities, the last one exactly 1.
    cdfs: Vec<Vec<f64>>,
    pi: Vec<f64>,
    iterations: usize,
    residual: f64,
    entry_entropy: f64,
    mean_bytes: f64,
}

impl WordSource {
    /// Builds the lexicon and chain for `params` and computes the stationary
    /// distribution and entropy rate.
    pub fn new(params: &WordParams) -> Result<Self, DataError> {
        check_params(params)?;
        let mut rng = Rng::new(params.seed);
        let words = lexicon(&mut rng, params.n_words)?;
        let n = params.n_words;
        let n_entries = FIRST_WORD + n;
        // Popularity by rank; ranks roughly shortest first.
        let mut keys: Vec<(f64, usize)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.len() as f64 + 6.0 * rng.next_f64(), i))
            .collect();
        keys.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut pop = vec![0.0; n];
        for (rank, &(_, i)) in keys.iter().enumerate() {
            pop[i] = 1.0 / ((rank + 1) as f64).powf(params.zipf);
        }
        // A random cycle through all words (Fisher-Yates).
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut cycle_next = vec![0; n];
        for (k, &w) in order.iter().enumerate() {
            cycle_next[w] = order[(k + 1) % n];
        }
        let k = params.successors;
        let mut rows = Vec::with_capacity(n_entries);
        for e in 0..n_entries {
            if e == PARAGRAPH {
                // ".\n" starts sentences exactly as "." does.
                let row = rows.get(PERIOD).cloned().unwrap_or_default();
                rows.push(row);
                continue;
            }
            let this_word = e.checked_sub(FIRST_WORD);
            let forced = this_word.map(|w| cycle_next[w]);
            let chosen = draw_successors(&mut rng, &pop, k, forced, this_word);
            let weights: Vec<f64> = chosen.iter().map(|_| -rng.next_f64_open0().ln()).collect();
            let total: f64 = weights.iter().sum();
            let (mut row, word_mass) = if e >= FIRST_WORD {
                let end = params.sentence_end * (0.5 + rng.next_f64());
                let comma = params.comma * (0.5 + rng.next_f64());
                let row = vec![
                    (PERIOD, end * (1.0 - params.newline)),
                    (PARAGRAPH, end * params.newline),
                    (COMMA, comma),
                ];
                (row, 1.0 - end - comma)
            } else {
                (Vec::new(), 1.0)
            };
            for (&w, x) in chosen.iter().zip(&weights) {
                // total > 0: every weight is an Exp(1) draw of a value in (0, 1], > 0.
                row.push((FIRST_WORD + w, word_mass * x / total));
            }
            rows.push(row);
        }
        let cdfs = rows
            .iter()
            .map(|row| {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = row
                    .iter()
                    .map(|&(_, p)| {
                        acc += p;
                        acc
                    })
                    .collect();
                if let Some(last) = cdf.last_mut() {
                    *last = 1.0;
                }
                cdf
            })
            .collect();
        let (pi, iterations, residual) = stationary(&rows)?;
        let mut src = WordSource {
            params: params.clone(),
            words,
            rows,
            cdfs,
            pi,
            iterations,
            residual,
            entry_entropy: 0.0,
            mean_bytes: 0.0,
        };
        let mut entry_entropy = 0.0;
        let mut mean_bytes = 0.0;
        for (a, (row, w)) in src.rows.iter().zip(&src.pi).enumerate() {
            for &(b, p) in row {
                entry_entropy -= w * p * p.ln();
                mean_bytes += w * p * src.spelled_len(a, b) as f64;
            }
        }
        src.entry_entropy = entry_entropy;
        src.mean_bytes = mean_bytes;
        Ok(src)
    }

    /// The floor: the byte process's entropy rate in nats per byte,
    /// [`WordSource::entry_entropy_rate`] / [`WordSource::mean_entry_bytes`].
    pub fn entropy_rate(&self) -> f64 {
        self.entry_entropy / self.mean_bytes
    }

    /// The chain's entropy rate `sum_a pi(a) H(P(a, .))` in nats per entry.
    pub fn entry_entropy_rate(&self) -> f64 {
        self.entry_entropy
    }

    /// Expected bytes per entry under the stationary chain,
    /// `sum_a pi(a) sum_b P(a, b) |spell(a, b)|`.
    pub fn mean_entry_bytes(&self) -> f64 {
        self.mean_bytes
    }

    /// The parameters the source was built from.
    pub fn params(&self) -> &WordParams {
        &self.params
    }

    /// Number of entries (punctuation and words).
    pub fn n_entries(&self) -> usize {
        self.rows.len()
    }

    /// The kind of entry `e`, or `None` past the last entry.
    pub fn kind(&self, e: usize) -> Option<EntryKind> {
        match e {
            PERIOD => Some(EntryKind::Period),
            PARAGRAPH => Some(EntryKind::Paragraph),
            COMMA => Some(EntryKind::Comma),
            _ if e < self.n_entries() => Some(EntryKind::Word),
            _ => None,
        }
    }

    /// The lexicon, word `i` being entry `FIRST_WORD + i` (lowercase spellings).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// `(successor, probability)` pairs of entry `e`, or `None` past the last entry.
    pub fn successors(&self, e: usize) -> Option<&[(usize, f64)]> {
        self.rows.get(e).map(Vec::as_slice)
    }

    /// The stationary distribution over entries.
    pub fn stationary(&self) -> &[f64] {
        &self.pi
    }

    /// Power iterations used and the final residual `|pi P - pi|_1`.
    pub fn convergence(&self) -> (usize, f64) {
        (self.iterations, self.residual)
    }

    /// Appends the spelling of entry `e` after entry `prev` to `out` (see the module
    /// doc); nothing if `e` is past the last entry.
    pub fn spell(&self, prev: usize, e: usize, out: &mut Vec<u8>) {
        match e {
            PERIOD => out.push(b'.'),
            PARAGRAPH => out.extend_from_slice(b".\n"),
            COMMA => out.push(b','),
            _ => {
                let Some(word) = self.words.get(e - FIRST_WORD) else {
                    return;
                };
                if prev != PARAGRAPH {
                    out.push(b' ');
                }
                let start = out.len();
                out.extend_from_slice(word.as_bytes());
                if prev == PERIOD || prev == PARAGRAPH {
                    out[start].make_ascii_uppercase();
                }
            }
        }
    }

    /// `n_bytes` bytes of text from the stream `seed` (independent of the chain's
    /// seed): the first `n_bytes` bytes of [`WordSource::stream`].
    pub fn generate(&self, n_bytes: usize, seed: u64) -> Vec<u8> {
        let mut out = vec![0; n_bytes];
        self.stream(seed).fill(&mut out);
        out
    }

    /// An endless stream of text from `seed`, read in pieces of any size.
    pub fn stream(&self, seed: u64) -> WordStream<'_> {
        WordStream {
            src: self,
            rng: Rng::new(seed ^ TEXT_STREAM),
            prev: PARAGRAPH,
            pending: Vec::with_capacity(16),
            pos: 0,
        }
    }

    /// Monte Carlo estimate of the best mean log-loss (nats per byte) of a predictor
    /// that sees only the window: the mean over `windows` windows of `context + 1`
    /// bytes, each from a stationary random position, of
    /// `-(1/context) sum_{t=1..=context} ln p(y_t | y_0..y_{t-1})`, the exact
    /// conditional probabilities of the byte process given the window (by forward
    /// filtering over hidden states "entry pair, byte offset", started from their
    /// stationary distribution). This is what a model trained on windows of
    /// `context` inputs is compared with: it exceeds [`WordSource::entropy_rate`] by
    /// the process's excess entropy spread over the window, and tends to it as the
    /// window grows. Windows are drawn with the stream `seed`; 0 windows or a 0
    /// context give 0.
    pub fn windowed_floor(&self, context: usize, windows: usize, seed: u64) -> f64 {
        if context == 0 || windows == 0 {
            return 0.0;
        }
        // Hidden states: every (pair, byte offset) of every allowed transition.
        let mut pairs: Vec<(usize, Vec<u8>)> = Vec::new(); // (entry b, spelling of b)
        let mut pair_of: Vec<Vec<usize>> = vec![Vec::new(); self.n_entries()]; // per a
        let mut start = Vec::new(); // stationary weight of each pair's first byte
        for (a, row) in self.rows.iter().enumerate() {
            for &(b, p) in row {
                let mut sp = Vec::new();
                self.spell(a, b, &mut sp);
                pair_of[a].push(pairs.len());
                start.push(self.pi[a] * p);
                pairs.push((b, sp));
            }
        }
        let mut offset = Vec::with_capacity(pairs.len() + 1); // first state of each pair
        let mut total = 0;
        for (_, sp) in &pairs {
            offset.push(total);
            total += sp.len();
        }
        let mut init = vec![0.0; total];
        for (k, (_, sp)) in pairs.iter().enumerate() {
            for j in 0..sp.len() {
                init[offset[k] + j] = start[k];
            }
        }
        let init_sum: f64 = init.iter().sum();
        init.iter_mut().for_each(|x| *x /= init_sum);
        // State id -> (pair, offset).
        let mut state_pair = Vec::with_capacity(total);
        for (k, (_, sp)) in pairs.iter().enumerate() {
            state_pair.extend((0..sp.len()).map(|j| (k, j)));
        }
        // The first byte of a window: per byte value, its probability and the states
        // consistent with it.
        let mut first: Vec<(f64, Vec<usize>)> = vec![(0.0, Vec::new()); 256];
        for (id, &w) in init.iter().enumerate() {
            let (k, j) = state_pair[id];
            let slot = &mut first[usize::from(pairs[k].1[j])];
            slot.0 += w;
            slot.1.push(id);
        }
        // Windows: positions drawn uniformly in a long text.
        let mut rng = Rng::new(seed ^ TEXT_STREAM ^ 0x77_696E);
        let text_len = (64 * windows * (context + 1)).clamp(1 << 20, 1 << 26);
        let text = self.generate(text_len, seed);
        let mut cur = vec![0.0; total];
        let mut nxt = vec![0.0; total];
        let mut in_next = vec![false; total];
        let mut active: Vec<usize> = Vec::new();
        let mut next_active: Vec<usize> = Vec::new();
        let mut sum_loss = 0.0;
        for _ in 0..windows {
            let s0 = rng.below(text_len - context);
            let window = &text[s0..=s0 + context];
            // Condition on the first byte.
            let (p0, ids) = &first[usize::from(window[0])];
            for &id in &active {
                cur[id] = 0.0;
            }
            active.clear();
            for &id in ids {
                cur[id] = init[id] / p0;
                active.push(id);
            }
            for &y in &window[1..] {
                // Advance one byte: cur (on `active`) -> nxt (on `next_active`).
                next_active.clear();
                for &id in &active {
                    let w = cur[id];
                    cur[id] = 0.0;
                    let (k, j) = state_pair[id];
                    let (b, sp) = &pairs[k];
                    let mut add = |to: usize, x: f64| {
                        if !in_next[to] {
                            in_next[to] = true;
                            next_active.push(to);
                        }
                        nxt[to] += x;
                    };
                    if j + 1 < sp.len() {
                        add(id + 1, w);
                    } else {
                        for (&k2, &(_, p)) in pair_of[*b].iter().zip(&self.rows[*b]) {
                            add(offset[k2], w * p);
                        }
                    }
                }
                // Condition on y: keep the states whose byte is y (back into cur).
                let mut p_y = 0.0;
                active.clear();
                for &id in &next_active {
                    in_next[id] = false;
                    let (k, j) = state_pair[id];
                    if pairs[k].1[j] == y {
                        p_y += nxt[id];
                        active.push(id);
                    }
                }
                let p_y = p_y.max(f64::MIN_POSITIVE);
                sum_loss -= p_y.ln();
                for &id in &next_active {
                    let (k, j) = state_pair[id];
                    if pairs[k].1[j] == y {
                        cur[id] = nxt[id] / p_y;
                    }
                    nxt[id] = 0.0;
                }
            }
        }
        sum_loss / (windows * context) as f64
    }

    /// One line describing the source, for `cllm corpus`.
    pub fn describe(&self) -> String {
        let p = &self.params;
        format!(
            "word-level Markov source: {} words, {} successors each, Zipf {} (seed {}); {:.3} nats/entry over {:.3} bytes/entry",
            p.n_words,
            p.successors,
            p.zipf,
            p.seed,
            self.entry_entropy,
            self.mean_bytes
        )
    }

    fn spelled_len(&self, prev: usize, e: usize) -> usize {
        match e {
            PERIOD | COMMA => 1,
            PARAGRAPH => 2,
            _ => {
                let word = self.words.get(e - FIRST_WORD).map_or(0, String::len);
                word + usize::from(prev != PARAGRAPH)
            }
        }
    }

    /// The entry after `prev` for the uniform draw `u` in `[0, 1)`.
    fn next_entry(&self, prev: usize, u: f64) -> usize {
        let (Some(row), Some(cdf)) = (self.rows.get(prev), self.cdfs.get(prev)) else {
            return PERIOD;
        };
        let i = cdf.partition_point(|&x| x <= u).min(row.len() - 1);
        row[i].0
    }
}

/// An endless text stream of a [`WordSource`] (see [`WordSource::stream`]).
#[derive(Clone, Debug)]
pub struct WordStream<'a> {
    src: &'a WordSource,
    rng: Rng,
    prev: usize,
    /// The current entry's spelling, of which `pending[pos..]` is not yet read.
    pending: Vec<u8>,
    pos: usize,
}

impl WordStream<'_> {
    /// Fills `buf` with the next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            if self.pos == self.pending.len() {
                let e = self.src.next_entry(self.prev, self.rng.next_f64());
                self.pending.clear();
                self.pos = 0;
                self.src.spell(self.prev, e, &mut self.pending);
                self.prev = e;
                continue;
            }
            let take = (self.pending.len() - self.pos).min(buf.len() - done);
            buf[done..done + take].copy_from_slice(&self.pending[self.pos..self.pos + take]);
            self.pos += take;
            done += take;
        }
    }

    /// Writes the next `n_bytes` bytes of the stream to `out` in pieces of
    /// `chunk` bytes (at least 1), holding only one piece in memory.
    pub fn write_to<W: Write>(
        &mut self,
        out: &mut W,
        n_bytes: u64,
        chunk: usize,
    ) -> io::Result<()> {
        let chunk = chunk.max(1);
        let mut buf = vec![0; usize::try_from(n_bytes).map_or(chunk, |n| n.min(chunk))];
        let mut left = n_bytes;
        while left > 0 {
            let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            self.fill(&mut buf[..take]);
            out.write_all(&buf[..take])?;
            left -= take as u64;
        }
        Ok(())
    }
}

/// The default word corpus ([`DEFAULT_CORPUS_BYTES`](super::DEFAULT_CORPUS_BYTES)
/// bytes of [`WordParams::default`], text seed [`DEFAULT_WORDS_SEED`]) and its floor
/// in nats per byte.
pub fn default_word_corpus() -> Result<(Vec<u8>, f64), DataError> {
    let w = WordSource::new(&WordParams::default())?;
    Ok((
        w.generate(super::DEFAULT_CORPUS_BYTES, DEFAULT_WORDS_SEED),
        w.entropy_rate(),
    ))
}

fn bad(what: &'static str, value: f64, allowed: String) -> DataError {
    DataError::BadWordParam {
        what,
        value,
        allowed,
    }
}

fn check_params(p: &WordParams) -> Result<(), DataError> {
    if !(2..=MAX_WORDS).contains(&p.n_words) {
        return Err(bad("n_words", p.n_words as f64, format!("2..={MAX_WORDS}")));
    }
    let max_succ = (p.n_words - 1).min(MAX_SUCCESSORS);
    if !(1..=max_succ).contains(&p.successors) {
        return Err(bad(
            "successors",
            p.successors as f64,
            format!("1..={max_succ} (at most n_words - 1 and {MAX_SUCCESSORS})"),
        ));
    }
    if !(0.0..=MAX_ZIPF).contains(&p.zipf) {
        return Err(bad("zipf", p.zipf, format!("[0, {MAX_ZIPF}]")));
    }
    for (what, v) in [("sentence_end", p.sentence_end), ("comma", p.comma)] {
        if !(v > 0.0 && v <= 0.5) {
            return Err(bad(what, v, "(0, 0.5]".into()));
        }
    }
    if p.sentence_end + p.comma > MAX_PUNCTUATION {
        return Err(bad(
            "sentence_end + comma",
            p.sentence_end + p.comma,
            format!("at most {MAX_PUNCTUATION}"),
        ));
    }
    if !(p.newline > 0.0 && p.newline < 1.0) {
        return Err(bad("newline", p.newline, "(0, 1)".into()));
    }
    Ok(())
}

/// `n` distinct words of 2 to 9 letters (see the module doc).
fn lexicon(rng: &mut Rng, n: usize) -> Result<Vec<String>, DataError> {
    let mut words = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let budget = n.saturating_mul(ATTEMPTS_PER_WORD);
    let mut attempts = 0;
    while words.len() < n {
        if attempts == budget {
            return Err(DataError::LexiconExhausted {
                n_words: n,
                attempts,
            });
        }
        attempts += 1;
        let syllables = match rng.below(20) {
            0..=5 => 1,
            6..=14 => 2,
            _ => 3,
        };
        let mut w = String::new();
        for s in 0..syllables {
            // The first syllable may start with a vowel; later ones always have an onset.
            if s > 0 || rng.below(5) != 0 {
                w.push_str(ONSETS[rng.below(ONSETS.len())]);
            }
            w.push_str(VOWELS[rng.below(VOWELS.len())]);
            if rng.below(3) == 0 {
                w.push_str(CODAS[rng.below(CODAS.len())]);
            }
        }
        if (2..=9).contains(&w.len()) && seen.insert(w.clone()) {
            words.push(w);
        }
    }
    Ok(words)
}

/// `k` distinct word indices: `forced` (if any) and the rest drawn by popularity
/// without replacement (the largest keys `ln U / pop`), in increasing index order.
fn draw_successors(
    rng: &mut Rng,
    pop: &[f64],
    k: usize,
    forced: Option<usize>,
    excluded: Option<usize>,
) -> Vec<usize> {
    let mut keys: Vec<(f64, usize)> = pop
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let key = rng.next_f64_open0().ln() / p;
            if Some(i) == forced {
                (f64::INFINITY, i)
            } else if Some(i) == excluded {
                (f64::NEG_INFINITY, i)
            } else {
                (key, i)
            }
        })
        .collect();
    let k = k.min(keys.len() - usize::from(excluded.is_some()));
    // Largest keys first; ties (probability zero) broken by index.
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = keys[..k].iter().map(|&(_, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

/// Stationary distribution by lazy power iteration from uniform:
/// `(pi, iterations, |pi P - pi|_1)`, `pi` being the iterate whose residual was
/// measured below [`STATIONARY_TOL`].
fn stationary(rows: &[Vec<(usize, f64)>]) -> Result<(Vec<f64>, usize, f64), DataError> {
    let n = rows.len();
    let work: usize = rows.iter().map(Vec::len).sum::<usize>().max(1);
    let max_iter = (STATIONARY_MAX_WORK / work).max(STATIONARY_MIN_ITER);
    let mut pi = vec![1.0 / n as f64; n];
    let mut next = vec![0.0; n];
    let mut diff = f64::INFINITY;
    for it in 1..=max_iter {
        next.fill(0.0);
        for (row, w) in rows.iter().zip(&pi) {
            for &(b, p) in row {
                next[b] += w * p;
            }
        }
        let total: f64 = next.iter().sum();
        next.iter_mut().for_each(|x| *x /= total);
        diff = next.iter().zip(&pi).map(|(a, b)| (a - b).abs()).sum();
        if diff < STATIONARY_TOL {
            return Ok((pi, it, diff));
        }
        for (p, x) in pi.iter_mut().zip(&next) {
            *p = 0.5 * (*p + x);
        }
    }
    Err(DataError::NoConvergence {
        iterations: max_iter,
        residual: diff,
    })
}
