//! The subcommands of the `cllm` binary: argument structs, progress display and
//! human-readable output. Everything else is delegated to the library, which never
//! imports this module.

pub mod bench;
pub mod corpus;
pub mod demo;
pub mod dist;
pub mod eval;
pub mod sample;
pub mod text;
pub mod train;

use anyhow::{Context, Result};
use cllm::data::Corpus;
use cllm::isa::Isa;
use std::path::Path;

/// Fraction of the token stream held out for validation.
pub const VAL_FRACTION: f64 = 0.1;

/// The number of cores, the default worker count.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A corpus loaded from `data`, or the built-in one (with its entropy rate).
pub fn load_corpus(data: Option<&Path>) -> Result<(Corpus, Option<f64>)> {
    match data {
        Some(path) => {
            let corpus = Corpus::load(path, VAL_FRACTION)
                .with_context(|| format!("reading the corpus {}", path.display()))?;
            Ok((corpus, None))
        }
        None => {
            let (corpus, entropy) =
                Corpus::built_in(VAL_FRACTION).context("generating the built-in corpus")?;
            Ok((corpus, Some(entropy)))
        }
    }
}

/// `--isa` of the commands that run the kernels on one path.
#[derive(clap::Args, Debug, Clone)]
pub struct IsaArg {
    /// Instruction-set path of the kernels: `portable`, `avx2` or `avx512` [default:
    /// the CLLM_ISA environment variable, else the fastest path this CPU supports].
    /// Every path gives bitwise identical results (the same rounded operations in the
    /// same order); only the speed differs. A path this CPU cannot run is an error
    /// naming the missing CPU feature.
    #[arg(long, value_name = "PATH")]
    pub isa: Option<String>,
}

/// Where the instruction-set path of a run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaSource {
    /// `--isa`.
    Flag,
    /// The `CLLM_ISA` environment variable.
    Env,
    /// Neither: the fastest path this CPU supports.
    Best,
}

impl IsaSource {
    /// How `cllm train` names the source in its `isa:` line.
    pub fn describe(self) -> &'static str {
        match self {
            IsaSource::Flag => "forced by --isa",
            IsaSource::Env => "forced by CLLM_ISA",
            IsaSource::Best => "the fastest this CPU supports",
        }
    }
}

/// Parses one path name given by `--isa` or `CLLM_ISA` (`what` names the source in
/// the error).
pub fn parse_isa(name: &str, what: &str) -> Result<Isa> {
    Isa::parse(name).with_context(|| format!("{what} {name}"))
}

/// The path `CLLM_ISA` asks for, if it is set and not empty.
pub fn isa_from_env() -> Result<Option<Isa>> {
    Isa::from_env().with_context(|| {
        let value = std::env::var_os(Isa::ENV).unwrap_or_default();
        format!("{}={}", Isa::ENV, value.to_string_lossy())
    })
}

/// The path of `--isa` (else `CLLM_ISA`, else [`Isa::best`]), made the process-wide
/// choice ([`cllm::isa::select`]). Call before any kernel runs.
pub fn select_isa(flag: Option<&str>) -> Result<(Isa, IsaSource)> {
    let (isa, source) = match flag {
        Some(name) => (parse_isa(name, "--isa")?, IsaSource::Flag),
        None => match isa_from_env()? {
            Some(isa) => (isa, IsaSource::Env),
            None => (Isa::best(), IsaSource::Best),
        },
    };
    let isa = cllm::isa::select(isa).context("selecting the instruction-set path")?;
    Ok((isa, source))
}

/// What a path is, for people: its instruction set.
pub fn describe_isa(isa: Isa) -> &'static str {
    match isa {
        Isa::Avx512 => "AVX-512",
        Isa::Avx2 => "AVX2 and FMA",
        Isa::Portable => "baseline instructions, FMA through libm",
    }
}

/// Nats per token to bits per byte (the byte tokenizer has one byte per token).
pub fn bits_per_byte(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}
