//! The token cache: a corpus tokenized once into a file of fixed-width tokens, then
//! memory-mapped and read window by window, so a corpus larger than memory trains in a
//! bounded resident set and a second run starts without tokenizing again.
//!
//! Owns the corpus's text plan (which bytes are training and which validation text,
//! and where the text is cut into chunks), the token file format, building it,
//! validating it, and reading it through [`TokenSource`]. Must never know of a concrete
//! tokenizer (the encoder is a parameter: [`Encoder`]), of models, trainers or the CLI.
//!
//! # Text plan ([`TextPlan`])
//! The corpus is the file list [`Corpus::load`](super::Corpus::load) reads
//! ([`corpus_files`]: one file, or every non-hidden file below a directory in sorted
//! path order), seen as one byte stream of `total` bytes. The split is by *text*, not
//! by token: the training text is the bytes before the first cut point (see below) at
//! or after `floor(total * (1 - val_fraction))`, searched in a window of `chunk_bytes`;
//! the rest is validation text. Each part is tokenized on its own, so a tokenizer
//! trained on the training text ([`train_text_chunks`]) never saw the validation text.
//! The validation text is empty when `val_fraction` is 0, and in the corner case where
//! the first cut point at or after the target is the end of the corpus.
//!
//! # Chunks and cut points
//! Text is streamed in chunks: a chunk starting at `s` is the rest of its segment (a
//! file's training or validation part) if that is at most `chunk_bytes` long; else it
//! ends at the first cut point in `[s + chunk_bytes, s + 2 * chunk_bytes)`, tried in
//! this order (the segment's end, when it is in that window, comes right after the
//! first two), else at `s + 2 * chunk_bytes`:
//! 1. *word cut*: just before an ASCII space whose preceding character is not
//!    whitespace (`char::is_whitespace`). No pre-token of the GPT-2 pattern (nor of
//!    cl100k's) spans it and none of their look-aheads crosses it, so byte-level BPE
//!    gives the same tokens on the two sides as on the whole text.
//! 2. *newline cut*: just before a `\n` whose preceding character is not whitespace.
//!    The same holds for the GPT-2 pattern; it does not for patterns that glue trailing
//!    newlines to punctuation (cl100k's `[^\s\p{L}\p{N}]+[\r\n]*`), nor for a
//!    tokenizer that adds a prefix space to text not starting with one.
//! 3. *character cut*: before any byte that is not a UTF-8 continuation byte. Only this
//!    fallback (and the forced cut, reached only in text that is not UTF-8) can give
//!    different tokens than the whole text: it is used only where a window of
//!    `chunk_bytes` holds no space or newline after a non-space.
//!
//! A file boundary is always a chunk boundary (files are tokenized one by one), and so
//! is the split. A byte tokenizer gives the same tokens for any cut.
//!
//! With [`CacheOptions::require_text`], a file that is not UTF-8 or holds a NUL byte is
//! [`CacheError::NotText`], naming the file and the byte offset.
//!
//! # Building ([`build`])
//! One reader thread streams the chunks in order (hashing the data as it reads it),
//! `threads` workers encode them and check every token against the vocabulary, and the
//! calling thread writes the results strictly in chunk order through a buffered writer
//! (hashing the payload as it writes). The file is therefore the same for any thread
//! count. Chunks in flight are bounded (a few per thread), so building a corpus of any
//! size holds a few tens of MB. The file is written as a temporary file in the cache
//! directory, synced and renamed over the slot's name (atomic: a reader sees the old
//! file or the new one, and a mapping of the old one stays valid).
//!
//! # File format (version [`FORMAT_VERSION`], all integers little-endian)
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `CLLMTOKS` |
//! | 8 | 4 | format version |
//! | 12 | 4 | token width in bytes: 2 if the vocabulary has at most 65,536 ids, else 4 |
//! | 16 | 8 | vocabulary size |
//! | 24 | 8 | training tokens `n_train` |
//! | 32 | 8 | validation tokens `n_val` |
//! | 40 | 32 | config key: BLAKE3 of the tokenizer key, vocabulary, canonical corpus path and the options |
//! | 72 | 32 | data key: BLAKE3 of every file's relative path, length and content, in order |
//! | 104 | 32 | BLAKE3 of the payload |
//! | 136 | 24 | zero |
//! | 160 | 32 | BLAKE3 of bytes 0..160 (the header checksum) |
//! | 192 | width * (n_train + n_val) | the training tokens, then the validation tokens |
//!
//! The payload starts at [`HEADER_LEN`] (a multiple of 8). The file name is
//! `tokens-HEX.bin`, HEX the first 16 bytes of the config key: different tokenizers,
//! corpora or options get different files, and the same corpus with changed content
//! keeps its slot and is rebuilt in place.
//!
//! # Validation ([`TokenFile::open`], [`load_or_build`])
//! A file is used only if magic, version, header checksum, width, vocabulary, config
//! key, data key, file length (`HEADER_LEN + width * (n_train + n_val)`) and payload
//! checksum all match and every token is below the vocabulary size; otherwise the
//! [`Rejection`] says why ([`RejectKind`]: stale, truncated or corrupt) and
//! [`load_or_build`] rebuilds and reports it in [`CacheStatus`]. Validation reads the
//! file and the data with plain buffered `read`s (never through the mapping, whose
//! touched pages would count as resident memory), hashing as it goes; [`load_or_build`]
//! hashes the data and verifies the payload on two threads at once.
//!
//! # Reading ([`TokenFile`], [`TokenView`])
//! The validated file is opened once and mapped read-only (`MADV_RANDOM`: random
//! windows read no pages ahead). [`TokenFile::train`] and [`TokenFile::val`] are
//! [`TokenSource`]s that decode u16 or u32 tokens into the caller's buffer, in one of
//! two ways ([`WindowReads`], [`TokenFile::set_window_reads`]):
//!
//! - [`WindowReads::Positional`] (the default): each window is read with `pread` from
//!   the open file into a small stack buffer (4 KiB at a time) and decoded from there.
//!   The page cache serves it; nothing is mapped, so the process's resident set does
//!   not grow with the file. A failed `pread` falls back to the mapping (same bytes).
//! - [`WindowReads::Mapped`]: each window is decoded straight from the mapping. Pages
//!   a reader touched stay in the process's resident set, and a fault maps the whole
//!   page-cache folio around the address (measured: 0.5 to 0.65 MiB per random 2 KiB
//!   window on ext4, `MADV_RANDOM` or not), so without care a long run's resident set
//!   grows to the whole file. Each read is therefore counted as at least 2 MiB (the
//!   largest folio); once the count passes [`TokenFile::resident_limit`] (default
//!   [`DEFAULT_RESIDENT_LIMIT`]), the mapping's pages are dropped from the resident set
//!   (`MADV_DONTNEED`, under a write lock no reader holds; they stay in the page cache
//!   and fault back in).
//!
//! Positional reads are the default because they are the cheaper of the two for the
//! trainers' random windows, on the thread that draws them (the pre-fetch producer,
//! which shares the cores with the workers): measured on a 2 GB token file (1 GB of
//! text, byte tokens) with the ignored `bench_windows` test of `tests/data_cache.rs`,
//! random 1,025-token windows take 2.4 us each read positionally and 12.6 to 13.4 us
//! through the mapping (faults, folio mapping and the periodic drops), with a peak
//! resident set of 5.7 MB against 32 MB.
//!
//! The mapped file must not be changed in place while mapped: the cache only ever
//! replaces it by rename. A third party truncating it would fault the reader (SIGBUS).

