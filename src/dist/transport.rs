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

/// The contract of [`Transport::all_to_all_flat`]'s arguments on rank `rank` of
/// `size`: one count per rank, summing to the `send_len` bytes given.
pub fn check_counts(
    rank: usize,
    size: usize,
    send_len: usize,
    counts: &[usize],
) -> Result<(), CommError> {
    let total: usize = counts.iter().sum();
    if counts.len() != size || total != send_len {
        return Err(CommError::Malformed {
            rank,
            what: format!(
                "{send_len} bytes cut into {} counts summing to {total} for {size} ranks",
                counts.len()
            ),
        });
    }
    Ok(())
}

/// Received messages against the lengths the caller expected (if it said).
pub fn check_expected(
    rank: usize,
    recv: &Blocks,
    expect: Option<&[usize]>,
) -> Result<(), CommError> {
    let Some(expect) = expect else {
        return Ok(());
    };
    let got: Vec<usize> = (0..recv.len()).map(|p| recv.block(p).len()).collect();
    if got != expect {
        return Err(CommError::Malformed {
            rank,
            what: format!("received messages of {got:?} bytes, expected {expect:?}"),
        });
    }
    Ok(())
}

/// Messages from every rank in one buffer: rank `p`'s is [`Blocks::block`]`(p)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocks {
    /// Every message, in rank order, back to back.
    pub buf: Vec<u8>,
    /// `offsets[p]..offsets[p + 1]` is rank `p`'s message (one more entry than ranks).
    pub offsets: Vec<usize>,
}

impl Blocks {
    /// `parts`, back to back.
    pub fn from_parts(parts: &[Vec<u8>]) -> Blocks {
        let mut blocks = Blocks::default();
        blocks.fill_from(parts);
        blocks
    }

    /// Replace the contents with `parts`, back to back (reusing the buffers).
    pub fn fill_from(&mut self, parts: &[Vec<u8>]) {
        self.buf.clear();
        self.offsets.clear();
        self.offsets.push(0);
        for p in parts {
            self.buf.extend_from_slice(p);
            self.offsets.push(self.buf.len());
        }
    }

    /// Rank `p`'s message.
    pub fn block(&self, p: usize) -> &[u8] {
        &self.buf[self.offsets[p]..self.offsets[p + 1]]
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every message as its own buffer.
    pub fn into_parts(self) -> Vec<Vec<u8>> {
        (0..self.len()).map(|p| self.block(p).to_vec()).collect()
    }
}

/// The collectives of the cross-rank step (see the module doc for the contract).
///
/// The `_flat` forms carry the same collectives with every message in one buffer
/// (what MPI moves without a copy); by default they go through the per-message forms,
/// and a transport that moves flat buffers natively overrides them.
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
    /// [`Transport::all_to_all`] with the messages back to back in `send`: the one to
    /// rank `q` is the `q`-th run of `counts[q]` bytes (`counts.len() == size()`, their
    /// sum `send.len()`). The received messages replace `recv`'s contents (its buffers'
    /// capacity is reused, so a caller that keeps `recv` allocates nothing per step).
    /// `expect`, when the caller knows them, are the lengths it will receive from each
    /// rank: a transport may then skip exchanging the lengths (MPI does: one collective
    /// instead of two); a message of another length is an error (under MPI, a fatal
    /// one that ends the job).
    fn all_to_all_flat(
        &mut self,
        send: &[u8],
        counts: &[usize],
        expect: Option<&[usize]>,
        recv: &mut Blocks,
    ) -> Result<(), CommError> {
        check_counts(self.rank(), self.size(), send.len(), counts)?;
        let mut at = 0;
        let parts: Vec<Vec<u8>> = counts
            .iter()
            .map(|&c| {
                let part = send[at..at + c].to_vec();
                at += c;
                part
            })
            .collect();
        recv.fill_from(&self.all_to_all(&parts)?);
        check_expected(self.rank(), recv, expect)
    }
    /// [`Transport::all_gather`] with every contribution in one buffer, replacing
    /// `recv`'s contents, and with the lengths to expect if known (as
    /// [`Transport::all_to_all_flat`]).
    fn all_gather_flat(
        &mut self,
        local: &[u8],
        expect: Option<&[usize]>,
        recv: &mut Blocks,
    ) -> Result<(), CommError> {
        recv.fill_from(&self.all_gather(local)?);
        check_expected(self.rank(), recv, expect)
    }
    /// Tell the group this rank has failed (`why` names the step and the cause; the
    /// transport adds the rank) and will make no further calls; the other ranks'
    /// collectives then fail with [`CommError::PeerFailed`]. The MPI implementation
    /// prints `rank R of N: why` and ends the job (`MPI_Abort`).
    fn fail(&mut self, why: &str);
    /// This rank is about to run training step `step` (called by the rank step before
    /// its first collective of that step). For reports of failures that arrive outside
    /// the step's own code (a panic, the launcher ending the process); moves nothing.
    /// The MPI implementation names the step in those reports; by default it is ignored.
    fn begin_step(&mut self, _step: u64) {}
}
