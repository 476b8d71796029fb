//! Owns [`MemoryTransport`]: a [`Transport`] whose ranks are threads of one process,
//! written on the [`Platform`] seam so loom and shuttle check the cross-rank protocol
//! and ThreadSanitizer sees every access. Tests and benches use it to run `R` ranks in
//! one process; production runs across processes use MPI. Must never interpret the
//! bytes it moves.
//!
//! # Protocol (one shared counter, double-buffered mailboxes)
//! * `boxes[k % 2][from][to]` holds what rank `from` sends rank `to` in round `k`
//!   (every collective is one round; an all-gather sends the same bytes to everyone).
//! * Round `k` on rank `me`: write `boxes[k % 2][me][q]` for every `q`, then
//!   `arrived += 1` (Release: the writes reach whoever acquires the final count). Wait
//!   until `arrived >= R (k + 1)` (Acquire: every rank's writes of round `k` happen
//!   before), then read `boxes[k % 2][p][me]` for every `p`.
//! * Reuse: rank `p` writes parity `k % 2` again only in round `k + 2`, which it
//!   enters after waiting for `arrived >= R (k + 2)`, i.e. after every rank has
//!   *written* round `k + 1`, which each did after *reading* round `k`. So no mailbox
//!   is written while a reader of its previous round may still read it.
//! * Failure: a rank that fails ([`Transport::fail`]), panics, or is dropped writes
//!   its reason into its own `reasons[me]` cell, then tries to become `first`
//!   (compare-exchange from "none"; Release: its reason reaches whoever acquires
//!   `first`), then counts itself in `deaths` (Release: whoever acquires a death count
//!   sees `first` set, through the release sequence of every death). A waiter stops
//!   waiting when its round is complete or `deaths > 0` (Acquire); an incomplete round
//!   then fails with [`CommError::PeerFailed`] naming `first`, the rank that died
//!   first, and its reason. Every later call of that rank returns the same error
//!   without touching a mailbox (a live rank may still be reading one). A round every
//!   rank had already written still completes (its data is whole).
//!   Dropping a rank that has finished its last collective is harmless: nobody waits
//!   on it any more.

use super::transport::{CommError, Transport};
use crate::sync::{AtomicWord, Event, Ordering, Platform, Std, SyncCell};
use std::sync::Arc;

struct Shared<P: Platform> {
    ranks: usize,
    /// `boxes[parity * R * R + from * R + to]`.
    boxes: Vec<P::Cell<Vec<u8>>>,
    arrived: P::AtomicUsize,
    deaths: P::AtomicUsize,
    /// The first rank to die (`usize::MAX` while none has).
    first: P::AtomicUsize,
    reasons: Vec<P::Cell<String>>,
    event: Event<P>,
}

// SAFETY: the cells hold plain bytes and strings; each mailbox is written by its
// sender and read by its receiver in the order the protocol above enforces, and each
// reason is written once by its rank before the Release flag readers acquire.
unsafe impl<P: Platform> Send for Shared<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for Shared<P> {}

/// One rank's end of an in-process group (see the module doc).
pub struct MemoryTransport<P: Platform = Std> {
    shared: Arc<Shared<P>>,
    rank: usize,
    round: usize,
    gone: bool,
    /// Set when a round failed: later calls return it without touching a mailbox.
    broken: Option<CommError>,
}

impl<P: Platform> MemoryTransport<P> {
    /// A group of `ranks` ranks (at least one); element `r` is rank `r`'s end, to be
    /// moved to the thread that plays rank `r`.
    pub fn group(ranks: usize) -> Vec<MemoryTransport<P>> {
        let ranks = ranks.max(1);
        let shared = Arc::new(Shared {
            ranks,
            boxes: (0..2 * ranks * ranks)
                .map(|_| P::Cell::new(Vec::new()))
                .collect(),
            arrived: P::AtomicUsize::new(0),
            deaths: P::AtomicUsize::new(0),
            first: P::AtomicUsize::new(usize::MAX),
            reasons: (0..ranks).map(|_| P::Cell::new(String::new())).collect(),
            event: Event::new(),
        });
        (0..ranks)
            .map(|rank| MemoryTransport {
                shared: Arc::clone(&shared),
                rank,
                round: 0,
                gone: false,
                broken: None,
            })
            .collect()
    }

