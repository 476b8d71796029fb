//! The token cache (`cllm::data::cache`): a corpus built into a token file and opened
//! again gives exactly the tokens of encoding each file's text in memory (u16 and u32
//! files); a second look-up is a hit; every kind of damage or change (truncation, a
//! flipped payload or header byte, changed content, another tokenizer, another file
//! list) is rejected with its reason and rebuilt right; chunk cuts do not change the
//! tokens of a word-level stand-in encoder nor of the real GPT-2 pre-tokenization
//! pattern; the file does not depend on the thread count; non-text is reported with
//! file and offset; and the text split follows its documented rule.
//!
//! The oracles are independent of the cache: the in-memory encoders below run on whole
//! files read with `fs::read`, and the split rule is re-derived here from its
//! definition in the module doc.

use cllm::data::cache::{
    self, build, cache_file_name, config_key, load_or_build, token_width, CacheError, CacheOptions,
    CacheStatus, Encoder, Expected, RejectKind, Rejection, TextPlan, TokenFile, WindowReads,
    HEADER_LEN,
};
use cllm::data::{Rng, TokenSource, Tokens};
use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cllm_data_cache_{}_{tag}_{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(&p, contents).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Stand-in word encoder: the text is cut into pieces "whitespace run, then the
/// non-whitespace run after it"; each piece maps to `fnv1a(piece) % vocab`. Cutting
/// the text just before whitespace that follows a non-whitespace character never
/// changes its pieces; cutting elsewhere may. Errors on invalid UTF-8.
fn word_encode(bytes: &[u8], vocab: usize) -> Result<Vec<u32>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && in_word {
            out.push((fnv1a(&bytes[start..i]) % vocab as u64) as u32);
            start = i;
        }
        in_word = !c.is_whitespace();
    }
    if start < bytes.len() {
        out.push((fnv1a(&bytes[start..]) % vocab as u64) as u32);
    }
    Ok(out)
}

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GPT-2 pre-tokenization (the pattern of its byte-level BPE); each pre-token maps to
/// `fnv1a % vocab`. BPE merges act inside pre-tokens, so equal pre-tokens mean equal
/// BPE tokens.
fn gpt2_pretokens(bytes: &[u8], vocab: usize) -> Result<Vec<u32>, String> {
    thread_local! {
        static RE: fancy_regex::Regex = fancy_regex::Regex::new(GPT2_PATTERN).expect("pattern");
    }
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    RE.with(|re| {
        re.find_iter(text)
            .map(|m| {
                m.map(|m| (fnv1a(m.as_str().as_bytes()) % vocab as u64) as u32)
                    .map_err(|e| e.to_string())
            })
            .collect()
    })
}

fn byte_encode(bytes: &[u8]) -> Result<Vec<u32>, String> {
    Ok(bytes.iter().map(|&b| u32::from(b)).collect())
}

