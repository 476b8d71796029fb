//! The single-threaded trainer: its accumulated gradient is exactly the fixed pairwise
//! sum of the micro-batch gradients, a checkpoint round trip resumes the identical
//! trajectory bit for bit, non-finite values stop training with an error naming the
//! step (weights untouched), bad checkpoints are rejected with errors that say what is
//! wrong, a checkpoint's `run.json` records the path that wrote it without being part
//! of what loading reads, and training actually lowers the loss.

use cllm::data::Sampler;
use cllm::isa::Isa;
use cllm::model::{self, TrainingContext};
use cllm::segments::reduce::pairwise_sum_into;
use cllm::train::checkpoint::{self, CheckpointError};
use cllm::train::trainer::{TrainError, TrainState, Trainer};
use std::path::PathBuf;

#[path = "fixtures/mod.rs"]
mod fixtures;
use fixtures::{corpus, tiny};
#[path = "watchdog/mod.rs"]
mod watchdog;

/// Bound one test that steps a trainer (a step waits on its gradient slots; the whole
/// file takes about a second): a lost wake-up exits 124 naming the test.
fn bound(name: &str) -> watchdog::Watchdog {
    watchdog::Watchdog::arm(name, std::time::Duration::from_secs(120))
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cllm-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn accumulated_gradient_is_the_pairwise_sum_of_micro_batch_gradients() {
    let _w =
        bound("train_trainer::accumulated_gradient_is_the_pairwise_sum_of_micro_batch_gradients");
    let cfg = tiny(3, 5);
    let data = corpus();
    let state = TrainState::initial(&cfg).unwrap();
    let params = state.params.clone();
    let mut sampler = Sampler::from_state(state.sampler);
    let mut trainer = Trainer::new(cfg, state).unwrap();
    trainer.step(&data.train).unwrap();

    // By hand: the same batches, one gradient buffer each, summed in the tree order.
    let mut ctx = TrainingContext::new(&cfg.model, cfg.batch, cfg.seq).unwrap();
    let n = params.len();
    let mut grads = vec![vec![0.0f32; n]; cfg.micro_batches];
    let (mut t, mut y) = (vec![0; cfg.batch * cfg.seq], vec![0; cfg.batch * cfg.seq]);
    for g in grads.iter_mut() {
        sampler
            .next_batch(&data.train, cfg.batch, cfg.seq, &mut t, &mut y)
            .unwrap();
        model::forward_backward(&cfg.model, &params, &mut ctx, &t, &y, g).unwrap();
    }
    let views: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    let mut want = vec![0.0f32; n];
    pairwise_sum_into(&views, &mut want, Isa::Portable);
    assert_eq!(bits(trainer.last_gradient_sum()), bits(&want));
}

#[test]
fn resume_from_a_checkpoint_continues_bit_for_bit() {
    let _w = bound("train_trainer::resume_from_a_checkpoint_continues_bit_for_bit");
    let cfg = tiny(8, 2);
    let data = corpus();
    let mut straight = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let mut losses = Vec::new();
    for _ in 0..8 {
        losses.push(straight.step(&data.train).unwrap().loss.to_bits());
    }

    let dir = scratch("resume");
    let mut first = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let mut resumed_losses = Vec::new();
    for _ in 0..3 {
        resumed_losses.push(first.step(&data.train).unwrap().loss.to_bits());
    }
    checkpoint::save(&dir, &cfg, first.state()).unwrap();
    drop(first);
    let ckpt = checkpoint::load(&dir).unwrap();
    let (cfg2, state2) = ckpt.training.expect("training state saved");
    assert_eq!(cfg2, cfg);
    let mut second = Trainer::new(cfg2, state2).unwrap();
    for _ in 3..8 {
        resumed_losses.push(second.step(&data.train).unwrap().loss.to_bits());
    }
    assert_eq!(resumed_losses, losses);
    let a = straight.into_state();
    let b = second.into_state();
    assert_eq!(bits(&a.params), bits(&b.params));
    assert_eq!(bits(&a.opt.m), bits(&b.opt.m));
    assert_eq!(bits(&a.opt.v), bits(&b.opt.v));
    assert_eq!((a.step, a.opt.t, a.sampler), (b.step, b.opt.t, b.sampler));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_non_finite_loss_stops_with_the_step_and_leaves_the_weights() {
    let _w = bound("train_trainer::a_non_finite_loss_stops_with_the_step_and_leaves_the_weights");
    let cfg = tiny(5, 1);
    let data = corpus();
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    trainer.step(&data.train).unwrap();
    trainer.step(&data.train).unwrap();
    let mut state = trainer.into_state();
    // Poison one weight of the final layer norm: every logit becomes NaN.
    if let Some(last) = state.params.last_mut() {
        *last = f32::NAN;
    }
    let before = bits(&state.params);
    let mut trainer = Trainer::new(cfg, state).unwrap();
    match trainer.step(&data.train) {
        Err(TrainError::NonFinite { step, .. }) => assert_eq!(step, 2),
        other => panic!("expected a non-finite error at step 2, got {other:?}"),
    }
    assert_eq!(bits(&trainer.state().params), before, "no update applied");
    assert_eq!(trainer.step_count(), 2);
}

#[test]
fn training_lowers_the_validation_loss() {
    let _w = bound("train_trainer::training_lowers_the_validation_loss");
    let cfg = tiny(40, 1);
    let data = corpus();
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let before = trainer.eval(&data.val, 16).unwrap();
    for _ in 0..40 {
        trainer.step(&data.train).unwrap();
    }
    let after = trainer.eval(&data.val, 16).unwrap();
    assert!(
        after < before - 0.5,
        "validation loss {before} -> {after} after 40 steps"
    );
}

#[test]
fn damaged_checkpoints_are_rejected_with_the_reason() {
    let cfg = tiny(2, 1);
    let dir = scratch("damaged");
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    let ckpt = checkpoint::save(&dir, &cfg, trainer.state()).unwrap();
    assert!(checkpoint::load(&dir).is_ok());
    assert!(checkpoint::load(&ckpt).is_ok());

    // Truncated weights.
    let model = ckpt.join(checkpoint::MODEL_FILE);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.contains(checkpoint::MODEL_FILE), "{err}");
    std::fs::write(&model, &bytes).unwrap();

    // A config that disagrees with the tensors.
    let config = ckpt.join(checkpoint::CONFIG_FILE);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"n_embd\": 8", "\"n_embd\": 16")).unwrap();
    let err = checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.contains("shape") || err.contains("implies"), "{err}");
    // A head count that keeps every shape is caught by the training state.
    std::fs::write(&config, text.replace("\"n_head\": 2", "\"n_head\": 4")).unwrap();
    let err = checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.contains("describes model"), "{err}");
    std::fs::write(&config, text.replace("gelu_new", "relu")).unwrap();
    let err = checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.contains("activation_function"), "{err}");
    std::fs::write(&config, "{not json").unwrap();
    assert!(matches!(
        checkpoint::load(&dir).unwrap_err(),
        CheckpointError::Json { .. }
    ));
    std::fs::write(&config, &text).unwrap();

    // A training state from another step than the weights.
    let state = ckpt.join(checkpoint::STATE_FILE);
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"step\": 0", "\"step\": 1")).unwrap();
    assert!(matches!(
        checkpoint::load(&dir).unwrap_err(),
        CheckpointError::Inconsistent { .. }
    ));
    std::fs::write(&state, &text).unwrap();
    assert!(checkpoint::load(&dir).is_ok(), "restored files load again");

    // Not a checkpoint at all.
    let empty = scratch("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(
        checkpoint::load(&empty).unwrap_err(),
        CheckpointError::NotACheckpoint { .. }
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}

