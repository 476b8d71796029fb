//! Owns [`MpiTransport`]: the [`Transport`] of a multi-process run, one rank per
//! process, through the system's MPI library (rsmpi over OpenMPI or MPICH; only with
//! the `mpi` cargo feature). Moves bytes only: `all_to_all` is `MPI_Alltoallv` after an
//! `MPI_Alltoall` of the byte counts, `all_gather` is `MPI_Allgatherv` after an
//! `MPI_Allgather` of the counts, and `fail` is `MPI_Abort` of the world.
//!
//! Must never reduce numbers in MPI (no `MPI_Reduce`, `MPI_Allreduce`,
//! `MPI_Reduce_scatter`): the standard only recommends a fixed reduction order, so every
//! sum cllm relies on is cllm's own, computed in its fixed order after the bytes have
//! moved. When the caller knows what it will receive (the rank step always does), the
//! count exchange is skipped. Must never interpret the bytes, and never be used from a thread other than
//! the one that created it (MPI is initialized `MPI_THREAD_FUNNELED`; the type is not
//! `Send`).
//!
//! Failure: a panic on a rank aborts its process (see `abort_on_panic`, installed by
//! [`MpiTransport::init`]), after printing `rank R of N: panicked during step S`. When
//! a rank dies (killed, aborted), the launcher ends the others with `SIGTERM`; each
//! prints `rank R of N: terminated ... during step S` first (see `report_termination`)
//! and then ends as `SIGTERM`'s default would. The step is the one [`Transport::begin_step`]
//! last announced. MPI's default error handler on the world communicator is
//! `MPI_ERRORS_ARE_FATAL`, so a collective whose peer died ends the job rather than
//! returning; the launcher (`mpirun`) also ends every rank when one exits abnormally.
//! Either way no rank waits forever. A message count or total over `i32::MAX` bytes
//! (MPI's `int` counts) is refused with [`CommError::Transport`] before any call.

use super::transport::{check_counts, Blocks, CommError, Transport};
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::{Count, Threading};
use std::sync::atomic::{AtomicU64, Ordering};

/// One rank's end of the MPI world (see the module doc).
pub struct MpiTransport {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    // Dropped last: finalizes MPI (`MPI_Finalize`).
    _universe: Universe,
}

impl MpiTransport {
    /// Initializes MPI (`MPI_Init_thread` asking for `MPI_THREAD_FUNNELED`: cllm's
    /// worker threads never call MPI, only the thread that owns this value does) and
    /// returns this process's rank of the world. Fails if MPI was already initialized in
    /// this process or cannot give that threading level.
    pub fn init() -> Result<MpiTransport, CommError> {
        let (universe, provided) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                CommError::Transport("MPI was already initialized in this process".into())
            })?;
        if provided < Threading::Funneled {
            return Err(CommError::Transport(format!(
                "the MPI library provides only {provided:?} threading; cllm needs Funneled \
                 (worker threads run beside the thread that calls MPI)"
            )));
        }
        let world = universe.world();
        let rank = usize::try_from(world.rank())
            .map_err(|_| CommError::Transport(format!("negative rank {}", world.rank())))?;
        let size = usize::try_from(world.size())
            .map_err(|_| CommError::Transport(format!("world size {}", world.size())))?;
        abort_on_panic(rank, size);
        report_termination(rank, size);
        Ok(MpiTransport {
            world,
            rank,
            size,
            _universe: universe,
        })
    }

    /// A byte length as an MPI count.
    fn count(&self, len: usize, what: &str) -> Result<Count, CommError> {
        Count::try_from(len).map_err(|_| {
            CommError::Transport(format!(
                "rank {}: {what} of {len} bytes exceeds MPI's count limit of {} bytes",
                self.rank,
                Count::MAX
            ))
        })
    }

    /// One MPI count per rank from `lens` (which must have one entry per rank).
    fn counts(&self, lens: &[usize], what: &str) -> Result<Vec<Count>, CommError> {
        if lens.len() != self.size {
            return Err(CommError::Malformed {
                rank: self.rank,
                what: format!("{} lengths for {} ranks in {what}", lens.len(), self.size),
            });
        }
        lens.iter().map(|&c| self.count(c, what)).collect()
    }

    /// Displacements of consecutive blocks of `counts` bytes (their total must fit a
    /// count too).
    fn displs(&self, counts: &[Count], what: &str) -> Result<(Vec<Count>, usize), CommError> {
        let mut displs = Vec::with_capacity(counts.len());
        let mut total: usize = 0;
        for &c in counts {
            displs.push(self.count(total, what)?);
            let c = usize::try_from(c).map_err(|_| {
                CommError::Transport(format!("rank {}: negative count {c} in {what}", self.rank))
            })?;
            total += c;
        }
        self.count(total, what)?;
        Ok((displs, total))
    }
}