fn opts(val_fraction: f64, chunk_bytes: usize, threads: usize) -> CacheOptions {
    CacheOptions {
        val_fraction,
        require_text: false,
        chunk_bytes,
        threads,
    }
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

/// Tokens of a whole file encoded in memory, per file in sorted order: the oracle.
/// An encoder as the oracles take it.
type EncodeRef<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u32>, String>;

fn in_memory(files: &[PathBuf], encode: EncodeRef<'_>) -> Vec<u32> {
    files
        .iter()
        .flat_map(|f| encode(&fs::read(f).expect("read")).expect("encode"))
        .collect()
}

fn all_tokens(tf: &TokenFile) -> Vec<u32> {
    let mut v = tf.train().to_vec();
    v.extend(tf.val().to_vec());
    v
}

/// Random text of words and gaps: every gap starts with a space or a newline and
/// follows a word, so any 24 consecutive bytes hold a word or newline cut.
fn wordy_text(rng: &mut Rng, n_items: usize) -> String {
    const WORD: [char; 12] = ['a', 'b', 'Z', 'é', 'ж', '€', '7', '0', '\'', '.', '!', 's'];
    const GAP_HEAD: [char; 3] = [' ', ' ', '\n'];
    const GAP_TAIL: [char; 6] = [' ', '\n', '\t', '\r', '\u{a0}', '\u{3000}'];
    let mut s = String::new();
    for _ in 0..n_items {
        for _ in 0..1 + rng.below(4) {
            s.push(WORD[rng.below(WORD.len())]);
        }
        s.push(GAP_HEAD[rng.below(GAP_HEAD.len())]);
        for _ in 0..rng.below(3) {
            s.push(GAP_TAIL[rng.below(GAP_TAIL.len())]);
        }
    }
    s
}

/// A small directory corpus: files in two levels, plus a hidden file that is skipped.
/// Returns the directory and its files in the order `Corpus::load` reads them.
fn word_corpus(dir: &TempDir, seed: u64) -> (PathBuf, Vec<PathBuf>) {
    let mut rng = Rng::new(seed);
    let root = dir.path().join("corpus");
    let mut files = vec![
        dir.write("corpus/a.txt", wordy_text(&mut rng, 900).as_bytes()),
        dir.write("corpus/b/c.txt", wordy_text(&mut rng, 40).as_bytes()),
        dir.write("corpus/b/d.txt", b""),
        dir.write("corpus/e.txt", wordy_text(&mut rng, 1500).as_bytes()),
    ];
    dir.write("corpus/.hidden", b"never read");
    files.sort();
    (root, files)
}

#[test]
fn build_then_open_gives_the_in_memory_tokens_u16_and_u32() {
    for vocab in [300usize, 70_000] {
        let dir = TempDir::new("roundtrip");
        let (corpus, files) = word_corpus(&dir, vocab as u64);
        let encode = move |b: &[u8]| word_encode(b, vocab);
        let enc = Encoder {
            encode: &encode,
            vocab_size: vocab,
            key: b"word-encoder",
        };
        let o = opts(0.25, 64, 2);
        let cache_dir = dir.path().join("cache");
        let (tf, status) =
            load_or_build(&corpus, &cache_dir, &enc, &o, &mut no_progress()).expect("build");
        assert_eq!(status, CacheStatus::Built);
        let expected = in_memory(&files, &encode);
        assert_eq!(all_tokens(&tf), expected, "vocab {vocab}");
        if vocab > 65_536 {
            assert!(
                expected.iter().any(|&t| t > 65_535),
                "the u32 case needs ids past u16"
            );
        }
        // The split: training tokens are the training text's, encoded alone.
        let plan = TextPlan::new(&corpus, &o).expect("plan");
        let train_text: Vec<u8> = plan
            .train_chunks()
            .flat_map(|c| c.expect("chunk"))
            .collect();
        let n_train = train_text_tokens(&files, train_text.len(), &encode);
        assert_eq!(tf.header().n_train as usize, n_train);
        assert!(tf.header().n_val > 0);
        // Width and size on disk.
        let width = if vocab <= 65_536 { 2 } else { 4 };
        assert_eq!(tf.header().width, width);
        let len = fs::metadata(tf.path()).expect("meta").len();
        assert_eq!(
            len,
            HEADER_LEN as u64 + u64::from(width) * expected.len() as u64
        );
        // A second look-up is a hit with the same tokens.
        let (tf2, status) =
            load_or_build(&corpus, &cache_dir, &enc, &o, &mut no_progress()).expect("open");
        assert_eq!(status, CacheStatus::Hit);
        assert_eq!(all_tokens(&tf2), expected);
        assert_eq!(tf2.path(), tf.path());
    }
}

/// Tokens of the first `n_bytes` of the corpus, each file's part encoded alone.
fn train_text_tokens(files: &[PathBuf], n_bytes: usize, encode: EncodeRef<'_>) -> usize {
    let mut left = n_bytes;
    let mut n = 0;
    for f in files {
        let bytes = fs::read(f).expect("read");
        let take = left.min(bytes.len());
        n += encode(&bytes[..take]).expect("encode").len();
        left -= take;
    }
    n
}

#[test]
fn width_follows_the_vocabulary() {
    assert_eq!(token_width(1), 2);
    assert_eq!(token_width(65_536), 2);
    assert_eq!(token_width(65_537), 4);
    assert_eq!(token_width(1 << 32), 4);
    let dir = TempDir::new("width");
    let f = dir.write("t.bin", &[0, 1, 2, 255, 7]);
    for (vocab, width) in [(256usize, 2u32), (65_536, 2), (65_537, 4)] {
        let enc = Encoder {
            encode: &byte_encode,
            vocab_size: vocab,
            key: b"bytes",
        };
        let tf = build(
            &f,
            &dir.path().join("c"),
            &enc,
            &opts(0.0, 8, 1),
            &mut no_progress(),
        )
        .expect("build");
        assert_eq!(tf.header().width, width);
        assert_eq!(tf.train().to_vec(), vec![0, 1, 2, 255, 7]);
        assert_eq!(
            fs::metadata(tf.path()).expect("meta").len(),
            HEADER_LEN as u64 + 5 * u64::from(width)
        );
    }
}

/// Damages the slot's file with `damage`, looks it up again, and checks the rejection
/// kind, that the rebuilt tokens are right, and that the next look-up is a hit.
fn check_rebuilt(
    corpus: &Path,
    files: &[PathBuf],
    cache_dir: &Path,
    enc: &Encoder<'_>,
    o: &CacheOptions,
    kind: RejectKind,
) -> Rejection {
    let (tf, status) =
        load_or_build(corpus, cache_dir, enc, o, &mut no_progress()).expect("look up");
    let CacheStatus::Rebuilt(why) = status else {
        panic!("expected a rebuild, got {status:?}");
    };
    assert_eq!(why.kind(), kind, "{why}");
    assert_eq!(all_tokens(&tf), in_memory(files, enc.encode));
    let (_, again) = load_or_build(corpus, cache_dir, enc, o, &mut no_progress()).expect("again");
    assert_eq!(again, CacheStatus::Hit);
    why
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut b = fs::read(path).expect("read");
    edit(&mut b);
    // A new inode, as a careless tool would do; the map of the old one stays valid.
    let tmp = path.with_extension("edit");
    fs::write(&tmp, &b).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

#[test]
fn every_kind_of_damage_is_detected_and_rebuilt() {
    let dir = TempDir::new("damage");
    let (corpus, mut files) = word_corpus(&dir, 7);
    let encode = |b: &[u8]| word_encode(b, 300);
    let enc = Encoder {
        encode: &encode,
        vocab_size: 300,
        key: b"word-encoder v1",
    };
    let o = opts(0.2, 256, 2);
    let cache_dir = dir.path().join("cache");
    let (tf, _) = load_or_build(&corpus, &cache_dir, &enc, &o, &mut no_progress()).expect("build");
    let slot = tf.path().to_path_buf();
    drop(tf);
    let len = fs::metadata(&slot).expect("meta").len() as usize;

    rewrite(&slot, |b| b.truncate(b.len() - 1));
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Truncated);
    assert_eq!(
        why,
        Rejection::Truncated {
            have: len as u64 - 1,
            want: len as u64
        }
    );

    rewrite(&slot, |b| b.push(0));
    check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Corrupt);

    // Flipping the low bit of a u16 token keeps it below 300 or not; either way corrupt.
    for at in [HEADER_LEN, HEADER_LEN + 1, len / 2, len - 1] {
        rewrite(&slot, |b| b[at] ^= 0x01);
        check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Corrupt);
    }

    for (at, expect) in [
        (0, Rejection::BadMagic),
        (30, Rejection::HeaderChecksum),  // n_train
        (50, Rejection::HeaderChecksum),  // config key
        (150, Rejection::HeaderChecksum), // reserved
        (170, Rejection::HeaderChecksum), // the checksum itself
    ] {
        rewrite(&slot, |b| b[at] ^= 0x40);
        let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Corrupt);
        assert_eq!(why, expect, "byte {at}");
    }
    rewrite(&slot, |b| b[8] ^= 0x02);
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Stale);
    assert_eq!(why, Rejection::Version { found: 3 });

    rewrite(&slot, |b| b.truncate(100));
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Truncated);
    assert_eq!(why, Rejection::ShortHeader { have: 100 });

    // The data: same length, one byte changed.
    let mut c = fs::read(&files[0]).expect("read");
    let i = c.iter().position(|&b| b == b'a').expect("an a");
    c[i] = b'b';
    fs::write(&files[0], &c).expect("write");
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Stale);
    assert_eq!(why, Rejection::DataKey);

    // The file list: a new file, then a renamed one.
    files.push(dir.write("corpus/f.txt", b"more words here"));
    files.sort();
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Stale);
    assert_eq!(why, Rejection::DataKey);
    let renamed = dir.path().join("corpus/g.txt");
    fs::rename(dir.path().join("corpus/f.txt"), &renamed).expect("rename");
    files.retain(|f| !f.ends_with("f.txt"));
    files.push(renamed);
    files.sort();
    let why = check_rebuilt(&corpus, &files, &cache_dir, &enc, &o, RejectKind::Stale);
    assert_eq!(why, Rejection::DataKey);

    // Another tokenizer: its own slot; the old file is rejected for it by its key.
    let encode2 = |b: &[u8]| word_encode(b, 299);
    let enc2 = Encoder {
        encode: &encode2,
        vocab_size: 300,
        key: b"word-encoder v2",
    };
    let (tf2, status) =
        load_or_build(&corpus, &cache_dir, &enc2, &o, &mut no_progress()).expect("v2");
    assert_eq!(status, CacheStatus::Built);
    assert_ne!(tf2.path(), slot.as_path());
    assert_eq!(all_tokens(&tf2), in_memory(&files, &encode2));
    let expected2 = Expected::for_corpus(&corpus, &enc2, &o).expect("keys");
    match TokenFile::open(&slot, &expected2) {
        Err(CacheError::Rejected {
            why: Rejection::ConfigKey,
            ..
        }) => {}
        other => panic!("expected a config-key rejection, got {other:?}"),
    }
    // Copied into the new tokenizer's slot, the old file is rejected and rebuilt.
    fs::copy(&slot, tf2.path()).expect("copy");
    let (tf3, status) =
        load_or_build(&corpus, &cache_dir, &enc2, &o, &mut no_progress()).expect("v2");
    assert_eq!(status, CacheStatus::Rebuilt(Rejection::ConfigKey));
    assert_eq!(all_tokens(&tf3), in_memory(&files, &encode2));
    // Another vocabulary size under the same key is another slot too.
    let enc3 = Encoder {
        vocab_size: 301,
        ..enc2
    };
    let k2 = config_key(&corpus, &enc2, &o).expect("key");
    let k3 = config_key(&corpus, &enc3, &o).expect("key");
    assert_ne!(cache_file_name(&k2), cache_file_name(&k3));
}

