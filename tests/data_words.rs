//! The word source's text and figures are right, checked by independent oracles
//! rather than copied numbers: the text parses back into entries with a decoder
//! written here from the lexicon alone and re-encodes (with an encoder written here
//! from the module doc's rules) to the same bytes; the floor recomputed here from the
//! public transition rows equals `entropy_rate()`, and the plug-in entropy of a long
//! text's empirical transition counts, and its log-likelihood under the chain, both
//! converge to it; `pi` sums to 1 and satisfies `pi P = pi`; the chain is strongly
//! connected and aperiodic; same seeds give the same bytes, different seeds
//! different bytes; streamed pieces equal one-shot generation; bad parameters are
//! typed errors; `cllm corpus` writes what the library generates, for both kinds.

use approx::assert_abs_diff_eq;
use cllm::data::{
    default_corpus, default_word_corpus, Corpus, DataError, EntryKind, MarkovSource, WordParams,
    WordSource, BUILT_IN_SOURCE, COMMA, DEFAULT_CORPUS_ALPHA, DEFAULT_CORPUS_BYTES,
    DEFAULT_CORPUS_ORDER, DEFAULT_CORPUS_SEED, DEFAULT_WORDS_SEED, FIRST_WORD, PARAGRAPH, PERIOD,
};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::process::Command;

fn default_source() -> WordSource {
    WordSource::new(&WordParams::default()).expect("default source")
}

/// The spelling rules of the module doc, written out again: a word gets a leading
/// space unless it follows ".\n" and a capital first letter after "." or ".\n".
fn encode(words: &[String], entries: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = PARAGRAPH;
    for &e in entries {
        match e {
            PERIOD => out.extend_from_slice(b"."),
            PARAGRAPH => out.extend_from_slice(b".\n"),
            COMMA => out.extend_from_slice(b","),
            _ => {
                if prev != PARAGRAPH {
                    out.push(b' ');
                }
                let w = words[e - FIRST_WORD].as_bytes();
                if prev == PERIOD || prev == PARAGRAPH {
                    out.push(w[0].to_ascii_uppercase());
                    out.extend_from_slice(&w[1..]);
                } else {
                    out.extend_from_slice(w);
                }
            }
        }
        prev = e;
    }
    out
}

/// Parses `text` into entries from the lexicon alone. The last entry may be cut
/// short by the text's end: it is returned as `Err(prefix)` when it is a word prefix
/// not in the lexicon. Panics on anything the spelling rules cannot produce.
fn decode(words: &[String], text: &[u8]) -> (Vec<usize>, Option<Vec<u8>>) {
    let index: HashMap<&[u8], usize> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_bytes(), FIRST_WORD + i))
        .collect();
    let mut out = Vec::new();
    let mut prev = PARAGRAPH;
    let mut i = 0;
    while i < text.len() {
        let e = match text[i] {
            b',' => {
                i += 1;
                COMMA
            }
            b'.' if text.get(i + 1) == Some(&b'\n') => {
                i += 2;
                PARAGRAPH
            }
            b'.' => {
                i += 1;
                PERIOD
            }
            b => {
                if b == b' ' {
                    assert_ne!(prev, PARAGRAPH, "space at a line start, byte {i}");
                    i += 1;
                } else {
                    assert_eq!(prev, PARAGRAPH, "word without a space, byte {i}");
                }
                let start = i;
                while i < text.len() && text[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let run = &text[start..i];
                if run.is_empty() {
                    assert_eq!(i, text.len(), "space not followed by a word, byte {start}");
                    return (out, Some(Vec::new()));
                }
                let capital = prev == PERIOD || prev == PARAGRAPH;
                assert_eq!(run[0].is_ascii_uppercase(), capital, "case at byte {start}");
                assert!(run[1..].iter().all(u8::is_ascii_lowercase), "byte {start}");
                let lower = run.to_ascii_lowercase();
                match index.get(lower.as_slice()) {
                    Some(&e) => e,
                    None => {
                        assert_eq!(i, text.len(), "unknown word {lower:?} at byte {start}");
                        return (out, Some(lower));
                    }
                }
            }
        };
        if e < FIRST_WORD {
            assert!(
                prev >= FIRST_WORD,
                "punctuation after punctuation at byte {i}"
            );
        }
        out.push(e);
        prev = e;
    }
    (out, None)
}

