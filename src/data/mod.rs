//! Data path: tokenizers, corpora, the token cache, built-in Markov corpora, seeded
//! sampler.
//! Owns turning bytes on disk (or the built-in [`WordSource`]) into train and
//! validation token streams, and drawing training and evaluation windows from them.
//! Must never know of threads, atomics or models: everything here is a pure function
//! of its inputs and seeds.
//!
//! # Types
//! * [`ByteTokenizer`]: one token per byte, vocabulary 256.
//! * [`cache`]: a corpus tokenized once into a memory-mapped token file
//!   ([`TokenFile`], built and validated by [`load_or_build`]) for corpora larger
//!   than memory; split by text, chunked where byte-level BPE is unaffected.
//! * [`Tokenizer`] ([`TokenizerKind`] byte, bpe or gpt2): the tokenizer the CLI and
//!   trainers use: bytes, a byte-level BPE trained on the corpus, or GPT-2's vocabulary,
//!   with the bytes of each token and its Hugging Face `tokenizer.json`.
//! * [`Corpus`]: the token stream split into `train` (the first part) and `val` (the
//!   last `val_fraction`), loaded from a file, a directory tree or bytes in memory.
//! * [`WordSource`] and [`default_word_corpus`]: the default built-in corpus, a
//!   word-level Markov source written as sentences, with an exact entropy rate per
//!   byte; [`WordStream`] streams its text in pieces.
//! * [`MarkovSource`] and [`default_corpus`]: the letter-level built-in corpus (28
//!   symbols, order-k chain) with a known entropy rate.
//! * [`prepare`]: a run's text ready to train on: the tokenizer chosen, trained or
//!   given, and the built-in corpus or a corpus on disk (through [`cache`]) tokenized.
//! * [`TokenSource`] / [`Tokens`]: a token stream as the trainers read it (a window
//!   copied out), in memory or memory-mapped.
//! * [`Rng`]: the crate's seeded generator (also used by the trainer).
//! * [`Sampler`] / [`SamplerState`]: seeded, resumable random training windows;
//!   [`eval_windows`]: fixed evaluation windows.
//!
//! # Determinism
//! A directory is read in sorted path order, splits are by position, and every random
//! choice goes through [`Rng`]: the same inputs and seeds give the same tokens and
//! batches on every run.

pub mod cache;
mod markov;
pub mod prepare;
mod rng;
mod sampler;
mod tokenizer;
mod tokens;
mod words;

pub use cache::{
    load_or_build, train_text_chunks, CacheError, CacheOptions, CacheStatus, Encoder, TokenFile,
    WindowReads,
};
pub use markov::{
    default_corpus, entropy, symbol_index, LetterStream, MarkovSource, ALPHABET,
    DEFAULT_CORPUS_ALPHA, DEFAULT_CORPUS_BYTES, DEFAULT_CORPUS_ORDER, DEFAULT_CORPUS_SEED,
    MAX_ALPHA, MAX_ORDER, N_SYMBOLS, STATIONARY_MAX_WORK, STATIONARY_MIN_ITER, STATIONARY_TOL,
};
pub use rng::Rng;
pub use sampler::{eval_windows, Sampler, SamplerState};
pub use tokenizer::{
    byte_char, utf8, Tokenizer, TokenizerError, TokenizerKind, END_OF_TEXT, GPT2_VOCAB, MAX_VOCAB,
    MIN_BPE_VOCAB,
};
pub use tokens::{TokenSource, Tokens};
pub use words::{
    default_word_corpus, EntryKind, WordParams, WordSource, WordStream, COMMA, DEFAULT_WORDS_SEED,
    FIRST_WORD, MAX_PUNCTUATION, MAX_SUCCESSORS, MAX_WORDS, MAX_ZIPF, PARAGRAPH, PERIOD,
};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Human description of the built-in corpus, used as [`Corpus::source`].
pub const BUILT_IN_SOURCE: &str = "built-in word corpus";