#[test]
fn a_new_checkpoint_replaces_the_old_and_leaves_no_temporary() {
    let _w = bound("train_trainer::a_new_checkpoint_replaces_the_old_and_leaves_no_temporary");
    let cfg = tiny(4, 1);
    let data = corpus();
    let dir = scratch("replace");
    let mut trainer = Trainer::new(cfg, TrainState::initial(&cfg).unwrap()).unwrap();
    trainer.step(&data.train).unwrap();
    let first = checkpoint::save(&dir, &cfg, trainer.state()).unwrap();
    trainer.step(&data.train).unwrap();
    let second = checkpoint::save(&dir, &cfg, trainer.state()).unwrap();
    assert_ne!(first, second);
    assert!(!first.exists(), "the older checkpoint is removed");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    assert_eq!(checkpoint::load(&dir).unwrap().dir, second);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `run.json` names the path the saving thread ran (here forced with `isa::scoped`)
/// and the cllm version, and is provenance only: the training-state files are the same
/// for every path, and a checkpoint without `run.json` (as written before it existed)
/// or with an unreadable one loads to the same state.
#[test]
fn run_json_records_the_isa_and_loading_ignores_it() {
    let cfg = tiny(2, 1);
    let state = TrainState::initial(&cfg).unwrap();
    let mut saved = Vec::new();
    for isa in Isa::available() {
        let dir = scratch(&format!("run-json-{isa}"));
        let ckpt = cllm::isa::scoped(isa, || checkpoint::save(&dir, &cfg, &state))
            .unwrap()
            .unwrap();
        let run: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ckpt.join(checkpoint::RUN_FILE)).unwrap())
                .unwrap();
        assert_eq!(run["isa"], isa.name(), "{run}");
        assert_eq!(run["cllm_version"], env!("CARGO_PKG_VERSION"), "{run}");
        let files: Vec<Vec<u8>> = [
            checkpoint::MODEL_FILE,
            checkpoint::CONFIG_FILE,
            checkpoint::STATE_FILE,
            checkpoint::STATE_TENSORS_FILE,
        ]
        .iter()
        .map(|f| std::fs::read(ckpt.join(f)).unwrap())
        .collect();
        saved.push(files);

        let want = checkpoint::load(&dir).unwrap().training.unwrap();
        std::fs::write(ckpt.join(checkpoint::RUN_FILE), "{not json").unwrap();
        assert_eq!(checkpoint::load(&dir).unwrap().training.unwrap(), want);
        std::fs::remove_file(ckpt.join(checkpoint::RUN_FILE)).unwrap();
        assert_eq!(checkpoint::load(&dir).unwrap().training.unwrap(), want);
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(saved.windows(2).all(|w| w[0] == w[1]));
}
