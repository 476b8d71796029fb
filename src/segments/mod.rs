//! Owns [`GradientSegments`]: the per-micro-batch gradient slots of one training step
//! and the protocol that fills, reduces and recycles them.
//! Must never know what the floats mean (no model types), and never sum in an order
//! that depends on timing.
//!
//! # Types
//! * `n_slots` slots (one per micro-batch of a step, independent of the thread count),
//!   each a flat `f32` buffer of `len` floats.
//! * `n_parts` contiguous parameter ranges ([`GradientSegments::part_range`]); each is
//!   reduced by one thread per step.
//! * [`SlotWriter`]: exclusive write access to one claimed slot until it is published.
//!
//! # Protocol for step `g`
//! * slot stamp: `3g` free, `3g + 1` claimed, `3g + 2` published.
//! * claim(g, i): CAS stamp `3g -> 3g + 1` (Acquire: the previous step's reducers have
//!   finished reading the slot). While the slot is still at an earlier step, `claim`
//!   waits; a slot claimed by someone else in step `g`, or already past `g`, is an
//!   error. The caller names the step, so writers of consecutive steps cannot swap.
//! * publish: stamp `3g + 2`, then `published += 1` (Release: the writes reach any
//!   reducer that observes the final count).
//! * reduce_part(g, p): wait until `published >= (g + 1) * n_slots` (Acquire). Then
//!   the part's generation must be `g` (all of step `g - 1` is reduced by now, since
//!   its slots were freed); CAS it `g -> g + 1` so a part is reduced exactly once per
//!   step (a second call is an error). Sum the slots over the part's range in the
//!   fixed order of [`reduce::pairwise_sum_into`], then `reduced += 1` (AcqRel). The
//!   reducer that brings `reduced` to `(g + 1) * n_parts`
//!   frees every slot for step `g + 1` (stamp `3(g + 1)`, Release) and wakes claimers.
//!   So a slot is never written while any reduction of the previous step may read it.
//!
//! The result is bitwise identical whoever filled which slot, whatever the thread
//! count and however the parts are spread over threads: every output float is the
//! same fixed tree of additions over slot index.

pub mod reduce;

/// Interior part boundaries are multiples of this many floats (1 KiB): parts start on
/// cache-line and SIMD boundaries, and a caller can rely on the grid to compute
/// per-block quantities (such as a gradient norm) independently of the part count.
pub const PART_ALIGN: usize = 256;

use crate::sync::{AtomicFlag, AtomicWord, CachePadded, Event, Ordering, Platform, Std, SyncCell};
use core::ops::Range;

/// Misuse of the segment protocol (all are caller bugs, reported instead of racing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentsError {
    /// A slot index at or past the slot count.
    #[error("slot {slot} does not exist (there are {n_slots})")]
    NoSuchSlot {
        /// The index asked for.
        slot: usize,
        /// How many slots there are.
        n_slots: usize,
    },
    /// A part index at or past the part count.
    #[error("part {part} does not exist (there are {n_parts})")]
    NoSuchPart {
        /// The index asked for.
        part: usize,
        /// How many parts there are.
        n_parts: usize,
    },
    /// The slot is already claimed (or published) by another writer in this step.
    #[error("slot {slot} is already claimed in step {step}")]
    SlotTaken {
        /// The slot.
        slot: usize,
        /// The step it is claimed in.
        step: usize,
    },
    /// The slot has already moved on to a later step.
    #[error("slot {slot} cannot be claimed for step {step}: it is already at step {current}")]
    SlotPassed {
        /// The slot.
        slot: usize,
        /// The step asked for.
        step: usize,
        /// The step the slot is at.
        current: usize,
    },
    /// Another thread is reducing this part in this step right now.
    #[error("part {part} is already being reduced in step {step}")]
    PartTaken {
        /// The part.
        part: usize,
        /// The step asked for.
        step: usize,
    },
    /// The part's next reduction is for another step (already reduced in `step`, or
    /// an earlier step is not reduced yet).
    #[error("part {part} cannot be reduced for step {step}: its next step is {next}")]
    PartNotDue {
        /// The part.
        part: usize,
        /// The step asked for.
        step: usize,
        /// The step this part will reduce next.
        next: usize,
    },
    /// The output buffer does not match the part's length.
    #[error("output has {got} floats, part {part} has {want}")]
    OutputLength {
        /// The part.
        part: usize,
        /// Its length.
        want: usize,
        /// The output length given.
        got: usize,
    },
    /// A constructor argument was zero or inconsistent.
    #[error("invalid segment layout: {0}")]
    Layout(&'static str),
    /// [`GradientSegments::abort`] was called: a participant failed, nobody waits on.
    #[error("the step was aborted")]
    Aborted,
}