/// The training step this process's rank last began ([`Transport::begin_step`]);
/// `u64::MAX` before the first. Read only for failure reports.
static STEP: AtomicU64 = AtomicU64::new(u64::MAX);

/// `during step S`, or `before its first step`.
fn during_step() -> String {
    // Relaxed: a value for a report; nothing is published with it.
    match STEP.load(Ordering::Relaxed) {
        u64::MAX => "before its first step".to_string(),
        s => format!("during step {s}"),
    }
}

/// From now on a `SIGTERM` (what `mpirun` sends every other rank when one dies, and
/// what it forwards when it is itself terminated) prints `rank R of N: terminated ...
/// during step S` and then ends the process as `SIGTERM`'s default action would. If the
/// handler cannot be installed, `SIGTERM` keeps its default (silent) action.
fn report_termination(rank: usize, size: usize) {
    use signal_hook::consts::SIGTERM;
    // The handler is installed on the watcher thread itself: if that thread cannot
    // start, nothing is installed and SIGTERM keeps its default action.
    let _ = std::thread::Builder::new()
        .name("cllm-sigterm".into())
        .spawn(move || {
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM]) else {
                return;
            };
            if let Some(signal) = signals.forever().next() {
                eprintln!(
                    "rank {rank} of {size}: terminated (SIGTERM: the launcher ends every \
                     rank once one has died, or was itself stopped) {}",
                    during_step()
                );
                // Ends the process with the signal's default action (or abort).
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + SIGTERM);
            }
        });
}

/// From now on a panic anywhere in this process (any thread) prints its message and
/// `rank R of N: panicked during step S`, then aborts the process. It must not unwind: unwinding
/// drops the universe, and `MPI_Finalize` waits for the other ranks while they wait in
/// a collective for this one (a hang). Once the process is gone, the launcher ends
/// every other rank.
fn abort_on_panic(rank: usize, size: usize) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!(
            "rank {rank} of {size}: panicked {}; ending this process (the launcher ends the others)",
            during_step()
        );
        std::process::abort();
    }));
}

/// A buffer of `len` bytes whose data pointer is a real allocation even when `len`
/// is 0. An empty Rust slice points at address 1 (`u8`'s alignment), which is
/// OpenMPI's `MPI_IN_PLACE`: passed as a buffer it would turn the call into an
/// in-place collective (or be rejected as an invalid argument).
fn buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len.max(1)];
    buf.truncate(len);
    buf
}

/// `buf` resized to `len` bytes, reusing its allocation, with a real allocation even
/// when `len` is 0 (see [`buffer`]).
fn resize(buf: &mut Vec<u8>, len: usize) {
    buf.clear();
    buf.reserve(len.max(1));
    buf.resize(len, 0);
}

/// The message offsets of a received buffer (displacements checked by `displs`).
fn set_offsets(recv: &mut Blocks, displs: &[Count], total: usize) {
    recv.offsets.clear();
    recv.offsets.extend(displs.iter().map(|&d| d as usize));
    recv.offsets.push(total);
}