    /// One round: send `msg(q)` to every rank `q`, receive every rank's message.
    fn exchange(&mut self, msg: impl Fn(usize) -> Vec<u8>) -> Result<Vec<Vec<u8>>, CommError> {
        if self.gone {
            return Err(CommError::Transport(format!(
                "rank {} already left the group",
                self.rank
            )));
        }
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let s = &*self.shared;
        let r = s.ranks;
        let parity = self.round % 2;
        let mailbox = |from: usize, to: usize| &s.boxes[(parity * r + from) * r + to];
        for q in 0..r {
            let bytes = msg(q);
            // SAFETY: only this rank writes its outgoing boxes, and (module doc) no
            // reader of this parity's previous round is still reading them.
            mailbox(self.rank, q).with_mut(|b| unsafe { *b = bytes });
        }
        // Release: publishes the mailbox writes above to every rank that acquires the
        // round's final count.
        s.arrived.fetch_add(1, Ordering::Release);
        s.event.notify();
        let target = r * (self.round + 1);
        self.round += 1;
        // Acquire: pairs with every rank's Release increment (their mailbox writes).
        let complete = || s.arrived.load(Ordering::Acquire) >= target;
        // Acquire: pairs with the dead ranks' Release increments (`first` is set).
        let failed = || s.deaths.load(Ordering::Acquire) > 0;
        let mut spins = 0;
        while !(complete() || failed()) {
            if spins < P::SPIN_LIMIT {
                spins += 1;
                P::spin_loop();
            } else {
                s.event.wait_until(|| complete() || failed());
            }
        }
        if !complete() {
            let e = self.peer_failure();
            self.broken = Some(e.clone());
            return Err(e);
        }
        Ok((0..r)
            // SAFETY: every rank wrote its box to this rank before the count this rank
            // acquired; only this rank reads (takes) it, and none writes it again
            // before this rank's next round (module doc).
            .map(|p| mailbox(p, self.rank).with_mut(|b| unsafe { core::mem::take(&mut *b) }))
            .collect())
    }

    /// The first rank that died and its reason (called after acquiring `deaths > 0`).
    fn peer_failure(&self) -> CommError {
        let s = &*self.shared;
        // Acquire: pairs with the first dead rank's Release exchange (after its reason).
        let rank = s.first.load(Ordering::Acquire);
        if rank >= s.ranks {
            return CommError::Transport("a rank failed, but none is recorded first".into());
        }
        // SAFETY: the reason was written before the exchange this load acquired and is
        // never written again.
        let why = s.reasons[rank].with(|w| unsafe { (*w).clone() });
        CommError::PeerFailed { rank, why }
    }

    /// Mark this rank dead with `why` (once).
    fn die(&mut self, why: &str) {
        if self.gone {
            return;
        }
        self.gone = true;
        let s = &*self.shared;
        let why = why.to_string();
        // SAFETY: only this rank writes its reason, once, before publishing it through
        // `first`; readers read it only after acquiring `first`.
        s.reasons[self.rank].with_mut(|w| unsafe { *w = why });
        // Release: publishes the reason to whoever acquires `first`; if another rank
        // died first, the exchange fails (nothing to publish) and that rank stays named.
        let _ =
            s.first
                .compare_exchange(usize::MAX, self.rank, Ordering::Release, Ordering::Relaxed);
        // Release: whoever acquires the count sees `first` set (by this rank or an
        // earlier one).
        s.deaths.fetch_add(1, Ordering::Release);
        s.event.notify();
    }
}

impl<P: Platform> Transport for MemoryTransport<P> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.ranks
    }

    fn all_to_all(&mut self, send: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, CommError> {
        if send.len() != self.shared.ranks {
            return Err(CommError::Malformed {
                rank: self.rank,
                what: format!(
                    "all-to-all with {} messages for {} ranks",
                    send.len(),
                    self.shared.ranks
                ),
            });
        }
        self.exchange(|q| send[q].clone())
    }

    fn all_gather(&mut self, local: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        self.exchange(|_| local.to_vec())
    }

    fn fail(&mut self, why: &str) {
        self.die(why)
    }
}

impl<P: Platform> Drop for MemoryTransport<P> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.die("panicked");
        } else {
            self.die("left the group");
        }
    }
}
