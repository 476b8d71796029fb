//! Fuzz target: token cache files (`cllm::data::cache`). The input becomes a cache file
//! in one of three ways: raw bytes; a header sealed with valid checksums around
//! input-chosen fields and payload (so the checks past the checksums are reached); or a
//! real built cache file with input-chosen edits. `TokenFile::open` must never panic;
//! a file it accepts must have the header's token counts, and every window read from it
//! must hold the payload's tokens (decoded independently here), all below the
//! vocabulary. An unedited real file must be accepted with its original tokens.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cllm::data::cache::{
    build, payload_checksum, token_width, CacheOptions, Encoder, Expected, TokenFile,
    TokenFileHeader, HEADER_LEN,
};
use cllm::data::TokenSource;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { at: u32, xor: u8 },
    Truncate { len: u32 },
    Append { bytes: Vec<u8> },
    Overwrite { at: u32, bytes: Vec<u8> },
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    match edit {
        Edit::Flip { at, xor } => {
            if !bytes.is_empty() {
                let i = *at as usize % bytes.len();
                bytes[i] ^= xor;
            }
        }
        Edit::Truncate { len } => bytes.truncate(*len as usize),
        Edit::Append { bytes: b } => bytes.extend_from_slice(b),
        Edit::Overwrite { at, bytes: b } => {
            let at = *at as usize % (bytes.len() + 1);
            for (i, &x) in b.iter().enumerate() {
                if let Some(y) = bytes.get_mut(at + i) {
                    *y = x;
                }
            }
        }
    }
}

/// A real cache file built from a small corpus, its expectations and its tokens.
fn real() -> &'static (Vec<u8>, Expected, Vec<u32>, Vec<u32>) {
    static REAL: OnceLock<(Vec<u8>, Expected, Vec<u32>, Vec<u32>)> = OnceLock::new();
    REAL.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("cllm-fuzz-token-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let corpus = dir.join("corpus.txt");
        std::fs::write(
            &corpus,
            "the quick brown fox jumps over the lazy dog. ".repeat(8),
        )
        .expect("corpus");
        let encode = |b: &[u8]| -> Result<Vec<u32>, String> {
            Ok(b.iter().map(|&x| u32::from(x) % 97).collect())
        };
        let enc = Encoder {
            encode: &encode,
            vocab_size: 97,
            key: b"fuzz",
        };
        let opts = CacheOptions {
            chunk_bytes: 16,
            ..CacheOptions::default()
        };
        let tf = build(&corpus, &dir.join("cache"), &enc, &opts, &mut |_, _| {}).expect("build");
        let expected = Expected::for_corpus(&corpus, &enc, &opts).expect("keys");
        let bytes = std::fs::read(tf.path()).expect("read");
        let (train, val) = (tf.train().to_vec(), tf.val().to_vec());
        drop(tf);
        let _ = std::fs::remove_dir_all(&dir);
        (bytes, expected, train, val)
    })
}

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("cllm-fuzz-token-cache-{}.bin", std::process::id()))
    })
}

/// The payload's tokens, decoded here independently of the cache's reader.
fn decode_payload(bytes: &[u8], width: usize) -> Vec<u32> {
    bytes[HEADER_LEN..]
        .chunks_exact(width)
        .map(|c| c.iter().rev().fold(0u32, |a, &b| a << 8 | u32::from(b)))
        .collect()
}

