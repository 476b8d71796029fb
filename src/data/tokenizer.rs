//! Tokenizers as one type: bytes (one token per byte), a byte-level BPE trained on the
//! corpus, and GPT-2's own vocabulary. Owns turning text into token ids and back, the
//! bytes each token stands for (for bits per byte), and the Hugging Face
//! `tokenizer.json` each tokenizer is saved as. Must never touch files, models or
//! training state: every function here is a pure function of its arguments.
//!
//! # The three kinds
//! * [`TokenizerKind::Byte`]: id `b` is byte `b`, vocabulary 256. Encoding is a copy
//!   (no Hugging Face call). Its `tokenizer.json` is still a valid byte-level BPE with
//!   no merges whose vocabulary maps the byte-level character of byte `b` to id `b`, so
//!   `AutoTokenizer` gives the same ids.
//! * [`TokenizerKind::Bpe`]: byte-level BPE trained with `tokenizers`' `BpeTrainer`
//!   ([`Tokenizer::train_bpe`]): GPT-2's pre-tokenizer regex, no prefix space, and all
//!   256 byte-level characters in the initial alphabet, so every byte is encodable.
//!   Ids `0..256` are the single bytes (in the byte-level characters' code point order,
//!   as in GPT-2), then the merges in the order they were learnt, and the last id is the
//!   special token [`END_OF_TEXT`], which counts in the requested vocabulary (so
//!   `--vocab 4096` gives 4,095 byte and merge tokens plus `<|endoftext|>`).
//! * [`TokenizerKind::Gpt2`]: GPT-2's 50,257 ids, built from `tiktoken-rs`'s embedded
//!   `r50k_base` ranks (no network): the merges are derived from the ranks (for each
//!   token, BPE over its bytes with only lower ranks must end in exactly two parts,
//!   which are its merge), and [`END_OF_TEXT`] is the special id 50,256. Built once
//!   per process and shared.
//!
//! # Determinism
//! Encoding is a pure function of the text. Large texts are cut into pieces at
//! positions chosen from the text alone (between an ASCII letter and a space that is
//! followed by an ASCII letter: GPT-2's pre-tokenizer always splits there, and none of
//! its patterns looks back or past such a space, so each piece pre-tokenizes exactly as
//! it would inside the whole text); the pieces go to `tokenizers`' batch encoder, which
//! may run them on several threads (its rayon pool, `TOKENIZERS_PARALLELISM`) but
//! returns them in input order, and each piece's encoding depends only on its text (the
//! BPE word cache memoises a pure function). So the ids are the same for every call
//! and every thread count. Special-token text (`<|endoftext|>` written in the input)
//! is encoded as ordinary text, as `tiktoken`'s `encode_ordinary` does: only a caller
//! can put the special id in a stream.
//!
//! Training is deterministic too: the input stream is re-cut at the same kind of
//! positions (so how the caller chunks the text does not matter), word counts are sums,
//! and `BpeTrainer` breaks count ties by the pair's ids, which come from the sorted
//! alphabet and the merge order; hash-map iteration orders and the trainer's rayon
//! parallelism only reorder sums and sets. [`Tokenizer::to_json`] is canonical (the
//! vocabulary sorted by id, merges by rank, added tokens by id), so training twice on
//! the same text gives byte-identical files.
//!
//! # Loading
//! [`Tokenizer::from_json`] never hands the input to `tokenizers`' deserialiser: it
//! reads the file as JSON, accepts only the shape this module writes (a byte-level BPE:
//! no normaliser, the ByteLevel pre-tokenizer without prefix space, no dropout, no
//! unknown token, every vocabulary entry made of byte-level characters, all 256 single
//! bytes present, ids contiguous `0..n` with the special tokens last, at most 65,536
//! ids), and rebuilds the tokenizer from the checked vocabulary and merges. Anything
//! else is a [`TokenizerError`], never a panic.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tokenizers::models::bpe::{BpeTrainerBuilder, Vocab, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, TokenizerBuilder};

/// GPT-2's end-of-text special token (the last id of `bpe` and `gpt2` tokenizers).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The largest vocabulary: token files store ids as `u16`.
pub const MAX_VOCAB: usize = 65_536;

/// The smallest trained vocabulary: the 256 bytes plus [`END_OF_TEXT`].
pub const MIN_BPE_VOCAB: usize = 257;