#[test]
fn a_file_opened_while_its_slot_is_rebuilt_keeps_its_tokens() {
    let dir = TempDir::new("inode");
    let f = dir.write("t.txt", b"one two three four five six");
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"bytes",
    };
    let o = opts(0.0, 8, 2);
    let cache_dir = dir.path().join("c");
    let old = build(&f, &cache_dir, &enc, &o, &mut no_progress()).expect("build");
    fs::write(&f, b"ONE TWO THREE").expect("write");
    let (new, status) =
        load_or_build(&f, &cache_dir, &enc, &o, &mut no_progress()).expect("look up");
    assert_eq!(status, CacheStatus::Rebuilt(Rejection::DataKey));
    assert_eq!(old.path(), new.path());
    assert_eq!(
        as_bytes(old.train().to_vec()),
        b"one two three four five six"
    );
    assert_eq!(as_bytes(new.train().to_vec()), b"ONE TWO THREE");
}

fn as_bytes(tokens: Vec<u32>) -> Vec<u8> {
    tokens.into_iter().map(|t| t as u8).collect()
}

#[test]
fn the_file_does_not_depend_on_the_thread_count() {
    let dir = TempDir::new("threads");
    let (corpus, _) = word_corpus(&dir, 11);
    let encode = |b: &[u8]| word_encode(b, 70_000);
    let enc = Encoder {
        encode: &encode,
        vocab_size: 70_000,
        key: b"w",
    };
    let mut bytes = Vec::new();
    for threads in [1, 2, 3] {
        let tf = build(
            &corpus,
            &dir.path().join(format!("c{threads}")),
            &enc,
            &opts(0.1, 32, threads),
            &mut no_progress(),
        )
        .expect("build");
        bytes.push(fs::read(tf.path()).expect("read"));
    }
    assert_eq!(bytes[0], bytes[1]);
    assert_eq!(bytes[0], bytes[2]);
}

