//! Fuzz target: `tokenizer.json` loading. Any bytes either load as a tokenizer whose
//! own file loads back to the same bytes and which encodes and decodes a short
//! multibyte string exactly, or are rejected with an error; never a panic.
#![no_main]

use cllm::data::Tokenizer;
use libfuzzer_sys::fuzz_target;

const PROBE: &str = "héllo, wörld 😀 it's 42!\n";

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tokenizer::from_json(data) {
        let json = t.to_json();
        let again = Tokenizer::from_json(&json).expect("own output loads");
        assert_eq!(again.to_json(), json);
        assert_eq!(again.kind(), t.kind());
        let ids = t.encode(PROBE.as_bytes()).expect("UTF-8 text encodes");
        assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
        assert_eq!(t.decode(&ids), PROBE);
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| t.token_bytes(i).to_vec())
            .collect();
        assert_eq!(bytes, PROBE.as_bytes());
        let _ = t.decode(&[0, u32::MAX]);
    }
});
