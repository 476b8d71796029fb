//! The `Tokenizer` type: byte, trained byte-level BPE and GPT-2. Oracles are
//! independent of the code under test: the bytes themselves (byte), `tiktoken-rs`'s
//! own encoder (GPT-2), the `tokenizers` library loading our files on its own (byte),
//! round trips, and hand-derived counts.

use cllm::data::{
    byte_char, Rng, Tokenizer, TokenizerError, TokenizerKind, END_OF_TEXT, GPT2_VOCAB,
};
use proptest::prelude::*;

/// Real English text (this repository's README), the same on every run.
const README: &str = include_str!("../README.md");

/// Texts that exercise every pre-tokenizer branch: contractions, digits, punctuation
/// runs, whitespace runs (trailing, before words, tabs, newlines), multibyte UTF-8
/// (Latin, Greek, Cyrillic, CJK, emoji, combining marks).
const VARIED: &[&str] = &[
    "",
    " ",
    "  ",
    "\n",
    "a",
    "This program is free software",
    "Hello, world! It's 2026; we're here, they'll see, I'd go, you've been, I'm ok.",
    "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\n\r\nand   many    spaces\n\n\n",
    "numbers 1234567890 3.14159 1,000,000 42nd",
    "punctuation!!! ??? ... --- === *** ((())) [[]] {{}} <<>> @@ ## $$ %% ^^ && ~~",
    "héllo wörld ça va? naïve café façade Ærøskøbing straße",
    "Καλημέρα κόσμε, Привет мир, שלום עולם, مرحبا بالعالم",
    "日本語のテキストと中文文本和한국어 텍스트",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵",
    "combining e\u{301} a\u{308} n\u{303} and zero\u{200B}width",
    "CamelCaseWords snake_case_words kebab-case-words SCREAMING_CASE",
    "code: fn main() { println!(\"{}\", x + 1); } // comment",
    "'s 't 're 've 'm 'll 'd 'S 'T ' s ''",
    "a<|endoftext|>b <|endoftext|> text",
    "mixed\u{a0}nbsp and\u{2003}em\u{3000}ideographic space",
    "\u{0}\u{1}\u{7f} control chars \u{1b}[31m",
];

fn readme_words() -> Vec<&'static str> {
    README.split_whitespace().collect()
}

/// `n_bytes` of text drawn from the README's words with seeded random spacing and
/// multibyte words mixed in.
fn synthetic_text(n_bytes: usize, seed: u64) -> String {
    let words = readme_words();
    let extra = [
        "héllo",
        "naïve",
        "日本語",
        "😀",
        "Привет",
        "it's",
        "we're",
        "1234",
    ];
    let mut rng = Rng::new(seed);
    let mut s = String::with_capacity(n_bytes + 64);
    while s.len() < n_bytes {
        let w = if rng.below(10) == 0 {
            extra[rng.below(extra.len())]
        } else {
            words[rng.below(words.len())]
        };
        s.push_str(w);
        s.push_str(match rng.below(20) {
            0 => "\n",
            1 => ", ",
            2 => ".\n\n",
            _ => " ",
        });
    }
    s
}

/// A 600-id BPE trained on the README (trained once per test binary).
fn small_bpe() -> Tokenizer {
    static T: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::train_bpe(std::iter::once(README), 600).expect("README trains a 600-token BPE")
    })
    .clone()
}

fn concat_bytes(t: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    ids.iter()
        .flat_map(|&i| t.token_bytes(i).to_vec())
        .collect()
}

#[test]
fn kinds_parse_by_name_and_unknown_names_list_all_three() {
    for (name, kind) in [
        ("byte", TokenizerKind::Byte),
        ("bpe", TokenizerKind::Bpe),
        ("gpt2", TokenizerKind::Gpt2),
    ] {
        assert_eq!(TokenizerKind::parse(name).unwrap(), kind);
        assert_eq!(kind.name(), name);
        assert_eq!(name.parse::<TokenizerKind>().unwrap(), kind);
    }
    let err = TokenizerKind::parse("wordpiece").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::UnknownKind { .. }));
    for name in ["wordpiece", "byte", "bpe", "gpt2"] {
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn tokenizers_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    check::<Tokenizer>();
}