/// GPT-2's vocabulary size (50,256 byte and merge tokens plus [`END_OF_TEXT`]).
pub const GPT2_VOCAB: usize = 50_257;

/// Target size of the pieces a long text is cut into before encoding (a piece ends at
/// the first safe position at or after this many bytes).
const PIECE_BYTES: usize = 64 * 1024;

/// Pieces handed to the batch encoder at once (bounds the memory of its encodings).
const PIECES_PER_BATCH: usize = 32;

/// Merges accepted in a `tokenizer.json` (a bound on the work a file can ask for).
const MAX_MERGES: usize = 1 << 20;

/// Everything that can go wrong making or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `--tokenizer` named none of the three kinds.
    #[error("unknown tokenizer {name:?}: expected byte, bpe or gpt2")]
    UnknownKind {
        /// The name given.
        name: String,
    },
    /// A BPE vocabulary outside [`MIN_BPE_VOCAB`]`..=`[`MAX_VOCAB`].
    #[error("vocabulary {vocab} is out of range 257..=65536 (256 bytes + <|endoftext|> at least; ids are stored as u16)")]
    VocabOutOfRange {
        /// The size asked for.
        vocab: usize,
    },
    /// Training stopped before the requested vocabulary: not enough distinct pairs.
    #[error("corpus too small for vocabulary {requested}: training reached only {reached} tokens (use a smaller --vocab or more text)")]
    CorpusTooSmall {
        /// Vocabulary reached (bytes, merges and the special token).
        reached: usize,
        /// Vocabulary asked for.
        requested: usize,
    },
    /// A BPE or GPT-2 tokenizer was given text that is not UTF-8.
    #[error("text is not valid UTF-8 at byte offset {offset} (the bpe and gpt2 tokenizers need UTF-8 text; byte accepts any bytes)")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The tokenizer file is not JSON.
    #[error("tokenizer.json is not valid JSON: {reason}")]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// The JSON is not a tokenizer (no model, wrong types).
    #[error("tokenizer.json is not a tokenizer: {reason}")]
    NotATokenizer {
        /// What is missing or malformed.
        reason: String,
    },
    /// A model other than BPE.
    #[error("tokenizer.json has a {model} model; only byte-level BPE is supported")]
    UnsupportedModel {
        /// The model's `type`.
        model: String,
    },
    /// A BPE setting or pipeline step this module does not write.
    #[error("tokenizer.json is not a byte-level BPE of the supported shape: {reason}")]
    Unsupported {
        /// The offending field.
        reason: String,
    },
    /// More ids than a `u16` token file can hold.
    #[error("tokenizer.json has {size} ids, more than the supported 65536")]
    VocabTooLarge {
        /// Ids in the file (vocabulary and added tokens).
        size: usize,
    },
    /// Ids with a gap or a duplicate.
    #[error("tokenizer.json ids are not contiguous 0..{size}: {reason}")]
    IdsNotContiguous {
        /// Ids in the file.
        size: usize,
        /// The first gap or duplicate found.
        reason: String,
    },
    /// A structurally valid file whose contents are inconsistent (a merge of unknown
    /// tokens, a missing byte, a token that is not byte-level text).
    #[error("tokenizer.json is inconsistent: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The `tokenizers` library failed (training, building or encoding).
    #[error("tokenizers library error while {during}: {message}")]
    Library {
        /// What was being done.
        during: &'static str,
        /// Its message.
        message: String,
    },
    /// GPT-2's ranks could not be turned into a tokenizer.
    #[error("cannot build the GPT-2 tokenizer from tiktoken's r50k_base: {reason}")]
    Gpt2 {
        /// What failed.
        reason: String,
    },
}

/// Which tokenizer: the value of `--tokenizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerKind {
    /// One token per byte, vocabulary 256.
    Byte,
    /// A byte-level BPE trained on the corpus.
    Bpe,
    /// GPT-2's vocabulary.
    Gpt2,
}

impl TokenizerKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [TokenizerKind; 3] =
        [TokenizerKind::Byte, TokenizerKind::Bpe, TokenizerKind::Gpt2];

    /// `"byte"`, `"bpe"` or `"gpt2"`.
    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Byte => "byte",
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::Gpt2 => "gpt2",
        }
    }

    /// The kind [`TokenizerKind::name`] gives `name`.
    pub fn parse(name: &str) -> Result<TokenizerKind, TokenizerError> {
        TokenizerKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| TokenizerError::UnknownKind {
                name: name.to_string(),
            })
    }
}

