//! Owns the checkpoint directory format: what files a checkpoint holds, how a new one
//! replaces the old one crash-safely, and how loading validates every part.
//! Must never run training or know about threads; file mechanics live in
//! [`checkpoint_io`].
//!
//! # Layout of an output directory `OUT`
//! * `OUT/step-NNNNNNNN/`: one complete checkpoint, loadable by Hugging Face
//!   (`GPT2LMHeadModel.from_pretrained("OUT/step-NNNNNNNN")`):
//!   * `model.safetensors`: the weights under GPT-2's tensor names and layouts
//!     (`wte.weight`, `h.{i}.attn.c_attn.weight` as `[in, out]`, ..., `ln_f.bias`);
//!     header metadata `format = pt` (what transformers requires) and `cllm_step`.
//!   * `config.json`: a `GPT2Config` (`n_layer`, `n_head`, `n_embd`, `n_positions`,
//!     `vocab_size`, `activation_function: gelu_new`, `layer_norm_epsilon`,
//!     `model_type: gpt2`, no dropout, tied embeddings).
//!   * `train_state.safetensors`: AdamW moments `adam.m`, `adam.v` (flat, `[n]`).
//!   * `train_state.json`: step, AdamW update count, sampler state, the full
//!     [`TrainConfig`]; the step must equal the model file's `cllm_step`.
//!   * `run.json`: not training state: provenance (`isa`, the instruction-set path
//!     that wrote the checkpoint ([`crate::isa::active`] on the saving thread), and
//!     `cllm_version`) and, when the caller gives them, its `settings` (an opaque
//!     JSON object: the command line's cadence, which a resume continues with, see
//!     [`load_settings`]). It differs between paths by design; the four files above
//!     do not (every path gives the same bits). [`load`] ignores it, and checkpoints
//!     written before it existed have none.
//!   * companion files the caller gives ([`save_with_files`]): for example the run's
//!     `tokenizer.json` and its Hugging Face configuration files, so
//!     `AutoTokenizer.from_pretrained` loads the same directory. This module only
//!     copies them; [`load`] ignores them.
//! * `OUT/latest`: the name of the current checkpoint directory.
//! * `OUT/tokens/` ([`TOKEN_CACHE_DIR`]): where `cllm train` caches a corpus's tokens
//!   by default; this module only tolerates it in a fresh directory.
//!
//! # Crash safety
//! A checkpoint is written into `OUT/.tmp-step-NNNNNNNN/` (every file fsynced), the
//! directory is renamed to `OUT/step-NNNNNNNN`, then `latest` is replaced atomically,
//! then older `step-*` directories (and `.tmp-step-*` ones a killed run left) are
//! removed. A crash at any point leaves `latest` naming a complete checkpoint (the
//! old or the new one).

use super::checkpoint_io::{self, atomic_write, CheckpointIoError, TensorSpec};
use super::optim::AdamState;
use super::trainer::{TrainConfig, TrainState};
use crate::data::SamplerState;
use crate::model::{GptConfig, ParamLayout};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Weights file name (Hugging Face's).
pub const MODEL_FILE: &str = "model.safetensors";
/// Model configuration file name (Hugging Face's).
pub const CONFIG_FILE: &str = "config.json";
/// Optimizer moments file name.
pub const STATE_TENSORS_FILE: &str = "train_state.safetensors";
/// Training state file name.
pub const STATE_FILE: &str = "train_state.json";
/// Provenance and run-settings file name (which instruction-set path and cllm
/// version wrote the checkpoint, and the caller's settings); [`load`] never reads it,
/// [`load_settings`] reads only its settings.
pub const RUN_FILE: &str = "run.json";
/// The subdirectory of an output directory where a run caches its corpus's tokens
/// (and a trained tokenizer) by default; never part of a checkpoint.
pub const TOKEN_CACHE_DIR: &str = "tokens";
/// The pointer to the current checkpoint inside an output directory.
pub const LATEST_FILE: &str = "latest";
/// GPT-2's layer-norm epsilon (the only one the kernels implement).
pub const LAYER_NORM_EPSILON: f64 = 1e-5;

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The checkpoint directory that was read.
    pub dir: PathBuf,
    /// The model shape.
    pub model: GptConfig,
    /// The weights, in [`ParamLayout`] order.
    pub params: Vec<f32>,
    /// The training configuration and state, when the directory has them.
    pub training: Option<(TrainConfig, TrainState)>,
}