#[test]
fn byte_ids_are_the_bytes() {
    let t = Tokenizer::byte();
    assert_eq!(t.kind(), TokenizerKind::Byte);
    assert_eq!(t.vocab_size(), 256);
    let all: Vec<u8> = (0..=255u8).collect();
    let ids = t.encode(&all).unwrap();
    assert_eq!(ids, (0..256u32).collect::<Vec<_>>());
    for b in 0..=255u8 {
        assert_eq!(t.token_bytes(u32::from(b)), &[b]);
    }
    assert_eq!(t.token_bytes(256), b"");
    // Any bytes, UTF-8 or not.
    assert_eq!(t.encode(&[0xff, 0x00, 0xc3]).unwrap(), vec![255, 0, 195]);
    assert_eq!(t.decode(&[104, 300, 105]), "h\u{FFFD}i");
    assert_eq!(
        t.decode(&t.encode("héllo 😀".as_bytes()).unwrap()),
        "héllo 😀"
    );
}

#[test]
fn byte_json_round_trips_and_is_a_hugging_face_tokenizer_with_the_same_ids() {
    let t = Tokenizer::byte();
    let json = t.to_json();
    let back = Tokenizer::from_json(&json).unwrap();
    assert_eq!(back.kind(), TokenizerKind::Byte);
    assert_eq!(back.to_json(), json);
    assert_eq!(back.fingerprint(), t.fingerprint());
    // The `tokenizers` library reading the file with its own deserialiser and pipeline
    // gives byte values as ids.
    let hf = tokenizers::Tokenizer::from_bytes(&json).unwrap();
    assert_eq!(hf.get_vocab_size(true), 256);
    for s in VARIED {
        let ids = hf.encode(*s, false).unwrap().get_ids().to_vec();
        let want: Vec<u32> = s.bytes().map(u32::from).collect();
        assert_eq!(ids, want, "{s:?}");
    }
}

#[test]
fn byte_level_characters_are_the_librarys_alphabet() {
    let ours: std::collections::HashSet<char> = (0..=255u8).map(byte_char).collect();
    let theirs: std::collections::HashSet<char> =
        tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet()
            .into_iter()
            .collect();
    assert_eq!(ours.len(), 256);
    assert_eq!(ours, theirs);
    // GPT-2's map, by hand: printable ASCII is itself, space is U+0120, NUL U+0100.
    assert_eq!(byte_char(b'A'), 'A');
    assert_eq!(byte_char(b' '), '\u{120}');
    assert_eq!(byte_char(0), '\u{100}');
    assert_eq!(byte_char(b'\n'), '\u{10A}');
}

#[test]
fn bpe_training_is_deterministic_and_independent_of_chunking() {
    let text = synthetic_text(400_000, 7);
    let a = Tokenizer::train_bpe(std::iter::once(text.as_str()), 1000).unwrap();
    let b = Tokenizer::train_bpe(std::iter::once(text.as_str()), 1000).unwrap();
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.fingerprint(), b.fingerprint());
    // The same text in uneven chunks (cut at char boundaries, mid-word).
    let mut chunks = Vec::new();
    let mut rest = text.as_str();
    let mut rng = Rng::new(3);
    while !rest.is_empty() {
        let mut cut = (1 + rng.below(5000)).min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        chunks.push(head.to_string());
        rest = tail;
    }
    assert!(chunks.len() > 100);
    let c = Tokenizer::train_bpe(chunks.into_iter(), 1000).unwrap();
    assert_eq!(c.to_json(), a.to_json());
    assert_eq!(a.kind(), TokenizerKind::Bpe);
    assert_eq!(a.vocab_size(), 1000);

    // Text with no ASCII spaces (no safe cut anywhere): whole or in chunks, the same.
    let mut rng = Rng::new(9);
    let sentences = [
        "日本語の文章です。",
        "中文文本和标点，",
        "한국어 텍스트！",
        "😀🎉",
    ];
    let cjk: Vec<&str> = (0..20_000)
        .map(|_| sentences[rng.below(sentences.len())])
        .collect();
    let whole = Tokenizer::train_bpe(std::iter::once(cjk.concat()), 320).unwrap();
    let pieces = Tokenizer::train_bpe(cjk.into_iter(), 320).unwrap();
    assert_eq!(whole.to_json(), pieces.to_json());
}