/// Everything that can go wrong on the data path.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The corpus path does not exist.
    #[error("corpus path {} does not exist", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The corpus path is neither a regular file nor a directory.
    #[error("corpus path {} is neither a file nor a directory", path.display())]
    NotFileOrDir {
        /// The path given.
        path: PathBuf,
    },
    /// A directory holds no (non-hidden) files anywhere below it.
    #[error("corpus directory {} contains no files (hidden entries are skipped)", path.display())]
    NoFiles {
        /// The directory.
        path: PathBuf,
    },
    /// The corpus has no bytes at all.
    #[error("corpus {what} is empty: 0 bytes in {n_files} file(s)")]
    Empty {
        /// Human description of the corpus.
        what: String,
        /// Files read (0 for bytes in memory).
        n_files: usize,
    },
    /// The validation fraction is not in `[0, 1)`.
    #[error("validation fraction {fraction} is not in [0, 1)")]
    BadValFraction {
        /// The fraction given.
        fraction: f64,
    },
    /// A split is too short for one window of `seq + 1` tokens.
    #[error("{split} split has {have} tokens, but context {seq} needs at least {need} (seq + 1)")]
    ContextTooLong {
        /// `"training"` or `"validation"`.
        split: &'static str,
        /// Tokens in the split.
        have: usize,
        /// Tokens needed.
        need: usize,
        /// The context length asked for.
        seq: usize,
    },
    /// A Markov order past [`MAX_ORDER`].
    #[error("Markov order {order} is out of range 0..={max}")]
    BadOrder {
        /// The order given.
        order: usize,
        /// The largest supported order.
        max: usize,
    },
    /// A Markov concentration that is not finite, not positive, or too large.
    #[error("Markov alpha {alpha} must be finite, > 0 and <= {max}")]
    BadAlpha {
        /// The alpha given.
        alpha: f64,
        /// The largest accepted alpha.
        max: f64,
    },
    /// The stationary distribution did not converge in the work budget (only for
    /// nearly decomposable chains, from a tiny `alpha`; reported instead of looping).
    #[error("stationary distribution did not converge in {iterations} iterations (L1 residual {residual:e}); try a larger alpha")]
    NoConvergence {
        /// Iterations run.
        iterations: usize,
        /// Last L1 difference between iterates.
        residual: f64,
    },
    /// The token stream is shorter than one window.
    #[error("data has {have} tokens, but a window of seq + 1 needs {need}")]
    DataTooShort {
        /// Tokens available.
        have: usize,
        /// Tokens needed.
        need: usize,
    },
    /// A batch output buffer has the wrong length.
    #[error("{which} buffer has {have} entries, expected batch * seq = {expected}")]
    SliceLength {
        /// `"tokens"` or `"targets"`.
        which: &'static str,
        /// Its length.
        have: usize,
        /// `batch * seq`.
        expected: usize,
    },
    /// A batch shape with a zero dimension, or too large to address.
    #[error("batch shape {batch} x {seq} is invalid: both must be >= 1 and the product must fit in memory")]
    BadShape {
        /// Windows per batch.
        batch: usize,
        /// Tokens per window (inputs).
        seq: usize,
    },
    /// A parameter of the word source out of its range.
    #[error("word source parameter {what} = {value} is out of range {allowed}")]
    BadWordParam {
        /// The parameter's name.
        what: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range.
        allowed: String,
    },
    /// The lexicon generator found too few distinct words in its attempt budget.
    #[error("could not generate {n_words} distinct words in {attempts} attempts")]
    LexiconExhausted {
        /// Words asked for.
        n_words: usize,
        /// Attempts made.
        attempts: usize,
    },
}