#[test]
fn progress_counts_every_text_byte_in_order() {
    let dir = TempDir::new("progress");
    let (corpus, files) = word_corpus(&dir, 3);
    let total: u64 = files
        .iter()
        .map(|f| fs::metadata(f).expect("meta").len())
        .sum();
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"bytes",
    };
    let mut seen = Vec::new();
    build(
        &corpus,
        &dir.path().join("c"),
        &enc,
        &opts(0.3, 512, 2),
        &mut |d, t| seen.push((d, t)),
    )
    .expect("build");
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[1].1 == total));
    // Chunks are at most 2 * 512 bytes.
    assert!(seen.windows(2).all(|w| w[1].0 - w[0].0 <= 1024));
}

#[test]
fn non_text_is_an_error_naming_file_and_offset() {
    let dir = TempDir::new("text");
    let mut good = wordy_text(&mut Rng::new(5), 3000).into_bytes();
    good.truncate(good.iter().rposition(|&b| b < 0x80).expect("ascii"));
    let n = good.len();
    let mut bad_utf8 = good.clone();
    bad_utf8.extend_from_slice(b"ok \xC3\x28 tail"); // 0xC3 then a non-continuation byte
    let mut nul = good.clone();
    nul.extend_from_slice(b"ok \0 tail");
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"bytes",
    };
    let mut o = opts(0.5, 64, 2);
    for (name, bytes, what) in [
        ("u.txt", &bad_utf8, "invalid UTF-8"),
        ("n.txt", &nul, "NUL byte"),
    ] {
        let f = dir.write(&format!("d/{name}"), bytes);
        o.require_text = true;
        match build(&f, &dir.path().join("c"), &enc, &o, &mut no_progress()) {
            Err(CacheError::NotText {
                path,
                offset,
                what: w,
            }) => {
                assert_eq!(path, f);
                assert_eq!(offset, n as u64 + 3);
                assert_eq!(w, what);
            }
            other => panic!("expected NotText, got {other:?}"),
        }
        // The text chunks of the directory report it too (the defect is in the
        // validation half, so the training chunks are clean).
        let plan = TextPlan::new(&f, &o).expect("plan");
        assert!(plan.train_chunks().all(|c| c.is_ok()));
        assert!(plan
            .val_chunks()
            .any(|c| matches!(c, Err(CacheError::NotText { .. }))));
        fs::remove_file(&f).expect("rm");
        // Without the check, the bytes are tokens like any other.
        o.require_text = false;
        let f = dir.write(&format!("e/{name}"), bytes);
        let tf = build(&f, &dir.path().join("c"), &enc, &o, &mut no_progress()).expect("build");
        assert_eq!(all_tokens(&tf), byte_encode(bytes).expect("bytes"));
    }
}