/// `pi P` from the public rows.
fn pi_times_p(src: &WordSource) -> Vec<f64> {
    let pi = src.stationary();
    let mut next = vec![0.0; src.n_entries()];
    for (a, w) in pi.iter().enumerate() {
        for &(b, p) in src.successors(a).expect("row") {
            next[b] += w * p;
        }
    }
    next
}

#[test]
fn lexicon_is_distinct_lowercase_words_of_2_to_9_letters() {
    for p in [
        WordParams::default(),
        WordParams {
            seed: 9,
            n_words: 2000,
            successors: 20,
            ..WordParams::default()
        },
    ] {
        let src = WordSource::new(&p).expect("source");
        let words = src.words();
        assert_eq!(words.len(), p.n_words);
        assert_eq!(src.n_entries(), FIRST_WORD + p.n_words);
        let set: HashSet<&String> = words.iter().collect();
        assert_eq!(set.len(), words.len(), "words repeat");
        for w in words {
            assert!((2..=9).contains(&w.len()), "{w}");
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
        }
        assert_eq!(src.kind(PERIOD), Some(EntryKind::Period));
        assert_eq!(src.kind(PARAGRAPH), Some(EntryKind::Paragraph));
        assert_eq!(src.kind(COMMA), Some(EntryKind::Comma));
        assert_eq!(src.kind(FIRST_WORD), Some(EntryKind::Word));
        assert_eq!(src.kind(src.n_entries()), None);
    }
}

#[test]
fn same_seeds_same_bytes_different_seeds_different_bytes() {
    let a = default_source();
    let b = default_source();
    assert_eq!(a.words(), b.words());
    assert_eq!(a.generate(50_000, 3), b.generate(50_000, 3));
    assert_ne!(a.generate(50_000, 3), a.generate(50_000, 4));
    let other = WordSource::new(&WordParams {
        seed: 2,
        ..WordParams::default()
    })
    .expect("seed 2");
    assert_ne!(a.words(), other.words());
    assert_ne!(a.generate(50_000, 3), other.generate(50_000, 3));
    // Every length is a prefix of the longer text.
    let long = a.generate(10_000, 5);
    for n in [0, 1, 7, 999, 10_000] {
        assert_eq!(a.generate(n, 5), &long[..n]);
    }
}

#[test]
fn text_decodes_to_entries_that_reencode_to_the_same_bytes() {
    for (params, seed) in [
        (WordParams::default(), 1),
        (
            WordParams {
                seed: 4,
                n_words: 30,
                successors: 3,
                zipf: 0.0,
                sentence_end: 0.5,
                comma: 0.1,
                newline: 0.9,
            },
            8,
        ),
    ] {
        let src = WordSource::new(&params).expect("source");
        for n in [1, 2, 3, 10, 333, 200_000] {
            let text = src.generate(n, seed);
            let (entries, partial) = decode(src.words(), &text);
            let again = encode(src.words(), &entries);
            match partial {
                // The text ended on an entry boundary (a cut word that happens to be a
                // word, or a final "." cut from ".\n", decode and re-encode as such).
                None => assert_eq!(again, text, "n {n}"),
                // The text ended inside a word: what is left is its start.
                Some(prefix) => {
                    assert_eq!(again, &text[..again.len()], "n {n}");
                    let rest = text[again.len()..].to_ascii_lowercase();
                    assert!(rest.ends_with(&prefix), "n {n}");
                    assert!(rest.len() <= prefix.len() + 1, "n {n}");
                    assert!(
                        src.words()
                            .iter()
                            .any(|w| w.as_bytes().starts_with(&prefix)),
                        "n {n}: {prefix:?} starts no word"
                    );
                }
            }
            // Every decoded transition is one the chain allows.
            let mut prev = PARAGRAPH;
            for &e in &entries {
                let row = src.successors(prev).expect("row");
                assert!(row.iter().any(|&(b, p)| b == e && p > 0.0), "{prev} -> {e}");
                prev = e;
            }
        }
    }
}

