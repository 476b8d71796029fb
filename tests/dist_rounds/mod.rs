//! Test-only: what the loom and shuttle checks of the in-memory cross-rank transport
//! share: the payload of every (round, sender, receiver), a checked sequence of rounds,
//! and running one body on every rank of a group. Generic over the platform, so each
//! checker runs the same exchange. Must never relax a check: every received byte is
//! compared exactly.
#![allow(dead_code)]

use cllm::dist::{CommError, MemoryTransport, Transport};
use cllm::sync::{Join, Platform};

/// What rank `from` sends rank `to` in all-to-all round `round`: 0, 1 or 2 bytes (so
/// some messages are empty), every non-empty one distinct from every other.
pub fn payload(round: usize, from: usize, to: usize) -> Vec<u8> {
    let len = (round + from + 2 * to) % 3;
    (0..len)
        .map(|i| (round * 32 + from * 8 + to * 2 + i) as u8)
        .collect()
}

/// What rank `from` contributes to all-gather round `round` (some empty, all distinct
/// from each other and from every all-to-all payload).
pub fn gathered(round: usize, from: usize) -> Vec<u8> {
    let len = (round + from + 1) % 3;
    (0..len)
        .map(|i| 128 + (round * 16 + from * 4 + i) as u8)
        .collect()
}

/// `rounds` collectives on rank `t.rank()`: all-to-all in even rounds, all-gather in
/// odd ones; every result must be exactly what the senders sent.
pub fn rounds<P: Platform>(t: &mut MemoryTransport<P>, rounds: usize) {
    let (me, r) = (t.rank(), t.size());
    for k in 0..rounds {
        if k.is_multiple_of(2) {
            let send: Vec<Vec<u8>> = (0..r).map(|q| payload(k, me, q)).collect();
            let got = t
                .all_to_all(&send)
                .expect("all-to-all with every rank alive");
            let want: Vec<Vec<u8>> = (0..r).map(|p| payload(k, p, me)).collect();
            assert_eq!(got, want, "rank {me}: all-to-all round {k}");
        } else {
            let got = t
                .all_gather(&gathered(k, me))
                .expect("all-gather with every rank alive");
            let want: Vec<Vec<u8>> = (0..r).map(|p| gathered(k, p)).collect();
            assert_eq!(got, want, "rank {me}: all-gather round {k}");
        }
    }
}

/// Run `body(transport)` on every rank of a group of `ranks`: ranks `1..` on spawned
/// threads, rank 0 on the calling one; every rank's result, by rank.
pub fn on_ranks<P, T>(
    ranks: usize,
    body: impl Fn(MemoryTransport<P>) -> T + Send + Sync + Clone + 'static,
) -> Vec<T>
where
    P: Platform + 'static,
    T: Send + 'static,
{
    let mut group = MemoryTransport::<P>::group(ranks);
    let first = group.remove(0);
    let handles: Vec<_> = group
        .into_iter()
        .map(|t| {
            let body = body.clone();
            P::spawn("rank", move || body(t)).expect("spawn a rank")
        })
        .collect();
    let mut out = vec![body(first)];
    out.extend(
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked")),
    );
    out
}

/// How the failing rank of a failure check goes.
#[derive(Clone, Copy, Debug)]
pub enum Exit {
    /// `Transport::fail("boom")`.
    Fail,
    /// The transport is dropped (not while panicking): "left the group".
    Drop,
}

/// One rank of a failure check: `before` good rounds; then rank `victim` fails or
/// leaves (returning `None`) while every other rank enters one more round and must get
/// `PeerFailed` naming the victim and its reason. The others return their transport.
pub fn fail_or_see_failure<P: Platform>(
    mut t: MemoryTransport<P>,
    victim: usize,
    before: usize,
    exit: Exit,
) -> Option<MemoryTransport<P>> {
    rounds(&mut t, before);
    let (me, ranks) = (t.rank(), t.size());
    if me == victim {
        match exit {
            Exit::Fail => t.fail("boom"),
            Exit::Drop => drop(t),
        }
        return None;
    }
    let why = match exit {
        Exit::Fail => "boom",
        Exit::Drop => "left the group",
    };
    let want = CommError::PeerFailed {
        rank: victim,
        why: why.into(),
    };
    let got = if before.is_multiple_of(2) {
        t.all_to_all(&vec![vec![me as u8]; ranks])
    } else {
        t.all_gather(&[me as u8])
    };
    assert_eq!(got, Err(want), "rank {me}, round {before}");
    Some(t)
}