#[test]
fn encoder_errors_and_bad_inputs_are_typed() {
    let dir = TempDir::new("errors");
    let f = dir.write("t.txt", "héllo wörld ".repeat(50).as_bytes());
    let fails = |b: &[u8]| -> Result<Vec<u32>, String> {
        if b.contains(&b'w') {
            Err("no w".to_string())
        } else {
            Ok(vec![0])
        }
    };
    let c = dir.path().join("c");
    let o = opts(0.0, 16, 2);
    let enc = Encoder {
        encode: &fails,
        vocab_size: 10,
        key: b"f",
    };
    match build(&f, &c, &enc, &o, &mut no_progress()) {
        Err(CacheError::Encode {
            path,
            offset,
            message,
        }) => {
            assert_eq!((path, offset, message.as_str()), (f.clone(), 0, "no w"));
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 100,
        key: b"b",
    };
    assert!(matches!(
        build(&f, &c, &enc, &o, &mut no_progress()),
        Err(CacheError::TokenOutOfRange { vocab: 100, .. })
    ));
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"b",
    };
    let e = dir.write("empty/e.txt", b"");
    assert!(matches!(
        build(&dir.path().join("empty"), &c, &enc, &o, &mut no_progress()),
        Err(CacheError::Data(cllm::data::DataError::Empty {
            n_files: 1,
            ..
        }))
    ));
    drop(e);
    for bad in [opts(1.0, 16, 1), opts(0.1, 7, 1), opts(0.1, 16, 0)] {
        assert!(build(&f, &c, &enc, &bad, &mut no_progress()).is_err());
    }
    let enc0 = Encoder {
        vocab_size: 0,
        ..enc
    };
    assert!(matches!(
        build(&f, &c, &enc0, &o, &mut no_progress()),
        Err(CacheError::BadVocab { vocab: 0 })
    ));
    assert!(matches!(
        build(
            &dir.path().join("missing"),
            &c,
            &enc,
            &o,
            &mut no_progress()
        ),
        Err(CacheError::Data(cllm::data::DataError::NotFound { .. }))
    ));
    // Failed builds leave no file behind.
    let left: Vec<_> = fs::read_dir(&c).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Byte `x` as token `65_600 + 17 x` of a 70,000-id vocabulary: 4-byte tokens.
fn wide_encode(bytes: &[u8]) -> Result<Vec<u32>, String> {
    Ok(bytes.iter().map(|&b| 65_600 + 17 * u32::from(b)).collect())
}

#[test]
fn random_windows_read_the_right_tokens_with_pages_dropped() {
    let dir = TempDir::new("windows");
    let text = wordy_text(&mut Rng::new(9), 20_000);
    let f = dir.write("t.txt", text.as_bytes());
    let narrow = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"b",
    };
    let wide = Encoder {
        encode: &wide_encode,
        vocab_size: 70_000,
        key: b"w",
    };
    for (enc, width) in [(narrow, 2u32), (wide, 4)] {
        let tf = build(
            &f,
            &dir.path().join(format!("c{width}")),
            &enc,
            &opts(0.1, 4096, 2),
            &mut no_progress(),
        )
        .expect("build");
        assert_eq!(tf.header().width, width);
        tf.set_resident_limit(3 * 4096);
        assert_eq!(tf.resident_limit(), 3 * 4096);
        let (train, val): (Tokens, Tokens) = (tf.train(), tf.val());
        let whole = (enc.encode)(text.as_bytes()).expect("tokens");
        let (wt, wv) = whole.split_at(train.len());
        assert_eq!(val.len(), wv.len());
        assert_eq!(tf.window_reads(), WindowReads::Positional, "the default");
        // Windows up to 2,500 tokens: a positional read takes up to 2 (u16) or 3 (u32)
        // pieces of 4 KiB, mapped reads pass the resident limit and drop pages.
        for reads in [WindowReads::Positional, WindowReads::Mapped] {
            tf.set_window_reads(reads);
            assert_eq!(tf.window_reads(), reads);
            let mut rng = Rng::new(1);
            let mut buf = vec![0u32; 2500];
            for _ in 0..2000 {
                let n = rng.below(buf.len()) + 1;
                let (src, oracle) = if rng.below(2) == 0 {
                    (&train, wt)
                } else {
                    (&val, wv)
                };
                let start = rng.below(src.len() - n + 1);
                src.read(start, &mut buf[..n]);
                assert_eq!(
                    &buf[..n],
                    &oracle[start..start + n],
                    "{reads:?}, width {width}"
                );
            }
        }
    }
}