#[test]
fn stationary_sums_to_one_and_is_stationary() {
    for p in [
        WordParams::default(),
        WordParams {
            seed: 77,
            n_words: 1000,
            successors: 40,
            zipf: 2.0,
            ..WordParams::default()
        },
    ] {
        let src = WordSource::new(&p).expect("source");
        let pi = src.stationary();
        assert_abs_diff_eq!(pi.iter().sum::<f64>(), 1.0, epsilon = 1e-12);
        assert!(pi.iter().all(|&x| x > 0.0));
        let next = pi_times_p(&src);
        let l1: f64 = next.iter().zip(pi).map(|(a, b)| (a - b).abs()).sum();
        assert!(l1 < 1e-12, "|pi P - pi|_1 = {l1:e}");
        assert!(src.convergence().1 < 1e-12);
        for a in 0..src.n_entries() {
            let row = src.successors(a).expect("row");
            assert_abs_diff_eq!(row.iter().map(|r| r.1).sum::<f64>(), 1.0, epsilon = 1e-12);
            assert!(row.iter().all(|&(_, p)| p > 0.0));
        }
    }
}

/// The chain's graph is strongly connected and its period (gcd of
/// `level(u) + 1 - level(v)` over edges, BFS levels from one node) is 1.
fn assert_irreducible_aperiodic(src: &WordSource) {
    let n = src.n_entries();
    let mut level = vec![usize::MAX; n];
    level[PERIOD] = 0;
    let mut queue = VecDeque::from([PERIOD]);
    while let Some(a) = queue.pop_front() {
        for &(b, _) in src.successors(a).expect("row") {
            if level[b] == usize::MAX {
                level[b] = level[a] + 1;
                queue.push_back(b);
            }
        }
    }
    assert!(
        level.iter().all(|&l| l != usize::MAX),
        "not every entry reachable"
    );
    // Every entry reaches PERIOD: BFS on the reversed graph.
    let mut rev = vec![Vec::new(); n];
    for a in 0..n {
        for &(b, _) in src.successors(a).expect("row") {
            rev[b].push(a);
        }
    }
    let mut seen = vec![false; n];
    seen[PERIOD] = true;
    let mut queue = VecDeque::from([PERIOD]);
    while let Some(b) = queue.pop_front() {
        for &a in &rev[b] {
            if !seen[a] {
                seen[a] = true;
                queue.push_back(a);
            }
        }
    }
    assert!(seen.iter().all(|&s| s), "not every entry reaches '.'");
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let mut g = 0;
    for a in 0..n {
        for &(b, _) in src.successors(a).expect("row") {
            g = gcd(g, (level[a] + 1).abs_diff(level[b]));
        }
    }
    assert_eq!(g, 1, "period {g}");
}

#[test]
fn default_chain_is_irreducible_and_aperiodic() {
    assert_irreducible_aperiodic(&default_source());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn every_chain_is_irreducible_aperiodic_and_stationary(
        seed in any::<u64>(),
        n_words in 2usize..80,
        succ in 1usize..12,
        zipf in 0.0f64..3.0,
        sentence_end in 0.01f64..0.4,
        comma in 0.01f64..0.2,
        newline in 0.01f64..0.99,
    ) {
        let p = WordParams {
            seed,
            n_words,
            successors: succ.min(n_words - 1),
            zipf,
            sentence_end,
            comma,
            newline,
        };
        let src = WordSource::new(&p).expect("source");
        assert_irreducible_aperiodic(&src);
        let next = pi_times_p(&src);
        let l1: f64 = next.iter().zip(src.stationary()).map(|(a, b)| (a - b).abs()).sum();
        prop_assert!(l1 < 1e-12);
        prop_assert!(src.entropy_rate() > 0.0);
    }

    #[test]
    fn streamed_pieces_equal_one_shot(
        seed in any::<u64>(),
        pieces in proptest::collection::vec(0usize..5000, 1..20),
    ) {
        let src = default_source();
        let total: usize = pieces.iter().sum();
        let one_shot = src.generate(total, seed);
        let mut stream = src.stream(seed);
        let mut got = Vec::new();
        for n in &pieces {
            let mut buf = vec![0; *n];
            stream.fill(&mut buf);
            got.extend_from_slice(&buf);
        }
        prop_assert_eq!(&got, &one_shot);
        // write_to in chunks of any size gives the same bytes.
        let chunk = pieces[0].max(1);
        let mut written = Vec::new();
        src.stream(seed).write_to(&mut written, total as u64, chunk).expect("vec write");
        prop_assert_eq!(&written, &one_shot);
    }
}

