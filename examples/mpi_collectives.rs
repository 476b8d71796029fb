//! The MPI transport alone, under a real launcher: run it as
//! `mpirun -np R target/release/examples/mpi_collectives [check | fail K | panic K]`.
//! `check` (the default): personalized all-to-alls of messages of different lengths
//! (empty ones included, and one of several MiB to pass MPI's eager limit) and
//! all-gathers of different lengths, every received byte checked against what its
//! sender must have sent; the same through the flat forms into buffers kept and reused
//! across rounds of growing and shrinking sizes; then the launch agreement over MPI,
//! once agreeing and once with a rank-dependent item. Exits 0 only if every check
//! passed on this rank.
//! `fail K`: after one collective, rank K calls `Transport::fail` while the others wait
//! in an all-gather: the launcher must end the whole job, non-zero; a rank whose
//! collective returns instead exits 3.
//! `panic K`: the same with rank K panicking: `MpiTransport::init`'s panic hook must
//! abort it (never unwind into `MPI_Finalize`), and the launcher end the job.
//! Owns nothing but its process; needs `--features mpi`.

use cllm::dist::launch::{self, Disagreement, LaunchError};
use cllm::dist::mpi::MpiTransport;
use cllm::dist::transport::Blocks;
use cllm::dist::Transport;
use std::process::ExitCode;

/// The length of what rank `from` sends rank `to` in all-to-all round `round`
/// (about a quarter of the pairs send nothing; in round 3 ranks 0 and 1 send each
/// other, and rank 0 itself, 3 MiB).
fn a2a_len(from: usize, to: usize, round: usize) -> usize {
    if round == 3 && from + to <= 1 {
        return 3 << 20;
    }
    (from * 5 + to * 3 + round * 7) % 4 * (1 + from + 3 * to + round)
}

/// Byte `i` of what `from` sends `to` in round `round` of `kind`.
fn byte(kind: usize, from: usize, to: usize, round: usize, i: usize) -> u8 {
    (kind * 101 + from * 31 + to * 17 + round * 7 + i * 13 + i / 256) as u8
}

fn message(kind: usize, from: usize, to: usize, round: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| byte(kind, from, to, round, i)).collect()
}

/// The length of rank `from`'s all-gather contribution in round `round` (rank 0's is
/// empty in round 0; round 2 is all empty; round 3 is large).
fn gather_len(from: usize, round: usize) -> usize {
    match round {
        2 => 0,
        3 => (1 << 20) + from,
        _ => from * 3 + round,
    }
}