struct Slot<P: Platform> {
    stamp: P::AtomicUsize,
    data: P::Cell<Box<[f32]>>,
}

/// The step's gradient slots and their reduction protocol (see the module doc).
///
/// ```
/// use cllm::segments::GradientSegments;
/// let seg: GradientSegments = GradientSegments::new(3, 4, 2).unwrap();
/// for step in 0..2 {
///     for slot in 0..3 {
///         let mut w = seg.claim(step, slot).unwrap(); // waits for last step's reduction
///         w.write(|g| g.fill(slot as f32 + step as f32));
///         w.publish();
///     }
///     let mut total = vec![0.0; 4];
///     seg.reduce_all(step, &mut total).unwrap(); // (s0 + (s1 + s2)), per element
///     assert_eq!(total, vec![3.0 + 3.0 * step as f32; 4]);
/// }
/// ```
pub struct GradientSegments<P: Platform = Std> {
    len: usize,
    slots: Box<[Slot<P>]>,
    part_bounds: Box<[usize]>,
    part_generation: Box<[P::AtomicUsize]>,
    published: CachePadded<P::AtomicUsize>,
    reduced: CachePadded<P::AtomicUsize>,
    aborted: P::AtomicBool,
    slots_free: Event<P>,
    all_published: Event<P>,
}

// SAFETY: slot buffers are plain floats; each is written by one claimer at a time and
// read by reducers only after it is published, as ordered by the protocol above.
unsafe impl<P: Platform> Send for GradientSegments<P> {}
// SAFETY: as above.
unsafe impl<P: Platform> Sync for GradientSegments<P> {}

/// Exclusive access to one claimed slot for one step. Publish it when filled;
/// dropping it unpublished gives the slot back (free for the same step).
pub struct SlotWriter<'a, P: Platform = Std> {
    segments: &'a GradientSegments<P>,
    slot: usize,
    step: usize,
    published: bool,
}

impl<P: Platform> GradientSegments<P> {
    /// `n_slots` slots of `len` floats each, reduced in `n_parts` contiguous ranges.
    pub fn new(n_slots: usize, len: usize, n_parts: usize) -> Result<Self, SegmentsError> {
        if n_slots == 0 {
            return Err(SegmentsError::Layout("there must be at least one slot"));
        }
        if n_parts == 0 {
            return Err(SegmentsError::Layout("there must be at least one part"));
        }
        let slots = (0..n_slots)
            .map(|_| Slot {
                stamp: P::AtomicUsize::new(0),
                data: P::Cell::new(vec![0.0f32; len].into_boxed_slice()),
            })
            .collect();
        Ok(GradientSegments {
            len,
            slots,
            part_bounds: split_evenly(len, n_parts),
            part_generation: (0..n_parts).map(|_| P::AtomicUsize::new(0)).collect(),
            published: CachePadded(P::AtomicUsize::new(0)),
            reduced: CachePadded(P::AtomicUsize::new(0)),
            aborted: P::AtomicBool::new(false),
            slots_free: Event::new(),
            all_published: Event::new(),
        })
    }

    /// Floats per slot.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether slots hold zero floats.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots (micro-batches per step).
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of reduction parts.
    pub fn n_parts(&self) -> usize {
        self.part_generation.len()
    }

    /// The parameter range of part `p` (contiguous; parts tile `0..len` in order).
    pub fn part_range(&self, part: usize) -> Range<usize> {
        self.part_bounds[part]..self.part_bounds[part + 1]
    }

    /// Steps whose reduction has completed.
    pub fn completed_steps(&self) -> usize {
        // Relaxed: a step number; the caller's next access to the data is ordered by
        // `claim`'s Acquire CAS and by `published`, not by this read.
        self.reduced.load(Ordering::Relaxed) / self.n_parts()
    }

