//! Fuzz target: `config.json` parsing. Any text either parses to a configuration that
//! validates and survives a write/parse round trip unchanged, or is rejected with an
//! error; never a panic, never an allocation the config implies.
#![no_main]

use cllm::train::checkpoint::HfConfig;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = HfConfig::parse(Path::new("config.json"), &text) {
        cfg.validate().expect("parsed configs are valid");
        let again = serde_json::to_string(&HfConfig::from_model(&cfg)).expect("serialises");
        let back = HfConfig::parse(Path::new("config.json"), &again).expect("own output parses");
        assert_eq!(back, cfg);
    }
});
