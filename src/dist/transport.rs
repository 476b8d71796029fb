//! Owns the [`Transport`] trait: the few collectives a data-parallel step needs, over
//! byte messages, between a fixed group of ranks. Must never know what the bytes mean
//! (the rank step encodes and decodes them) and never combine numbers itself: MPI only
//! recommends a fixed reduction order, so every sum cllm relies on is computed by cllm,
//! in its own fixed order, after the bytes have moved.
//!
//! Implementations: [`MemoryTransport`](super::memory::MemoryTransport) (ranks as
//! threads of one process, on the [`Platform`](crate::sync::Platform) seam, so loom and
//! shuttle check it), and, with the `mpi` cargo feature, `MpiTransport` (one rank per
//! process through the system's MPI library).
//!
//! # Contract
//! Every rank calls the same sequence of collectives (the same kinds, in the same order);
//! a call returns only once every rank has made its matching call. A rank that fails
//! (returns an error out of the step, panics, or is killed) must make every other
//! rank's pending or next collective return [`CommError`] (or, for MPI, end the job)
//! within a bounded time: never a hang.

/// A collective could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommError {
    /// Another rank failed (its error, panic or death ended the group).
    #[error("rank {rank} failed: {why}")]
    PeerFailed {
        /// The rank that failed first.
        rank: usize,
        /// What it reported (or how it was seen to fail).
        why: String,
    },
    /// A message had the wrong shape (a protocol bug or mismatched ranks).
    #[error("malformed message from rank {rank}: {what}")]
    Malformed {
        /// The sender.
        rank: usize,
        /// What was wrong.
        what: String,
    },
    /// The transport itself failed (an MPI error code, a closed group).
    #[error("transport error: {0}")]
    Transport(String),
}

/// The collectives of the cross-rank step (see the module doc for the contract).
pub trait Transport {
    /// This rank's index, `0..size()`.
    fn rank(&self) -> usize;
    /// Ranks in the group.
    fn size(&self) -> usize;
    /// Personalized all-to-all: `send[q]` goes to rank `q` (`send.len() == size()`,
    /// including this rank's own entry); returns `recv` with `recv[p]` = what rank `p`
    /// sent to this rank. Messages may have any length, including zero.
    fn all_to_all(&mut self, send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError>;
    /// Every rank contributes `local` (any length); returns every rank's contribution,
    /// indexed by rank.
    fn all_gather(&mut self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError>;
    /// Tell the group this rank has failed (`why` names the step and the cause) and
    /// will make no further calls; the other ranks' collectives then fail with
    /// [`CommError::PeerFailed`]. The MPI implementation ends the job (`MPI_Abort`).
    fn fail(&mut self, why: &str);
}