    /// Claim slot `slot` for step `step`, waiting while the slot still belongs to an
    /// earlier step (its reduction may still read it). Naming the step means a slow
    /// writer of step `g` and a fast writer of step `g + 1` can never swap steps.
    pub fn claim(&self, step: usize, slot: usize) -> Result<SlotWriter<'_, P>, SegmentsError> {
        let state = self.slot(slot)?;
        loop {
            // Relaxed: this read only chooses between an error, a wait and the CAS
            // below, whose Acquire is what grants the slot.
            let stamp = state.stamp.load(Ordering::Relaxed);
            let (current, phase) = (stamp / 3, stamp % 3);
            if current > step {
                return Err(SegmentsError::SlotPassed {
                    slot,
                    step,
                    current,
                });
            }
            if current < step {
                if self.is_aborted() {
                    return Err(SegmentsError::Aborted);
                }
                // Relaxed: a wait condition, read after `Event`'s fence; the loop
                // re-reads the stamp and claims it with the Acquire CAS.
                self.slots_free.wait_until(|| {
                    state.stamp.load(Ordering::Relaxed) >= 3 * step || self.is_aborted()
                });
                continue;
            }
            if phase != 0 {
                return Err(SegmentsError::SlotTaken { slot, step });
            }
            // Acquire: pairs with the Release store of the reducer that freed the slot
            // (its reads of the slot happen before our writes).
            if state
                .stamp
                .compare_exchange(stamp, stamp + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(SlotWriter {
                    segments: self,
                    slot,
                    step,
                    published: false,
                });
            }
        }
    }

    /// Reduce part `part` of step `step` into `out` (length of the part's range),
    /// waiting until every slot of the step is published. The summation order is
    /// fixed (see [`reduce::pairwise_sum_into`]). Each part is reduced exactly once
    /// per step: a second call for the same step fails with `PartNotDue` (or
    /// `PartTaken` if it races the first).
    pub fn reduce_part(
        &self,
        step: usize,
        part: usize,
        out: &mut [f32],
    ) -> Result<(), SegmentsError> {
        self.reduce_part_with(step, part, out, crate::isa::active())
    }

    /// As [`GradientSegments::reduce_part`], with the adds on an explicit
    /// instruction-set path (every path gives the same bits).
    pub fn reduce_part_with(
        &self,
        step: usize,
        part: usize,
        out: &mut [f32],
        isa: crate::isa::Isa,
    ) -> Result<(), SegmentsError> {
        let n_parts = self.n_parts();
        let generation = self
            .part_generation
            .get(part)
            .ok_or(SegmentsError::NoSuchPart { part, n_parts })?;
        let range = self.part_range(part);
        if out.len() != range.len() {
            return Err(SegmentsError::OutputLength {
                part,
                want: range.len(),
                got: out.len(),
            });
        }
        // Waiting first also settles the part's generation: once every slot of `step`
        // is published, step `step - 1` has been fully reduced (its slots were freed).
        self.wait_published(step)?;
        let next = generation.load(Ordering::Relaxed);
        if next != step {
            return Err(SegmentsError::PartNotDue { part, step, next });
        }
        // Relaxed: the part counter only guards against double reduction; the data
        // dependencies are ordered by `published` above and `reduced` below.
        if generation
            .compare_exchange(step, step + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Err(SegmentsError::PartTaken { part, step });
        }
        with_all_slots(
            &self.slots,
            &mut Vec::with_capacity(self.n_slots()),
            &mut |inputs| reduce::pairwise_sum_range_into(inputs, range.clone(), out, isa),
        );
        // AcqRel: Release publishes our reads as finished; Acquire lets the last
        // reducer inherit every other reducer's reads before it frees the slots.
        let done = self.reduced.fetch_add(1, Ordering::AcqRel) + 1;
        if done == (step + 1) * n_parts {
            for slot in self.slots.iter() {
                // Release: pairs with the Acquire CAS in `claim`.
                slot.stamp.store(3 * (step + 1), Ordering::Release);
            }
            self.slots_free.notify();
        }
        Ok(())
    }

    /// Block until every slot of step `step` is published (then every slot write of
    /// the step happens before whatever the caller does next), or fail with
    /// `Aborted` once [`GradientSegments::abort`] was called.
    pub fn wait_published(&self, step: usize) -> Result<(), SegmentsError> {
        let target = (step + 1) * self.n_slots();
        // Acquire: pairs with every publisher's Release increment (a release sequence
        // of RMWs), so all slot writes of the step happen before our reads.
        let ready = || self.published.load(Ordering::Acquire) >= target;
        if !ready() {
            self.all_published
                .wait_until(|| ready() || self.is_aborted());
            if !ready() {
                return Err(SegmentsError::Aborted);
            }
        }
        Ok(())
    }

    /// Make every current and future wait fail with `Aborted` (a participant failed
    /// and will never publish or reduce). Idempotent.
    pub fn abort(&self) {
        // Relaxed: the flag carries no data; the notifies' SeqCst fences order it
        // before the waiters' re-check (see `Event`).
        self.aborted.store(true, Ordering::Relaxed);
        self.all_published.notify();
        self.slots_free.notify();
    }

    /// Whether [`GradientSegments::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        // Relaxed: a flag with no data behind it (see `abort`).
        self.aborted.load(Ordering::Relaxed)
    }

    /// Reduce every part of step `step`, in order, on this thread (the
    /// single-threaded path).
    pub fn reduce_all(&self, step: usize, out: &mut [f32]) -> Result<(), SegmentsError> {
        if out.len() != self.len {
            return Err(SegmentsError::OutputLength {
                part: 0,
                want: self.len,
                got: out.len(),
            });
        }
        for part in 0..self.n_parts() {
            let range = self.part_range(part);
            self.reduce_part(step, part, &mut out[range])?;
        }
        Ok(())
    }

    // ---- helpers ----------------------------------------------------------------

    fn slot(&self, slot: usize) -> Result<&Slot<P>, SegmentsError> {
        self.slots.get(slot).ok_or(SegmentsError::NoSuchSlot {
            slot,
            n_slots: self.n_slots(),
        })
    }
}

