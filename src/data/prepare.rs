//! A run's text, ready to train on: the tokenizer chosen (or trained, or taken from a
//! checkpoint) and the corpus tokenized into training and validation streams. Owns the
//! order of those steps and where their results are cached. Must never know of models,
//! trainers, threads beyond the tokenizing ones, or how progress is shown (the caller
//! gets [`Progress`] events).
//!
//! # The two sources
//! * The built-in corpus ([`default_word_corpus`]) is generated in memory and split by
//!   position like [`Corpus::from_bytes`]: the last `val_fraction` of its bytes is
//!   validation text. Each part is tokenized on its own, in memory (it is a few MB).
//!   With the byte tokenizer the tokens are exactly [`Corpus::built_in`]'s.
//! * A corpus on disk (a file or a directory) goes through the token cache
//!   ([`load_or_build`]): tokenized once into `cache_dir`, memory-mapped, and read
//!   window by window, so it may be larger than memory. Its text split is the cache's
//!   ([`TextPlan`]).
//!
//! # A trained BPE
//! `bpe` is trained on the training text only (the built-in corpus's training part, or
//! the cache's training chunks, streamed). For a corpus on disk the trained
//! `tokenizer.json` is cached too, as `cache_dir/bpe-HEX.json`, HEX a BLAKE3 hash of the
//! corpus's data key (every file's name, length and content), the vocabulary size and
//! the validation fraction: a second run on the same data neither trains nor tokenizes
//! again. A cached tokenizer file that does not load, or whose vocabulary is not the one
//! asked for, is retrained and replaced, never used.
//!
//! # Determinism
//! Every step is a pure function of the text, the tokenizer choice and the validation
//! fraction: the same inputs give the same tokens, whichever thread count tokenizes.

use super::cache::{
    corpus_files, data_key, load_or_build, CacheError, CacheOptions, CacheStatus, Encoder, TextPlan,
};
use super::tokenizer::{utf8, Tokenizer, TokenizerError, TokenizerKind};
use super::{
    default_word_corpus, eval_windows, Corpus, DataError, TokenSource, Tokens, BUILT_IN_SOURCE,
};
use std::fs;
use std::path::{Path, PathBuf};

/// Vocabulary of `bpe` when none is given, for a corpus on disk.
pub const DEFAULT_BPE_VOCAB: usize = 4096;
/// Vocabulary of `bpe` when none is given, for the built-in corpus: its 150 words
/// and punctuation are all single tokens by about 700 ids, where its merges run out.
pub const BUILT_IN_BPE_VOCAB: usize = 512;

/// Which tokenizer a run uses.
#[derive(Clone, Debug)]
pub enum TokenizerChoice {
    /// One token per byte.
    Byte,
    /// A byte-level BPE of this many ids, trained on the training text.
    Bpe {
        /// Vocabulary size, `<|endoftext|>` included.
        vocab: usize,
    },
    /// GPT-2's own vocabulary.
    Gpt2,
    /// A tokenizer already made (a resumed run's, from its checkpoint).
    Given(Tokenizer),
}

impl TokenizerChoice {
    /// `--tokenizer NAME [--vocab N]`: `vocab` is only meaningful for `bpe` (default
    /// `default_vocab`: [`DEFAULT_BPE_VOCAB`] or, for the built-in corpus,
    /// [`BUILT_IN_BPE_VOCAB`]).
    pub fn parse(
        name: &str,
        vocab: Option<usize>,
        default_vocab: usize,
    ) -> Result<TokenizerChoice, PrepareError> {
        let kind = TokenizerKind::parse(name)?;
        match (kind, vocab) {
            (TokenizerKind::Bpe, v) => Ok(TokenizerChoice::Bpe {
                vocab: v.unwrap_or(default_vocab),
            }),
            (_, Some(v)) => Err(PrepareError::VocabWithoutBpe {
                tokenizer: kind.name(),
                vocab: v,
            }),
            (TokenizerKind::Byte, None) => Ok(TokenizerChoice::Byte),
            (TokenizerKind::Gpt2, None) => Ok(TokenizerChoice::Gpt2),
        }
    }
}

/// Where the text comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The built-in word corpus.
    BuiltIn,
    /// A file, or every file below a directory.
    Path(&'a Path),
}

/// How to prepare.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Fraction of the text held out for validation, in `[0, 1)`.
    pub val_fraction: f64,
    /// Where a corpus on disk's token file and trained tokenizer are cached.
    pub cache_dir: PathBuf,
    /// Tokenizing threads (the result does not depend on it).
    pub threads: usize,
}

