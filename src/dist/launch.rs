//! Owns the checks made when a multi-process run starts, before any training step:
//! how many processes an MPI launcher announced ([`launched_ranks`]), whether that
//! many ranks can share the step's micro-batches ([`check_ranks`]), and whether every
//! rank was started the same way ([`check_agreement`]: the same arguments, the same
//! data, the same executable, compared through fixed 64-bit fingerprints). Works over
//! any [`Transport`]; must never start MPI itself, read the training data, or decide
//! anything a rank could decide differently from the others: every check either passes
//! on every rank or fails on every rank with the same error, so no rank is left
//! waiting in a collective its peers never enter.

use super::transport::{CommError, Transport};
use std::io::Read;
use std::path::PathBuf;

/// Why a multi-process run may not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A group of no ranks.
    #[error("a data-parallel run needs at least one rank")]
    NoRanks,
    /// More ranks than micro-batches per step: some rank would own no micro-batch.
    #[error(
        "{ranks} ranks but only {micro_batches} micro-batch(es) per step: every rank must \
         own at least one micro-batch (launch at most {micro_batches} processes, e.g. \
         `mpirun -np {micro_batches}`, or train with --micro-batches {ranks} or more)"
    )]
    TooManyRanks {
        /// Processes launched.
        ranks: usize,
        /// Micro-batches per step.
        micro_batches: usize,
    },
    /// Some ranks were started differently from rank 0.
    #[error("the ranks were not started the same way: {}", describe(.0))]
    Disagree(Vec<Disagreement>),
    /// The agreement exchange itself failed.
    #[error("launch agreement: {0}")]
    Comm(#[from] CommError),
    /// The running executable could not be read for its fingerprint.
    #[error("reading the running executable {path}: {source}")]
    Executable {
        /// The path `std::env::current_exe` gave (empty if it gave none).
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// One launch item on which some ranks differ from rank 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The item's name (`arguments`, `data`, `binary`, ... as the caller named it), or
    /// `the list of launch items` when the ranks did not even check the same items.
    pub item: String,
    /// The ranks whose fingerprint differs from rank 0's, ascending.
    pub ranks: Vec<usize>,
}

fn describe(list: &[Disagreement]) -> String {
    list.iter()
        .map(|d| {
            let ranks: Vec<String> = d.ranks.iter().map(usize::to_string).collect();
            let s = if d.ranks.len() == 1 { "" } else { "s" };
            format!(
                "{} differs between rank 0 and rank{s} {}",
                d.item,
                ranks.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
        + " (start every rank with the same cllm executable, arguments and data)"
}

/// The environment variables that announce the world size, in the order they are
/// consulted: OpenMPI's `OMPI_COMM_WORLD_SIZE`, `PMI_SIZE` (MPICH/Intel MPI's Hydra and
/// Slurm's PMI-2), MVAPICH2's `MV2_COMM_WORLD_SIZE`, then MPICH Hydra's
/// `MPI_LOCALNRANKS` (the ranks on this node only: a lower bound, used only when
/// nothing else is set). PMIx publishes no size variable (only `PMIX_RANK`); see
/// [`launched_rank`].
pub const SIZE_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "MPI_LOCALNRANKS",
];

/// The environment variables that announce this process's rank, in order: OpenMPI's
/// `OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `MV2_COMM_WORLD_RANK`, PMIx's `PMIX_RANK`.
pub const RANK_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_RANK",
    "PMI_RANK",
    "MV2_COMM_WORLD_RANK",
    "PMIX_RANK",
];

/// The process count an MPI launcher announced in this process's environment (see
/// [`SIZE_VARS`] for which variables, in which order), or `None` if this process was
/// not started by a launcher that announces one. A variable that is set but not a
/// positive integer is skipped.
pub fn launched_ranks() -> Option<usize> {
    launched_ranks_from(|name| std::env::var(name).ok())
}

/// [`launched_ranks`] over any environment lookup (`get(name)` is the variable's value).
pub fn launched_ranks_from(get: impl Fn(&str) -> Option<String>) -> Option<usize> {
    first_number(&SIZE_VARS, get).filter(|&n| n > 0)
}

/// This process's rank as a launcher announced it (see [`RANK_VARS`]), or `None`.
/// Under a PMIx-only launcher this is the only sign of a multi-process launch.
pub fn launched_rank() -> Option<usize> {
    launched_rank_from(|name| std::env::var(name).ok())
}

/// [`launched_rank`] over any environment lookup.
pub fn launched_rank_from(get: impl Fn(&str) -> Option<String>) -> Option<usize> {
    first_number(&RANK_VARS, get)
}

fn first_number(names: &[&str], get: impl Fn(&str) -> Option<String>) -> Option<usize> {
    names
        .iter()
        .find_map(|name| get(name).and_then(|v| v.trim().parse::<usize>().ok()))
}

/// Refuses a group of `ranks` ranks for `micro_batches` micro-batches per step unless
/// every rank owns at least one micro-batch (`1 <= ranks <= micro_batches`).
pub fn check_ranks(ranks: usize, micro_batches: usize) -> Result<(), LaunchError> {
    if ranks == 0 {
        return Err(LaunchError::NoRanks);
    }
    if ranks > micro_batches {
        return Err(LaunchError::TooManyRanks {
            ranks,
            micro_batches,
        });
    }
    Ok(())
}

/// The FNV-1a 64-bit hash (offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3`, one byte at a time), streaming: the fingerprint every rank computes
/// identically, whatever its machine. Not a cryptographic hash: it catches launch
/// mistakes, not an adversary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Fnv1a {
    /// FNV-1a's 64-bit offset basis.
    pub const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    /// FNV's 64-bit prime.
    pub const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The hash of no bytes.
    pub fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    /// Continue with `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// The FNV-1a 64 hash of `bytes` (see [`Fnv1a`]).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    h.finish()
}

/// The FNV-1a 64 hash of everything `reader` yields.
pub fn fingerprint_reader(mut reader: impl Read) -> std::io::Result<u64> {
    let mut h = Fnv1a::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The fingerprint of the running executable's bytes (the file
/// `std::env::current_exe` names; on Linux `/proc/self/exe`, so a binary replaced on
/// disk after start is still the one hashed).
pub fn executable_fingerprint() -> Result<u64, LaunchError> {
    let path = std::env::current_exe().map_err(|source| LaunchError::Executable {
        path: PathBuf::new(),
        source,
    })?;
    #[cfg(target_os = "linux")]
    let open = PathBuf::from("/proc/self/exe");
    #[cfg(not(target_os = "linux"))]
    let open = path.clone();
    std::fs::File::open(&open)
        .and_then(fingerprint_reader)
        .map_err(|source| LaunchError::Executable { path, source })
}

/// The launch agreement: every rank contributes its `items` (name and fingerprint, in
/// the same order on every rank) in one all-gather, and every rank compares every
/// rank's list with rank 0's. On any difference every rank returns the same
/// [`LaunchError::Disagree`] naming each differing item and the ranks that differ (a
/// rank with a different list of items, e.g. another cllm version, is reported as
/// differing on `the list of launch items`).
pub fn check_agreement<T: Transport>(t: &mut T, items: &[(&str, u64)]) -> Result<(), LaunchError> {
    let all = t.all_gather(&encode(items))?;
    let lists: Vec<Option<Vec<(String, u64)>>> = all.iter().map(|m| decode(m)).collect();
    let reference = match lists.first() {
        Some(Some(list)) => list,
        // Rank 0's own message is always well formed; anything else is a peer built
        // differently, reported as such.
        _ => {
            return Err(LaunchError::Disagree(vec![Disagreement {
                item: "the list of launch items".into(),
                ranks: (1..all.len()).collect(),
            }]))
        }
    };
    let mut out: Vec<Disagreement> = Vec::new();
    let mut note = |item: &str, rank: usize| match out.iter_mut().find(|d| d.item == item) {
        Some(d) => d.ranks.push(rank),
        None => out.push(Disagreement {
            item: item.to_string(),
            ranks: vec![rank],
        }),
    };
    for (rank, list) in lists.iter().enumerate().skip(1) {
        let same_names = list.as_ref().is_some_and(|list| {
            list.len() == reference.len() && list.iter().zip(reference).all(|(a, b)| a.0 == b.0)
        });
        match list {
            Some(list) if same_names => {
                for (mine, theirs) in reference.iter().zip(list) {
                    if mine.1 != theirs.1 {
                        note(&mine.0, rank);
                    }
                }
            }
            _ => note("the list of launch items", rank),
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(LaunchError::Disagree(out))
    }
}

/// `count: u32`, then per item `name length: u32`, `name` (UTF-8), `value: u64`, all
/// little-endian.
fn encode(items: &[(&str, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for (name, value) in items {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// The inverse of [`encode`]; `None` for anything malformed (trailing bytes included).
fn decode(mut msg: &[u8]) -> Option<Vec<(String, u64)>> {
    fn take<'a>(msg: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if msg.len() < n {
            return None;
        }
        let (head, tail) = msg.split_at(n);
        *msg = tail;
        Some(head)
    }
    let u32_at = |msg: &mut &[u8]| -> Option<usize> {
        Some(u32::from_le_bytes(take(msg, 4)?.try_into().ok()?) as usize)
    };
    let count = u32_at(&mut msg)?;
    let mut items = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = u32_at(&mut msg)?;
        let name = std::str::from_utf8(take(&mut msg, len)?).ok()?.to_string();
        let value = u64::from_le_bytes(take(&mut msg, 8)?.try_into().ok()?);
        items.push((name, value));
    }
    msg.is_empty().then_some(items)
}

/// The test suite's watchdog (bounds the threaded test below).
#[cfg(test)]
#[path = "../../tests/watchdog/mod.rs"]
mod watchdog;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn launched_ranks_reads_each_launcher_and_prefers_the_world_size() {
        assert_eq!(launched_ranks_from(env(&[])), None);
        assert_eq!(
            launched_ranks_from(env(&[("OMPI_COMM_WORLD_SIZE", "3")])),
            Some(3)
        );
        assert_eq!(launched_ranks_from(env(&[("PMI_SIZE", "5")])), Some(5));
        assert_eq!(
            launched_ranks_from(env(&[("MV2_COMM_WORLD_SIZE", "2")])),
            Some(2)
        );
        // The node-local count is only a fallback behind a world size.
        assert_eq!(
            launched_ranks_from(env(&[("MPI_LOCALNRANKS", "2"), ("PMI_SIZE", "4")])),
            Some(4)
        );
        assert_eq!(
            launched_ranks_from(env(&[("MPI_LOCALNRANKS", "2")])),
            Some(2)
        );
        // Garbage and zero are not announcements; a later valid variable still counts.
        assert_eq!(
            launched_ranks_from(env(&[("OMPI_COMM_WORLD_SIZE", "two")])),
            None
        );
        assert_eq!(
            launched_ranks_from(env(&[("OMPI_COMM_WORLD_SIZE", "x"), ("PMI_SIZE", "2")])),
            Some(2)
        );
        assert_eq!(launched_ranks_from(env(&[("PMI_SIZE", "0")])), None);
        // PMIx announces a rank only.
        let pmix = env(&[("PMIX_RANK", "1")]);
        assert_eq!(launched_ranks_from(&pmix), None);
        assert_eq!(launched_rank_from(&pmix), Some(1));
        assert_eq!(
            launched_rank_from(env(&[("OMPI_COMM_WORLD_RANK", "2"), ("PMIX_RANK", "7")])),
            Some(2)
        );
        assert_eq!(launched_rank_from(env(&[])), None);
    }

    #[test]
    fn check_ranks_needs_a_micro_batch_per_rank() {
        assert!(check_ranks(1, 1).is_ok());
        assert!(check_ranks(3, 3).is_ok());
        assert!(check_ranks(2, 6).is_ok());
        assert!(matches!(check_ranks(0, 4), Err(LaunchError::NoRanks)));
        let err = check_ranks(4, 3).unwrap_err();
        assert!(matches!(
            err,
            LaunchError::TooManyRanks {
                ranks: 4,
                micro_batches: 3
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains("4 ranks"), "{msg}");
        assert!(msg.contains("3 micro-batch"), "{msg}");
        assert!(msg.contains("--micro-batches 4"), "{msg}");
        assert!(msg.contains("-np 3"), "{msg}");
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // The FNV reference test vectors for FNV-1a 64.
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint(b"foobar"), 0x8594_4171_f739_67e8);
        // Streaming in pieces gives the one-shot hash.
        let mut h = Fnv1a::new();
        h.write(b"foo");
        h.write(b"");
        h.write(b"bar");
        assert_eq!(h.finish(), fingerprint(b"foobar"));
        let long: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            fingerprint_reader(&long[..]).unwrap(),
            fingerprint(&long),
            "the chunked reader must hash every byte once, in order"
        );
    }

    #[test]
    fn executable_fingerprint_hashes_this_test_binary() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(executable_fingerprint().unwrap(), fingerprint(&bytes));
    }

    /// A transport for one rank of a group whose all-gather answers are known in
    /// advance: `gathered[q]` is what rank `q` sends; this rank's own slot is replaced
    /// by what it really sends, so the code under test produces its own message.
    struct Scripted {
        rank: usize,
        gathered: Vec<Vec<u8>>,
        calls: usize,
    }

    impl Transport for Scripted {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.gathered.len()
        }
        fn all_to_all(&mut self, _send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError> {
            Err(CommError::Transport("not used by the launch checks".into()))
        }
        fn all_gather(&mut self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
            self.calls += 1;
            let mut all = self.gathered.clone();
            all[self.rank] = local.to_vec();
            Ok(all)
        }
        fn fail(&mut self, _why: &str) {}
    }

    /// Runs the agreement on every rank of a group where rank `r` checks `items[r]`:
    /// first each rank's message is captured (a transport recording what it sends),
    /// then each rank runs against the full set. Returns every rank's outcome.
    fn agree_all(items: &[Vec<(&str, u64)>]) -> Vec<Result<(), LaunchError>> {
        let r = items.len();
        let messages: Vec<Vec<u8>> = (0..r)
            .map(|rank| {
                let mut capture = Capture(None, r);
                let _ = check_agreement(&mut capture, &items[rank]);
                capture.0.expect("check_agreement all-gathers once")
            })
            .collect();
        (0..r)
            .map(|rank| {
                let mut t = Scripted {
                    rank,
                    gathered: messages.clone(),
                    calls: 0,
                };
                let out = check_agreement(&mut t, &items[rank]);
                assert_eq!(t.calls, 1, "exactly one collective per rank");
                out
            })
            .collect()
    }

    /// Records the first all-gather's message, then fails it.
    struct Capture(Option<Vec<u8>>, usize);

    impl Transport for Capture {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            self.1
        }
        fn all_to_all(&mut self, _send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError> {
            Err(CommError::Transport("not used".into()))
        }
        fn all_gather(&mut self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
            self.0 = Some(local.to_vec());
            Err(CommError::Transport("captured".into()))
        }
        fn fail(&mut self, _why: &str) {}
    }

    fn disagreements(outcomes: &[Result<(), LaunchError>]) -> Vec<Vec<Disagreement>> {
        outcomes
            .iter()
            .map(|o| match o {
                Err(LaunchError::Disagree(d)) => d.clone(),
                other => panic!("expected a disagreement, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn agreement_passes_when_every_rank_matches() {
        let same = vec![("arguments", 11), ("data", 22), ("binary", 33)];
        for r in 1..=4 {
            let outcomes = agree_all(&vec![same.clone(); r]);
            assert_eq!(outcomes.len(), r);
            assert!(
                outcomes.iter().all(|o| o.is_ok()),
                "{r} ranks: {outcomes:?}"
            );
        }
    }

    #[test]
    fn agreement_fails_on_every_rank_naming_the_item_and_the_ranks() {
        let base = vec![("arguments", 11), ("data", 22), ("binary", 33)];
        let mut items = vec![base.clone(); 4];
        items[1][0].1 = 12; // rank 1's arguments
        items[3][0].1 = 13; // rank 3's arguments
        items[3][2].1 = 34; // rank 3's binary
        let all = disagreements(&agree_all(&items));
        let want = vec![
            Disagreement {
                item: "arguments".into(),
                ranks: vec![1, 3],
            },
            Disagreement {
                item: "binary".into(),
                ranks: vec![3],
            },
        ];
        for (rank, d) in all.iter().enumerate() {
            assert_eq!(d, &want, "rank {rank}");
        }
        let msg = LaunchError::Disagree(want).to_string();
        assert!(
            msg.contains("arguments differs between rank 0 and ranks 1, 3"),
            "{msg}"
        );
        assert!(
            msg.contains("binary differs between rank 0 and rank 3"),
            "{msg}"
        );
        assert!(!msg.contains("data differs"), "{msg}");
    }

    #[test]
    fn agreement_reports_ranks_that_check_other_items() {
        let mut items = vec![vec![("arguments", 1), ("data", 2)]; 3];
        items[2] = vec![("arguments", 1)];
        items[1] = vec![("arguments", 1), ("dataset", 2)];
        for d in disagreements(&agree_all(&items)) {
            assert_eq!(
                d,
                vec![Disagreement {
                    item: "the list of launch items".into(),
                    ranks: vec![1, 2],
                }]
            );
        }
    }

    /// The agreement over the real in-process transport, one thread per rank: every
    /// rank gets the same outcome.
    #[test]
    fn agreement_over_memory_transport_threads() {
        use crate::dist::MemoryTransport;
        let _w = super::watchdog::Watchdog::arm(
            "launch::agreement_over_memory_transport_threads",
            std::time::Duration::from_secs(60),
        );
        for r in 1..=4usize {
            for odd_one in [None, Some(r - 1)] {
                let handles: Vec<_> = MemoryTransport::<crate::sync::Std>::group(r)
                    .into_iter()
                    .map(|mut t| {
                        std::thread::spawn(move || {
                            let data = if Some(t.rank()) == odd_one { 9 } else { 8 };
                            check_agreement(&mut t, &[("arguments", 7), ("data", data)]).map_err(
                                |e| match e {
                                    LaunchError::Disagree(d) => d,
                                    other => panic!("not a disagreement: {other}"),
                                },
                            )
                        })
                    })
                    .collect();
                let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                let want = match odd_one {
                    None | Some(0) => Ok(()),
                    Some(k) => Err(vec![Disagreement {
                        item: "data".into(),
                        ranks: vec![k],
                    }]),
                };
                for (rank, got) in outcomes.iter().enumerate() {
                    assert_eq!(got, &want, "{r} ranks, odd one {odd_one:?}, rank {rank}");
                }
            }
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let items = vec![("arguments", u64::MAX), ("", 0), ("data ünï", 42)];
        let msg = encode(&items);
        let back = decode(&msg).unwrap();
        let back: Vec<(&str, u64)> = back.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert_eq!(back, items);
        for cut in 0..msg.len() {
            assert_eq!(decode(&msg[..cut]), None, "truncated at {cut}");
        }
        let mut long = msg.clone();
        long.push(0);
        assert_eq!(decode(&long), None);
    }

    #[test]
    fn a_failed_exchange_is_reported_not_hidden() {
        let mut t = Capture(None, 2);
        assert!(matches!(
            check_agreement(&mut t, &[("arguments", 1)]),
            Err(LaunchError::Comm(CommError::Transport(_)))
        ));
    }
}
