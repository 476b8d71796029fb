//! Owns how `cllm train` and `cllm bench` learn whether they are one rank of a
//! multi-process run: [`world`] reads what an MPI launcher announced and, in a build
//! with the `mpi` feature, starts MPI; [`agree`] is the launch agreement every rank
//! runs before its first step. Must never train, read data or write files, and never
//! let a non-MPI build started as several processes go on (every copy would train the
//! same run alone and write the same output directory).

use anyhow::{Context, Result};
use cllm::dist::launch;
#[cfg(not(feature = "mpi"))]
use cllm::dist::CommError;
use cllm::dist::Transport;

/// The transport of a multi-process run in this build: MPI with the `mpi` feature.
#[cfg(feature = "mpi")]
pub type World = cllm::dist::mpi::MpiTransport;

/// The transport of a multi-process run in this build: none without the `mpi`
/// feature ([`world`] never returns one), so callers need no `cfg` of their own.
#[cfg(not(feature = "mpi"))]
pub type World = NoMpi;

/// A transport that cannot exist (no value of it can be made): the [`World`] of a
/// build without MPI.
#[cfg(not(feature = "mpi"))]
#[derive(Debug)]
pub enum NoMpi {}

#[cfg(not(feature = "mpi"))]
impl Transport for NoMpi {
    fn rank(&self) -> usize {
        match *self {}
    }
    fn size(&self) -> usize {
        match *self {}
    }
    fn all_to_all(&mut self, _send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError> {
        match *self {}
    }
    fn all_gather(&mut self, _local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        match *self {}
    }
    fn fail(&mut self, _why: &str) {
        match *self {}
    }
}

/// How an MPI launcher started this process, as far as the environment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Launched {
    /// The world size it announced (see [`launch::SIZE_VARS`]).
    ranks: Option<usize>,
    /// This process's rank it announced (see [`launch::RANK_VARS`]).
    rank: Option<usize>,
}

impl Launched {
    fn from_env() -> Option<Launched> {
        let ranks = launch::launched_ranks();
        let rank = launch::launched_rank();
        (ranks.is_some() || rank.is_some()).then_some(Launched { ranks, rank })
    }

    /// Whether this is certainly one of several processes (a PMIx launcher announces
    /// only ranks: rank 0 alone cannot tell, every other rank can).
    #[cfg_attr(feature = "mpi", allow(dead_code))]
    fn several(self) -> bool {
        self.ranks.unwrap_or(1) > 1 || self.rank.unwrap_or(0) > 0
    }
}

/// The error of a build without MPI started as one of several processes.
#[cfg_attr(feature = "mpi", allow(dead_code))]
fn no_mpi_error(l: Launched) -> anyhow::Error {
    let copies = l
        .ranks
        .map_or_else(|| "several".to_string(), |n| n.to_string());
    let rank = l.rank.map_or_else(String::new, |r| format!("rank {r}: "));
    anyhow::anyhow!(
        "{rank}this cllm was built without MPI support, but an MPI launcher started it as \
         one of {copies} processes: build with `cargo build --release --features mpi` and \
         launch that binary, or run a single process without mpirun (otherwise it would \
         train {copies} identical copies of the run)"
    )
}

/// This process's place in a multi-process run, for a step of `micro_batches`
/// micro-batches:
/// * not started by an MPI launcher: `None` (a single process, the usual path);
/// * built without the `mpi` feature and started as one of several processes: an
///   error (on every rank that can tell; see [`launch::launched_ranks`]);
///   started as a single process (`mpirun -np 1`): `None`;
/// * built with it: MPI is started and `Some` is this rank's transport, even for one
///   process; an error (on every rank, the same one) if the world has more ranks than
///   `micro_batches`.
pub fn world(micro_batches: usize) -> Result<Option<World>> {
    let Some(launched) = Launched::from_env() else {
        return Ok(None);
    };
    start(launched, micro_batches)
}

#[cfg(not(feature = "mpi"))]
fn start(launched: Launched, _micro_batches: usize) -> Result<Option<World>> {
    if launched.several() {
        return Err(no_mpi_error(launched));
    }
    Ok(None)
}

#[cfg(feature = "mpi")]
fn start(_launched: Launched, micro_batches: usize) -> Result<Option<World>> {
    let t = cllm::dist::mpi::MpiTransport::init().context("starting MPI")?;
    let (rank, size) = (t.rank(), t.size());
    launch::check_ranks(size, micro_batches).with_context(|| format!("rank {rank} of {size}"))?;
    Ok(Some(t))
}

/// The launch agreement (see [`launch::check_agreement`]) over `items` (the caller's
/// fingerprints, e.g. `("arguments", ...)` and `("data", ...)`) followed by
/// `("binary", ...)`, the running executable's. Every rank returns the same error if
/// any rank differs from rank 0.
pub fn agree<T: Transport>(t: &mut T, items: &[(&str, u64)]) -> Result<()> {
    let binary = launch::executable_fingerprint()?;
    let mut all: Vec<(&str, u64)> = items.to_vec();
    all.push(("binary", binary));
    // No rank in the message: the caller reports it through `Transport::fail`, which
    // names the rank.
    Ok(launch::check_agreement(t, &all)?)
}

/// The fingerprint of `value`'s JSON (e.g. the training configuration with its
/// cadence), for an item of [`agree`].
pub fn fingerprint_json(value: &impl serde::Serialize) -> Result<u64> {
    let json = serde_json::to_vec(value).context("encoding a launch item as JSON")?;
    Ok(launch::fingerprint(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_certain_multi_process_launch_counts_as_several() {
        let l = |ranks, rank| Launched { ranks, rank };
        assert!(!l(Some(1), Some(0)).several());
        assert!(!l(None, Some(0)).several());
        assert!(!l(Some(1), None).several());
        assert!(l(Some(2), Some(0)).several());
        assert!(l(None, Some(3)).several());
        let msg = no_mpi_error(l(Some(2), Some(1))).to_string();
        assert!(msg.starts_with("rank 1: "), "{msg}");
        assert!(msg.contains("--features mpi"), "{msg}");
        assert!(msg.contains("2 identical copies"), "{msg}");
        let msg = no_mpi_error(l(None, Some(4))).to_string();
        assert!(msg.contains("several identical copies"), "{msg}");
    }
}