fn check(t: &mut MpiTransport) -> Result<usize, String> {
    let (me, n) = (t.rank(), t.size());
    let mut collectives = 0;
    for round in 0..4 {
        let send: Vec<Vec<u8>> = (0..n)
            .map(|q| message(0, me, q, round, a2a_len(me, q, round)))
            .collect();
        let recv = t
            .all_to_all(&send)
            .map_err(|e| format!("all_to_all round {round}: {e}"))?;
        collectives += 1;
        if recv.len() != n {
            return Err(format!("all_to_all round {round}: {} messages", recv.len()));
        }
        for (p, got) in recv.iter().enumerate() {
            let want = message(0, p, me, round, a2a_len(p, me, round));
            if *got != want {
                return Err(format!(
                    "all_to_all round {round}: from rank {p} got {} bytes, want {} (or \
                     different bytes)",
                    got.len(),
                    want.len()
                ));
            }
        }
        let local = message(1, me, 0, round, gather_len(me, round));
        let all = t
            .all_gather(&local)
            .map_err(|e| format!("all_gather round {round}: {e}"))?;
        collectives += 1;
        if all.len() != n {
            return Err(format!("all_gather round {round}: {} parts", all.len()));
        }
        for (p, got) in all.iter().enumerate() {
            if *got != message(1, p, 0, round, gather_len(p, round)) {
                return Err(format!(
                    "all_gather round {round}: rank {p}'s part is wrong ({} bytes)",
                    got.len()
                ));
            }
        }
    }
    // The flat forms over caller-kept buffers, reused across rounds whose sizes grow,
    // shrink to nothing and grow again (what the rank step does every step): stale
    // bytes or offsets of an earlier round must never show.
    let mut recv = Blocks::default();
    let mut gathered = Blocks::default();
    for (i, round) in [3, 0, 2, 4, 1, 3].into_iter().enumerate() {
        let lens: Vec<usize> = (0..n).map(|q| a2a_len(me, q, round)).collect();
        let mut send = Vec::new();
        for (q, &len) in lens.iter().enumerate() {
            send.extend(message(2, me, q, round, len));
        }
        // Odd positions say what they expect (no count exchange), even ones do not.
        let expect: Vec<usize> = (0..n).map(|p| a2a_len(p, me, round)).collect();
        let expect = (i % 2 == 1).then_some(&expect[..]);
        t.all_to_all_flat(&send, &lens, expect, &mut recv)
            .map_err(|e| format!("all_to_all_flat round {round}: {e}"))?;
        collectives += 1;
        if recv.len() != n {
            return Err(format!(
                "all_to_all_flat round {round}: {} blocks",
                recv.len()
            ));
        }
        for p in 0..n {
            if recv.block(p) != message(2, p, me, round, a2a_len(p, me, round)) {
                return Err(format!(
                    "all_to_all_flat round {round}: rank {p}'s block is wrong ({} bytes)",
                    recv.block(p).len()
                ));
            }
        }
        let total: usize = (0..n).map(|p| a2a_len(p, me, round)).sum();
        if recv.buf.len() != total {
            return Err(format!(
                "all_to_all_flat round {round}: buffer of {} bytes, want {total}",
                recv.buf.len()
            ));
        }
        let local = message(3, me, 0, round, gather_len(me, round));
        let expect: Vec<usize> = (0..n).map(|p| gather_len(p, round)).collect();
        let expect = (i % 2 == 1).then_some(&expect[..]);
        t.all_gather_flat(&local, expect, &mut gathered)
            .map_err(|e| format!("all_gather_flat round {round}: {e}"))?;
        collectives += 1;
        if gathered.len() != n {
            return Err(format!(
                "all_gather_flat round {round}: {} blocks",
                gathered.len()
            ));
        }
        for p in 0..n {
            if gathered.block(p) != message(3, p, 0, round, gather_len(p, round)) {
                return Err(format!(
                    "all_gather_flat round {round}: rank {p}'s block is wrong ({} bytes)",
                    gathered.block(p).len()
                ));
            }
        }
    }
    // A wrong number of messages is refused locally, before any MPI call.
    if t.all_to_all(&vec![Vec::new(); n + 1]).is_ok() {
        return Err("all_to_all accepted n + 1 messages".into());
    }
    let same = [("arguments", 7u64), ("data", 8)];
    launch::check_agreement(t, &same).map_err(|e| format!("agreeing ranks refused: {e}"))?;
    collectives += 1;
    let differ = [("arguments", 7u64), ("data", 8 + (me as u64 % 2))];
    let outcome = launch::check_agreement(t, &differ);
    collectives += 1;
    match (n, outcome) {
        (1, Ok(())) => {}
        (_, Err(LaunchError::Disagree(d)))
            if d == vec![Disagreement {
                item: "data".into(),
                ranks: (1..n).step_by(2).collect(),
            }] => {}
        (_, other) => {
            return Err(format!(
                "rank-dependent data: expected a disagreement on data by the odd ranks, \
                 got {other:?}"
            ))
        }
    }
    Ok(collectives)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut t = match MpiTransport::init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mpi_collectives: {e}");
            return ExitCode::from(2);
        }
    };
    let (me, n) = (t.rank(), t.size());
    match args.first().map(String::as_str) {
        None | Some("check") => match check(&mut t) {
            Ok(c) => {
                println!("rank {me} of {n}: ok ({c} collectives checked)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rank {me} of {n}: FAIL: {e}");
                ExitCode::from(1)
            }
        },
        Some("fail") => {
            let k: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            if t.all_gather(&[me as u8]).is_err() {
                return ExitCode::from(2);
            }
            if me == k {
                t.fail("deliberate failure (mpi_collectives fail)");
            }
            let outcome = t.all_gather(&[1]);
            eprintln!(
                "rank {me}: a collective returned ({:?}) after rank {k} failed",
                outcome.map(|v| v.len())
            );
            ExitCode::from(3)
        }
        Some("panic") => {
            let k: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            if t.all_gather(&[me as u8]).is_err() {
                return ExitCode::from(2);
            }
            if me == k {
                panic!("deliberate panic (mpi_collectives panic)");
            }
            let outcome = t.all_gather(&[1]);
            eprintln!(
                "rank {me}: a collective returned ({:?}) after rank {k} panicked",
                outcome.map(|v| v.len())
            );
            ExitCode::from(3)
        }
        Some(other) => {
            eprintln!("mpi_collectives: unknown mode {other} (check | fail K | panic K)");
            ExitCode::from(2)
        }
    }
}