#[test]
fn bpe_has_bytes_merges_and_end_of_text_last() {
    let t = small_bpe();
    assert_eq!(t.vocab_size(), 600);
    assert_eq!(t.special_id(END_OF_TEXT), Some(599));
    assert_eq!(t.token_bytes(599), b"");
    assert_eq!(t.decode(&[599]), END_OF_TEXT);
    // The first 256 ids are the 256 single bytes.
    let mut singles: Vec<u8> = (0..256).map(|i| t.token_bytes(i)[0]).collect();
    assert!((0..256).all(|i| t.token_bytes(i).len() == 1));
    singles.sort();
    assert_eq!(singles, (0..=255u8).collect::<Vec<_>>());
    // Every later non-special token is longer than one byte.
    assert!((256..599).all(|i| t.token_bytes(i).len() >= 2));
}

#[test]
fn a_frequent_word_becomes_one_token() {
    // " the" is the most frequent word of English prose, and README's most frequent.
    let t = small_bpe();
    assert_eq!(t.encode(b" the").unwrap().len(), 1);
    // The words are "the" (once), " quick", " brown", " fox", " the" and a final " ".
    // Collapsing them takes 5 + 5 + 3 merges for " quick", " brown", " fox" and 3 for
    // "th", "the", " the" (every pair of the first two occurs 2,000 times, " the" 1,999):
    // 16 merges, so 256 + 16 + <|endoftext|> = 273 ids is the whole vocabulary.
    let text = "the quick brown fox ".repeat(2000);
    let t = Tokenizer::train_bpe(std::iter::once(text.as_str()), 273).unwrap();
    let err = Tokenizer::train_bpe(std::iter::once(text.as_str()), 274).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::CorpusTooSmall {
                reached: 273,
                requested: 274
            }
        ),
        "{err}"
    );
    for w in ["the", " the", " quick", " brown", " fox"] {
        let ids = t.encode(w.as_bytes()).unwrap();
        assert_eq!(ids.len(), 1, "{w:?} -> {ids:?}");
        assert_eq!(t.token_bytes(ids[0]), w.as_bytes());
    }
    // Far fewer tokens than bytes on the training text.
    assert!(t.encode(text.as_bytes()).unwrap().len() * 4 < text.len());
}

#[test]
fn round_trips_and_token_bytes_for_every_kind() {
    let gpt2 = Tokenizer::gpt2().unwrap();
    for t in [Tokenizer::byte(), small_bpe(), gpt2] {
        for s in VARIED.iter().copied().chain([README]) {
            let ids = t.encode(s.as_bytes()).unwrap();
            assert_eq!(t.decode(&ids), s, "{:?} {s:?}", t.kind());
            assert_eq!(concat_bytes(&t, &ids), s.as_bytes(), "{:?} {s:?}", t.kind());
            assert_eq!(t.encode(t.decode(&ids).as_bytes()).unwrap(), ids);
            assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
        }
    }
}

#[test]
fn bad_vocabulary_sizes_and_corpora_are_errors_naming_the_numbers() {
    for vocab in [0, 100, 256, 65_537, 70_000] {
        let err = Tokenizer::train_bpe(std::iter::once(README), vocab).unwrap_err();
        assert!(
            matches!(err, TokenizerError::VocabOutOfRange { vocab: v } if v == vocab),
            "{err}"
        );
        assert!(err.to_string().contains(&vocab.to_string()), "{err}");
    }
    // "abab": pairs ab, ba; at most 256 + 3 tokens ("ab", "ba"/"aba", "abab").
    let err = Tokenizer::train_bpe(std::iter::once("abab"), 1000).unwrap_err();
    match &err {
        TokenizerError::CorpusTooSmall { reached, requested } => {
            assert_eq!(*requested, 1000);
            assert!(*reached < 1000 && *reached >= 257, "{reached}");
        }
        e => panic!("expected CorpusTooSmall, got {e}"),
    }
    assert!(err.to_string().contains("1000"), "{err}");
    // 257 is the bytes and <|endoftext|>: no merges needed, any corpus will do.
    let t = Tokenizer::train_bpe(std::iter::once(""), 257).unwrap();
    assert_eq!(t.vocab_size(), 257);
    assert_eq!(t.encode(b"ab").unwrap().len(), 2);
}