/// What is happening, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Training the BPE: bytes of training text read so far, of this many.
    TrainingTokenizer {
        /// Bytes read.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Tokenizing (or checking a cached token file): bytes so far, of this many.
    Tokenizing {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
}

/// A run's text, tokenized.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The tokenizer (saved with every checkpoint).
    pub tokenizer: Tokenizer,
    /// Training tokens.
    pub train: Tokens,
    /// Validation tokens.
    pub val: Tokens,
    /// Human description: the path given, or [`BUILT_IN_SOURCE`].
    pub source: String,
    /// Files read (0 for the built-in corpus).
    pub n_files: usize,
    /// Bytes of text (training and validation).
    pub text_bytes: u64,
    /// The built-in corpus's entropy rate in nats per byte (`None` for a corpus on
    /// disk).
    pub floor: Option<f64>,
    /// What the token cache did (`None` for the built-in corpus).
    pub cache: Option<CacheStatus>,
    /// Whether a trained BPE came from the cache (`None` when none was trained).
    pub tokenizer_cached: Option<bool>,
    /// Identifies the tokens and the tokenizer (ranks of one run compare it).
    pub fingerprint: u64,
    /// The validation fraction asked for.
    pub val_fraction: f64,
}

/// Everything that can go wrong preparing the text.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The tokenizer could not be made, trained or used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// Reading the corpus failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The token cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// `--vocab` given with a tokenizer that has a fixed vocabulary.
    #[error("--vocab {vocab} applies only to --tokenizer bpe (the {tokenizer} tokenizer's vocabulary is fixed)")]
    VocabWithoutBpe {
        /// The tokenizer named.
        tokenizer: &'static str,
        /// The vocabulary given.
        vocab: usize,
    },
    /// The cached tokenizer could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Prepares the text of a run: see the module doc.