/// What is wrong with a checkpoint or an output directory.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing a file failed, or a tensor file is invalid.
    #[error(transparent)]
    Io(#[from] CheckpointIoError),
    /// `config.json` or `train_state.json` cannot be used.
    #[error("{path}: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory is neither a checkpoint nor an output directory holding one.
    #[error("{path} is not a cllm checkpoint (no {MODEL_FILE} and no `{LATEST_FILE}` file)")]
    NotACheckpoint {
        /// The directory.
        path: PathBuf,
    },
    /// A companion file's name is not a plain file name, or is one of the format's.
    #[error("companion file name {name:?} is not a plain file name of its own")]
    CompanionName {
        /// The name given.
        name: String,
    },
    /// The parts of a checkpoint disagree with each other.
    #[error("{path}: {reason}")]
    Inconsistent {
        /// The directory.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
}

/// The `config.json` of a GPT-2 checkpoint (the keys cllm writes and checks).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HfConfig {
    /// Always `gpt2`.
    pub model_type: String,
    /// Always `["GPT2LMHeadModel"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Layers.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Width.
    pub n_embd: usize,
    /// Context length.
    pub n_positions: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Always `gelu_new` (tanh-approximated GELU).
    pub activation_function: String,
    /// Always 1e-5.
    pub layer_norm_epsilon: f64,
    /// Dropout (0: cllm has none).
    #[serde(default)]
    pub resid_pdrop: f64,
    /// Dropout (0).
    #[serde(default)]
    pub embd_pdrop: f64,
    /// Dropout (0).
    #[serde(default)]
    pub attn_pdrop: f64,
    /// Always true: the LM head is the token embedding.
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    /// No special tokens (the byte vocabulary has none); written as `null` so
    /// transformers does not assume GPT-2's 50256.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// As `bos_token_id`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn yes() -> bool {
    true
}

/// `train_state.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    step: u64,
    adam_t: u64,
    sampler: SamplerState,
    train_config: TrainConfig,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct RunFile<'a> {
    isa: &'static str,
    cllm_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<&'a serde_json::Value>,
}

const STATE_FORMAT: &str = "cllm-train-state";
const STATE_VERSION: u32 = 1;