#[test]
fn bpe_and_gpt2_reject_non_utf8_naming_the_offset() {
    let text = b"valid \xc3\xa9 then \xff bad";
    for t in [small_bpe(), Tokenizer::gpt2().unwrap()] {
        let err = t.encode(text).unwrap_err();
        // "valid " (6 bytes) + "é" (2) + " then " (6): the bad byte is at 14.
        assert!(
            matches!(err, TokenizerError::NotUtf8 { offset: 14 }),
            "{err}"
        );
        assert!(err.to_string().contains("14"), "{err}");
    }
}

#[test]
fn out_of_range_ids_decode_to_replacement_characters() {
    let t = small_bpe();
    assert_eq!(t.token_bytes(600), b"");
    assert_eq!(t.token_bytes(u32::MAX), b"");
    let h = t.encode(b"h").unwrap();
    let mut ids = h.clone();
    ids.push(600);
    ids.extend(&h);
    assert_eq!(t.decode(&ids), "h\u{FFFD}h");
}

#[test]
fn gpt2_gives_gpt2s_ids() {
    let t = Tokenizer::gpt2().unwrap();
    assert_eq!(t.kind(), TokenizerKind::Gpt2);
    assert_eq!(t.vocab_size(), GPT2_VOCAB);
    assert_eq!(t.special_id(END_OF_TEXT), Some(50_256));
    assert_eq!(
        t.encode(b"This program is free software").unwrap(),
        vec![1212, 1430, 318, 1479, 3788]
    );
    // GPT-2's id 0 is "!" and 220 is " " (the byte-to-unicode order).
    assert_eq!(t.token_bytes(0), b"!");
    assert_eq!(t.token_bytes(220), b" ");
    let back = Tokenizer::from_json(&t.to_json()).unwrap();
    assert_eq!(back.kind(), TokenizerKind::Gpt2);
    assert_eq!(back, t);
}

fn tiktoken() -> &'static tiktoken_rs::CoreBPE {
    tiktoken_rs::r50k_base_singleton()
}

#[test]
fn gpt2_equals_tiktoken_on_fixed_texts() {
    let t = Tokenizer::gpt2().unwrap();
    let big = synthetic_text(300_000, 11); // several encode pieces
    for s in VARIED.iter().copied().chain([README, big.as_str()]) {
        let ours = t.encode(s.as_bytes()).unwrap();
        let theirs = tiktoken().encode_ordinary(s);
        assert_eq!(ours, theirs, "{s:?}");
    }
}

fn text_strategy() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "a",
        "b",
        "Z",
        "the",
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "'",
        "'s",
        "'ll",
        "0",
        "42",
        "!",
        "...",
        ",",
        "-",
        "_",
        "é",
        "ß",
        "ж",
        "日",
        "本",
        "😀",
        "\u{301}",
        "\u{a0}",
        "\u{2003}",
        "\u{3000}",
        "\u{85}",
        "<|endoftext|>",
        "x",
        "Q",
        "9",
        "$",
        "\u{0}",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn gpt2_equals_tiktoken_on_random_texts(s in text_strategy()) {
        let t = Tokenizer::gpt2().unwrap();
        let ours = t.encode(s.as_bytes()).unwrap();
        prop_assert_eq!(&ours, &tiktoken().encode_ordinary(&s));
        prop_assert_eq!(t.decode(&ours), s);
    }

    #[test]
    fn decode_then_encode_is_stable_for_any_ids(ids in prop::collection::vec(0u32..700, 0..50)) {
        let t = small_bpe();
        let s = t.decode(&ids);
        let again = t.encode(s.as_bytes()).unwrap();
        prop_assert_eq!(t.decode(&again), s.clone());
        prop_assert_eq!(concat_bytes(&t, &again), s.as_bytes().to_vec());
    }
}