use super::{check_fraction, io_error, list_files, DataError, TokenSource, Tokens};
use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

/// Version of the token file format written and accepted.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 192;
/// Default [`CacheOptions::chunk_bytes`]: chunks are 1 to 2 MiB.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Smallest accepted [`CacheOptions::chunk_bytes`] (a window must hold a whole
/// UTF-8 character).
pub const MIN_CHUNK_BYTES: usize = 8;
/// Default for [`TokenFile::set_resident_limit`]: 64 MiB (32 reads between drops).
pub const DEFAULT_RESIDENT_LIMIT: u64 = 64 << 20;
/// Largest vocabulary a 4-byte token can address.
pub const MAX_VOCAB: usize = 1 << 32;

const MAGIC: [u8; 8] = *b"CLLMTOKS";
const HEADER_SUM_AT: usize = 160;
const RESERVED: std::ops::Range<usize> = 136..160;
const READ_BLOCK: usize = 1 << 20;
const PAGE: u64 = 4096;
/// Resident bytes one read is counted as: the largest page-cache folio a fault maps
/// (a PMD, 2 MiB). Measured on this project's machines (ext4, Linux 6.18): a random
/// 2 KiB window of a mapped file added 0.5 to 0.65 MiB to the resident set, with or
/// without `MADV_RANDOM`.
const FOLIO: u64 = 2 << 20;

/// Options of a cache build; all of them are part of the config key.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheOptions {
    /// Fraction of the text that is validation text, in `[0, 1)`.
    pub val_fraction: f64,
    /// Reject files that are not UTF-8 or hold a NUL byte.
    pub require_text: bool,
    /// Target chunk size in bytes (chunks are `chunk_bytes..2 * chunk_bytes`).
    pub chunk_bytes: usize,
    /// Encoding threads (the output does not depend on it; not part of the key).
    pub threads: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            val_fraction: 0.1,
            require_text: false,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            threads: 2,
        }
    }
}

/// The encoder function the cache calls on each chunk.
pub type EncodeFn<'a> = &'a (dyn Fn(&[u8]) -> Result<Vec<u32>, String> + Sync);

/// A tokenizer as the cache sees it: an encoder, its vocabulary size and bytes that
/// identify it (e.g. its `tokenizer.json`), hashed into the config key.
#[derive(Clone, Copy)]
pub struct Encoder<'a> {
    /// Encodes one chunk of text.
    pub encode: EncodeFn<'a>,
    /// Every token must be below this.
    pub vocab_size: usize,
    /// Identifies the tokenizer: a different key means a different cache.
    pub key: &'a [u8],
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoder(vocab {}, key of {} bytes)",
            self.vocab_size,
            self.key.len()
        )
    }
}

/// Everything that can go wrong building, validating or reading a token cache. A
/// rejected cache file is [`CacheError::Rejected`]; [`load_or_build`] rebuilds it.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Listing the corpus failed, or the corpus or the options are invalid.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The cache file or directory could not be written.
    #[error("cannot write token cache {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A corpus file's length changed while it was read.
    #[error("{} changed while it was read (it was {expected} bytes)", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Its length when the corpus was listed.
        expected: u64,
    },
    /// A file that must be text is not.
    #[error("{} is not text: {what} at byte {offset}", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: u64,
        /// `"invalid UTF-8"` or `"NUL byte"`.
        what: &'static str,
    },
    /// The encoder failed on a chunk.
    #[error("tokenizer failed on {} (chunk at byte {offset}): {message}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// Byte offset of the chunk in the file.
        offset: u64,
        /// The encoder's message.
        message: String,
    },
    /// The encoder gave a token outside its vocabulary.
    #[error("tokenizer gave token {token} for {} (chunk at byte {offset}), outside vocabulary {vocab}", path.display())]
    TokenOutOfRange {
        /// The file.
        path: PathBuf,
        /// Byte offset of the chunk in the file.
        offset: u64,
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A vocabulary size of 0 or above [`MAX_VOCAB`].
    #[error("vocabulary size {vocab} is not in 1..={MAX_VOCAB}")]
    BadVocab {
        /// The size given.
        vocab: usize,
    },
    /// A chunk size below [`MIN_CHUNK_BYTES`].
    #[error("chunk size {bytes} is below the minimum {MIN_CHUNK_BYTES}")]
    BadChunkSize {
        /// The size given.
        bytes: usize,
    },
    /// Zero encoding threads.
    #[error("token cache needs at least 1 encoding thread")]
    BadThreads,
    /// More tokens than this machine can address.
    #[error("token cache {} would hold more tokens than can be addressed", path.display())]
    TooLarge {
        /// The cache file.
        path: PathBuf,
    },
    /// A cache file that must not be used; [`load_or_build`] rebuilds it.
    #[error("token cache {} rejected: {why}", path.display())]
    Rejected {
        /// The cache file.
        path: PathBuf,
        /// Why.
        why: Rejection,
    },
}

/// The three reasons a cache file is not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// Valid, but for another tokenizer, corpus content, options or format version.
    Stale,
    /// Shorter than its header says.
    Truncated,
    /// Damaged: bad magic or checksum, impossible fields, trailing bytes, bad tokens.
    Corrupt,
}

/// Why a cache file was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Shorter than a header.
    #[error("truncated: {have} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader {
        /// File length.
        have: u64,
    },
    /// Not a token file.
    #[error("corrupt: bad magic (not a cllm token file)")]
    BadMagic,
    /// Written by another format version.
    #[error("stale: format version {found}, this build reads {FORMAT_VERSION}")]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The header checksum does not match the header.
    #[error("corrupt: header checksum mismatch")]
    HeaderChecksum,
    /// Header fields that a valid writer never writes.
    #[error("corrupt: {0}")]
    BadHeader(&'static str),
    /// Built for another vocabulary size.
    #[error("stale: built for vocabulary {found}, expected {expected}")]
    Vocab {
        /// In the file.
        found: u64,
        /// Expected.
        expected: usize,
    },
    /// Built with another tokenizer, corpus path or options.
    #[error("stale: built with another tokenizer, corpus path or options")]
    ConfigKey,
    /// The corpus changed: its files, their names, lengths or content.
    #[error("stale: corpus changed (file list, names, lengths or content)")]
    DataKey,
    /// Shorter than the header says.
    #[error("truncated: {have} bytes, header says {want}")]
    Truncated {
        /// File length.
        have: u64,
        /// Length the header implies.
        want: u64,
    },
    /// Longer than the header says.
    #[error("corrupt: {have} bytes, header says {want} (trailing bytes)")]
    Trailing {
        /// File length.
        have: u64,
        /// Length the header implies.
        want: u64,
    },
    /// The payload does not match its checksum.
    #[error("corrupt: payload checksum mismatch")]
    PayloadChecksum,
    /// A token outside the vocabulary.
    #[error("corrupt: token {token} at index {index} is outside vocabulary {vocab}")]
    TokenRange {
        /// Token index in the payload.
        index: u64,
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: u64,
    },
    /// The cache file exists but could not be read.
    #[error("unreadable: {0}")]
    Unreadable(String),
}