impl HfConfig {
    /// The Hugging Face configuration of `cfg`.
    pub fn from_model(cfg: &GptConfig) -> Self {
        HfConfig {
            model_type: "gpt2".into(),
            architectures: vec!["GPT2LMHeadModel".into()],
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_embd: cfg.n_embd,
            n_positions: cfg.n_positions,
            vocab_size: cfg.vocab_size,
            activation_function: "gelu_new".into(),
            layer_norm_epsilon: LAYER_NORM_EPSILON,
            resid_pdrop: 0.0,
            embd_pdrop: 0.0,
            attn_pdrop: 0.0,
            tie_word_embeddings: true,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// Parse and check a `config.json` (`path` names it in errors): the model type,
    /// activation, epsilon, tied embeddings and a valid shape.
    pub fn parse(path: &Path, text: &str) -> Result<GptConfig, CheckpointError> {
        let json = |reason: String| CheckpointError::Json {
            path: path.to_owned(),
            reason,
        };
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| json(e.to_string()))?;
        if hf.model_type != "gpt2" {
            return Err(json(format!(
                "model_type is {:?}, expected \"gpt2\"",
                hf.model_type
            )));
        }
        if hf.activation_function != "gelu_new" {
            return Err(json(format!(
                "activation_function is {:?}, cllm implements only \"gelu_new\"",
                hf.activation_function
            )));
        }
        if hf.layer_norm_epsilon != LAYER_NORM_EPSILON {
            return Err(json(format!(
                "layer_norm_epsilon is {}, cllm implements only {LAYER_NORM_EPSILON}",
                hf.layer_norm_epsilon
            )));
        }
        if !hf.tie_word_embeddings {
            return Err(json(
                "tie_word_embeddings is false; cllm ties the LM head".into(),
            ));
        }
        let cfg = GptConfig {
            n_layer: hf.n_layer,
            n_head: hf.n_head,
            n_embd: hf.n_embd,
            n_positions: hf.n_positions,
            vocab_size: hf.vocab_size,
        };
        cfg.validate().map_err(|e| json(e.to_string()))?;
        Ok(cfg)
    }
}

/// Write a checkpoint of `state` into the output directory `out` (created if
/// needed) and make it the current one. Returns the checkpoint directory.
pub fn save(out: &Path, cfg: &TrainConfig, state: &TrainState) -> Result<PathBuf, CheckpointError> {
    save_with_settings(out, cfg, state, None)
}

/// As [`save`], also recording the caller's `settings` in `run.json` (read back by
/// [`load_settings`]); they change no byte of the four training-state files.
pub fn save_with_settings(
    out: &Path,
    cfg: &TrainConfig,
    state: &TrainState,
    settings: Option<&serde_json::Value>,
) -> Result<PathBuf, CheckpointError> {
    save_with_files(out, cfg, state, settings, &[])
}

/// A companion file of every checkpoint: a plain file name and its bytes.
pub type CompanionFile = (String, Vec<u8>);

/// As [`save_with_settings`], also writing each companion file (a plain file name,
/// not one of the format's own files) into the checkpoint directory, crash-safely
/// with the rest. A bad name is [`CheckpointError::CompanionName`], before anything
/// is written.
pub fn save_with_files(
    out: &Path,
    cfg: &TrainConfig,
    state: &TrainState,
    settings: Option<&serde_json::Value>,
    files: &[CompanionFile],
) -> Result<PathBuf, CheckpointError> {
    for (name, _) in files {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\'])
            && ![
                MODEL_FILE,
                CONFIG_FILE,
                STATE_TENSORS_FILE,
                STATE_FILE,
                RUN_FILE,
            ]
            .contains(&name.as_str());
        if !plain {
            return Err(CheckpointError::CompanionName { name: name.clone() });
        }
    }
    let layout = ParamLayout::new(&cfg.model);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io(CheckpointIoError::Io { path, source })
    };
    fs::create_dir_all(out).map_err(io(out))?;
    let name = format!("step-{:08}", state.step);
    let tmp = out.join(format!(".tmp-{name}"));
    let dir = out.join(&name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir(&tmp).map_err(io(&tmp))?;

    let specs = tensor_specs(&layout);
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("cllm_step".to_string(), state.step.to_string()),
    ]);
    let bytes = checkpoint_io::to_safetensors(&specs, &state.params, Some(meta))?;
    atomic_write(&tmp.join(MODEL_FILE), &bytes)?;
    let config = serde_json::to_string_pretty(&HfConfig::from_model(&cfg.model))
        .map_err(|e| json_err(&tmp.join(CONFIG_FILE), e))?;
    atomic_write(&tmp.join(CONFIG_FILE), config.as_bytes())?;
    let n = state.params.len();
    let mut moments = Vec::with_capacity(2 * n);
    moments.extend_from_slice(&state.opt.m);
    moments.extend_from_slice(&state.opt.v);
    let bytes = checkpoint_io::to_safetensors(&moment_specs(n), &moments, None)?;
    atomic_write(&tmp.join(STATE_TENSORS_FILE), &bytes)?;
    let file = StateFile {
        format: STATE_FORMAT.into(),
        version: STATE_VERSION,
        step: state.step,
        adam_t: state.opt.t,
        sampler: state.sampler,
        train_config: *cfg,
    };
    let text =
        serde_json::to_string_pretty(&file).map_err(|e| json_err(&tmp.join(STATE_FILE), e))?;
    atomic_write(&tmp.join(STATE_FILE), text.as_bytes())?;
    let run = RunFile {
        isa: crate::isa::active().name(),
        cllm_version: env!("CARGO_PKG_VERSION"),
        settings,
    };
    let text = serde_json::to_string_pretty(&run).map_err(|e| json_err(&tmp.join(RUN_FILE), e))?;
    atomic_write(&tmp.join(RUN_FILE), text.as_bytes())?;
    for (name, bytes) in files {
        atomic_write(&tmp.join(name), bytes)?;
    }

    if dir.exists() {
        // Re-saving the same step (after a resume): the old copy is replaced.
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::rename(&tmp, &dir).map_err(io(&dir))?;
    atomic_write(&out.join(LATEST_FILE), format!("{name}\n").as_bytes())?;
    for entry in fs::read_dir(out).map_err(io(out))?.flatten() {
        let old = entry.file_name().to_string_lossy().into_owned();
        // Older checkpoints, and unfinished ones a killed run left behind.
        if (old.starts_with("step-") && old != name) || old.starts_with(".tmp-step-") {
            fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(dir)
}

/// The raw contents of a checkpoint's files (what [`load`] reads from disk).
#[derive(Debug, Clone, Default)]
pub struct CheckpointFiles {
    /// `config.json`.
    pub config: String,
    /// `model.safetensors`.
    pub model: Vec<u8>,
    /// `train_state.json`, if present.
    pub state: Option<String>,
    /// `train_state.safetensors` (read only when `state` is present).
    pub moments: Vec<u8>,
}

/// Load a checkpoint from `path`: a checkpoint directory, or an output directory
/// whose `latest` file names one. Every tensor's presence, dtype and shape, the
/// config and the agreement between the files are checked.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let dir = resolve(path)?;
    let io = |name: &str| {
        let p = dir.join(name);
        move |source| CheckpointError::Io(CheckpointIoError::Io { path: p, source })
    };
    let state_path = dir.join(STATE_FILE);
    let files = CheckpointFiles {
        config: fs::read_to_string(dir.join(CONFIG_FILE)).map_err(io(CONFIG_FILE))?,
        model: fs::read(dir.join(MODEL_FILE)).map_err(io(MODEL_FILE))?,
        state: match state_path.exists() {
            true => Some(fs::read_to_string(&state_path).map_err(io(STATE_FILE))?),
            false => None,
        },
        moments: match state_path.exists() {
            true => fs::read(dir.join(STATE_TENSORS_FILE)).map_err(io(STATE_TENSORS_FILE))?,
            false => Vec::new(),
        },
    };
    decode(&dir, &files)
}

/// The `settings` recorded in the `run.json` of the checkpoint `path` denotes (as
/// [`load`] resolves it), or `None` when the checkpoint has no `run.json` or the file
/// has no settings (written before they were recorded, or by [`save`]).
pub fn load_settings(path: &Path) -> Result<Option<serde_json::Value>, CheckpointError> {
    let file = resolve(path)?.join(RUN_FILE);
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io(CheckpointIoError::Io {
                path: file,
                source,
            }))
        }
    };
    let mut run: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_err(&file, e))?;
    Ok(match run.get_mut("settings").map(serde_json::Value::take) {
        Some(serde_json::Value::Null) | None => None,
        Some(settings) => Some(settings),
    })
}