#[test]
fn encoding_does_not_depend_on_the_thread_count() {
    let text = synthetic_text(1_000_000, 5); // about 15 pieces, in one batch
    let bpe = Tokenizer::train_bpe(std::iter::once(text.as_str()), 2000).unwrap();
    for t in [bpe, Tokenizer::gpt2().unwrap()] {
        let runs: Vec<Vec<u32>> = [1, 2, 3]
            .into_iter()
            .map(|n| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .unwrap();
                pool.install(|| t.encode(text.as_bytes()).unwrap())
            })
            .collect();
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0], runs[2]);
        // And from several threads at once on one shared tokenizer.
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| s.spawn(|| t.encode(text.as_bytes()).unwrap()))
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap(), runs[0]);
            }
        });
        assert_eq!(concat_bytes(&t, &runs[0]), text.as_bytes());
    }
}

#[test]
fn fingerprints_follow_the_json() {
    let a = small_bpe();
    let b = Tokenizer::train_bpe(std::iter::once(README), 601).unwrap();
    let a2 = Tokenizer::train_bpe(std::iter::once(README), 600).unwrap();
    assert_eq!(a.fingerprint(), a2.fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_ne!(a.fingerprint(), Tokenizer::byte().fingerprint());
    let back = Tokenizer::from_json(&a.to_json()).unwrap();
    assert_eq!(back.kind(), TokenizerKind::Bpe);
    assert_eq!(back.to_json(), a.to_json());
    assert_eq!(back.fingerprint(), a.fingerprint());
    assert_eq!(
        back.encode(README.as_bytes()).unwrap(),
        a.encode(README.as_bytes()).unwrap()
    );
}

#[test]
fn hf_files_name_the_special_tokens() {
    let files = small_bpe().hf_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json"
        ]
    );
    let config: serde_json::Value = serde_json::from_slice(&files[1].1).unwrap();
    assert_eq!(config["eos_token"], END_OF_TEXT);
    assert_eq!(config["clean_up_tokenization_spaces"], false);
    let map: serde_json::Value = serde_json::from_slice(&files[2].1).unwrap();
    assert_eq!(map["eos_token"], END_OF_TEXT);
    let byte = Tokenizer::byte().hf_files();
    let map: serde_json::Value = serde_json::from_slice(&byte[2].1).unwrap();
    assert_eq!(map, serde_json::json!({}));
    assert_eq!(byte[0].1, Tokenizer::byte().to_json());
}

/// The byte tokenizer's file as a JSON value, to mutate into bad files.
fn byte_json_value() -> serde_json::Value {
    serde_json::from_slice(&Tokenizer::byte().to_json()).unwrap()
}

fn load(v: &serde_json::Value) -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_json(&serde_json::to_vec(v).unwrap())
}