/// Byte-level tokenizer: token `i` is byte `i`, vocabulary [`ByteTokenizer::VOCAB`].
///
/// ```
/// use cllm::data::ByteTokenizer;
/// let t = ByteTokenizer::encode("héllo".as_bytes());
/// assert_eq!(ByteTokenizer::decode(&t), "héllo");
/// assert_eq!(ByteTokenizer::decode(&[104, 300, 105]), "h\u{FFFD}i");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// Vocabulary size: one token per byte value.
    pub const VOCAB: usize = 256;

    /// One token per byte.
    pub fn encode(bytes: &[u8]) -> Vec<u32> {
        bytes.iter().map(|&b| u32::from(b)).collect()
    }

    /// The bytes of `tokens` as lossy UTF-8: invalid sequences, and tokens `>= 256`,
    /// become U+FFFD.
    pub fn decode(tokens: &[u32]) -> String {
        const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD]; // U+FFFD in UTF-8
        let mut bytes = Vec::with_capacity(tokens.len());
        for &t in tokens {
            match u8::try_from(t) {
                Ok(b) => bytes.push(b),
                Err(_) => bytes.extend_from_slice(&REPLACEMENT),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A token stream split into training and validation parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    /// The first part of the stream.
    pub train: Vec<u32>,
    /// The last `val_fraction` of the stream (rounded down, at least one token when
    /// the fraction is positive and the stream has two or more tokens).
    pub val: Vec<u32>,
    /// Human description: the path given, or [`BUILT_IN_SOURCE`].
    pub source: String,
    /// Files read (0 for bytes in memory).
    pub n_files: usize,
}

impl Corpus {
    /// Loads a file, or every file below a directory (recursively, concatenated in
    /// sorted path order so the result is deterministic; entries whose name starts
    /// with '.' are skipped, symbolic links to files are followed, links to
    /// directories and special files are skipped). Errors if the path is missing or
    /// unreadable, a directory holds no files, or there are zero bytes in total.
    pub fn load(path: &Path, val_fraction: f64) -> Result<Corpus, DataError> {
        check_fraction(val_fraction)?;
        let (files, _) = list_files(path)?;
        let mut bytes = Vec::new();
        for f in &files {
            bytes.extend(fs::read(f).map_err(|e| io_error(f, e))?);
        }
        let source = path.display().to_string();
        if bytes.is_empty() {
            return Err(DataError::Empty {
                what: source,
                n_files: files.len(),
            });
        }
        let mut corpus = Corpus::from_bytes(&bytes, source, val_fraction)?;
        corpus.n_files = files.len();
        Ok(corpus)
    }

    /// Tokenizes `bytes` and splits them by position: the last `val_fraction` of the
    /// tokens (rounded down; at least 1 if `val_fraction > 0` and there are two or
    /// more tokens; never all of them) is validation, the rest training.
    /// `n_files` is 0. Errors if `bytes` is empty or `val_fraction` is not in `[0, 1)`.
    pub fn from_bytes(
        bytes: &[u8],
        source: String,
        val_fraction: f64,
    ) -> Result<Corpus, DataError> {
        check_fraction(val_fraction)?;
        if bytes.is_empty() {
            return Err(DataError::Empty {
                what: source,
                n_files: 0,
            });
        }
        let mut train = ByteTokenizer::encode(bytes);
        let n = train.len();
        // Truncation is the documented rounding; `as` saturates, `min` keeps >= 1 train.
        let mut n_val = (n as f64 * val_fraction).floor() as usize;
        if val_fraction > 0.0 && n_val == 0 {
            n_val = 1;
        }
        n_val = n_val.min(n - 1);
        let val = train.split_off(n - n_val);
        Ok(Corpus {
            train,
            val,
            source,
            n_files: 0,
        })
    }

    /// The built-in corpus ([`default_word_corpus`]) split like
    /// [`Corpus::from_bytes`], with its entropy rate (the floor) in nats per byte.
    /// The letter-level corpus is [`default_corpus`].
    pub fn built_in(val_fraction: f64) -> Result<(Corpus, f64), DataError> {
        let (bytes, rate) = default_word_corpus()?;
        Ok((
            Corpus::from_bytes(&bytes, BUILT_IN_SOURCE.to_string(), val_fraction)?,
            rate,
        ))
    }

    /// Errors if the training split, or a non-empty validation split, is shorter than
    /// one window of `seq + 1` tokens. An empty validation split (`val_fraction` 0)
    /// is accepted: there is nothing to evaluate.
    pub fn check_context(&self, seq: usize) -> Result<(), DataError> {
        let need = seq.saturating_add(1);
        for (split, data) in [("training", &self.train), ("validation", &self.val)] {
            let skip = split == "validation" && data.is_empty();
            if !skip && data.len() < need {
                return Err(DataError::ContextTooLong {
                    split,
                    have: data.len(),
                    need,
                    seq,
                });
            }
        }
        Ok(())
    }
}

fn check_fraction(fraction: f64) -> Result<(), DataError> {
    if (0.0..1.0).contains(&fraction) {
        Ok(())
    } else {
        Err(DataError::BadValFraction { fraction })
    }
}

/// [`DataError::NotFound`] for a missing path, [`DataError::Io`] otherwise.
fn io_error(path: &Path, e: io::Error) -> DataError {
    if e.kind() == io::ErrorKind::NotFound {
        DataError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// The files of a corpus path: `path` itself, or every non-hidden file below the
/// directory `path` in sorted path order; and whether `path` is a directory. Errors
/// for a missing or unreadable path, a special file or a directory without files.
pub(crate) fn list_files(path: &Path) -> Result<(Vec<PathBuf>, bool), DataError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.is_file() {
        return Ok((vec![path.to_path_buf()], false));
    }
    if !meta.is_dir() {
        return Err(DataError::NotFileOrDir {
            path: path.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    if files.is_empty() {
        return Err(DataError::NoFiles {
            path: path.to_path_buf(),
        });
    }
    files.sort();
    Ok((files, true))
}

/// Appends every non-hidden regular file below `dir` (unsorted).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        } else if kind.is_symlink() {
            // Follow links to files only: links to directories could form cycles.
            if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                out.push(path);
            }
        }
    }
    Ok(())
}