impl Rejection {
    /// Stale, truncated or corrupt.
    pub fn kind(&self) -> RejectKind {
        match self {
            Rejection::Version { .. }
            | Rejection::Vocab { .. }
            | Rejection::ConfigKey
            | Rejection::DataKey => RejectKind::Stale,
            Rejection::ShortHeader { .. } | Rejection::Truncated { .. } => RejectKind::Truncated,
            Rejection::BadMagic
            | Rejection::HeaderChecksum
            | Rejection::BadHeader(_)
            | Rejection::Trailing { .. }
            | Rejection::PayloadChecksum
            | Rejection::TokenRange { .. }
            | Rejection::Unreadable(_) => RejectKind::Corrupt,
        }
    }
}

/// What [`load_or_build`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// A valid cache file was found and used.
    Hit,
    /// There was no cache file; one was built.
    Built,
    /// A cache file was rejected and rebuilt.
    Rebuilt(Rejection),
}

// ---------------------------------------------------------------------------------
// Corpus files and the text plan
// ---------------------------------------------------------------------------------

/// One file of a corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorpusFile {
    /// Where it is read from.
    pub path: PathBuf,
    /// Its path relative to the corpus directory (its file name for a one-file corpus);
    /// part of the data key.
    pub name: PathBuf,
    /// Its length when listed.
    pub len: u64,
}

/// The files [`Corpus::load`](super::Corpus::load) reads, in its order: `path` itself,
/// or every non-hidden file below the directory `path` in sorted path order (links to
/// files followed, links to directories skipped). Errors as `Corpus::load` does for a
/// missing path, a special file or a directory without files.
pub fn corpus_files(path: &Path) -> Result<Vec<CorpusFile>, DataError> {
    let (paths, is_dir) = list_files(path)?;
    paths
        .into_iter()
        .map(|p| {
            let len = fs::metadata(&p).map_err(|e| io_error(&p, e))?.len();
            let name = if is_dir {
                p.strip_prefix(path).unwrap_or(&p).to_path_buf()
            } else {
                p.file_name().map_or_else(|| p.clone(), PathBuf::from)
            };
            Ok(CorpusFile { path: p, name, len })
        })
        .collect()
}

/// A corpus seen as one byte stream, split into training and validation text.
#[derive(Clone, Debug)]
pub struct TextPlan {
    files: Arc<[CorpusFile]>,
    starts: Vec<u64>,
    total: u64,
    split: u64,
    chunk: usize,
    require_text: bool,
}

impl TextPlan {
    /// Lists the corpus and finds the split (reads one window of the file holding it).
    pub fn new(corpus: &Path, opts: &CacheOptions) -> Result<TextPlan, CacheError> {
        check_options(opts)?;
        let files = corpus_files(corpus)?;
        TextPlan::from_files(files, &corpus.display().to_string(), opts)
    }

    /// Like [`TextPlan::new`] for an already listed corpus; `what` names it in errors.
    pub fn from_files(
        files: Vec<CorpusFile>,
        what: &str,
        opts: &CacheOptions,
    ) -> Result<TextPlan, CacheError> {
        check_options(opts)?;
        let mut starts = Vec::with_capacity(files.len());
        let mut total = 0u64;
        for f in &files {
            starts.push(total);
            total = total.saturating_add(f.len);
        }
        if total == 0 {
            return Err(DataError::Empty {
                what: what.to_string(),
                n_files: files.len(),
            }
            .into());
        }
        // Truncation is the documented rounding; `min` guards the float edge.
        let target = ((total as f64 * (1.0 - opts.val_fraction)).floor() as u64).min(total);
        let mut plan = TextPlan {
            files: files.into(),
            starts,
            total,
            split: total,
            chunk: opts.chunk_bytes,
            require_text: opts.require_text,
        };
        plan.split = plan.find_split(target)?;
        Ok(plan)
    }

    /// The corpus files, in order.
    pub fn files(&self) -> &[CorpusFile] {
        &self.files
    }

    /// Bytes in the corpus.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes of training text (the validation text is the rest).
    pub fn train_bytes(&self) -> u64 {
        self.split
    }

    /// The training text's chunks, in order.
    pub fn train_chunks(&self) -> TextChunks {
        TextChunks(ChunkStream::new(self, 0, self.split, false))
    }

    /// The validation text's chunks, in order.
    pub fn val_chunks(&self) -> TextChunks {
        TextChunks(ChunkStream::new(self, self.split, self.total, false))
    }

    /// The first cut point at or after `target` (see the module doc).
    fn find_split(&self, target: u64) -> Result<u64, CacheError> {
        if target >= self.total {
            return Ok(self.total);
        }
        // The file holding byte `target` (empty files hold none).
        let k = self.starts.partition_point(|&s| s <= target) - 1;
        let (a, f) = (self.starts[k], &self.files[k]);
        let q = target - a;
        if q == 0 {
            return Ok(target);
        }
        let base = q.saturating_sub(4);
        let hi = q.saturating_add(self.chunk as u64).min(f.len);
        let mut buf = vec![0u8; usize::try_from(hi - base).unwrap_or(usize::MAX)];
        let mut file = File::open(&f.path).map_err(|e| read_error(&f.path, e))?;
        file.seek(SeekFrom::Start(base))
            .map_err(|e| read_error(&f.path, e))?;
        file.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                CacheError::FileChanged {
                    path: f.path.clone(),
                    expected: f.len,
                }
            } else {
                read_error(&f.path, e)
            }
        })?;
        let lo = (q - base) as usize;
        Ok(a + base + cut_at_or_after(&buf, lo, buf.len(), hi == f.len) as u64)
    }
}

/// The training text of `corpus` as chunks cut where byte-level BPE gives the same
/// tokens as on the whole text (see the module doc), for a tokenizer trainer that must
/// not hold the whole text. With `require_text` every chunk is UTF-8.
pub fn train_text_chunks(corpus: &Path, opts: &CacheOptions) -> Result<TextChunks, CacheError> {
    Ok(TextPlan::new(corpus, opts)?.train_chunks())
}

/// An iterator over text chunks; it stops after the first error.
pub struct TextChunks(ChunkStream);

impl Iterator for TextChunks {
    type Item = Result<Vec<u8>, CacheError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|c| c.map(|c| c.bytes))
    }
}

