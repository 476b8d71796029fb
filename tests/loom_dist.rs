//! loom model checks of `cllm::dist::MemoryTransport` (the in-process cross-rank
//! transport) over the `Loom` platform and its spinning variant, exhaustive within a
//! preemption bound chosen per model so that each takes a few seconds (3 for two
//! ranks, 2 for the spinning and failure models, 1 for three ranks exchanging three
//! rounds, which take 100 s at bound 2; `LOOM_MAX_PREEMPTIONS` overrides all).
//!
//! Owns: the cross-rank transport's loom properties and a loom model of the
//! cross-rank gradient combine. Ranks are loom threads (rank 0 is the model's main
//! thread). Properties:
//! * every rank receives exactly what every rank sent it, round after round, with
//!   distinct payloads per (round, sender, receiver) and some messages empty; three or
//!   four rounds reuse each half of the double-buffered mailboxes, so a mailbox
//!   rewritten while its previous reader may still read it is a loom causality
//!   violation, and a wrong payload an assertion;
//! * a rank that fails or leaves (dropped) while the others are in or entering a round
//!   makes every other rank's call return `CommError::PeerFailed` naming it and its
//!   reason: a lost wake-up or a waiter that ignores deaths is a loom deadlock;
//! * the cross-rank combine (node sums exchanged by shard, `cllm::dist::plan::combine`,
//!   all-gather) gives every rank the single-process pairwise tree sum bitwise, on
//!   values whose sum depends on the order of the additions.
//!
//! Must never touch: `tests/common` (used, not changed), `src/` or any other
//! protocol's tests.

mod common;
#[path = "dist_rounds/mod.rs"]
mod dist_rounds;

use cllm::dist::plan::combine;
use cllm::dist::{CommError, MemoryTransport, Plan, Transport};
use cllm::segments::reduce::pairwise_sum_into;
use cllm::sync::Platform;
use common::{watchdog, Loom, LoomSpin};
use dist_rounds::{fail_or_see_failure, on_ranks, rounds, Exit};

/// Run `f` under loom, exhaustively within preemption bound `bound`
/// (`LOOM_MAX_PREEMPTIONS`, when set and non-empty, overrides it), bounded by a
/// watchdog naming the test.
fn model<F: Fn() + Sync + Send + 'static>(bound: usize, f: F) {
    let name = std::thread::current()
        .name()
        .unwrap_or("a loom_dist model")
        .to_owned();
    let _w = watchdog::Watchdog::arm(name, std::time::Duration::from_secs(600));
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(bound),
    );
    builder.check(f);
}

fn exchange_model<P: Platform + 'static>(bound: usize, ranks: usize, n: usize) {
    model(bound, move || {
        on_ranks::<P, _>(ranks, move |mut t| rounds(&mut t, n));
    });
}

#[test]
fn two_ranks_four_rounds_every_message_exact() {
    exchange_model::<Loom>(3, 2, 4);
}

#[test]
fn two_ranks_four_rounds_spinning() {
    exchange_model::<LoomSpin>(2, 2, 4);
}

#[test]
fn three_ranks_three_rounds_every_message_exact() {
    exchange_model::<Loom>(1, 3, 3);
}

/// All ranks run `before` good rounds; then rank `victim` fails or leaves while the
/// others enter one more round: each of them must get `PeerFailed` naming the victim
/// and its reason. With `keep`, the other ranks keep their transports until every
/// rank has returned; without it each drops its own as soon as its call returned (as
/// a rank process does when it exits on the error).
fn failure_model(ranks: usize, victim: usize, before: usize, exit: Exit, keep: bool) {
    model(2, move || {
        on_ranks::<Loom, _>(ranks, move |t| {
            fail_or_see_failure(t, victim, before, exit).filter(|_| keep)
        });
    });
}

#[test]
fn a_failing_rank_fails_the_others_round_two_ranks() {
    failure_model(2, 1, 0, Exit::Fail, false);
}

#[test]
fn a_failing_rank_fails_the_others_after_a_good_round() {
    failure_model(2, 0, 1, Exit::Fail, false);
}

#[test]
fn a_dropped_rank_fails_the_others_round_two_ranks() {
    failure_model(2, 1, 1, Exit::Drop, false);
}

#[test]
fn a_failing_rank_fails_both_others_three_ranks() {
    failure_model(3, 1, 0, Exit::Fail, true);
}

#[test]
fn a_dropped_rank_fails_both_others_after_a_good_round_three_ranks() {
    failure_model(3, 2, 1, Exit::Drop, true);
}

/// The rank named is the one that failed first (the `CommError::PeerFailed` contract),
/// not a rank that left afterwards because it saw that failure.
#[test]
fn the_rank_named_is_the_one_that_failed_first() {
    failure_model(3, 1, 0, Exit::Fail, false);
}

/// After a round failed because a third rank died, a rank that calls again must not
/// write a mailbox a live rank may still be reading (the previous round of that
/// parity): the transport must refuse the call (or fail it) without racing.
#[test]
fn a_call_after_a_failed_round_does_not_race_a_live_reader() {
    model(2, || {
        on_ranks::<Loom, _>(3, |mut t| {
            rounds(&mut t, 1);
            match t.rank() {
                2 => t.fail("boom"),
                0 => {
                    // Round 1 fails (rank 2 never writes it); the call after it writes
                    // parity 0 again while rank 1 may still be taking round 0's boxes.
                    assert!(t.all_gather(&[0]).is_err());
                    assert!(t.all_to_all(&[vec![1], vec![2], vec![3]]).is_err());
                }
                _ => assert!(t.all_gather(&[1]).is_err()),
            }
        });
    });
}