#[test]
fn floor_recomputed_from_the_rows_matches() {
    let src = default_source();
    let pi = src.stationary();
    let mut h = 0.0;
    let mut bytes = 0.0;
    for (a, w) in pi.iter().enumerate() {
        for &(b, p) in src.successors(a).expect("row") {
            h -= w * p * p.ln();
            // The length of b's spelling after a, by the test's own encoder: encode
            // the pair and subtract a's spelling.
            let pair = encode_after(src.words(), a, b);
            bytes += w * p * pair as f64;
        }
    }
    assert_abs_diff_eq!(h, src.entry_entropy_rate(), epsilon = 1e-12);
    assert_abs_diff_eq!(bytes, src.mean_entry_bytes(), epsilon = 1e-12);
    assert_abs_diff_eq!(h / bytes, src.entropy_rate(), epsilon = 1e-12);
    // Meaningful: well above zero and below the letter source's.
    let letters = MarkovSource::new(
        DEFAULT_CORPUS_SEED,
        DEFAULT_CORPUS_ORDER,
        DEFAULT_CORPUS_ALPHA,
    )
    .expect("letters")
    .entropy_rate();
    assert!(src.entropy_rate() > 0.2 && src.entropy_rate() < letters - 0.5);
}

/// Bytes of entry `b`'s spelling right after entry `a`, by [`encode`].
fn encode_after(words: &[String], a: usize, b: usize) -> usize {
    // Put `a` after a word (so that `a` itself is valid), then `b`.
    let lead = if a < FIRST_WORD {
        vec![FIRST_WORD, a]
    } else {
        vec![a]
    };
    let mut both = lead.clone();
    both.push(b);
    encode(words, &both).len() - encode(words, &lead).len()
}

#[test]
fn empirical_entropy_of_a_long_text_converges_to_the_floor() {
    let src = default_source();
    let text = src.generate(6_000_000, 11);
    let (entries, _) = decode(src.words(), &text);
    let n_bytes = encode(src.words(), &entries).len().min(text.len()) as f64;
    let mut pair: HashMap<(usize, usize), u64> = HashMap::new();
    let mut from: HashMap<usize, u64> = HashMap::new();
    let mut nll = 0.0;
    let mut prev = PARAGRAPH;
    for &e in &entries {
        *pair.entry((prev, e)).or_default() += 1;
        *from.entry(prev).or_default() += 1;
        let row = src.successors(prev).expect("row");
        let p = row.iter().find(|r| r.0 == e).expect("allowed").1;
        nll -= p.ln();
        prev = e;
    }
    let n = entries.len() as f64;
    // Plug-in conditional entropy from the counts, per byte.
    let plug_in: f64 = pair
        .iter()
        .map(|(&(a, _), &c)| c as f64 * (from[&a] as f64 / c as f64).ln())
        .sum::<f64>()
        / n_bytes;
    let floor = src.entropy_rate();
    // Tolerance: about 1.4M entries; the per-entry log-loss has a standard deviation
    // near 1 nat, so the standard error of the mean is near 1e-3 nats per entry, or
    // 2.5e-4 per byte at about 4 bytes per entry (doubled for the chain's short-range
    // correlation: 5e-4). The plug-in estimate is biased low by about
    // (transitions - rows) / (2 n) = (about 1400) / 2.8M = 5e-4 nats per entry, 1.2e-4
    // per byte. 4e-3 is more than six standard errors plus the bias.
    let tol = 4e-3;
    assert!(
        (nll / n_bytes - floor).abs() < tol,
        "log-likelihood {} vs floor {floor}",
        nll / n_bytes
    );
    assert!(
        (plug_in - floor).abs() < tol,
        "plug-in {plug_in} vs floor {floor}"
    );
    // And the mean spelling length matches: 6M bytes / entries.
    assert!((n_bytes / n - src.mean_entry_bytes()).abs() < 0.02);
}