#[test]
fn bad_json_gives_typed_errors() {
    for garbage in [&b""[..], b"not json", b"{", b"\xff\xfe", b"[1, 2"] {
        assert!(matches!(
            Tokenizer::from_json(garbage),
            Err(TokenizerError::NotJson { .. })
        ));
    }
    for not_tok in ["[]", "{}", "42", "{\"model\": 3}", "{\"model\": {}}"] {
        let err = Tokenizer::from_json(not_tok.as_bytes()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::NotATokenizer { .. }),
            "{not_tok}: {err}"
        );
    }
    let mut v = byte_json_value();
    v["model"]["type"] = "WordPiece".into();
    let err = load(&v).unwrap_err();
    assert!(
        matches!(err, TokenizerError::UnsupportedModel { ref model } if model == "WordPiece"),
        "{err}"
    );

    // A vocabulary over 65,536 ids.
    let mut v = byte_json_value();
    let vocab = v["model"]["vocab"].as_object_mut().unwrap();
    for i in 256..70_000u32 {
        vocab.insert(format!("tok{i}"), i.into());
    }
    let err = load(&v).unwrap_err();
    assert!(
        matches!(err, TokenizerError::VocabTooLarge { size: 70_000 }),
        "{err}"
    );

    // A gap in the ids, and a duplicate id.
    let mut v = byte_json_value();
    v["model"]["vocab"]["!"] = 300.into();
    assert!(matches!(
        load(&v),
        Err(TokenizerError::IdsNotContiguous { .. })
    ));
    let mut v = byte_json_value();
    v["model"]["vocab"]["!"] = 0.into();
    assert!(matches!(
        load(&v),
        Err(TokenizerError::IdsNotContiguous { .. })
    ));

    // A missing byte: 255 tokens.
    let mut v = byte_json_value();
    let vocab = v["model"]["vocab"].as_object_mut().unwrap();
    let last = vocab
        .iter()
        .find(|(_, id)| **id == 255)
        .map(|(k, _)| k.clone())
        .unwrap();
    vocab.remove(&last);
    assert!(matches!(load(&v), Err(TokenizerError::Invalid { .. })));

    // A merge of unknown tokens.
    let mut v = byte_json_value();
    v["model"]["merges"] = serde_json::json!([["a", "b"]]);
    assert!(matches!(load(&v), Err(TokenizerError::Invalid { .. })));

    // Settings this module never writes.
    for (path, value) in [
        ("/normalizer", serde_json::json!({"type": "Lowercase"})),
        ("/pre_tokenizer", serde_json::json!({"type": "Whitespace"})),
        ("/pre_tokenizer/add_prefix_space", serde_json::json!(true)),
        ("/model/dropout", serde_json::json!(0.1)),
        ("/model/unk_token", serde_json::json!("!")),
        ("/model/byte_fallback", serde_json::json!(true)),
        ("/decoder", serde_json::json!({"type": "WordPiece"})),
    ] {
        let mut v = byte_json_value();
        *v.pointer_mut(path).unwrap() = value;
        let err = load(&v).unwrap_err();
        assert!(
            matches!(err, TokenizerError::Unsupported { .. }),
            "{path}: {err}"
        );
    }

    // A special token not right after the model's ids.
    let mut v = serde_json::from_slice::<serde_json::Value>(&small_bpe().to_json()).unwrap();
    v["added_tokens"][0]["id"] = 5000.into();
    assert!(matches!(
        load(&v),
        Err(TokenizerError::IdsNotContiguous { .. })
    ));
}

/// Timings for the report (release build): `cargo test --release --test data_bpe --
/// --ignored --nocapture measure`. Asserts only correctness, never time.
#[test]
#[ignore]
fn measure() {
    use std::time::Instant;
    let t0 = Instant::now();
    let gpt2 = Tokenizer::gpt2().unwrap();
    println!("gpt2 construction: {:.3} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let _ = Tokenizer::gpt2().unwrap();
    println!(
        "gpt2 second call (cached): {:.6} s",
        t0.elapsed().as_secs_f64()
    );

    let text = synthetic_text(10 << 20, 1);
    let t0 = Instant::now();
    let bpe = Tokenizer::train_bpe(std::iter::once(text.as_str()), 4096).unwrap();
    println!(
        "bpe training, {:.1} MB at vocab 4096: {:.2} s",
        text.len() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    for (name, t) in [("bpe", &bpe), ("gpt2", &gpt2), ("byte", &Tokenizer::byte())] {
        let mut first = None;
        for n in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            let t0 = Instant::now();
            let ids = pool.install(|| t.encode(text.as_bytes()).unwrap());
            let s = t0.elapsed().as_secs_f64();
            println!(
                "{name} encode, {n} thread(s): {:.1} MB/s ({} tokens, {:.2} bytes/token)",
                text.len() as f64 / 1e6 / s,
                ids.len(),
                text.len() as f64 / ids.len() as f64
            );
            assert_eq!(*first.get_or_insert_with(|| ids.clone()), ids);
        }
    }
}