/// Validate and decode a checkpoint's file contents (`dir` names them in errors).
/// Never panics, whatever the bytes.
pub fn decode(dir: &Path, files: &CheckpointFiles) -> Result<Checkpoint, CheckpointError> {
    let dir = dir.to_owned();
    let model = HfConfig::parse(&dir.join(CONFIG_FILE), &files.config)?;
    // Size check before any allocation the config implies: a config that promises
    // more floats than the file holds is rejected cheaply.
    let need = model.n_params().saturating_mul(4);
    if files.model.len() < need {
        return Err(CheckpointError::Inconsistent {
            path: dir.clone(),
            reason: format!(
                "{CONFIG_FILE} implies {} parameters ({need} bytes) but {MODEL_FILE} has only {} bytes",
                model.n_params(),
                files.model.len()
            ),
        });
    }
    let layout = ParamLayout::new(&model);
    let (params, meta) = checkpoint_io::from_safetensors(
        &dir.join(MODEL_FILE),
        &files.model,
        &tensor_specs(&layout),
        layout.len(),
    )?;
    let Some(state_text) = &files.state else {
        return Ok(Checkpoint {
            dir,
            model,
            params,
            training: None,
        });
    };
    let state_path = dir.join(STATE_FILE);
    let file: StateFile = serde_json::from_str(state_text).map_err(|e| json_err(&state_path, e))?;
    let inconsistent = |reason: String| CheckpointError::Inconsistent {
        path: dir.clone(),
        reason,
    };
    if file.format != STATE_FORMAT || file.version != STATE_VERSION {
        return Err(inconsistent(format!(
            "{STATE_FILE} has format {:?} version {}, expected {STATE_FORMAT:?} version {STATE_VERSION}",
            file.format, file.version
        )));
    }
    if file.train_config.model != model {
        return Err(inconsistent(format!(
            "{STATE_FILE} describes model {:?} but {CONFIG_FILE} describes {:?}",
            file.train_config.model, model
        )));
    }
    let model_step = meta.get("cllm_step").and_then(|s| s.parse::<u64>().ok());
    if model_step != Some(file.step) {
        return Err(inconsistent(format!(
            "{MODEL_FILE} is from step {model_step:?} but {STATE_FILE} from step {}",
            file.step
        )));
    }
    file.train_config
        .validate()
        .map_err(|e| inconsistent(format!("{STATE_FILE}: {e}")))?;
    let n = layout.len();
    if files.moments.len() < need.saturating_mul(2) {
        return Err(inconsistent(format!(
            "{STATE_TENSORS_FILE} has {} bytes, too few for {n} parameters' two moments",
            files.moments.len()
        )));
    }
    let (moments, _) = checkpoint_io::from_safetensors(
        &dir.join(STATE_TENSORS_FILE),
        &files.moments,
        &moment_specs(n),
        2 * n,
    )?;
    let state = TrainState {
        params: params.clone(),
        opt: AdamState {
            m: moments[..n].to_vec(),
            v: moments[n..].to_vec(),
            t: file.adam_t,
        },
        step: file.step,
        sampler: file.sampler,
    };
    Ok(Checkpoint {
        dir,
        model,
        params,
        training: Some((file.train_config, state)),
    })
}