impl std::fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TokenizerKind {
    type Err = TokenizerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenizerKind::parse(s)
    }
}

/// A tokenizer of any [`TokenizerKind`]. Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    kind: TokenizerKind,
    /// The Hugging Face tokenizer (unused by `encode` for `Byte`).
    hf: tokenizers::Tokenizer,
    /// The bytes of each id; empty for special tokens.
    pieces: Vec<Vec<u8>>,
    /// Special tokens' ids and text (after the model's ids).
    specials: Vec<(u32, String)>,
    /// Canonical `tokenizer.json`.
    json: Vec<u8>,
    fingerprint: u64,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.inner.kind)
            .field("vocab_size", &self.vocab_size())
            .field(
                "fingerprint",
                &format_args!("{:016x}", self.inner.fingerprint),
            )
            .finish()
    }
}

impl PartialEq for Tokenizer {
    /// Same canonical `tokenizer.json`.
    fn eq(&self, other: &Self) -> bool {
        self.inner.json == other.inner.json
    }
}
impl Eq for Tokenizer {}

impl Tokenizer {
    /// One token per byte: id `b` is byte `b`, vocabulary 256.
    pub fn byte() -> Tokenizer {
        static BYTE: OnceLock<Tokenizer> = OnceLock::new();
        BYTE.get_or_init(|| {
            let vocab: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
            // 256 distinct single characters and no merges: every check in `build`
            // passes for this fixed input, whatever the user does.
            build(TokenizerKind::Byte, vocab, Vec::new(), Vec::new())
                .expect("the byte tokenizer is a fixed, valid input")
        })
        .clone()
    }

    /// GPT-2's 50,257 ids, from `tiktoken-rs`'s embedded `r50k_base` ranks, built once
    /// per process (later calls share it).
    pub fn gpt2() -> Result<Tokenizer, TokenizerError> {
        static GPT2: OnceLock<Tokenizer> = OnceLock::new();
        if let Some(t) = GPT2.get() {
            return Ok(t.clone());
        }
        let built = build_gpt2()?;
        Ok(GPT2.get_or_init(|| built).clone())
    }