/// The split rule from its definition: the first cut at or after the target (a file
/// boundary, else in a window of `chunk` bytes of the file holding the target: a word
/// cut, else a newline cut, else the file's end if in the window, else a character
/// cut, else the window's end).
fn oracle_split(files: &[Vec<u8>], val_fraction: f64, chunk: usize) -> usize {
    let total: usize = files.iter().map(Vec::len).sum();
    let target = ((total as f64 * (1.0 - val_fraction)).floor() as usize).min(total);
    let mut start = 0;
    for f in files {
        if target < start + f.len() {
            let q = target - start;
            if q == 0 {
                return target;
            }
            let end = (q + chunk).min(f.len());
            let prev_ws = |p: usize| {
                let s = String::from_utf8_lossy(&f[p.saturating_sub(4)..p]).into_owned();
                s.chars()
                    .last()
                    .is_some_and(|c| c.is_whitespace() && c != '\u{FFFD}')
            };
            let found = (q..end)
                .find(|&p| f[p] == b' ' && !prev_ws(p))
                .or_else(|| (q..end).find(|&p| f[p] == b'\n' && !prev_ws(p)))
                .or_else(|| (end == f.len()).then_some(end))
                .or_else(|| (q..end).find(|&p| (f[p] as i8) >= -0x40))
                .unwrap_or(end);
            return start + found;
        }
        start += f.len();
    }
    total
}

fn texts_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Words, spaces, newlines and a few multi-byte characters, runs long enough to
    // need every fallback.
    let piece = prop_oneof![
        4 => "[a-z]{1,6}".prop_map(String::into_bytes),
        2 => Just(b" ".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just("é€".as_bytes().to_vec()),
        1 => Just("\u{3000}".as_bytes().to_vec()),
        1 => "[a-z]{20,60}".prop_map(String::into_bytes),
    ];
    let file = proptest::collection::vec(piece, 0..80).prop_map(|p| p.concat());
    proptest::collection::vec(file, 1..4)
}