fn check_options(opts: &CacheOptions) -> Result<(), CacheError> {
    check_fraction(opts.val_fraction)?;
    if opts.chunk_bytes < MIN_CHUNK_BYTES {
        return Err(CacheError::BadChunkSize {
            bytes: opts.chunk_bytes,
        });
    }
    if opts.threads == 0 {
        return Err(CacheError::BadThreads);
    }
    Ok(())
}

fn read_error(path: &Path, source: io::Error) -> CacheError {
    CacheError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path, source: io::Error) -> CacheError {
    CacheError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the character that ends just before `p` is whitespace (`false` when the
/// bytes before `p` are not a complete UTF-8 character).
fn whitespace_before(buf: &[u8], p: usize) -> bool {
    let lo = p.saturating_sub(4);
    let Some(start) = (lo..p).rev().find(|&j| buf[j] & 0xC0 != 0x80) else {
        return false;
    };
    std::str::from_utf8(&buf[start..p])
        .ok()
        .and_then(|s| s.chars().next())
        .is_some_and(char::is_whitespace)
}

/// The first cut point in `[lo, hi)` (word cut, else newline cut), else `hi` if it is
/// the segment's end, else the first character cut, else `hi` (see the module doc).
/// `p = 0` is never a word or newline cut. Needs `hi <= buf.len()`.
fn cut_at_or_after(buf: &[u8], lo: usize, hi: usize, hi_is_end: bool) -> usize {
    let before = |b: u8| (lo..hi).find(|&p| p > 0 && buf[p] == b && !whitespace_before(buf, p));
    before(b' ')
        .or_else(|| before(b'\n'))
        .or_else(|| hi_is_end.then_some(hi))
        .or_else(|| (lo..hi).find(|&p| buf[p] & 0xC0 != 0x80))
        .unwrap_or(hi)
}

/// The first text defect in `bytes`: offset and what.
fn text_defect(bytes: &[u8]) -> Option<(usize, &'static str)> {
    let (valid, utf8) = match std::str::from_utf8(bytes) {
        Ok(_) => (bytes.len(), None),
        Err(e) => (e.valid_up_to(), Some((e.valid_up_to(), "invalid UTF-8"))),
    };
    match bytes[..valid].iter().position(|&b| b == 0) {
        Some(nul) => Some((nul, "NUL byte")),
        None => utf8,
    }
}

/// Hashes the data key: every file's relative path, length and content, in order.
struct DataHasher(blake3::Hasher);

impl DataHasher {
    fn new(n_files: usize) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"cllm token cache data v1\0");
        h.update(&(n_files as u64).to_le_bytes());
        DataHasher(h)
    }

    fn begin_file(&mut self, f: &CorpusFile) {
        let name = f.name.as_os_str().as_encoded_bytes();
        self.0.update(&(name.len() as u64).to_le_bytes());
        self.0.update(name);
        self.0.update(&f.len.to_le_bytes());
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// One chunk of text and where it came from.
struct Chunk {
    file: usize,
    offset: u64,
    bytes: Vec<u8>,
    val: bool,
}

/// The file a [`ChunkStream`] is reading.
struct Current {
    idx: usize,
    file: File,
    /// Local offset of `buf[0]`.
    pos: u64,
    /// Local end of the stream's range in this file.
    end: u64,
    buf: Vec<u8>,
}

/// Streams the chunks of the byte range `[from, to)` of a plan, in order; with
/// `hash`, also every file (empty ones too) into the data key.
struct ChunkStream {
    files: Arc<[CorpusFile]>,
    starts: Vec<u64>,
    split: u64,
    from: u64,
    to: u64,
    chunk: usize,
    require_text: bool,
    hasher: Option<DataHasher>,
    next_file: usize,
    cur: Option<Current>,
    done: bool,
}

impl ChunkStream {
    fn new(plan: &TextPlan, from: u64, to: u64, hash: bool) -> Self {
        ChunkStream {
            files: plan.files.clone(),
            starts: plan.starts.clone(),
            split: plan.split,
            from,
            to,
            chunk: plan.chunk,
            require_text: plan.require_text,
            hasher: hash.then(|| DataHasher::new(plan.files.len())),
            next_file: 0,
            cur: None,
            done: false,
        }
    }

    /// The data key, once the stream has ended without error (hashing streams only).
    fn data_key(&self) -> Option<[u8; 32]> {
        self.hasher
            .as_ref()
            .filter(|_| self.done)
            .map(|h| h.finish())
    }

    fn changed(&self, idx: usize) -> CacheError {
        CacheError::FileChanged {
            path: self.files[idx].path.clone(),
            expected: self.files[idx].len,
        }
    }

    /// Opens the next file that has bytes in the range (or any next file, hashing).
    fn open_next(&mut self) -> Result<bool, CacheError> {
        while self.next_file < self.files.len() {
            let i = self.next_file;
            self.next_file += 1;
            let f = &self.files[i];
            let a = self.starts[i];
            let (lo, hi) = (a.max(self.from), (a + f.len).min(self.to));
            if lo >= hi && self.hasher.is_none() {
                continue;
            }
            let mut file = File::open(&f.path).map_err(|e| read_error(&f.path, e))?;
            let pos = lo.saturating_sub(a).min(f.len);
            if pos > 0 {
                file.seek(SeekFrom::Start(pos))
                    .map_err(|e| read_error(&f.path, e))?;
            }
            if let Some(h) = &mut self.hasher {
                h.begin_file(f);
            }
            self.cur = Some(Current {
                idx: i,
                file,
                pos,
                end: hi.saturating_sub(a).max(pos),
                buf: Vec::new(),
            });
            return Ok(true);
        }
        Ok(false)
    }

    fn step(&mut self) -> Result<Option<Chunk>, CacheError> {
        loop {
            if self.cur.is_none() && !self.open_next()? {
                self.done = true;
                return Ok(None);
            }
            let Some(c) = self.cur.as_mut() else {
                continue;
            };
            let (idx, a) = (c.idx, self.starts[c.idx]);
            let len = self.files[idx].len;
            if c.pos == c.end {
                if c.end == len {
                    // The file must end where it ended when listed.
                    let mut extra = [0u8; 1];
                    let n = read_retrying(&mut c.file, &mut extra)
                        .map_err(|e| read_error(&self.files[idx].path, e))?;
                    if n != 0 {
                        return Err(self.changed(idx));
                    }
                }
                self.cur = None;
                continue;
            }
            let seg_end = match self.split.checked_sub(a) {
                Some(q) if c.pos < q => q.min(c.end),
                _ => c.end,
            };
            let remain = seg_end - c.pos;
            let t = self.chunk as u64;
            let want = remain.min(2 * t) as usize;
            if c.buf.len() < want {
                let old = c.buf.len();
                c.buf.resize(want, 0);
                let mut got = old;
                while got < want {
                    let n = read_retrying(&mut c.file, &mut c.buf[got..want])
                        .map_err(|e| read_error(&self.files[idx].path, e))?;
                    if n == 0 {
                        return Err(self.changed(idx));
                    }
                    got += n;
                }
                if let Some(h) = &mut self.hasher {
                    h.update(&c.buf[old..want]);
                }
            }
            let cut = if remain <= t {
                remain as usize
            } else {
                cut_at_or_after(&c.buf, self.chunk, want, want as u64 == remain)
            };
            let bytes = c.buf[..cut].to_vec();
            c.buf.drain(..cut);
            let offset = c.pos;
            c.pos += cut as u64;
            if self.require_text {
                if let Some((at, what)) = text_defect(&bytes) {
                    return Err(CacheError::NotText {
                        path: self.files[idx].path.clone(),
                        offset: offset + at as u64,
                        what,
                    });
                }
            }
            return Ok(Some(Chunk {
                file: idx,
                offset,
                val: a + offset >= self.split,
                bytes,
            }));
        }
    }
}

impl Iterator for ChunkStream {
    type Item = Result<Chunk, CacheError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.hasher = None;
                Some(Err(e))
            }
        }
    }
}

fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

// ---------------------------------------------------------------------------------
// Keys and the header
// ---------------------------------------------------------------------------------

/// Token width in bytes for a vocabulary: 2 up to 65,536 ids, else 4.
pub fn token_width(vocab_size: usize) -> u32 {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// What a cache file must have been built for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The vocabulary size.
    pub vocab_size: usize,
    /// The config key (tokenizer, canonical corpus path, options).
    pub config_key: [u8; 32],
    /// The data key (file names, lengths, content).
    pub data_key: [u8; 32],
}

impl Expected {
    /// Computes both keys for a corpus (hashes all of its data).
    pub fn for_corpus(
        corpus: &Path,
        enc: &Encoder<'_>,
        opts: &CacheOptions,
    ) -> Result<Expected, CacheError> {
        check_options(opts)?;
        check_vocab(enc.vocab_size)?;
        let files = corpus_files(corpus)?;
        Ok(Expected {
            vocab_size: enc.vocab_size,
            config_key: config_key(corpus, enc, opts)?,
            data_key: data_key(&files)?,
        })
    }
}

fn check_vocab(vocab: usize) -> Result<(), CacheError> {
    if vocab == 0 || vocab > MAX_VOCAB {
        Err(CacheError::BadVocab { vocab })
    } else {
        Ok(())
    }
}

/// The config key: the tokenizer key, the vocabulary, the canonical corpus path and
/// the options that change the tokens (not the thread count).
pub fn config_key(
    corpus: &Path,
    enc: &Encoder<'_>,
    opts: &CacheOptions,
) -> Result<[u8; 32], CacheError> {
    let canon = fs::canonicalize(corpus).map_err(|e| CacheError::Data(io_error(corpus, e)))?;
    let path = canon.as_os_str().as_encoded_bytes();
    let mut h = blake3::Hasher::new();
    h.update(b"cllm token cache config\0");
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(&(enc.key.len() as u64).to_le_bytes());
    h.update(enc.key);
    h.update(&(enc.vocab_size as u64).to_le_bytes());
    h.update(&(path.len() as u64).to_le_bytes());
    h.update(path);
    h.update(&opts.val_fraction.to_bits().to_le_bytes());
    h.update(&(opts.chunk_bytes as u64).to_le_bytes());
    h.update(&[u8::from(opts.require_text)]);
    Ok(*h.finalize().as_bytes())
}

/// The data key of listed files: reads every file once with buffered reads.
pub fn data_key(files: &[CorpusFile]) -> Result<[u8; 32], CacheError> {
    let mut h = DataHasher::new(files.len());
    let mut buf = vec![0u8; READ_BLOCK];
    for f in files {
        h.begin_file(f);
        let mut file = File::open(&f.path).map_err(|e| read_error(&f.path, e))?;
        let mut seen = 0u64;
        loop {
            let n = read_retrying(&mut file, &mut buf).map_err(|e| read_error(&f.path, e))?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            if seen > f.len {
                break;
            }
            h.update(&buf[..n]);
        }
        if seen != f.len {
            return Err(CacheError::FileChanged {
                path: f.path.clone(),
                expected: f.len,
            });
        }
    }
    Ok(h.finish())
}

/// The cache file name for a config key.
pub fn cache_file_name(config_key: &[u8; 32]) -> String {
    let mut s = String::from("tokens-");
    for b in &config_key[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(".bin");
    s
}

/// The BLAKE3 checksum of a payload, as stored in the header.
pub fn payload_checksum(payload: &[u8]) -> [u8; 32] {
    *blake3::hash(payload).as_bytes()
}

/// A token file's header (see the module doc for the layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFileHeader {
    /// Bytes per token: 2 or 4.
    pub width: u32,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Training tokens.
    pub n_train: u64,
    /// Validation tokens.
    pub n_val: u64,
    /// The config key.
    pub config_key: [u8; 32],
    /// The data key.
    pub data_key: [u8; 32],
    /// BLAKE3 of the payload.
    pub payload_checksum: [u8; 32],
}

impl TokenFileHeader {
    /// The header's bytes, with the current version and the header checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.width.to_le_bytes());
        b[16..24].copy_from_slice(&self.vocab_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.n_train.to_le_bytes());
        b[32..40].copy_from_slice(&self.n_val.to_le_bytes());
        b[40..72].copy_from_slice(&self.config_key);
        b[72..104].copy_from_slice(&self.data_key);
        b[104..136].copy_from_slice(&self.payload_checksum);
        let sum = blake3::hash(&b[..HEADER_SUM_AT]);
        b[HEADER_SUM_AT..].copy_from_slice(sum.as_bytes());
        b
    }

    /// Parses and checks a header: magic, version, checksum, zero reserved bytes, a
    /// width of 2 or 4 that fits the vocabulary, and a payload length that fits in a
    /// `u64`. `bytes` may be longer than the header.
    pub fn decode(bytes: &[u8]) -> Result<TokenFileHeader, Rejection> {
        let Some(b) = bytes.get(..HEADER_LEN) else {
            return Err(Rejection::ShortHeader {
                have: bytes.len() as u64,
            });
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let key_at = |i: usize| {
            let mut a = [0u8; 32];
            a.copy_from_slice(&b[i..i + 32]);
            a
        };
        if b[0..8] != MAGIC {
            return Err(Rejection::BadMagic);
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(Rejection::Version { found: version });
        }
        if blake3::hash(&b[..HEADER_SUM_AT]).as_bytes()[..] != b[HEADER_SUM_AT..] {
            return Err(Rejection::HeaderChecksum);
        }
        if b[RESERVED].iter().any(|&x| x != 0) {
            return Err(Rejection::BadHeader("reserved header bytes are not zero"));
        }
        let h = TokenFileHeader {
            width: u32_at(12),
            vocab_size: u64_at(16),
            n_train: u64_at(24),
            n_val: u64_at(32),
            config_key: key_at(40),
            data_key: key_at(72),
            payload_checksum: key_at(104),
        };
        let vocab = usize::try_from(h.vocab_size)
            .ok()
            .filter(|&v| v > 0 && v <= MAX_VOCAB);
        match vocab {
            None => return Err(Rejection::BadHeader("vocabulary size out of range")),
            Some(v) if token_width(v) != h.width => {
                return Err(Rejection::BadHeader(
                    "token width does not fit the vocabulary",
                ))
            }
            Some(_) => {}
        }
        if h.file_len().is_none() {
            return Err(Rejection::BadHeader("token counts overflow"));
        }
        Ok(h)
    }

    /// `HEADER_LEN + width * (n_train + n_val)`, if it fits in a `u64`.
    pub fn file_len(&self) -> Option<u64> {
        self.n_train
            .checked_add(self.n_val)?
            .checked_mul(u64::from(self.width))?
            .checked_add(HEADER_LEN as u64)
    }
}