    /// Trains a byte-level BPE of `vocab` ids (the 256 bytes, `vocab - 257` merges and
    /// [`END_OF_TEXT`] last) on `texts`, the corpus as UTF-8 chunks in order. How the
    /// text is chunked does not matter. Errors if `vocab` is outside
    /// `257..=65536` or the corpus has too few distinct pairs to reach it.
    pub fn train_bpe<I, S>(texts: I, vocab: usize) -> Result<Tokenizer, TokenizerError>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if !(MIN_BPE_VOCAB..=MAX_VOCAB).contains(&vocab) {
            return Err(TokenizerError::VocabOutOfRange { vocab });
        }
        let model_vocab = vocab - 1; // the last id is <|endoftext|>
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(model_vocab)
            .min_frequency(0)
            .show_progress(false)
            .initial_alphabet(alphabet)
            .build();
        let mut hf = TokenizerBuilder::<
            BPE,
            NormalizerWrapper,
            ByteLevel,
            PostProcessorWrapper,
            ByteLevel,
        >::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(byte_level()))
        .with_post_processor(None)
        .with_decoder(Some(byte_level()))
        .build()
        .map_err(|e| library("setting up training", e))?;
        hf.train(&mut trainer, Rechunk::new(texts))
            .map_err(|e| library("training", e))?;
        let model = serde_json::to_value(hf.get_model())
            .map_err(|e| library("reading the trained model", e))?;
        let (vocab_list, merges) = read_bpe_model(&model)?;
        if vocab_list.len() < model_vocab {
            return Err(TokenizerError::CorpusTooSmall {
                reached: vocab_list.len() + 1,
                requested: vocab,
            });
        }
        build(
            TokenizerKind::Bpe,
            vocab_list,
            merges,
            vec![END_OF_TEXT.to_string()],
        )
    }

    /// Loads a `tokenizer.json` of the shape this module writes (see the module doc):
    /// any other input is an error, never a panic. A byte tokenizer's file gives back
    /// [`TokenizerKind::Byte`], GPT-2's gives [`TokenizerKind::Gpt2`].
    pub fn from_json(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| TokenizerError::NotJson {
            reason: e.to_string(),
        })?;
        let root = value
            .as_object()
            .ok_or_else(|| not_tokenizer("the top level is not an object"))?;
        let model = root
            .get("model")
            .ok_or_else(|| not_tokenizer("no \"model\" field"))?;
        let ty = model
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| not_tokenizer("the model has no \"type\""))?;
        if ty != "BPE" {
            return Err(TokenizerError::UnsupportedModel {
                model: ty.chars().take(64).collect(),
            });
        }
        check_pipeline(root)?;
        let added = read_added_tokens(root.get("added_tokens"))?;
        let (mut vocab, merges) = read_bpe_model(model)?;
        // Hub files (GPT-2's) list a special token in the model's vocabulary as well,
        // under the same id: it is only a special token here.
        while let Some(last) = vocab.last() {
            let id = (vocab.len() - 1) as u64;
            if added.iter().any(|(i, c)| *i == id && c == last) {
                vocab.pop();
            } else {
                break;
            }
        }
        for (k, (id, content)) in added.iter().enumerate() {
            let want = (vocab.len() + k) as u64;
            if *id != want {
                return Err(TokenizerError::IdsNotContiguous {
                    size: vocab.len() + added.len(),
                    reason: format!("special token {content:?} has id {id}, expected {want}"),
                });
            }
        }
        let specials: Vec<String> = added.into_iter().map(|(_, c)| c).collect();
        let total = vocab.len() + specials.len();
        if total > MAX_VOCAB {
            return Err(TokenizerError::VocabTooLarge { size: total });
        }
        let is_byte = specials.is_empty()
            && merges.is_empty()
            && vocab.len() == 256
            && vocab
                .iter()
                .enumerate()
                .all(|(b, s)| byte_char(b as u8).to_string() == *s);
        if is_byte {
            return Ok(Tokenizer::byte());
        }
        let t = build(TokenizerKind::Bpe, vocab, merges, specials)?;
        if t.vocab_size() == GPT2_VOCAB {
            let gpt2 = Tokenizer::gpt2()?;
            if gpt2.inner.json == t.inner.json {
                return Ok(gpt2);
            }
        }
        Ok(t)
    }

    /// The canonical `tokenizer.json`: byte-identical for identical tokenizers.
    pub fn to_json(&self) -> Vec<u8> {
        self.inner.json.clone()
    }

    /// The files a Hugging Face checkpoint directory needs for
    /// `AutoTokenizer.from_pretrained(dir)`: `tokenizer.json`, `tokenizer_config.json`
    /// (a `PreTrainedTokenizerFast`, no prefix space, no clean-up of spaces on decode so
    /// decoding is exact) and `special_tokens_map.json` (`<|endoftext|>` as bos, eos
    /// and unk for bpe and gpt2, as in GPT-2; none for byte).
    pub fn hf_files(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut specials = serde_json::Map::new();
        if let Some((_, eot)) = self.inner.specials.iter().find(|(_, s)| s == END_OF_TEXT) {
            for role in ["bos_token", "eos_token", "unk_token"] {
                specials.insert(role.to_string(), Value::String(eot.clone()));
            }
        }
        let mut config = serde_json::Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        config.insert("add_prefix_space".into(), false.into());
        config.insert("clean_up_tokenization_spaces".into(), false.into());
        config.extend(specials.clone());
        let pretty = |m: serde_json::Map<String, Value>| {
            let mut out = serde_json::to_vec_pretty(&Value::Object(m)).unwrap_or_default();
            out.push(b'\n');
            out
        };
        vec![
            ("tokenizer.json", self.to_json()),
            ("tokenizer_config.json", pretty(config)),
            ("special_tokens_map.json", pretty(specials)),
        ]
    }

    /// Which kind this is.
    pub fn kind(&self) -> TokenizerKind {
        self.inner.kind
    }

    /// Number of ids (all below this), special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.pieces.len()
    }

    /// The id of a special token such as [`END_OF_TEXT`], if this tokenizer has it.
    pub fn special_id(&self, content: &str) -> Option<u32> {
        self.inner
            .specials
            .iter()
            .find(|(_, s)| s == content)
            .map(|(id, _)| *id)
    }

    /// The ids of `text`. Byte: any bytes, one id each. Bpe and gpt2: the text must be
    /// UTF-8 (the error names the offset of the first bad byte); special-token text is
    /// encoded as ordinary text. A pure function of `text` (see the module doc).
    pub fn encode(&self, text: &[u8]) -> Result<Vec<u32>, TokenizerError> {
        if self.inner.kind == TokenizerKind::Byte {
            return Ok(text.iter().map(|&b| u32::from(b)).collect());
        }
        let text = utf8(text)?;
        let pieces = split_safe(text, PIECE_BYTES);
        let mut ids = Vec::with_capacity(text.len() / 3);
        for batch in pieces.chunks(PIECES_PER_BATCH) {
            let encodings = if batch.len() == 1 {
                vec![self.inner.hf.encode_fast(batch[0], false)]
            } else {
                match self.inner.hf.encode_batch_fast(batch.to_vec(), false) {
                    Ok(e) => e.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                }
            };
            for e in encodings {
                let e = e.map_err(|e| library("encoding", e))?;
                ids.extend_from_slice(e.get_ids());
            }
        }
        Ok(ids)
    }

    /// The text of `ids` as lossy UTF-8: each id's bytes ([`Tokenizer::token_bytes`]),
    /// a special token's text for a special id, U+FFFD for an id out of range and for
    /// invalid UTF-8.
    pub fn decode(&self, ids: &[u32]) -> String {
        const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.inner.pieces.get(id as usize) {
                Some(p) if !p.is_empty() => bytes.extend_from_slice(p),
                Some(_) => match self.inner.specials.iter().find(|(s, _)| *s == id) {
                    Some((_, text)) => bytes.extend_from_slice(text.as_bytes()),
                    None => bytes.extend_from_slice(REPLACEMENT),
                },
                None => bytes.extend_from_slice(REPLACEMENT),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The exact bytes token `id` stands for: empty for a special token or an id out
    /// of range. The encoded ids of a text have these bytes, concatenated, as the text
    /// (what bits per byte counts).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.inner
            .pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// FNV-1a 64 of [`Tokenizer::to_json`]: a cache key for token files.
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }
}