fn write_files(dir: &TempDir, texts: &[Vec<u8>]) -> PathBuf {
    for (i, t) in texts.iter().enumerate() {
        dir.write(&format!("corpus/f{i:02}.txt"), t);
    }
    dir.path().join("corpus")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Training chunks then validation chunks are the corpus; the split is the rule's.
    #[test]
    fn split_follows_the_rule(
        texts in texts_strategy(),
        f in 0.0f64..0.9,
        chunk in 8usize..40,
    ) {
        let total: usize = texts.iter().map(Vec::len).sum();
        prop_assume!(total > 0);
        let dir = TempDir::new("split");
        let corpus = write_files(&dir, &texts);
        let o = CacheOptions { require_text: true, ..opts(f, chunk, 1) };
        let plan = TextPlan::new(&corpus, &o).expect("plan");
        let train: Vec<Vec<u8>> = plan.train_chunks().map(|c| c.expect("chunk")).collect();
        let val: Vec<Vec<u8>> = plan.val_chunks().map(|c| c.expect("chunk")).collect();
        let mut joined = train.concat();
        prop_assert_eq!(joined.len() as u64, plan.train_bytes());
        prop_assert_eq!(plan.train_bytes() as usize, oracle_split(&texts, f, chunk));
        joined.extend(val.concat());
        prop_assert_eq!(joined, texts.concat());
        for c in train.iter().chain(&val) {
            prop_assert!(!c.is_empty() && c.len() <= 2 * chunk);
            prop_assert!(std::str::from_utf8(c).is_ok());
        }
    }

    /// Cut at word and newline cuts, the stand-in word encoder and GPT-2's
    /// pre-tokenizer give the tokens of the whole files.
    #[test]
    fn chunk_cuts_do_not_change_the_tokens(
        seed in any::<u64>(),
        sizes in proptest::collection::vec(0usize..400, 1..4),
        chunk in 24usize..96,
        f in 0.0f64..0.5,
        gpt2 in any::<bool>(),
    ) {
        let mut rng = Rng::new(seed);
        let texts: Vec<Vec<u8>> = sizes.iter().map(|&n| wordy_text(&mut rng, n).into_bytes()).collect();
        prop_assume!(texts.iter().any(|t| !t.is_empty()));
        let dir = TempDir::new("invariance");
        let corpus = write_files(&dir, &texts);
        let encode = move |b: &[u8]| if gpt2 { gpt2_pretokens(b, 70_000) } else { word_encode(b, 70_000) };
        let enc = Encoder { encode: &encode, vocab_size: 70_000, key: b"k" };
        let o = CacheOptions { require_text: true, ..opts(f, chunk, 2) };
        let tf = build(&corpus, &dir.path().join("c"), &enc, &o, &mut no_progress()).expect("build");
        let oracle: Vec<u32> = texts.iter().flat_map(|t| encode(t).expect("encode")).collect();
        prop_assert_eq!(all_tokens(&tf), oracle);
    }
}

#[test]
fn char_cuts_are_the_only_ones_that_can_change_tokens() {
    // One long word: no word or newline cut, so chunks end at character cuts and the
    // word encoder sees pieces; a byte encoder does not care.
    let dir = TempDir::new("fallback");
    let word = "abcdéfghij".repeat(40);
    let f = dir.write("w.txt", word.as_bytes());
    let o = opts(0.0, 16, 2);
    let encode = |b: &[u8]| word_encode(b, 300);
    let enc = Encoder {
        encode: &encode,
        vocab_size: 300,
        key: b"w",
    };
    let tf = build(&f, &dir.path().join("c"), &enc, &o, &mut no_progress()).expect("build");
    assert!(tf.train().len() > 1, "the word was cut");
    assert_eq!(word_encode(word.as_bytes(), 300).expect("encode").len(), 1);
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"b",
    };
    let tf = build(&f, &dir.path().join("c"), &enc, &o, &mut no_progress()).expect("build");
    assert_eq!(
        tf.train().to_vec(),
        byte_encode(word.as_bytes()).expect("bytes")
    );
}

#[test]
fn train_text_chunks_is_the_training_text() {
    let dir = TempDir::new("trainchunks");
    let (corpus, files) = word_corpus(&dir, 21);
    let o = opts(0.3, 100, 1);
    let whole: Vec<u8> = files
        .iter()
        .flat_map(|f| fs::read(f).expect("read"))
        .collect();
    let train: Vec<u8> = cache::train_text_chunks(&corpus, &o)
        .expect("chunks")
        .flat_map(|c| c.expect("chunk"))
        .collect();
    let texts: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).expect("read")).collect();
    assert_eq!(train.len(), oracle_split(&texts, 0.3, 100));
    assert_eq!(&whole[..train.len()], &train[..]);
}