/// Opens `bytes` as a cache file; if accepted, checks every property of an accepted
/// file and returns its tokens.
fn open_and_check(
    bytes: &[u8],
    expected: &Expected,
    u: &mut Unstructured<'_>,
) -> Option<(Vec<u32>, Vec<u32>)> {
    let path = scratch();
    std::fs::write(path, bytes).expect("write scratch");
    let tf = TokenFile::open(path, expected).ok()?;
    let h = TokenFileHeader::decode(bytes).expect("an accepted file has a valid header");
    assert_eq!(tf.header(), &h);
    assert_eq!(h.vocab_size, expected.vocab_size as u64);
    assert_eq!(bytes.len() as u64, h.file_len().expect("length"));
    let all = decode_payload(bytes, h.width as usize);
    assert!(all.iter().all(|&t| u64::from(t) < h.vocab_size));
    let (train, val) = (tf.train(), tf.val());
    assert_eq!(train.len() as u64, h.n_train);
    assert_eq!(val.len() as u64, h.n_val);
    let (want_train, want_val) = all.split_at(train.len());
    for _ in 0..u.int_in_range(0..=8u8).unwrap_or(0) {
        let (src, want) = if u.arbitrary::<bool>().unwrap_or(false) {
            (&val, want_val)
        } else {
            (&train, want_train)
        };
        if src.is_empty() {
            continue;
        }
        let start = u.int_in_range(0..=src.len() - 1).unwrap_or(0);
        let n = u.int_in_range(0..=src.len() - start).unwrap_or(0);
        let mut out = vec![u32::MAX; n];
        src.read(start, &mut out);
        assert_eq!(&out[..], &want[start..start + n]);
    }
    tf.set_resident_limit(u.int_in_range(0..=3u64).unwrap_or(0) * 4096);
    let (t, v) = (train.to_vec(), val.to_vec());
    assert_eq!(&t[..], want_train);
    assert_eq!(&v[..], want_val);
    Some((t, v))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    match u.int_in_range(0..=2u8).unwrap_or(0) {
        0 => {
            // Raw bytes, expected to be what their header says (if it decodes at all).
            let bytes: Vec<u8> = u.arbitrary().unwrap_or_default();
            let expected = match TokenFileHeader::decode(&bytes) {
                Ok(h) => Expected {
                    vocab_size: usize::try_from(h.vocab_size).unwrap_or(1),
                    config_key: h.config_key,
                    data_key: h.data_key,
                },
                Err(_) => real().1.clone(),
            };
            open_and_check(&bytes, &expected, &mut u);
        }
        1 => {
            // A sealed header around input-chosen fields and payload.
            let vocab = match u.int_in_range(0..=3u8).unwrap_or(0) {
                0 => u.int_in_range(1..=300usize).unwrap_or(1),
                1 => 1 << 16,
                2 => (1 << 16) + u.int_in_range(1..=100_000usize).unwrap_or(1),
                _ => 1 << 32,
            };
            let honest_width = token_width(vocab);
            let width = if u.arbitrary::<u8>().unwrap_or(1) == 0 {
                6 - honest_width
            } else {
                honest_width
            };
            let n_train = u64::from(u.int_in_range(0..=64u8).unwrap_or(0));
            let n_val = u64::from(u.int_in_range(0..=64u8).unwrap_or(0));
            let mut payload: Vec<u8> = u.arbitrary().unwrap_or_default();
            payload.resize(((n_train + n_val) * u64::from(width)) as usize, 0);
            let h = TokenFileHeader {
                width,
                vocab_size: vocab as u64,
                n_train: if u.arbitrary::<u8>().unwrap_or(1) == 0 {
                    u64::MAX / 3
                } else {
                    n_train
                },
                n_val,
                config_key: [7; 32],
                data_key: [9; 32],
                payload_checksum: payload_checksum(&payload),
            };
            let mut bytes = h.encode().to_vec();
            bytes.extend_from_slice(&payload);
            let edit: Option<Edit> = u.arbitrary().unwrap_or(None);
            if let Some(e) = &edit {
                apply(&mut bytes, e);
            }
            let expected = Expected {
                vocab_size: vocab,
                config_key: [7; 32],
                data_key: [9; 32],
            };
            open_and_check(&bytes, &expected, &mut u);
        }
        _ => {
            // A real file with edits; unedited, it must open with its tokens.
            let (orig, expected, train, val) = real();
            let mut bytes = orig.clone();
            let edits: Vec<Edit> = u.arbitrary().unwrap_or_default();
            for e in edits.iter().take(4) {
                apply(&mut bytes, e);
            }
            let got = open_and_check(&bytes, expected, &mut u);
            if bytes == *orig {
                assert_eq!(got.as_ref(), Some(&(train.clone(), val.clone())));
            }
        }
    }
});