/// `text` as `&str`, or [`TokenizerError::NotUtf8`] naming the first bad byte.
pub fn utf8(text: &[u8]) -> Result<&str, TokenizerError> {
    std::str::from_utf8(text).map_err(|e| TokenizerError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// GPT-2's byte-to-unicode map: the printable Latin-1 bytes stand for themselves, the
/// other 68 bytes for U+0100.. in byte order.
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        // 256 + n with n < 68 is a valid scalar value.
        char::from_u32(256 + n).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// The byte a byte-level character stands for, if it is one.
fn char_byte(c: char) -> Option<u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE
        .get_or_init(|| (0..=255u8).map(|b| (byte_char(b), b)).collect())
        .get(&c)
        .copied()
}

/// The bytes of a byte-level string, if every character is a byte-level character.
fn bytes_of(s: &str) -> Option<Vec<u8>> {
    s.chars().map(char_byte).collect()
}

fn byte_level_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_char(b)).collect()
}

fn byte_level() -> ByteLevel {
    ByteLevel::new(false, true, true)
}

fn library(during: &'static str, e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Library {
        during,
        message: e.to_string(),
    }
}

fn not_tokenizer(reason: &str) -> TokenizerError {
    TokenizerError::NotATokenizer {
        reason: reason.to_string(),
    }
}

fn unsupported(reason: String) -> TokenizerError {
    TokenizerError::Unsupported { reason }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Cut points of `text` into pieces of at least `target` bytes (the last may be
/// shorter), each cut just before a space that follows an ASCII letter and precedes
/// one: GPT-2's pre-tokenizer splits there whatever the context, so the pieces encode
/// to the whole text's ids.
fn split_safe(text: &str, target: usize) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / target.max(1) + 1);
    let mut start = 0;
    while let Some(cut) = safe_cut(b, start + target.max(1)) {
        out.push(&text[start..cut]);
        start = cut;
    }
    out.push(&text[start..]);
    out
}

/// The first safe cut at or after `from` (see [`split_safe`]), if any.
fn safe_cut(b: &[u8], from: usize) -> Option<usize> {
    let from = from.max(1);
    (from..b.len().saturating_sub(1))
        .find(|&i| b[i] == b' ' && b[i - 1].is_ascii_alphabetic() && b[i + 1].is_ascii_alphabetic())
}