// ---------------------------------------------------------------------------------
// Measurements (ignored; run by hand, see the report):
//   CLLM_CACHE_BENCH=/tmp/dir cargo test --release --test data_cache -- --ignored \
//     --nocapture bench_build   (then bench_windows, in a separate process)
// ---------------------------------------------------------------------------------

fn bench_dir() -> Option<PathBuf> {
    std::env::var_os("CLLM_CACHE_BENCH").map(PathBuf::from)
}

fn vm_hwm_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore]
fn bench_build() {
    let Some(dir) = bench_dir() else { return };
    let corpus = dir.join("corpus.txt");
    if !corpus.exists() {
        let mut seed = Vec::new();
        for e in fs::read_dir("/usr/share/common-licenses").expect("licences") {
            let p = e.expect("entry").path();
            if p.is_file() {
                seed.extend(fs::read(&p).expect("read"));
            }
        }
        let mut out = Vec::with_capacity(200 << 20);
        while out.len() < 200 << 20 {
            out.extend_from_slice(&seed);
        }
        fs::write(&corpus, &out).expect("write corpus");
    }
    let mb = fs::metadata(&corpus).expect("meta").len() as f64 / 1e6;
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"bytes",
    };
    let o = CacheOptions::default();
    let cache_dir = dir.join("cache");
    let _ = fs::remove_dir_all(&cache_dir);
    let hwm0 = vm_hwm_kib();
    let t = std::time::Instant::now();
    let (tf, status) =
        load_or_build(&corpus, &cache_dir, &enc, &o, &mut no_progress()).expect("build");
    let build_s = t.elapsed().as_secs_f64();
    println!(
        "build: {status:?} {mb:.1} MB in {build_s:.2} s = {:.0} MB/s; VmHWM {} -> {} KiB",
        mb / build_s,
        hwm0,
        vm_hwm_kib()
    );
    let file_mb = fs::metadata(tf.path()).expect("meta").len() as f64 / 1e6;
    drop(tf);
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let (_, status) =
            load_or_build(&corpus, &cache_dir, &enc, &o, &mut no_progress()).expect("open");
        let s = t.elapsed().as_secs_f64();
        println!(
            "open: {status:?} in {s:.2} s: data {mb:.0} MB + file {file_mb:.0} MB = {:.0} MB/s",
            (mb + file_mb) / s
        );
    }
    let t = std::time::Instant::now();
    let keys = Expected::for_corpus(&corpus, &enc, &o).expect("keys");
    let s = t.elapsed().as_secs_f64();
    println!("data key alone: {s:.2} s = {:.0} MB/s", mb / s);
    let t = std::time::Instant::now();
    let _ =
        TokenFile::open(&cache_dir.join(cache_file_name(&keys.config_key)), &keys).expect("open");
    let s = t.elapsed().as_secs_f64();
    println!("file verify alone: {s:.2} s = {:.0} MB/s", file_mb / s);
}

#[test]
#[ignore]
fn bench_windows() {
    let Some(dir) = bench_dir() else { return };
    let corpus = dir.join("corpus.txt");
    let enc = Encoder {
        encode: &byte_encode,
        vocab_size: 256,
        key: b"bytes",
    };
    let o = CacheOptions::default();
    let limit: u64 = std::env::var("CLLM_CACHE_RESIDENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cache::DEFAULT_RESIDENT_LIMIT);
    let (tf, status) =
        load_or_build(&corpus, &dir.join("cache"), &enc, &o, &mut no_progress()).expect("open");
    assert_eq!(status, CacheStatus::Hit);
    tf.set_resident_limit(limit);
    let reads = match std::env::var("CLLM_CACHE_READS").as_deref() {
        Ok("mapped") => WindowReads::Mapped,
        _ => WindowReads::Positional,
    };
    tf.set_window_reads(reads);
    let hwm_open = vm_hwm_kib();
    let train = tf.train();
    let mut rng = Rng::new(1);
    let mut buf = vec![0u32; 1025];
    let t = std::time::Instant::now();
    let mut sum = 0u64;
    for _ in 0..100_000 {
        let start = rng.below(train.len() - buf.len());
        train.read(start, &mut buf);
        sum += u64::from(buf[0]);
    }
    let s = t.elapsed().as_secs_f64();
    println!("100k windows of 1025 tokens over {} tokens ({reads:?} reads, resident limit {limit}): {s:.2} s ({:.1} us/window), VmHWM after open {hwm_open} KiB, after reads {} KiB (checksum {sum})", train.len(), s * 10.0, vm_hwm_kib());
}