#[test]
fn bad_parameters_are_typed_errors() {
    let ok = WordParams::default();
    let cases: Vec<(WordParams, &str)> = vec![
        (
            WordParams {
                n_words: 1,
                ..ok.clone()
            },
            "n_words",
        ),
        (
            WordParams {
                n_words: 4097,
                ..ok.clone()
            },
            "n_words",
        ),
        (
            WordParams {
                successors: 0,
                ..ok.clone()
            },
            "successors",
        ),
        (
            WordParams {
                n_words: 5,
                successors: 5,
                ..ok.clone()
            },
            "successors",
        ),
        (
            WordParams {
                successors: 257,
                n_words: 1000,
                ..ok.clone()
            },
            "successors",
        ),
        (
            WordParams {
                zipf: -0.1,
                ..ok.clone()
            },
            "zipf",
        ),
        (
            WordParams {
                zipf: f64::NAN,
                ..ok.clone()
            },
            "zipf",
        ),
        (
            WordParams {
                zipf: 4.5,
                ..ok.clone()
            },
            "zipf",
        ),
        (
            WordParams {
                sentence_end: 0.0,
                ..ok.clone()
            },
            "sentence_end",
        ),
        (
            WordParams {
                sentence_end: f64::INFINITY,
                ..ok.clone()
            },
            "sentence_end",
        ),
        (
            WordParams {
                comma: 0.0,
                ..ok.clone()
            },
            "comma",
        ),
        (
            WordParams {
                comma: 0.51,
                ..ok.clone()
            },
            "comma",
        ),
        (
            WordParams {
                sentence_end: 0.4,
                comma: 0.3,
                ..ok.clone()
            },
            "sentence_end + comma",
        ),
        (
            WordParams {
                newline: 0.0,
                ..ok.clone()
            },
            "newline",
        ),
        (
            WordParams {
                newline: 1.0,
                ..ok.clone()
            },
            "newline",
        ),
        (
            WordParams {
                newline: f64::NAN,
                ..ok.clone()
            },
            "newline",
        ),
    ];
    for (p, name) in cases {
        match WordSource::new(&p) {
            Err(DataError::BadWordParam { what, .. }) => assert_eq!(what, name, "{p:?}"),
            other => panic!("{p:?}: expected BadWordParam({name}), got {other:?}"),
        }
    }
}

#[test]
fn built_in_corpus_is_the_word_source() {
    let (c, floor) = Corpus::built_in(0.1).expect("built in");
    let src = default_source();
    assert_eq!(floor, src.entropy_rate());
    assert_eq!(c.source, BUILT_IN_SOURCE);
    let (bytes, rate) = default_word_corpus().expect("default");
    assert_eq!(rate, floor);
    assert_eq!(bytes.len(), DEFAULT_CORPUS_BYTES);
    assert_eq!(
        bytes,
        src.generate(DEFAULT_CORPUS_BYTES, DEFAULT_WORDS_SEED)
    );
    let all: Vec<u32> = c.train.iter().chain(&c.val).copied().collect();
    assert_eq!(all, bytes.iter().map(|&b| u32::from(b)).collect::<Vec<_>>());
}

