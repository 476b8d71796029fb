//! The byte tokenizer is lossless: encoding maps each byte to its own token below the
//! vocabulary size, decoding an encoding gives back the text (lossy UTF-8 exactly as
//! `String::from_utf8_lossy` for arbitrary bytes), and out-of-vocabulary tokens decode
//! to U+FFFD.

use cllm::data::ByteTokenizer;
use proptest::prelude::*;

proptest! {
    #[test]
    fn encode_maps_each_byte_to_its_token(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let tokens = ByteTokenizer::encode(&bytes);
        prop_assert_eq!(tokens.len(), bytes.len());
        for (t, b) in tokens.iter().zip(&bytes) {
            prop_assert_eq!(*t, u32::from(*b));
            prop_assert!((*t as usize) < ByteTokenizer::VOCAB);
        }
    }

    #[test]
    fn round_trip_on_utf8_text(s in any::<String>()) {
        prop_assert_eq!(ByteTokenizer::decode(&ByteTokenizer::encode(s.as_bytes())), s);
    }

    #[test]
    fn round_trip_on_arbitrary_bytes_is_lossy_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let decoded = ByteTokenizer::decode(&ByteTokenizer::encode(&bytes));
        prop_assert_eq!(decoded, String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn out_of_vocabulary_tokens_become_replacement_chars(
        tokens in proptest::collection::vec(prop_oneof![0u32..128, 256u32..=u32::MAX], 0..256),
    ) {
        // ASCII tokens decode to themselves, every token >= 256 to exactly one U+FFFD.
        let expected: String = tokens
            .iter()
            .map(|&t| char::from_u32(t).filter(|_| t < 128).unwrap_or('\u{FFFD}'))
            .collect();
        prop_assert_eq!(ByteTokenizer::decode(&tokens), expected);
    }
}

#[test]
fn vocabulary_is_256() {
    assert_eq!(ByteTokenizer::VOCAB, 256);
    let all: Vec<u8> = (0..=255).collect();
    let tokens = ByteTokenizer::encode(&all);
    assert_eq!(tokens.iter().max(), Some(&255));
    assert_eq!(ByteTokenizer::decode(&[256]), "\u{FFFD}");
}
