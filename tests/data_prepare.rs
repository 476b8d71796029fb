//! A run's text end to end: the tokenizer a run trains with, the tokens it trains on,
//! and the bitwise guarantee over BPE tokens, from the memory-mapped token cache too.

mod bitwise;
#[path = "watchdog/mod.rs"]
mod watchdog;

use bitwise::{bits, stat_bits};
use cllm::data::prepare::{
    prepare, val_bytes_per_token, PrepareOptions, Prepared, Source, TokenizerChoice,
};
use cllm::data::{Corpus, TokenSource, Tokenizer, Tokens};
use cllm::model::GptConfig;
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{Scheduler, TrainConfig, TrainState, Trainer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cllm-prepare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn opts(cache: PathBuf) -> PrepareOptions {
    PrepareOptions {
        val_fraction: 0.1,
        cache_dir: cache,
        threads: 2,
    }
}

fn built_in(choice: TokenizerChoice) -> Prepared {
    prepare(
        Source::BuiltIn,
        choice,
        &opts(PathBuf::from("unused")),
        &mut |_| {},
    )
    .unwrap()
}

/// The built-in corpus with a 300-id BPE, made once per test binary.
fn bpe_built_in() -> &'static Prepared {
    static P: OnceLock<Prepared> = OnceLock::new();
    P.get_or_init(|| built_in(TokenizerChoice::Bpe { vocab: 300 }))
}

/// 300 KB of the word corpus on disk with a 300-id BPE, read from its memory-mapped
/// token file (made once per test binary).
fn bpe_on_disk() -> &'static Prepared {
    static P: OnceLock<Prepared> = OnceLock::new();
    P.get_or_init(|| {
        let dir = scratch("mapped");
        let words = cllm::data::default_word_corpus().unwrap().0;
        std::fs::write(dir.join("words.txt"), &words[..300_000]).unwrap();
        let choice = TokenizerChoice::Bpe { vocab: 300 };
        let o = opts(dir.join("cache"));
        let p = prepare(
            Source::Path(&dir.join("words.txt")),
            choice,
            &o,
            &mut |_| {},
        )
        .unwrap();
        // The token file stays open (and mapped) for the binary's life: its directory
        // can go now, so no run of this binary leaves it behind.
        let _ = std::fs::remove_dir_all(&dir);
        p
    })
}

/// With the byte tokenizer the built-in corpus gives exactly `Corpus::built_in`'s
/// tokens and floor.
#[test]
fn byte_tokens_of_the_built_in_corpus_are_the_corpus() {
    let p = built_in(TokenizerChoice::Byte);
    let (corpus, floor) = Corpus::built_in(0.1).unwrap();
    assert_eq!(p.train.to_vec(), corpus.train);
    assert_eq!(p.val.to_vec(), corpus.val);
    assert_eq!(p.floor, Some(floor));
    assert_eq!(p.text_bytes as usize, corpus.train.len() + corpus.val.len());
}

/// The BPE is trained on the training text only, and the two parts are tokenized on
/// their own: decoding each part gives back exactly its text.
#[test]
fn a_bpe_sees_only_the_training_text() {
    let p = bpe_built_in();
    let (corpus, _) = Corpus::built_in(0.1).unwrap();
    let train_text: Vec<u8> = corpus.train.iter().map(|&t| t as u8).collect();
    let val_text: Vec<u8> = corpus.val.iter().map(|&t| t as u8).collect();
    let want = Tokenizer::train_bpe(
        std::iter::once(std::str::from_utf8(&train_text).unwrap()),
        300,
    )
    .unwrap();
    assert_eq!(p.tokenizer.to_json(), want.to_json());
    assert_eq!(
        p.tokenizer.decode(&p.train.to_vec()).as_bytes(),
        &train_text[..]
    );
    assert_eq!(
        p.tokenizer.decode(&p.val.to_vec()).as_bytes(),
        &val_text[..]
    );
    assert!(
        p.train.len() < train_text.len(),
        "the merges shorten the stream"
    );
}