fn cllm_corpus(
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let out = dir.join(name);
    let mut args = vec!["corpus", "--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(&args)
        .output()
        .expect("run cllm");
    (o, out)
}

#[test]
fn cllm_corpus_writes_what_the_library_generates() {
    let dir = std::env::temp_dir().join(format!("cllm_data_words_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let src = default_source();
    let letters = MarkovSource::new(
        DEFAULT_CORPUS_SEED,
        DEFAULT_CORPUS_ORDER,
        DEFAULT_CORPUS_ALPHA,
    )
    .expect("letters");

    let (o, f) = cllm_corpus(&dir, "words.txt", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("entropy rate"), "{stdout}");
    assert!(
        stdout.contains(&format!("{:.6}", src.entropy_rate())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&f).expect("read"),
        default_word_corpus().expect("words").0
    );

    // Longer than one 1 MiB piece and than the default: a prefix-consistent stream.
    let n = 2_500_001;
    let (o, f) = cllm_corpus(&dir, "words-long.txt", &["--bytes", &n.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&f).expect("read"),
        src.generate(n, DEFAULT_WORDS_SEED)
    );

    let (o, f) = cllm_corpus(&dir, "letters.txt", &["--kind", "letters"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{:.6}", letters.entropy_rate())));
    assert_eq!(
        std::fs::read(&f).expect("read"),
        default_corpus().expect("letters").0
    );

    let n = 1_100_000;
    let (o, f) = cllm_corpus(
        &dir,
        "letters-long.txt",
        &["--kind", "letters", "--bytes", &n.to_string()],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&f).expect("read"),
        letters.generate(n, DEFAULT_CORPUS_SEED)
    );

    let (o, f) = cllm_corpus(&dir, "one.txt", &["--bytes", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&f).expect("read"),
        src.generate(1, DEFAULT_WORDS_SEED)
    );

    for bad in ["0", "1099511627777"] {
        let (o, f) = cllm_corpus(&dir, "bad.txt", &["--bytes", bad]);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--bytes"),
            "{bad}"
        );
        assert!(!f.exists());
    }
    // No temporary files are left behind.
    for entry in std::fs::read_dir(&dir).expect("list") {
        let name = entry.expect("entry").file_name();
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "{name:?} left behind"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Conditional entropy `H(Y_1 | Y_0)` in nats of the byte pairs of `text` (plug-in).
fn byte_bigram_entropy(text: &[u8]) -> f64 {
    let mut pair = vec![0u64; 256 * 256];
    let mut from = [0u64; 256];
    for w in text.windows(2) {
        pair[usize::from(w[0]) * 256 + usize::from(w[1])] += 1;
        from[usize::from(w[0])] += 1;
    }
    let n = (text.len() - 1) as f64;
    pair.iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| c as f64 * (from[i / 256] as f64 / c as f64).ln())
        .sum::<f64>()
        / n
}

#[test]
fn windowed_floor_matches_byte_bigrams_and_falls_to_the_floor() {
    let src = default_source();
    // Context 1: the exact predictor given one byte is the byte bigram law, whose
    // plug-in estimate from 4 MB (about 600 nonzero pairs, bias ~1e-4) is an
    // independent oracle. 40,000 windows: per-byte losses have a standard deviation
    // below 2 nats, so the standard error is below 0.01; 0.04 is four of them.
    let oracle = byte_bigram_entropy(&src.generate(4_000_000, 21));
    let w1 = src.windowed_floor(1, 40_000, 5);
    assert!(
        (w1 - oracle).abs() < 0.04,
        "windowed {w1} vs bigrams {oracle}"
    );
    // Longer windows know more: the estimate falls toward the floor, never below it
    // by more than its noise (2,000 windows of 64: standard error about 0.005).
    let w8 = src.windowed_floor(8, 4000, 6);
    let w64 = src.windowed_floor(64, 2000, 7);
    let floor = src.entropy_rate();
    eprintln!("floor {floor:.4}  windowed: 1 byte {w1:.4} (bigrams {oracle:.4}), 8 bytes {w8:.4}, 64 bytes {w64:.4}");
    assert!(w1 > w8 && w8 > w64, "{w1} {w8} {w64}");
    assert!(w64 > floor - 0.02, "{w64} vs {floor}");
    assert!(w64 < floor + 0.2, "{w64} vs {floor}");
}