// ---------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------

/// A chunk's tokens as payload bytes.
struct Encoded {
    val: bool,
    n_tokens: u64,
    text_bytes: u64,
    bytes: Vec<u8>,
}

fn encode_chunk(c: Chunk, enc: &Encoder<'_>, files: &[CorpusFile]) -> Result<Encoded, CacheError> {
    let path = || files[c.file].path.clone();
    let tokens = (enc.encode)(&c.bytes).map_err(|message| CacheError::Encode {
        path: path(),
        offset: c.offset,
        message,
    })?;
    if let Some(&token) = tokens.iter().find(|&&t| t as usize >= enc.vocab_size) {
        return Err(CacheError::TokenOutOfRange {
            path: path(),
            offset: c.offset,
            token,
            vocab: enc.vocab_size,
        });
    }
    let bytes = if token_width(enc.vocab_size) == 2 {
        // In range, so every token fits in 16 bits.
        tokens
            .iter()
            .flat_map(|&t| (t as u16).to_le_bytes())
            .collect()
    } else {
        tokens.iter().flat_map(|&t| t.to_le_bytes()).collect()
    };
    Ok(Encoded {
        val: c.val,
        n_tokens: tokens.len() as u64,
        text_bytes: c.bytes.len() as u64,
        bytes,
    })
}

