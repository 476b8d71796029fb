//! Fuzz target: checkpoint decoding (`config.json`, `model.safetensors`,
//! `train_state.json`, `train_state.safetensors`). Starts from a valid checkpoint of a
//! tiny model and lets the input flip, insert, truncate or replace bytes of any file:
//! decoding must never panic or over-allocate; an untouched checkpoint must decode to
//! exactly what was saved; anything that decodes must be internally consistent.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cllm::model::GptConfig;
use cllm::train::checkpoint::{self, CheckpointFiles};
use cllm::train::optim::AdamWConfig;
use cllm::train::schedule::Schedule;
use cllm::train::trainer::{TrainConfig, TrainState};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Edit {
    Flip { file: u8, at: u32, xor: u8 },
    Truncate { file: u8, len: u32 },
    Insert { file: u8, at: u32, bytes: Vec<u8> },
    Replace { file: u8, bytes: Vec<u8> },
    DropState,
}

/// A valid checkpoint of a tiny model, and what it holds.
fn valid() -> &'static (CheckpointFiles, TrainConfig, TrainState) {
    static VALID: OnceLock<(CheckpointFiles, TrainConfig, TrainState)> = OnceLock::new();
    VALID.get_or_init(|| {
        let cfg = TrainConfig {
            model: GptConfig {
                n_layer: 1,
                n_head: 2,
                n_embd: 4,
                n_positions: 4,
                vocab_size: 5,
            },
            batch: 1,
            micro_batches: 2,
            seq: 4,
            steps: 10,
            schedule: Schedule {
                max_lr: 1e-3,
                min_lr: 1e-4,
                warmup: 1,
                total: 10,
            },
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            seed: 3,
        };
        let mut state = TrainState::initial(&cfg).expect("valid config");
        state.step = 4;
        state.opt.t = 4;
        state
            .opt
            .m
            .iter_mut()
            .enumerate()
            .for_each(|(i, m)| *m = i as f32 * 1e-3);
        state
            .opt
            .v
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32 * 1e-6);
        let dir = std::env::temp_dir().join(format!("cllm-fuzz-ckpt-{}", std::process::id()));
        let saved = checkpoint::save(&dir, &cfg, &state).expect("save");
        let read = |name: &str| std::fs::read(saved.join(name)).expect("read back");
        let files = CheckpointFiles {
            config: String::from_utf8(read(checkpoint::CONFIG_FILE)).expect("utf8"),
            model: read(checkpoint::MODEL_FILE),
            state: Some(String::from_utf8(read(checkpoint::STATE_FILE)).expect("utf8")),
            moments: read(checkpoint::STATE_TENSORS_FILE),
        };
        let _ = std::fs::remove_dir_all(&dir);
        (files, cfg, state)
    })
}

fn file_mut(files: &mut CheckpointFiles, which: u8) -> Vec<u8> {
    match which % 4 {
        0 => files.config.as_bytes().to_vec(),
        1 => files.model.clone(),
        2 => files.state.clone().unwrap_or_default().into_bytes(),
        _ => files.moments.clone(),
    }
}

fn put(files: &mut CheckpointFiles, which: u8, bytes: Vec<u8>) {
    match which % 4 {
        0 => files.config = String::from_utf8_lossy(&bytes).into_owned(),
        1 => files.model = bytes,
        2 => files.state = Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => files.moments = bytes,
    }
}

fuzz_target!(|data: &[u8]| {
    let (good, cfg, state) = valid();
    let mut u = Unstructured::new(data);
    let edits: Vec<Edit> = u.arbitrary().unwrap_or_default();
    let mut files = good.clone();
    for edit in edits.iter().take(8) {
        match edit {
            Edit::Flip { file, at, xor } => {
                let mut b = file_mut(&mut files, *file);
                if !b.is_empty() {
                    let i = *at as usize % b.len();
                    b[i] ^= xor;
                }
                put(&mut files, *file, b);
            }
            Edit::Truncate { file, len } => {
                let mut b = file_mut(&mut files, *file);
                let len = *len as usize % (b.len() + 1);
                b.truncate(len);
                put(&mut files, *file, b);
            }
            Edit::Insert { file, at, bytes } => {
                let mut b = file_mut(&mut files, *file);
                let i = *at as usize % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
                put(&mut files, *file, b);
            }
            Edit::Replace { file, bytes } => put(&mut files, *file, bytes.clone()),
            Edit::DropState => files.state = None,
        }
    }
    match checkpoint::decode(Path::new("fuzz"), &files) {
        Ok(ckpt) => {
            ckpt.model.validate().expect("a decoded config is valid");
            assert_eq!(ckpt.params.len(), ckpt.model.n_params());
            if let Some((c, s)) = &ckpt.training {
                assert_eq!(c.model, ckpt.model);
                assert_eq!(s.params.len(), s.opt.m.len());
                assert_eq!(s.params.len(), s.opt.v.len());
            }
            if edits.is_empty() {
                let (c, s) = ckpt.training.expect("the valid checkpoint has a state");
                assert_eq!(&c, cfg);
                assert_eq!(&s, state, "round trip is exact");
            }
        }
        Err(e) => {
            assert!(
                !edits.is_empty(),
                "the valid checkpoint failed to decode: {e}"
            );
            assert!(!e.to_string().is_empty());
        }
    }
});
