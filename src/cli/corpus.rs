//! `cllm corpus`: write a built-in corpus (the word source by default, or the letter
//! source) to a file and print its entropy rate. The text is streamed to a temporary
//! file in the target's directory in pieces of [`CHUNK`] bytes (memory stays bounded
//! for any `--bytes`), synced, and renamed over the target, so a reader sees either
//! the old file or the whole new one.

use super::bits_per_byte;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cllm::data::{
    MarkovSource, WordParams, WordSource, DEFAULT_CORPUS_ALPHA, DEFAULT_CORPUS_BYTES,
    DEFAULT_CORPUS_ORDER, DEFAULT_CORPUS_SEED, DEFAULT_WORDS_SEED,
};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Bytes generated and written per piece.
pub const CHUNK: usize = 1 << 20;

/// Largest `--bytes` accepted (1 TiB).
pub const MAX_BYTES: u64 = 1 << 40;

/// Context length of the windowed floor printed for the word source.
const WINDOW: usize = 64;
/// Windows of its Monte Carlo estimate (a fraction of a second).
const WINDOWS: usize = 4000;

/// `--kind` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorpusKind {
    /// Word-level Markov source written as sentences (the built-in corpus).
    Words,
    /// Letter-level order-2 Markov source over a-z, space and newline.
    Letters,
}

/// Options of `cllm corpus`.
#[derive(Args, Debug)]
pub struct CorpusArgs {
    /// File to write (replaced atomically if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Which built-in source to write.
    #[arg(long, value_enum, default_value_t = CorpusKind::Words)]
    pub kind: CorpusKind,
    /// Bytes to write, 1 to 2^40 [default: the built-in corpus's length, 2,000,000].
    /// The first 2,000,000 bytes are always the built-in corpus itself.
    #[arg(long)]
    pub bytes: Option<u64>,
}

/// Run `cllm corpus`.
pub fn run(args: CorpusArgs) -> Result<()> {
    let n = args.bytes.unwrap_or(DEFAULT_CORPUS_BYTES as u64);
    if !(1..=MAX_BYTES).contains(&n) {
        bail!("--bytes {n} is out of range: it must be at least 1 and at most {MAX_BYTES} (1 TiB)");
    }
    let (entropy, description) = match args.kind {
        CorpusKind::Words => {
            let w = WordSource::new(&WordParams::default())
                .context("building the built-in word source")?;
            let mut stream = w.stream(DEFAULT_WORDS_SEED);
            stream_to(&args.out, |f| stream.write_to(f, n, CHUNK))?;
            let window = w.windowed_floor(WINDOW, WINDOWS, DEFAULT_WORDS_SEED);
            (
                w.entropy_rate(),
                format!(
                    "{}\na model seeing {WINDOW}-byte windows (cllm train's default context) can reach about {window:.4} nats/byte at best (estimated over {WINDOWS} windows)",
                    w.describe()
                ),
            )
        }
        CorpusKind::Letters => {
            let m = MarkovSource::new(
                DEFAULT_CORPUS_SEED,
                DEFAULT_CORPUS_ORDER,
                DEFAULT_CORPUS_ALPHA,
            )
            .context("building the built-in letter source")?;
            let mut stream = m.stream(DEFAULT_CORPUS_SEED);
            stream_to(&args.out, |f| {
                let mut buf = vec![0; CHUNK];
                let mut left = n;
                while left > 0 {
                    let take = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
                    stream.fill(&mut buf[..take]);
                    f.write_all(&buf[..take])?;
                    left -= take as u64;
                }
                Ok(())
            })?;
            (
                m.entropy_rate(),
                format!("letter-level order-{DEFAULT_CORPUS_ORDER} Markov source (seed {DEFAULT_CORPUS_SEED}, alpha {DEFAULT_CORPUS_ALPHA})"),
            )
        }
    };
    println!("wrote {n} bytes to {}: {description}", args.out.display());
    println!(
        "entropy rate {entropy:.6} nats/byte ({:.6} bits/byte)",
        bits_per_byte(entropy)
    );
    Ok(())
}

/// Writes what `fill` produces to a temporary file next to `path`, syncs it and
/// renames it over `path` (then syncs the directory); removes the temporary file on
/// any error.
fn stream_to(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        bail!("--out {} does not name a file", path.display());
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(CHUNK, file);
        fill(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