/// Removes a temporary file on drop unless disarmed.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Tokenizes `corpus` into the cache file of its slot in `cache_dir` (created if
/// missing), replacing any file there, and maps it. `progress(done, total)` is called
/// with text bytes after each chunk is written.
pub fn build(
    corpus: &Path,
    cache_dir: &Path,
    enc: &Encoder<'_>,
    opts: &CacheOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TokenFile, CacheError> {
    check_options(opts)?;
    check_vocab(enc.vocab_size)?;
    let files = corpus_files(corpus)?;
    let key = config_key(corpus, enc, opts)?;
    build_files(corpus, files, key, cache_dir, enc, opts, progress)
}

fn build_files(
    corpus: &Path,
    files: Vec<CorpusFile>,
    config_key: [u8; 32],
    cache_dir: &Path,
    enc: &Encoder<'_>,
    opts: &CacheOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TokenFile, CacheError> {
    let plan = TextPlan::from_files(files, &corpus.display().to_string(), opts)?;
    fs::create_dir_all(cache_dir).map_err(|e| write_error(cache_dir, e))?;
    let final_path = cache_dir.join(cache_file_name(&config_key));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = TempFile {
        path: cache_dir.join(format!(
            ".{}.tmp-{}-{}",
            cache_file_name(&config_key),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )),
        armed: true,
    };
    let file = File::create(&tmp.path).map_err(|e| write_error(&tmp.path, e))?;
    let mut out = BufWriter::with_capacity(READ_BLOCK, file);
    out.write_all(&[0u8; HEADER_LEN])
        .map_err(|e| write_error(&tmp.path, e))?;

    let total = plan.total;
    progress(0, total);
    let stream = ChunkStream::new(&plan, 0, total, true);
    let mut payload_hash = blake3::Hasher::new();
    let (mut n_train, mut n_val, mut done) = (0u64, 0u64, 0u64);
    let data_key = encode_in_order(stream, enc, &plan.files, opts.threads, |e| {
        out.write_all(&e.bytes)
            .map_err(|err| write_error(&tmp.path, err))?;
        payload_hash.update(&e.bytes);
        if e.val {
            n_val += e.n_tokens;
        } else {
            n_train += e.n_tokens;
        }
        done += e.text_bytes;
        progress(done, total);
        Ok(())
    })?;

    let header = TokenFileHeader {
        width: token_width(enc.vocab_size),
        vocab_size: enc.vocab_size as u64,
        n_train,
        n_val,
        config_key,
        data_key,
        payload_checksum: *payload_hash.finalize().as_bytes(),
    };
    let mut file = out
        .into_inner()
        .map_err(|e| write_error(&tmp.path, e.into_error()))?;
    let finish = |file: &mut File| -> io::Result<()> {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header.encode())?;
        file.sync_all()
    };
    finish(&mut file).map_err(|e| write_error(&tmp.path, e))?;
    drop(file);
    fs::rename(&tmp.path, &final_path).map_err(|e| write_error(&final_path, e))?;
    let mut tmp = tmp;
    tmp.armed = false;
    let file = File::open(&final_path).map_err(|e| read_error(&final_path, e))?;
    TokenFile::map(file, final_path, header)
}

/// Encodes `stream` on `threads` workers and gives each result to `sink` in stream
/// order; returns the stream's data key. The first error in stream order (reading,
/// encoding or the sink's) stops everything and is returned.
fn encode_in_order(
    stream: ChunkStream,
    enc: &Encoder<'_>,
    files: &[CorpusFile],
    threads: usize,
    mut sink: impl FnMut(Encoded) -> Result<(), CacheError>,
) -> Result<[u8; 32], CacheError> {
    type Job = (u64, Result<Chunk, CacheError>);
    type Done = (u64, Result<Encoded, CacheError>);
    std::thread::scope(|s| {
        let (job_tx, job_rx) = sync_channel::<Job>(1);
        let (done_tx, done_rx) = sync_channel::<Done>(threads);
        let reader = s.spawn(move || {
            let mut stream = stream;
            for (seq, c) in (0u64..).zip(stream.by_ref()) {
                if job_tx.send((seq, c)).is_err() {
                    return None;
                }
            }
            stream.data_key()
        });
        // The receiver is dropped when the last worker exits, which unblocks the reader.
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let (job_rx, done_tx) = (Arc::clone(&job_rx), done_tx.clone());
            s.spawn(move || loop {
                let job = job_rx.lock().recv();
                let Ok((seq, chunk)) = job else { break };
                let r = chunk.and_then(|c| encode_chunk(c, enc, files));
                if done_tx.send((seq, r)).is_err() {
                    break;
                }
            });
        }
        drop((job_rx, done_tx));
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut failed = None;
        'recv: for (seq, r) in done_rx.iter() {
            pending.insert(seq, r);
            while let Some(r) = pending.remove(&next) {
                next += 1;
                if let Err(e) = r.and_then(&mut sink) {
                    failed = Some(e);
                    break 'recv;
                }
            }
        }
        drop(done_rx);
        drop(pending);
        let key = reader.join();
        if let Some(e) = failed {
            return Err(e);
        }
        match key {
            Ok(Some(key)) => Ok(key),
            // Unreachable: the reader ends early only after sending an error, which
            // the loop above returned, or when the workers stopped, which they do only
            // after the loop stopped on an error.
            Ok(None) => Err(CacheError::Read {
                path: PathBuf::new(),
                source: io::Error::other("token cache reader stopped early"),
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

// ---------------------------------------------------------------------------------
// Validating and reading
// ---------------------------------------------------------------------------------

/// Reads and checks a cache file's header and payload: everything but the data key.
fn verify(
    path: &Path,
    vocab: usize,
    config_key: &[u8; 32],
) -> Result<(File, TokenFileHeader), CacheError> {
    let reject = |why| CacheError::Rejected {
        path: path.to_path_buf(),
        why,
    };
    let unreadable = |e: io::Error| reject(Rejection::Unreadable(e.to_string()));
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            read_error(path, e)
        } else {
            unreadable(e)
        }
    })?;
    let have = file.metadata().map_err(unreadable)?.len();
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut file, &mut head).map_err(unreadable)?;
    let header = TokenFileHeader::decode(&head[..got]).map_err(reject)?;
    if header.vocab_size != vocab as u64 {
        return Err(reject(Rejection::Vocab {
            found: header.vocab_size,
            expected: vocab,
        }));
    }
    if &header.config_key != config_key {
        return Err(reject(Rejection::ConfigKey));
    }
    let want = header.file_len().unwrap_or(u64::MAX);
    if have < want {
        return Err(reject(Rejection::Truncated { have, want }));
    }
    if have > want {
        return Err(reject(Rejection::Trailing { have, want }));
    }
    verify_payload(&mut file, &header).map_err(|e| match e {
        PayloadError::Io(e) => unreadable(e),
        PayloadError::Short(got) => reject(Rejection::Truncated {
            have: HEADER_LEN as u64 + got,
            want,
        }),
        PayloadError::Bad(why) => reject(why),
    })?;
    Ok((file, header))
}

enum PayloadError {
    Io(io::Error),
    Short(u64),
    Bad(Rejection),
}

/// Hashes the payload with buffered reads and checks every token against the
/// vocabulary (the file is positioned just after the header).
fn verify_payload(file: &mut File, h: &TokenFileHeader) -> Result<(), PayloadError> {
    let width = h.width as usize;
    let len = h.file_len().unwrap_or(0) - HEADER_LEN as u64;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut seen = 0u64;
    let mut first_bad = None;
    while seen < len {
        let want = (len - seen).min(READ_BLOCK as u64) as usize;
        let got = read_full(file, &mut buf[..want]).map_err(PayloadError::Io)?;
        if got < want {
            return Err(PayloadError::Short(seen + got as u64));
        }
        let block = &buf[..want];
        hasher.update(block);
        if first_bad.is_none() {
            // READ_BLOCK is a multiple of the width, so blocks hold whole tokens.
            let max = if width == 2 {
                block
                    .chunks_exact(2)
                    .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
                    .max()
            } else {
                block
                    .chunks_exact(4)
                    .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .max()
            };
            if max.is_some_and(|m| m >= h.vocab_size) {
                let at = block
                    .chunks_exact(width)
                    .map(|c| c.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b)))
                    .position(|t| t >= h.vocab_size)
                    .unwrap_or(0);
                let token = block[at * width..(at + 1) * width]
                    .iter()
                    .rev()
                    .fold(0u32, |a, &b| a << 8 | u32::from(b));
                first_bad = Some(Rejection::TokenRange {
                    index: seen / width as u64 + at as u64,
                    token,
                    vocab: h.vocab_size,
                });
            }
        }
        seen += want as u64;
    }
    if hasher.finalize().as_bytes() != &h.payload_checksum {
        return Err(PayloadError::Bad(Rejection::PayloadChecksum));
    }
    match first_bad {
        Some(why) => Err(PayloadError::Bad(why)),
        None => Ok(()),
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = read_retrying(file, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Looks up the slot of `corpus` in `cache_dir`: uses the file there if it validates
/// (the data is hashed and the payload verified on two threads at once), else builds
/// it (see [`build`]). The status says which happened and why a file was rejected.
pub fn load_or_build(
    corpus: &Path,
    cache_dir: &Path,
    enc: &Encoder<'_>,
    opts: &CacheOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(TokenFile, CacheStatus), CacheError> {
    check_options(opts)?;
    check_vocab(enc.vocab_size)?;
    let files = corpus_files(corpus)?;
    let key = config_key(corpus, enc, opts)?;
    let path = cache_dir.join(cache_file_name(&key));
    let status = if path.exists() {
        let (data, verified) = std::thread::scope(|s| {
            let data = s.spawn(|| data_key(&files));
            let verified = verify(&path, enc.vocab_size, &key);
            (data.join(), verified)
        });
        let data = match data {
            Ok(d) => d?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let why = match verified {
            Ok((_, h)) if h.data_key != data => Rejection::DataKey,
            Ok((file, h)) => return Ok((TokenFile::map(file, path, h)?, CacheStatus::Hit)),
            Err(CacheError::Rejected { why, .. }) => why,
            Err(e) => return Err(e),
        };
        CacheStatus::Rebuilt(why)
    } else {
        CacheStatus::Built
    };
    let tf = build_files(corpus, files, key, cache_dir, enc, opts, progress)?;
    Ok((tf, status))
}

/// How a [`TokenFile`]'s views read their windows (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WindowReads {
    /// `pread` from the open file into a stack buffer (the default).
    #[default]
    Positional,
    /// Straight from the mapping, with the resident limit's page drops.
    Mapped,
}

/// The open file, its mapping and the resident-set bookkeeping, shared by a file's
/// views.
struct Mapping {
    map: Mmap,
    /// The mapped file, for positional reads.
    file: File,
    /// True: [`WindowReads::Mapped`].
    mapped_reads: AtomicBool,
    /// Readers hold it shared; dropping pages holds it exclusively.
    guard: RwLock<()>,
    /// Bytes counted since pages were last dropped.
    touched: AtomicU64,
    /// Drop pages once `touched` passes this (0: never).
    limit: AtomicU64,
}

impl Mapping {
    fn note_read(&self, bytes: u64) {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            return;
        }
        // A fault maps the whole page-cache folio around the address, not one page:
        // count every read as a folio's worth, at least.
        let pages = (bytes.div_ceil(PAGE) + 1) * PAGE;
        let mapped = pages.max(FOLIO);
        if self.touched.fetch_add(mapped, Ordering::Relaxed) + mapped < limit {
            return;
        }
        // Readers never block on this: if one is reading, the next read retries.
        if let Some(_excl) = self.guard.try_write() {
            self.touched.store(0, Ordering::Relaxed);
            // The mapping is read-only and never written: dropped pages fault back in
            // with the same bytes from the file.
            // SAFETY: the exclusive guard means no reader borrows the mapping (every
            // read of `map` holds the shared guard), as `DontNeed` requires.
            let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }
}

/// A validated, memory-mapped token file.
#[derive(Clone)]
pub struct TokenFile {
    mapping: Arc<Mapping>,
    header: TokenFileHeader,
    path: PathBuf,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenFile({}, {} train + {} val tokens of {} bytes)",
            self.path.display(),
            self.header.n_train,
            self.header.n_val,
            self.header.width
        )
    }
}

impl TokenFile {
    /// Opens `path` if it validates against `expected` (see the module doc);
    /// otherwise [`CacheError::Rejected`] says why.
    pub fn open(path: &Path, expected: &Expected) -> Result<TokenFile, CacheError> {
        check_vocab(expected.vocab_size)?;
        let (file, header) = verify(path, expected.vocab_size, &expected.config_key)?;
        if header.data_key != expected.data_key {
            return Err(CacheError::Rejected {
                path: path.to_path_buf(),
                why: Rejection::DataKey,
            });
        }
        TokenFile::map(file, path.to_path_buf(), header)
    }

    /// Maps a file whose header is `header` (checked by the caller).
    fn map(file: File, path: PathBuf, header: TokenFileHeader) -> Result<TokenFile, CacheError> {
        let want = header.file_len().unwrap_or(u64::MAX);
        let too_large = || CacheError::TooLarge { path: path.clone() };
        usize::try_from(want).map_err(|_| too_large())?;
        usize::try_from(header.n_train.saturating_add(header.n_val)).map_err(|_| too_large())?;
        // The module doc states that a third party must not modify it while mapped.
        // SAFETY: the cache never changes a cache file in place (only replaces it by
        // rename, which leaves this mapping's inode intact); the mapping is read-only.
        let map = unsafe { MmapOptions::new().map(&file) }.map_err(|e| read_error(&path, e))?;
        if map.len() as u64 != want {
            return Err(CacheError::Rejected {
                path,
                why: Rejection::Truncated {
                    have: map.len() as u64,
                    want,
                },
            });
        }
        // Advice is only a hint: a kernel that refuses it reads ahead as usual.
        let _ = map.advise(Advice::Random);
        Ok(TokenFile {
            mapping: Arc::new(Mapping {
                map,
                file,
                mapped_reads: AtomicBool::new(false),
                guard: RwLock::new(()),
                touched: AtomicU64::new(0),
                limit: AtomicU64::new(DEFAULT_RESIDENT_LIMIT),
            }),
            header,
            path,
        })
    }

    /// The header.
    pub fn header(&self) -> &TokenFileHeader {
        &self.header
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The training tokens.
    pub fn train(&self) -> Tokens {
        Tokens::new(Arc::new(self.train_view()))
    }

    /// The validation tokens.
    pub fn val(&self) -> Tokens {
        Tokens::new(Arc::new(self.val_view()))
    }

    /// The training tokens as a concrete view.
    pub fn train_view(&self) -> TokenView {
        self.view(0, self.header.n_train)
    }

    /// The validation tokens as a concrete view.
    pub fn val_view(&self) -> TokenView {
        self.view(self.header.n_train, self.header.n_val)
    }

    fn view(&self, first: u64, n: u64) -> TokenView {
        // `map` checked that the whole payload is addressable.
        TokenView {
            mapping: Arc::clone(&self.mapping),
            byte_offset: HEADER_LEN + first as usize * self.header.width as usize,
            len: n as usize,
            width: self.header.width as usize,
        }
    }

    /// Bytes after which the mapping's pages are dropped from the resident set (0:
    /// never); each mapped read ([`WindowReads::Mapped`]) counts as at least 2 MiB.
    /// Shared by every view of this file.
    pub fn set_resident_limit(&self, bytes: u64) {
        self.mapping.limit.store(bytes, Ordering::Relaxed);
    }

    /// The current resident limit.
    pub fn resident_limit(&self) -> u64 {
        self.mapping.limit.load(Ordering::Relaxed)
    }

    /// How every view of this file reads its windows from now on (the tokens read are
    /// the same either way).
    pub fn set_window_reads(&self, reads: WindowReads) {
        // Relaxed: a mode flag; each read sees one mode or the other, both correct.
        self.mapping
            .mapped_reads
            .store(reads == WindowReads::Mapped, Ordering::Relaxed);
    }

    /// How the views read their windows.
    pub fn window_reads(&self) -> WindowReads {
        if self.mapping.mapped_reads.load(Ordering::Relaxed) {
            WindowReads::Mapped
        } else {
            WindowReads::Positional
        }
    }
}

/// A window of a mapped token file: the training or validation tokens.
#[derive(Clone)]
pub struct TokenView {
    mapping: Arc<Mapping>,
    byte_offset: usize,
    len: usize,
    width: usize,
}

impl std::fmt::Debug for TokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenView({} tokens of {} bytes)", self.len, self.width)
    }
}