// ---- the cross-rank combine -------------------------------------------------------

/// Floats per gradient in the combine model.
const LEN: usize = 3;

/// Slot `slot`'s gradient element `i`: large values of both signs next to small ones,
/// so that another order of the additions gives other bits.
fn slot_value(slot: usize, i: usize) -> f32 {
    const V: [f32; 5] = [1.0e8, 1.0, -1.0e8, 3.0, -0.75];
    V[(2 * slot + i) % V.len()]
}

fn slot_grads(m: usize) -> Vec<Vec<f32>> {
    (0..m)
        .map(|s| (0..LEN).map(|i| slot_value(s, i)).collect())
        .collect()
}

/// The single-process sum: the pairwise kernel over every slot.
fn expected_bits(m: usize) -> Vec<u32> {
    let grads = slot_grads(m);
    let inputs: Vec<&[f32]> = grads.iter().map(|g| &g[..]).collect();
    let mut out = vec![0.0f32; LEN];
    pairwise_sum_into(&inputs, &mut out, cllm::isa::active());
    out.iter().map(|x| x.to_bits()).collect()
}

/// Rank `q`'s part of the `LEN` floats (the test's own shards: the plan's are
/// 256-float blocks, far longer than this model's gradients).
fn part(ranks: usize, q: usize) -> core::ops::Range<usize> {
    q * LEN / ranks..(q + 1) * LEN / ranks
}

fn le_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// One rank of the combine: sum its own tree nodes, send each rank that rank's part of
/// every node sum, combine the received frontier in tree order, all-gather the parts;
/// the whole vector must be the single-process sum bitwise.
fn combine_rank<P: Platform>(mut t: MemoryTransport<P>, m: usize, want: &[u32]) {
    let (me, r) = (t.rank(), t.size());
    let isa = cllm::isa::active();
    let plan = Plan::new(r, m, LEN).expect("a valid plan");
    let grads = slot_grads(m);
    let sums: Vec<Vec<f32>> = plan
        .nodes(me)
        .iter()
        .map(|node| {
            let inputs: Vec<&[f32]> = grads[node.clone()].iter().map(|g| &g[..]).collect();
            let mut out = vec![0.0f32; LEN];
            pairwise_sum_into(&inputs, &mut out, isa);
            out
        })
        .collect();
    let send: Vec<Vec<u8>> = (0..r)
        .map(|q| sums.iter().flat_map(|s| le_bytes(&s[part(r, q)])).collect())
        .collect();
    let recv = t.all_to_all(&send).expect("all-to-all");
    let mine = part(r, me);
    let mut received = Vec::new();
    for (p, msg) in recv.iter().enumerate() {
        let values = floats(msg);
        let nodes = plan.nodes(p);
        assert_eq!(values.len(), nodes.len() * mine.len(), "from rank {p}");
        for (i, node) in nodes.into_iter().enumerate() {
            received.push((node, values[i * mine.len()..(i + 1) * mine.len()].to_vec()));
        }
    }
    let frontier: Vec<_> = received.iter().map(|(n, s)| (n.clone(), &s[..])).collect();
    let mut out = vec![0.0f32; mine.len()];
    combine(m, &frontier, &mut out, isa).expect("the frontier covers the slots");
    let all = t.all_gather(&le_bytes(&out)).expect("all-gather");
    let got: Vec<u32> = all
        .iter()
        .flat_map(|b| floats(b))
        .map(f32::to_bits)
        .collect();
    assert_eq!(got, want, "rank {me}: the summed gradient, R={r} M={m}");
}

fn combine_model(bound: usize, ranks: usize, m: usize) {
    let want = expected_bits(m);
    model(bound, move || {
        let want = want.clone();
        on_ranks::<Loom, _>(ranks, move |t| combine_rank(t, m, &want));
    });
}

/// The model's values are order-sensitive: a left-to-right sum of the slots differs
/// from the tree sum, so a combine in another order cannot pass.
#[test]
fn the_combine_values_depend_on_the_order() {
    for m in [3, 5] {
        let grads = slot_grads(m);
        let serial: Vec<u32> = (0..LEN)
            .map(|i| grads.iter().fold(0.0f32, |a, g| a + g[i]).to_bits())
            .collect();
        assert_ne!(serial, expected_bits(m), "M={m}");
    }
}

#[test]
fn combine_two_ranks_three_slots() {
    combine_model(2, 2, 3);
}

#[test]
fn combine_three_ranks_five_slots() {
    combine_model(1, 3, 5);
}

/// Two ranks fail independently (neither has seen the other's failure) while the
/// third waits in a round: it must be told one of them, with that rank's own reason.
/// The reason it reads was written by a rank it may have synchronized with only
/// through `first` (when the other rank's death count is the one it saw), so this is
/// the model in which `first`'s Release/Acquire pair is needed.
#[test]
fn two_independent_failures_name_one_of_them_with_its_reason() {
    model(2, || {
        on_ranks::<Loom, _>(3, |mut t| {
            let me = t.rank();
            if me < 2 {
                t.fail(if me == 0 { "boom 0" } else { "boom 1" });
                return None;
            }
            match t.all_gather(&[me as u8]) {
                Err(CommError::PeerFailed { rank, why }) => {
                    assert!(rank < 2, "named rank {rank}");
                    assert_eq!(why, format!("boom {rank}"), "rank {rank}'s reason");
                }
                other => panic!("rank 2 got {other:?}"),
            }
            Some(t)
        });
    });
}