pub fn prepare(
    source: Source<'_>,
    choice: TokenizerChoice,
    opts: &PrepareOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Prepared, PrepareError> {
    match source {
        Source::BuiltIn => prepare_built_in(choice, opts),
        Source::Path(path) => prepare_path(path, choice, opts, progress),
    }
}

fn prepare_built_in(
    choice: TokenizerChoice,
    opts: &PrepareOptions,
) -> Result<Prepared, PrepareError> {
    let (bytes, floor) = default_word_corpus()?;
    // The byte split of `Corpus::from_bytes` (one token per byte).
    let split = Corpus::from_bytes(&bytes, String::new(), opts.val_fraction)?
        .train
        .len();
    let (train_text, val_text) = bytes.split_at(split);
    let tokenizer = match choice {
        TokenizerChoice::Byte => Tokenizer::byte(),
        TokenizerChoice::Gpt2 => Tokenizer::gpt2()?,
        TokenizerChoice::Given(t) => t,
        TokenizerChoice::Bpe { vocab } => {
            let text = utf8(train_text)?;
            Tokenizer::train_bpe(std::iter::once(text), vocab)?
        }
    };
    let train = tokenizer.encode(train_text)?;
    let val = tokenizer.encode(val_text)?;
    let fingerprint = hash_tokens(&tokenizer.to_json(), &[&train, &val]);
    Ok(Prepared {
        tokenizer,
        train: train.into(),
        val: val.into(),
        source: BUILT_IN_SOURCE.to_string(),
        n_files: 0,
        text_bytes: bytes.len() as u64,
        floor: Some(floor),
        cache: None,
        tokenizer_cached: None,
        fingerprint,
        val_fraction: opts.val_fraction,
    })
}

fn prepare_path(
    path: &Path,
    choice: TokenizerChoice,
    opts: &PrepareOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Prepared, PrepareError> {
    let cache_opts = CacheOptions {
        val_fraction: opts.val_fraction,
        // Every file must be text for a BPE, and in a directory (where a stray binary
        // file is a mistake, not the corpus).
        require_text: !matches!(choice, TokenizerChoice::Byte) || path.is_dir(),
        threads: opts.threads.max(1),
        ..CacheOptions::default()
    };
    let mut tokenizer_cached = None;
    let tokenizer = match choice {
        TokenizerChoice::Byte => Tokenizer::byte(),
        TokenizerChoice::Gpt2 => Tokenizer::gpt2()?,
        TokenizerChoice::Given(t) => t,
        TokenizerChoice::Bpe { vocab } => {
            let (t, cached) = cached_bpe(path, vocab, &cache_opts, opts, progress)?;
            tokenizer_cached = Some(cached);
            t
        }
    };
    let key = tokenizer.to_json();
    let encode = |text: &[u8]| tokenizer.encode(text).map_err(|e| e.to_string());
    let enc = Encoder {
        encode: &encode,
        vocab_size: tokenizer.vocab_size(),
        key: &key,
    };
    let mut on_bytes = |done, total| progress(Progress::Tokenizing { done, total });
    let (file, status) = load_or_build(path, &opts.cache_dir, &enc, &cache_opts, &mut on_bytes)?;
    let header = file.header();
    let mut h = blake3::Hasher::new();
    h.update(&key);
    h.update(&header.config_key);
    h.update(&header.data_key);
    let fingerprint = first_u64(h.finalize().as_bytes());
    let n_files = corpus_files(path)?.len();
    let text_bytes = corpus_files(path)?.iter().map(|f| f.len).sum();
    Ok(Prepared {
        train: file.train(),
        val: file.val(),
        tokenizer,
        source: path.display().to_string(),
        n_files,
        text_bytes,
        floor: None,
        cache: Some(status),
        tokenizer_cached,
        fingerprint,
        val_fraction: opts.val_fraction,
    })
}

impl Prepared {
    /// Errors if either split is shorter than one window of `seq + 1` tokens; an empty
    /// validation split is accepted only when no validation was asked for
    /// (`val_fraction` 0). A short text can have an empty validation split although
    /// some was asked for: its split falls at the first word cut after the target.
    pub fn check_context(&self, seq: usize) -> Result<(), DataError> {
        let need = seq.saturating_add(1);
        for (split, n) in [
            ("training", self.train.len()),
            ("validation", self.val.len()),
        ] {
            let none_asked = split == "validation" && self.val_fraction == 0.0;
            if !none_asked && n < need {
                return Err(DataError::ContextTooLong {
                    split,
                    have: n,
                    need,
                    seq,
                });
            }
        }
        Ok(())
    }
}

/// The BPE of `vocab` ids trained on `path`'s training text, from the cache when a
/// valid one is there (`true`), else trained and cached (`false`).
fn cached_bpe(
    path: &Path,
    vocab: usize,
    cache_opts: &CacheOptions,
    opts: &PrepareOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Tokenizer, bool), PrepareError> {
    let files = corpus_files(path)?;
    let data = data_key(&files)?;
    let mut h = blake3::Hasher::new();
    h.update(b"cllm bpe tokenizer v1");
    h.update(&data);
    h.update(&(vocab as u64).to_le_bytes());
    h.update(&opts.val_fraction.to_bits().to_le_bytes());
    let hex: String = h.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = opts.cache_dir.join(format!("bpe-{hex}.json"));
    if let Ok(bytes) = fs::read(&file) {
        if let Ok(t) = Tokenizer::from_json(&bytes) {
            if t.kind() == TokenizerKind::Bpe && t.vocab_size() == vocab {
                return Ok((t, true));
            }
        }
    }
    let plan = TextPlan::new(path, cache_opts)?;
    let total = plan.train_bytes();
    // The trainer consumes a stream of UTF-8 chunks on its own thread; this thread
    // reads them (and reports progress), a few chunks ahead at most.
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4);
    let trained = std::thread::scope(|s| {
        let trainer = s.spawn(move || Tokenizer::train_bpe(rx.into_iter(), vocab));
        let mut done = 0u64;
        let mut read = || -> Result<(), PrepareError> {
            for chunk in plan.train_chunks() {
                let chunk = chunk?;
                done += chunk.len() as u64;
                let text = String::from_utf8(chunk).map_err(|e| TokenizerError::NotUtf8 {
                    offset: e.utf8_error().valid_up_to(),
                })?;
                if tx.send(text).is_err() {
                    break; // the trainer stopped early: its result says why
                }
                progress(Progress::TrainingTokenizer { done, total });
            }
            Ok(())
        };
        let read = read();
        drop(tx);
        let trained = trainer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.map(|()| trained)
    })?;
    let tokenizer = trained?;
    let write = |e| PrepareError::Write {
        path: file.clone(),
        source: e,
    };
    fs::create_dir_all(&opts.cache_dir).map_err(write)?;
    crate::train::checkpoint_io::atomic_write(&file, &tokenizer.to_json()).map_err(|e| {
        PrepareError::Write {
            path: file.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    Ok((tokenizer, false))
}

/// Mean bytes of text per target token over the evaluation windows of `val` (the
/// windows [`eval_windows`] picks for `seq` and `max_windows`); `None` if none fits.
pub fn val_bytes_per_token(
    tokenizer: &Tokenizer,
    val: &dyn TokenSource,
    seq: usize,
    max_windows: usize,
) -> Option<f64> {
    let starts = eval_windows(val.len(), seq, max_windows);
    if starts.is_empty() {
        return None;
    }
    let mut window = vec![0; seq];
    let (mut bytes, mut tokens) = (0u64, 0u64);
    for start in starts {
        val.read(start + 1, &mut window);
        for &t in &window {
            bytes += tokenizer.token_bytes(t).len() as u64;
        }
        tokens += seq as u64;
    }
    (bytes > 0).then(|| bytes as f64 / tokens as f64)
}

/// The first 8 bytes of a BLAKE3 hash of `seed` and every part's tokens.
fn hash_tokens(seed: &[u8], parts: &[&[u32]]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(seed);
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        for &t in *part {
            h.update(&t.to_le_bytes());
        }
    }
    first_u64(h.finalize().as_bytes())
}

fn first_u64(bytes: &[u8; 32]) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}