/// Bits per byte count the bytes of the target tokens (each window's tokens 1..=seq).
#[test]
fn bytes_per_token_counts_the_targets() {
    let p = bpe_built_in();
    let t = &p.tokenizer;
    let long = (256..t.vocab_size() as u32)
        .find(|&id| t.token_bytes(id).len() >= 3)
        .expect("a merged token of 3 or more bytes");
    let short = u32::from(b'a');
    // One window of seq 2 at 0: inputs [long, short], targets [short, short].
    let val = vec![long, short, short];
    assert_eq!(val_bytes_per_token(t, &val, 2, 1), Some(1.0));
    // Targets [long, short] from a window starting one earlier.
    let val = vec![short, long, short];
    let want = (t.token_bytes(long).len() + 1) as f64 / 2.0;
    assert_eq!(val_bytes_per_token(t, &val, 2, 1), Some(want));
    assert_eq!(val_bytes_per_token(t, &val, 3, 1), None, "no window fits");
}

/// A corpus on disk: the tokens are each file's own encoding, cut into training and
/// validation text; a second prepare takes the tokenizer and the tokens from the cache.
#[test]
fn a_corpus_on_disk_is_tokenized_once_and_cached() {
    let dir = scratch("disk");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let words = cllm::data::default_word_corpus().unwrap().0;
    std::fs::write(data.join("a.txt"), &words[..200_000]).unwrap();
    std::fs::write(data.join("b.txt"), &words[200_000..300_000]).unwrap();
    let o = opts(dir.join("cache"));
    let choice = || TokenizerChoice::Bpe { vocab: 300 };
    let first = prepare(Source::Path(&data), choice(), &o, &mut |_| {}).unwrap();
    assert_eq!(first.tokenizer_cached, Some(false));
    assert_eq!(first.cache, Some(cllm::data::CacheStatus::Built));
    let second = prepare(Source::Path(&data), choice(), &o, &mut |_| {}).unwrap();
    assert_eq!(second.tokenizer_cached, Some(true));
    assert_eq!(second.cache, Some(cllm::data::CacheStatus::Hit));
    assert_eq!(second.tokenizer.to_json(), first.tokenizer.to_json());
    assert_eq!(second.fingerprint, first.fingerprint);
    let all: Vec<u32> = [first.train.to_vec(), first.val.to_vec()].concat();
    let want: Vec<u32> = [&words[..200_000], &words[200_000..300_000]]
        .iter()
        .flat_map(|text| first.tokenizer.encode(text).unwrap())
        .collect();
    // The validation text starts at a word cut, which byte-level BPE does not cross.
    assert_eq!(all, want);
    assert_eq!(second.train.to_vec(), first.train.to_vec());
    assert_eq!(first.text_bytes, 300_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cases of the property (override with `CLLM_PROP_PREPARE_CASES=N`).
fn cases() -> u32 {
    std::env::var("CLLM_PROP_PREPARE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

proptest! {
    #![proptest_config(Config { cases: cases(), failure_persistence: None, ..Config::default() })]

    /// The guarantee over BPE tokens read from a memory-mapped token file: any thread
    /// count and either scheduler give the single-threaded reference's bits (every
    /// step's stats, the weights and the moments).
    #[test]
    fn bpe_tokens_train_bitwise_like_the_reference(
        threads in 1usize..=4,
        micro_batches in 1usize..=4,
        seq in 2usize..=8,
        seed in any::<u64>(),
    ) {
        let _w = watchdog::Watchdog::arm("data_prepare BPE case".to_string(), Duration::from_secs(120));
        let p = bpe_on_disk();
        let cfg = TrainConfig {
            model: GptConfig {
                n_layer: 1,
                n_head: 2,
                n_embd: 8,
                n_positions: 8,
                vocab_size: p.tokenizer.vocab_size(),
            },
            batch: 2,
            micro_batches,
            seq,
            steps: 3,
            schedule: Schedule { max_lr: 1e-2, min_lr: 1e-3, warmup: 1, total: 3 },
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            seed,
        };
        let train: Tokens = p.train.clone();
        let mut reference = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
        let want: Vec<_> = (0..3).map(|_| stat_bits(&reference.step(&train).unwrap())).collect();
        let want_state = reference.into_state();
        for scheduler in [Scheduler::LockFree, Scheduler::Barrier] {
            let mut t = Trainer::with_scheduler(cfg, TrainState::initial(&cfg).unwrap(), threads, scheduler).unwrap();
            let mut got = Vec::new();
            t.run(&train, 3, &mut |s| { got.push(stat_bits(s)); true }).unwrap();
            prop_assert_eq!(&got, &want, "{:?}: stats", scheduler);
            let state = t.into_state();
            prop_assert!(bits(&state.params) == bits(&want_state.params), "{:?}: weights", scheduler);
            prop_assert!(bits(&state.opt.v) == bits(&want_state.opt.v), "{:?}: moments", scheduler);
        }
    }
}
