//! The text side of the commands: the tokenizer flags, preparing a run's text with a
//! progress bar, and a checkpoint's tokenizer for `eval` and `sample`.

use anyhow::{bail, Context, Result};
use cllm::data::prepare::{prepare, PrepareOptions, Prepared, Progress, Source, TokenizerChoice};
use cllm::data::Tokenizer;
use cllm::train::checkpoint::Checkpoint;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;

/// The Hugging Face tokenizer file every checkpoint holds.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Prepares `data` (or the built-in corpus) with `choice`, caching into `cache_dir`,
/// showing a bytes/s progress bar on a terminal.
pub fn prepare_text(
    data: Option<&Path>,
    choice: TokenizerChoice,
    cache_dir: &Path,
    threads: usize,
    show: bool,
) -> Result<Prepared> {
    let source = match data {
        Some(path) => Source::Path(path),
        None => Source::BuiltIn,
    };
    let opts = PrepareOptions {
        val_fraction: super::VAL_FRACTION,
        cache_dir: cache_dir.to_path_buf(),
        threads,
    };
    let bar = if show && std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:22} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut phase = "";
    let mut on_progress = |p: Progress| {
        let (name, done, total) = match p {
            Progress::TrainingTokenizer { done, total } => ("training the tokenizer", done, total),
            Progress::Tokenizing { done, total } => ("tokenizing", done, total),
        };
        if name != phase {
            phase = name;
            bar.reset();
            bar.set_message(name);
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let what = match data {
        Some(path) => format!("preparing the corpus {}", path.display()),
        None => "preparing the built-in corpus".to_string(),
    };
    let prepared = prepare(source, choice, &opts, &mut on_progress).context(what);
    bar.finish_and_clear();
    prepared
}

/// The tokenizer saved in `ckpt`'s directory, checked against its model's vocabulary.
pub fn checkpoint_tokenizer(ckpt: &Checkpoint) -> Result<Tokenizer> {
    let path = ckpt.dir.join(TOKENIZER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the checkpoint {} has no {TOKENIZER_FILE}: it cannot be decoded (was it written by cllm train?)",
            ckpt.dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let tokenizer =
        Tokenizer::from_json(&bytes).with_context(|| format!("loading {}", path.display()))?;
    if tokenizer.vocab_size() != ckpt.model.vocab_size {
        bail!(
            "{} has {} tokens but the checkpoint's config.json says vocab_size {}",
            path.display(),
            tokenizer.vocab_size(),
            ckpt.model.vocab_size
        );
    }
    Ok(tokenizer)
}

/// How a run's text was prepared, for the header line.
pub fn describe(p: &Prepared) -> String {
    let files = match p.n_files {
        0 => String::new(),
        n => format!(" from {n} file(s)"),
    };
    let cache = match &p.cache {
        None => String::new(),
        Some(cllm::data::cache::CacheStatus::Hit) => "; tokens from the cache".into(),
        Some(cllm::data::cache::CacheStatus::Built) => "; tokens cached".into(),
        Some(cllm::data::cache::CacheStatus::Rebuilt(why)) => {
            format!("; token cache rebuilt ({why})")
        }
    };
    let trained = match p.tokenizer_cached {
        None => "",
        Some(true) => ", trained earlier (cached)",
        Some(false) => ", trained on the training text",
    };
    format!(
        "{} ({} bytes of text{files}; {} train / {} validation tokens; tokenizer {}{trained}, vocab {}{cache})",
        p.source,
        p.text_bytes,
        cllm::data::TokenSource::len(&p.train),
        cllm::data::TokenSource::len(&p.val),
        p.tokenizer.kind().name(),
        p.tokenizer.vocab_size(),
    )
}