/// Re-cuts a stream of text chunks at safe positions (see [`split_safe`]), so training
/// sees the words of the concatenated text whatever the caller's chunking.
struct Rechunk<I> {
    inner: I,
    buf: String,
    /// Positions of `buf` before this are known not to be safe cuts (keeps text with
    /// no safe cut, such as unspaced CJK, linear rather than quadratic).
    scanned: usize,
    done: bool,
}

impl<I> Rechunk<I> {
    fn new(inner: I) -> Self {
        Rechunk {
            inner,
            buf: String::new(),
            scanned: 0,
            done: false,
        }
    }
}

impl<I, S> Iterator for Rechunk<I>
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            if self.buf.len() > PIECE_BYTES {
                let from = self.scanned.max(PIECE_BYTES);
                if let Some(cut) = safe_cut(self.buf.as_bytes(), from) {
                    let rest = self.buf.split_off(cut);
                    self.scanned = 0;
                    return Some(std::mem::replace(&mut self.buf, rest));
                }
                // `safe_cut` looked at every position but the last (it needs the next
                // byte): resume there.
                self.scanned = self.buf.len().saturating_sub(1).max(from);
            }
            if self.done {
                return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
            }
            match self.inner.next() {
                Some(s) => self.buf.push_str(s.as_ref()),
                None => self.done = true,
            }
        }
    }
}

/// Only `Value::Null` (or absence) is accepted for `key`.
fn check_null(root: &serde_json::Map<String, Value>, key: &str) -> Result<(), TokenizerError> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(unsupported(format!("\"{key}\" must be null"))),
    }
}

/// The pipeline around the model must be ours: no normaliser, truncation or padding,
/// the ByteLevel pre-tokenizer with GPT-2's regex and no prefix space, and a ByteLevel
/// (or no) decoder and post-processor.
fn check_pipeline(root: &serde_json::Map<String, Value>) -> Result<(), TokenizerError> {
    for key in ["normalizer", "truncation", "padding"] {
        check_null(root, key)?;
    }
    let pre = root
        .get("pre_tokenizer")
        .ok_or_else(|| unsupported("no ByteLevel pre_tokenizer".into()))?;
    check_byte_level(pre, "pre_tokenizer", false)?;
    for key in ["post_processor", "decoder"] {
        match root.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => check_byte_level(v, key, true)?,
        }
    }
    Ok(())
}

fn check_byte_level(v: &Value, key: &str, any_prefix: bool) -> Result<(), TokenizerError> {
    if v.get("type").and_then(Value::as_str) != Some("ByteLevel") {
        return Err(unsupported(format!("\"{key}\" must be ByteLevel")));
    }
    let flag = |name: &str, default: bool| -> Result<bool, TokenizerError> {
        match v.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(unsupported(format!("\"{key}.{name}\" must be a boolean"))),
        }
    };
    let prefix = flag("add_prefix_space", true)?;
    let regex = flag("use_regex", true)?;
    flag("trim_offsets", true)?;
    if !any_prefix && (prefix || !regex) {
        return Err(unsupported(format!(
            "\"{key}\" must have add_prefix_space false and use_regex true"
        )));
    }
    Ok(())
}

/// Special tokens as `(id, content)`, sorted by id.
fn read_added_tokens(v: Option<&Value>) -> Result<Vec<(u64, String)>, TokenizerError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(not_tokenizer("\"added_tokens\" is not an array")),
    };
    if list.len() > MAX_VOCAB {
        return Err(TokenizerError::VocabTooLarge { size: list.len() });
    }
    let mut tokens = Vec::with_capacity(list.len());
    for t in list {
        let id = t
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| not_tokenizer("an added token has no numeric \"id\""))?;
        let content = t
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| not_tokenizer("an added token has no \"content\""))?;
        if t.get("special").and_then(Value::as_bool) != Some(true) {
            return Err(unsupported(format!(
                "added token {id} is not special (only special added tokens are supported)"
            )));
        }
        if content.is_empty() {
            return Err(TokenizerError::Invalid {
                reason: format!("added token {id} is empty"),
            });
        }
        tokens.push((id, content.to_string()));
    }
    tokens.sort();
    Ok(tokens)
}