impl Transport for MpiTransport {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_to_all(&mut self, send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError> {
        let flat = Blocks::from_parts(send);
        let counts: Vec<usize> = send.iter().map(Vec::len).collect();
        let mut recv = Blocks::default();
        self.all_to_all_flat(&flat.buf, &counts, None, &mut recv)?;
        Ok(recv.into_parts())
    }

    fn all_gather(&mut self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        let mut recv = Blocks::default();
        self.all_gather_flat(local, None, &mut recv)?;
        Ok(recv.into_parts())
    }

    fn all_to_all_flat(
        &mut self,
        send: &[u8],
        counts: &[usize],
        expect: Option<&[usize]>,
        recv: &mut Blocks,
    ) -> Result<(), CommError> {
        check_counts(self.rank, self.size, send.len(), counts)?;
        let send_counts = self.counts(counts, "an all-to-all message")?;
        let (send_displs, _) = self.displs(&send_counts, "the all-to-all send total")?;
        let recv_counts = match expect {
            Some(lens) => self.counts(lens, "an expected all-to-all message")?,
            None => {
                // Every rank learns what each peer will send it (one count per pair).
                let mut recv_counts: Vec<Count> = vec![0; self.size];
                self.world
                    .all_to_all_into(&send_counts[..], &mut recv_counts[..]);
                recv_counts
            }
        };
        let (recv_displs, recv_total) =
            self.displs(&recv_counts, "the all-to-all receive total")?;
        // An empty `send` would point at address 1 (MPI_IN_PLACE): send from a real
        // allocation instead.
        let empty = buffer(0);
        let send = if send.is_empty() { &empty[..] } else { send };
        resize(&mut recv.buf, recv_total);
        {
            let sent = Partition::new(send, &send_counts[..], &send_displs[..]);
            let mut received =
                PartitionMut::new(&mut recv.buf[..], &recv_counts[..], &recv_displs[..]);
            self.world.all_to_all_varcount_into(&sent, &mut received);
        }
        set_offsets(recv, &recv_displs, recv_total);
        Ok(())
    }

    fn all_gather_flat(
        &mut self,
        local: &[u8],
        expect: Option<&[usize]>,
        recv: &mut Blocks,
    ) -> Result<(), CommError> {
        let mine = self.count(local.len(), "an all-gather contribution")?;
        let counts = match expect {
            Some(lens) => {
                if lens.get(self.rank) != Some(&local.len()) {
                    return Err(CommError::Malformed {
                        rank: self.rank,
                        what: format!(
                            "contributes {} bytes, but expects {:?} from the ranks",
                            local.len(),
                            lens
                        ),
                    });
                }
                self.counts(lens, "an expected all-gather contribution")?
            }
            None => {
                let mut counts: Vec<Count> = vec![0; self.size];
                self.world.all_gather_into(&mine, &mut counts[..]);
                counts
            }
        };
        let (displs, total) = self.displs(&counts, "the all-gather total")?;
        resize(&mut recv.buf, total);
        // An empty `local` would point at address 1 (MPI_IN_PLACE): send from a real
        // allocation instead.
        let empty = buffer(0);
        let local = if local.is_empty() { &empty[..] } else { local };
        {
            let mut gathered = PartitionMut::new(&mut recv.buf[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(local, &mut gathered);
        }
        set_offsets(recv, &displs, total);
        Ok(())
    }

    fn begin_step(&mut self, step: u64) {
        // Relaxed: a value for a report; nothing is published with it.
        STEP.store(step, Ordering::Relaxed);
    }

    fn fail(&mut self, why: &str) {
        eprintln!("rank {} of {}: {why}", self.rank, self.size);
        // MPI_Abort of the world: the launcher ends every rank with exit code 1.
        self.world.abort(1)
    }
}
