//! Checkpoint file mechanics: the safetensors round trip is exact, and every damaged
//! or mismatched file is rejected with an error naming what is wrong.

use cllm::train::checkpoint_io::{
    atomic_write, from_safetensors, read_safetensors, to_safetensors, CheckpointIoError, TensorSpec,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn specs() -> Vec<TensorSpec> {
    vec![
        TensorSpec {
            name: "wte.weight".into(),
            shape: vec![4, 3],
            offset: 0,
        },
        TensorSpec {
            name: "ln_f.bias".into(),
            shape: vec![3],
            offset: 12,
        },
    ]
}

fn flat() -> Vec<f32> {
    (0..15).map(|i| i as f32 * 0.5 - 3.25).collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cllm-ckio-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn round_trip_is_exact_and_keeps_metadata() {
    let dir = temp_dir("rt");
    let path = dir.join("model.safetensors");
    let meta = [("format".to_string(), "pt".to_string())]
        .into_iter()
        .collect();
    atomic_write(
        &path,
        &to_safetensors(&specs(), &flat(), Some(meta)).unwrap(),
    )
    .unwrap();
    let (back, meta) = read_safetensors(&path, &specs(), 15).unwrap();
    assert_eq!(back, flat());
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mismatches_are_named() {
    let bytes = to_safetensors(&specs(), &flat(), None).unwrap();
    let p = Path::new("m.safetensors");
    let mut wrong_shape = specs();
    wrong_shape[0].shape = vec![3, 4];
    assert!(matches!(
        from_safetensors(p, &bytes, &wrong_shape, 15),
        Err(CheckpointIoError::Shape { ref name, .. }) if name == "wte.weight"
    ));
    let mut missing = specs();
    missing.push(TensorSpec {
        name: "wpe.weight".into(),
        shape: vec![1],
        offset: 14,
    });
    assert!(matches!(
        from_safetensors(p, &bytes, &missing, 15),
        Err(CheckpointIoError::Missing { ref name, .. }) if name == "wpe.weight"
    ));
    assert!(matches!(
        from_safetensors(p, &bytes, &specs()[..1], 15),
        Err(CheckpointIoError::Unexpected { ref name, .. }) if name == "ln_f.bias"
    ));
    let err = read_safetensors(
        Path::new("/nonexistent/cllm/model.safetensors"),
        &specs(),
        15,
    );
    assert!(matches!(err, Err(CheckpointIoError::Io { .. })));
}

#[test]
fn a_failed_atomic_write_leaves_the_old_file() {
    let dir = temp_dir("aw");
    let path = dir.join("state.json");
    atomic_write(&path, b"old").unwrap();
    // Renaming over a directory fails: the old content must survive, no temp file left.
    let blocked = dir.join("sub");
    std::fs::create_dir_all(blocked.join("x")).unwrap();
    assert!(atomic_write(&blocked, b"new").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp-")),
        "temp file left: {names:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

proptest! {
    /// Truncation anywhere, or a flipped byte in the header, is an error, never a panic
    /// or a silently different tensor.
    #[test]
    fn damaged_files_are_rejected(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
        let bytes = to_safetensors(&specs(), &flat(), None).unwrap();
        let p = Path::new("m.safetensors");
        let cut = cut % bytes.len();
        prop_assert!(from_safetensors(p, &bytes[..cut], &specs(), 15).is_err());
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
        let mut flipped = bytes.clone();
        let at = flip % header_len;
        flipped[at] ^= 1 << bit;
        if let Ok((back, _)) = from_safetensors(p, &flipped, &specs(), 15) {
            // A flip that still parses (e.g. inside padding) must not change the data.
            prop_assert_eq!(back, flat());
        }
    }
}

/// An output directory holding only what a run killed before its first checkpoint
/// became `latest` leaves is a fresh start (so the same command works again); a
/// directory with anything else in it is refused, and one with `latest` is cllm's.
#[test]
fn a_run_killed_before_its_first_checkpoint_can_start_over() {
    use cllm::train::checkpoint::{check_out_dir, OutDir};
    let dir = temp_dir("killed");
    std::fs::write(dir.join("metrics.jsonl"), b"{\"step\":1,\"lo").unwrap();
    std::fs::create_dir_all(dir.join(".tmp-step-00000002")).unwrap();
    std::fs::create_dir_all(dir.join("step-00000001")).unwrap();
    std::fs::write(dir.join(".latest.tmp-123"), b"step-0000").unwrap();
    assert_eq!(check_out_dir(&dir).unwrap(), OutDir::Fresh);
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    assert!(
        check_out_dir(&dir).is_err(),
        "a foreign file is never overwritten"
    );
    std::fs::write(dir.join("latest"), b"step-00000001\n").unwrap();
    assert_eq!(check_out_dir(&dir).unwrap(), OutDir::Cllm);
    let _ = std::fs::remove_dir_all(&dir);
}