impl<P: Platform> SlotWriter<'_, P> {
    /// The slot index.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The step this claim belongs to.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Run `f` with the slot's buffer (`len` floats; holds whatever was there before:
    /// overwrite every element).
    pub fn write<R>(&mut self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        let slot = &self.segments.slots[self.slot];
        // SAFETY: this writer holds the claim (stamp 3g + 1): no reducer reads the slot
        // until it is published and no other claimer can take it.
        slot.data.with_mut(|data| f(unsafe { &mut *data }))
    }

    /// Publish the filled slot to the reducers.
    pub fn publish(mut self) {
        self.published = true;
        let segments = self.segments;
        // Relaxed: the stamp is state for claimers only; the reducers' view of the
        // data is ordered by the Release increment of `published` just below.
        segments.slots[self.slot]
            .stamp
            .store(3 * self.step + 2, Ordering::Relaxed);
        // Release: publishes this slot's writes to reducers (see `reduce_part_with`).
        segments.published.fetch_add(1, Ordering::Release);
        segments.all_published.notify();
    }
}

impl<P: Platform> Drop for SlotWriter<'_, P> {
    fn drop(&mut self) {
        if !self.published {
            // Release: a later claimer of the same step sees whatever we wrote.
            self.segments.slots[self.slot]
                .stamp
                .store(3 * self.step, Ordering::Release);
            self.segments.slots_free.notify();
        }
    }
}

/// `n_parts + 1` boundaries tiling `0..len`, interior ones rounded down to a multiple
/// of [`PART_ALIGN`] floats, so every part but the last starts and ends on that grid.
fn split_evenly(len: usize, n_parts: usize) -> Box<[usize]> {
    (0..=n_parts)
        .map(|p| {
            if p == n_parts {
                len
            } else {
                let raw = (len as u128 * p as u128 / n_parts as u128) as usize;
                (raw / PART_ALIGN * PART_ALIGN).min(len)
            }
        })
        .collect()
}

/// Run `f` with shared views of every slot's buffer, holding each slot's tracked
/// read access for the duration (so a model checker sees the reads as they happen).
fn with_all_slots<'a, P: Platform>(
    slots: &'a [Slot<P>],
    acc: &mut Vec<&'a [f32]>,
    f: &mut dyn FnMut(&[&[f32]]),
) {
    match slots.split_first() {
        None => f(acc),
        Some((first, rest)) => first.data.with(|data| {
            // SAFETY: the caller has observed every slot published (Acquire) and no
            // claimer can write before the last reducer frees the slots after us.
            acc.push(unsafe { &**data });
            with_all_slots(rest, acc, f);
            acc.pop();
        }),
    }
}
