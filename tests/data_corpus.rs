//! `Corpus` loads a file or a directory tree (recursively, in sorted path order,
//! skipping hidden entries) into the same token stream, splits it deterministically
//! with the documented validation size, and reports each failure (missing path, empty
//! directory, empty file, bad fraction, context too long) as its own error variant.

use cllm::data::{ByteTokenizer, Corpus, DataError};
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
            std::env::temp_dir().join(format!("cllm_data_corpus_{}_{tag}_{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` at `rel`, creating parent directories.
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

fn all_tokens(c: &Corpus) -> Vec<u32> {
    let mut v = c.train.clone();
    v.extend(&c.val);
    v
}

#[test]
fn file_loads_all_its_bytes() {
    let dir = TempDir::new("file");
    let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    let f = dir.write("corpus.bin", &bytes);
    let c = Corpus::load(&f, 0.1).expect("load file");
    assert_eq!(all_tokens(&c), ByteTokenizer::encode(&bytes));
    assert_eq!(c.val.len(), 100);
    assert_eq!(c.n_files, 1);
    assert_eq!(c.source, f.display().to_string());
}

#[test]
fn directory_is_read_recursively_in_sorted_order_skipping_hidden() {
    let dir = TempDir::new("tree");
    // Created out of order, so creation or inode order would give a different stream.
    dir.write("sub/deeper/d.txt", b"DDDD\n");
    dir.write("b.txt", b"BB\n");
    dir.write("sub/c.txt", b"CCC\n");
    dir.write("a.txt", b"A\n");
    dir.write(".hidden", b"hidden file\n");
    dir.write(".git/config", b"hidden dir\n");
    dir.write("sub/.swap", b"hidden nested\n");
    fs::create_dir_all(dir.path().join("empty_subdir")).expect("mkdir");

    let c = Corpus::load(dir.path(), 0.0).expect("load dir");
    assert_eq!(c.n_files, 4);
    assert!(c.val.is_empty());
    assert_eq!(ByteTokenizer::decode(&c.train), "A\nBB\nCCC\nDDDD\n");

    // The same bytes in one file give the same corpus (bar the description).
    let single = TempDir::new("single");
    let f = single.write("all.txt", b"A\nBB\nCCC\nDDDD\n");
    let from_file = Corpus::load(&f, 0.25).expect("load file");
    let from_dir = Corpus::load(dir.path(), 0.25).expect("load dir");
    assert_eq!(from_dir.train, from_file.train);
    assert_eq!(from_dir.val, from_file.val);
}

#[test]
fn loading_is_deterministic() {
    let dir = TempDir::new("det");
    for i in (0..20).rev() {
        dir.write(&format!("f{i:02}/x.txt"), format!("file {i}\n").as_bytes());
    }
    let a = Corpus::load(dir.path(), 0.2).expect("load");
    let b = Corpus::load(dir.path(), 0.2).expect("load");
    assert_eq!(a, b);
    let text = ByteTokenizer::decode(&all_tokens(&a));
    let expected: String = (0..20).map(|i| format!("file {i}\n")).collect();
    assert_eq!(text, expected);
}

#[test]
fn missing_path_is_not_found() {
    let dir = TempDir::new("missing");
    let p = dir.path().join("no_such_file.txt");
    match Corpus::load(&p, 0.1) {
        Err(DataError::NotFound { path }) => assert_eq!(path, p),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn directory_without_files_is_an_error() {
    let dir = TempDir::new("nofiles");
    match Corpus::load(dir.path(), 0.1) {
        Err(DataError::NoFiles { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected NoFiles, got {other:?}"),
    }
    // Only hidden files and empty subdirectories: still no files.
    dir.write(".only_hidden", b"abc");
    fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
    assert!(matches!(
        Corpus::load(dir.path(), 0.1),
        Err(DataError::NoFiles { .. })
    ));
}

#[test]
fn zero_bytes_is_an_error() {
    let dir = TempDir::new("empty");
    let f = dir.write("empty.txt", b"");
    match Corpus::load(&f, 0.1) {
        Err(DataError::Empty { n_files, .. }) => assert_eq!(n_files, 1),
        other => panic!("expected Empty, got {other:?}"),
    }
    dir.write("also_empty.txt", b"");
    match Corpus::load(dir.path(), 0.1) {
        Err(DataError::Empty { n_files, .. }) => assert_eq!(n_files, 2),
        other => panic!("expected Empty, got {other:?}"),
    }
    assert!(matches!(
        Corpus::from_bytes(b"", "mem".into(), 0.1),
        Err(DataError::Empty { n_files: 0, .. })
    ));
}

#[test]
fn bad_validation_fraction_is_an_error() {
    for f in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                Corpus::from_bytes(b"abcdef", "mem".into(), f),
                Err(DataError::BadValFraction { .. })
            ),
            "fraction {f}"
        );
    }
}

#[test]
fn context_too_long_names_the_split_and_the_numbers() {
    let bytes = vec![b'x'; 100];
    let c = Corpus::from_bytes(&bytes, "mem".into(), 0.1).expect("corpus");
    assert_eq!((c.train.len(), c.val.len()), (90, 10));
    c.check_context(9)
        .expect("10-token windows fit both splits");
    match c.check_context(10) {
        Err(e @ DataError::ContextTooLong { .. }) => {
            let msg = e.to_string();
            assert!(matches!(
                e,
                DataError::ContextTooLong {
                    split: "validation",
                    have: 10,
                    need: 11,
                    seq: 10
                }
            ));
            assert!(msg.contains("10 tokens") && msg.contains("11"), "{msg}");
        }
        other => panic!("expected ContextTooLong, got {other:?}"),
    }
    let no_val = Corpus::from_bytes(&bytes, "mem".into(), 0.0).expect("corpus");
    no_val
        .check_context(99)
        .expect("empty validation split is not checked");
    assert!(matches!(
        no_val.check_context(100),
        Err(DataError::ContextTooLong {
            split: "training",
            have: 100,
            need: 101,
            ..
        })
    ));
    assert!(matches!(
        c.check_context(usize::MAX),
        Err(DataError::ContextTooLong {
            split: "training",
            ..
        })
    ));
}

#[test]
fn split_sizes_on_examples() {
    let sizes = |n: usize, f: f64| {
        let c = Corpus::from_bytes(&vec![0u8; n], "mem".into(), f).expect("corpus");
        (c.train.len(), c.val.len())
    };
    assert_eq!(sizes(1000, 0.1), (900, 100));
    assert_eq!(sizes(1000, 0.0), (1000, 0));
    assert_eq!(sizes(1001, 0.1), (901, 100)); // rounded down
    assert_eq!(sizes(5, 0.1), (4, 1)); // at least one validation token
    assert_eq!(sizes(1, 0.5), (1, 0)); // but never all of them
    assert_eq!(sizes(10, 0.99), (1, 9));
    let largest_below_one = 1.0 - f64::EPSILON / 2.0;
    assert_eq!(sizes(2, largest_below_one), (1, 1));
    assert_eq!(sizes(1000, largest_below_one), (1, 999));
}

proptest! {
    #[test]
    fn split_is_the_tail_of_the_stream(
        bytes in proptest::collection::vec(any::<u8>(), 1..3000),
        f in 0.0f64..1.0,
    ) {
        let c = Corpus::from_bytes(&bytes, "mem".into(), f).expect("corpus");
        let n = bytes.len();
        prop_assert_eq!(all_tokens(&c), ByteTokenizer::encode(&bytes));
        prop_assert!(!c.train.is_empty());
        let floor = (n as f64 * f).floor() as usize;
        if f == 0.0 {
            prop_assert_eq!(c.val.len(), 0);
        } else if n == 1 {
            prop_assert_eq!(c.val.len(), 0);
        } else if floor == 0 {
            prop_assert_eq!(c.val.len(), 1);
        } else {
            prop_assert_eq!(c.val.len(), floor.min(n - 1));
        }
        // Deterministic.
        prop_assert_eq!(Corpus::from_bytes(&bytes, "mem".into(), f).expect("corpus"), c);
    }
}