/// A BPE model's vocabulary (by id, checked contiguous) and merges (by rank).
/// A model's vocabulary (token strings by id) and merges (pairs by rank).
type VocabAndMerges = (Vec<String>, Vec<(String, String)>);

fn read_bpe_model(model: &Value) -> Result<VocabAndMerges, TokenizerError> {
    let m = model
        .as_object()
        .ok_or_else(|| not_tokenizer("the model is not an object"))?;
    if !matches!(m.get("dropout"), None | Some(Value::Null)) {
        return Err(unsupported("dropout must be null".into()));
    }
    if !matches!(m.get("unk_token"), None | Some(Value::Null)) {
        return Err(unsupported("unk_token must be null".into()));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(_) => return Err(unsupported(format!("{key} must be null"))),
        }
    }
    for key in ["byte_fallback", "ignore_merges", "fuse_unk"] {
        match m.get(key) {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) if key == "fuse_unk" => {}
            Some(_) => return Err(unsupported(format!("{key} must be false"))),
        }
    }
    let vocab = m
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| not_tokenizer("the model has no \"vocab\" object"))?;
    let n = vocab.len();
    if n > MAX_VOCAB {
        return Err(TokenizerError::VocabTooLarge { size: n });
    }
    let mut by_id: Vec<Option<String>> = vec![None; n];
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| not_tokenizer("a vocabulary id is not a non-negative integer"))?;
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| by_id.get_mut(i))
            .ok_or_else(|| TokenizerError::IdsNotContiguous {
                size: n,
                reason: format!("id {id} is out of range"),
            })?;
        if slot.is_some() {
            return Err(TokenizerError::IdsNotContiguous {
                size: n,
                reason: format!("id {id} is used twice"),
            });
        }
        *slot = Some(token.clone());
    }
    // n entries in n slots with no duplicate fill every slot.
    let by_id: Vec<String> = by_id.into_iter().flatten().collect();
    let merges = match m.get("merges") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            if a.len() > MAX_MERGES {
                return Err(unsupported(format!(
                    "{} merges, more than the supported {MAX_MERGES}",
                    a.len()
                )));
            }
            a.iter().map(read_merge).collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(not_tokenizer("\"merges\" is not an array")),
    };
    Ok((by_id, merges))
}

/// A merge as `["a", "b"]` or the older `"a b"`.
fn read_merge(v: &Value) -> Result<(String, String), TokenizerError> {
    let bad = || not_tokenizer("a merge is neither [\"a\", \"b\"] nor \"a b\"");
    match v {
        Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
            (Value::String(a), Value::String(b)) => Ok((a.clone(), b.clone())),
            _ => Err(bad()),
        },
        Value::String(s) => {
            let mut parts = s.splitn(2, ' ');
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) if !b.contains(' ') => Ok((a.to_string(), b.to_string())),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// The tokenizer of `vocab` (model ids `0..vocab.len()`, byte-level strings), `merges`
/// (by rank) and `specials` (ids after the model's), with every invariant checked.
fn build(
    kind: TokenizerKind,
    vocab: Vec<String>,
    merges: Vec<(String, String)>,
    specials: Vec<String>,
) -> Result<Tokenizer, TokenizerError> {
    let total = vocab.len() + specials.len();
    if total > MAX_VOCAB {
        return Err(TokenizerError::VocabTooLarge { size: total });
    }
    let mut pieces = Vec::with_capacity(total);
    for (id, token) in vocab.iter().enumerate() {
        let bytes =
            bytes_of(token)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| TokenizerError::Invalid {
                    reason: format!("token {id} is not a non-empty byte-level string"),
                })?;
        pieces.push(bytes);
    }
    let present: HashSet<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    if let Some(b) = (0..=255u8).find(|b| !present.contains(&[*b][..])) {
        return Err(TokenizerError::Invalid {
            reason: format!("byte {b:#04x} has no token, so some text could not be encoded"),
        });
    }
    let token_ids: HashMap<&str, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    for (rank, (a, b)) in merges.iter().enumerate() {
        let known = |s: &str| token_ids.contains_key(s);
        if !known(a) || !known(b) || !known(&format!("{a}{b}")) {
            return Err(TokenizerError::Invalid {
                reason: format!("merge {rank} joins tokens that are not in the vocabulary"),
            });
        }
    }
    let mut seen = HashSet::new();
    for s in &specials {
        if token_ids.contains_key(s.as_str()) || !seen.insert(s.as_str()) {
            return Err(TokenizerError::IdsNotContiguous {
                size: total,
                reason: format!("special token {s:?} has two ids"),
            });
        }
    }
    let model_vocab: Vocab = vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(model_vocab, merges)
        .build()
        .map_err(|e| TokenizerError::Invalid {
            reason: e.to_string(),
        })?;
    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_pre_tokenizer(Some(byte_level()));
    hf.with_post_processor(Some(byte_level()));
    hf.with_decoder(Some(byte_level()));
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    hf.add_special_tokens(added)
        .map_err(|e| library("adding special tokens", e))?;
    let mut special_ids = Vec::with_capacity(specials.len());
    for (k, s) in specials.iter().enumerate() {
        let want = (vocab.len() + k) as u32;
        if hf.token_to_id(s) != Some(want) {
            return Err(TokenizerError::IdsNotContiguous {
                size: total,
                reason: format!("special token {s:?} is not at id {want}"),
            });
        }
        special_ids.push((want, s.clone()));
        pieces.push(Vec::new());
    }
    // Our encode treats special-token text as ordinary text (not saved in the file:
    // Hugging Face users keep the library's usual behaviour).
    hf.set_encode_special_tokens(true);
    let json = hf
        .to_string(false)
        .map_err(|e| library("serialising", e))?
        .into_bytes();
    let fingerprint = fnv1a(&json);
    Ok(Tokenizer {
        inner: Arc::new(Inner {
            kind,
            hf,
            pieces,
            specials: special_ids,
            json,
            fingerprint,
        }),
    })
}