impl TokenSource for TokenView {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, start: usize, out: &mut [u32]) {
        let end = start.checked_add(out.len());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "token window {start}+{} past the end of {} tokens",
            out.len(),
            self.len
        );
        let from = self.byte_offset + start * self.width;
        let n = out.len() * self.width;
        if !self.mapping.mapped_reads.load(Ordering::Relaxed) && self.read_positional(from, out) {
            return;
        }
        {
            let _shared = self.mapping.guard.read();
            decode(self.width, &self.mapping.map[from..from + n], out);
        }
        self.mapping.note_read(n as u64);
    }
}

impl TokenView {
    /// Reads `out.len()` tokens at byte `from` of the file with `pread`, 4 KiB at a
    /// time; false (with `out` partly written) if a read failed.
    #[cfg(unix)]
    fn read_positional(&self, from: usize, out: &mut [u32]) -> bool {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 4096];
        let mut at = from as u64;
        for chunk in out.chunks_mut(buf.len() / self.width) {
            let bytes = &mut buf[..chunk.len() * self.width];
            if self.mapping.file.read_exact_at(bytes, at).is_err() {
                return false;
            }
            at += bytes.len() as u64;
            decode(self.width, bytes, chunk);
        }
        true
    }

    /// Positional reads need `pread`: elsewhere every read goes through the mapping.
    #[cfg(not(unix))]
    fn read_positional(&self, _from: usize, _out: &mut [u32]) -> bool {
        false
    }
}

/// Decodes little-endian tokens of `width` bytes into `out`.
fn decode(width: usize, bytes: &[u8], out: &mut [u32]) {
    if width == 2 {
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *o = u32::from(u16::from_le_bytes([c[0], c[1]]));
        }
    } else {
        for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
}