/// The training log a run keeps beside its checkpoints (see [`super::report`]).
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What an `--out` directory holds before training writes into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutDir {
    /// It does not exist, is empty, or holds only what a run killed before its first
    /// checkpoint became `latest` leaves (a `metrics.jsonl`, unfinished `.tmp-` files,
    /// a `step-*` directory no `latest` names, the [`TOKEN_CACHE_DIR`] it tokenized
    /// into): a new run starts over in it.
    Fresh,
    /// It is a cllm output directory (has a `latest` checkpoint pointer).
    Cllm,
}

/// Classify `out`; any other non-empty directory that is not a cllm output directory
/// (or a file) is an error, so training never mixes its files into someone else's.
pub fn check_out_dir(out: &Path) -> Result<OutDir, CheckpointError> {
    if !out.exists() {
        return Ok(OutDir::Fresh);
    }
    let not = || CheckpointError::NotACheckpoint {
        path: out.to_owned(),
    };
    if !out.is_dir() {
        return Err(not());
    }
    let mut entries = fs::read_dir(out).map_err(|source| {
        CheckpointError::Io(CheckpointIoError::Io {
            path: out.to_owned(),
            source,
        })
    })?;
    if out.join(LATEST_FILE).is_file() {
        return Ok(OutDir::Cllm);
    }
    // Empty, or holding only what a run killed before its first checkpoint leaves.
    let only_unfinished = entries.all(|e| {
        e.is_ok_and(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // A first checkpoint renamed into place but not yet made `latest` is
            // unfinished too: the run never reached it as far as a resume can tell.
            name == METRICS_FILE
                || name == TOKEN_CACHE_DIR
                || [".tmp-step-", "step-", ".latest.tmp-", ".metrics.jsonl.tmp-"]
                    .iter()
                    .any(|p| name.starts_with(p))
        })
    });
    if only_unfinished {
        Ok(OutDir::Fresh)
    } else {
        Err(not())
    }
}

// ---- helpers --------------------------------------------------------------------

/// The checkpoint directory `path` denotes.
fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join(MODEL_FILE).is_file() {
        return Ok(path.to_owned());
    }
    let latest = path.join(LATEST_FILE);
    if latest.is_file() {
        let name = fs::read_to_string(&latest).map_err(|source| {
            CheckpointError::Io(CheckpointIoError::Io {
                path: latest.clone(),
                source,
            })
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(CheckpointError::Inconsistent {
                path: path.to_owned(),
                reason: format!("{LATEST_FILE} names {name:?}, not a checkpoint directory"),
            });
        }
        let dir = path.join(name);
        if dir.join(MODEL_FILE).is_file() {
            return Ok(dir);
        }
        return Err(CheckpointError::Inconsistent {
            path: path.to_owned(),
            reason: format!("{LATEST_FILE} names {name}, which has no {MODEL_FILE}"),
        });
    }
    Err(CheckpointError::NotACheckpoint {
        path: path.to_owned(),
    })
}

fn tensor_specs(layout: &ParamLayout) -> Vec<TensorSpec> {
    layout
        .tensors()
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            shape: t.shape.clone(),
            offset: t.offset,
        })
        .collect()
}

fn moment_specs(n: usize) -> Vec<TensorSpec> {
    vec![
        TensorSpec {
            name: "adam.m".into(),
            shape: vec![n],
            offset: 0,
        },
        TensorSpec {
            name: "adam.v".into(),
            shape: vec![n],
            offset: n,
        },
    ]
}

fn json_err(path: &Path, e: serde_json::Error) -> CheckpointError {
    CheckpointError::Json {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