/// GPT-2 from tiktoken's ranks: id `r` is the token of rank `r`; its merge is the two
/// parts BPE over its bytes ends in when only ranks below `r` may merge.
fn build_gpt2() -> Result<Tokenizer, TokenizerError> {
    let gpt2_err = |reason: String| TokenizerError::Gpt2 { reason };
    let core = tiktoken_rs::r50k_base().map_err(|e| gpt2_err(e.to_string()))?;
    let n = GPT2_VOCAB - 1;
    let mut pieces: Vec<Vec<u8>> = Vec::with_capacity(n);
    for rank in 0..n as u32 {
        let bytes = core
            .decode_bytes(&[rank])
            .map_err(|e| gpt2_err(format!("rank {rank}: {e:?}")))?;
        pieces.push(bytes);
    }
    let ranks: HashMap<&[u8], u32> = pieces
        .iter()
        .enumerate()
        .map(|(r, p)| (p.as_slice(), r as u32))
        .collect();
    if ranks.len() != n {
        return Err(gpt2_err("two ranks share their bytes".into()));
    }
    let mut merges = Vec::with_capacity(n - 256);
    for (rank, piece) in pieces.iter().enumerate() {
        if piece.len() < 2 {
            continue;
        }
        let parts = bpe_below(piece, &ranks, rank as u32);
        if parts.len() != 2 {
            return Err(gpt2_err(format!(
                "rank {rank} does not split into exactly two lower-ranked parts"
            )));
        }
        merges.push((byte_level_string(parts[0]), byte_level_string(parts[1])));
    }
    let vocab: Vec<String> = pieces.iter().map(|p| byte_level_string(p)).collect();
    build(
        TokenizerKind::Gpt2,
        vocab,
        merges,
        vec![END_OF_TEXT.to_string()],
    )
}

/// BPE over `piece`'s bytes merging only adjacent parts whose concatenation has a rank
/// below `limit`, lowest rank first.
fn bpe_below<'a>(piece: &'a [u8], ranks: &HashMap<&[u8], u32>, limit: u32) -> Vec<&'a [u8]> {
    // Part boundaries as offsets into `piece`.
    let mut cuts: Vec<usize> = (0..=piece.len()).collect();
    loop {
        let best = (0..cuts.len().saturating_sub(2))
            .filter_map(|i| {
                ranks
                    .get(&piece[cuts[i]..cuts[i + 2]])
                    .filter(|&&r| r < limit)
                    .map(|&r| (r, i))
            })
            .min();
        match best {
            Some((_, i)) => {
                cuts.remove(i + 1);
            }
            None => break,
        }
    }
    cuts.windows(2).map(|w| &piece[w[0]..w[1]]).collect()
}
