//! The step protocol owns its shared buffers (weights, gradient, optimizer state) as raw
//! allocations; dropping a protocol that never handed them back (`into_buffers`, which
//! an aborted or failed run skips) must free them. A counting global allocator tracks
//! the live bytes of this binary (its only test), so a leak shows as megabytes that
//! stay allocated after the drop.

use cllm::step::StepProtocol;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is
// only a statistic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LEN: usize = 1 << 20; // 4 MB per buffer; 16 MB per protocol with grad and 2 aux
const SLACK: usize = 1 << 20; // what the test harness itself may allocate meanwhile

fn protocol() -> StepProtocol<()> {
    StepProtocol::new(4, 3, vec![1.0; LEN], vec![vec![0.0; LEN], vec![0.0; LEN]])
        .expect("a valid layout")
}

#[test]
fn a_dropped_protocol_frees_its_buffers() {
    let before = LIVE.load(Ordering::Relaxed);
    let p = protocol();
    let held = LIVE.load(Ordering::Relaxed);
    assert!(
        held >= before + 4 * LEN * 4,
        "the protocol holds its 4 buffers"
    );
    drop(p);
    let after = LIVE.load(Ordering::Relaxed);
    assert!(
        after < before + SLACK,
        "dropped protocol left {} bytes live",
        after - before
    );

    // Handed back, the buffers are the caller's and are freed with the Vecs.
    let (w, g, aux) = protocol().into_buffers();
    assert_eq!((w.len(), g.len(), aux.len()), (LEN, LEN, 2));
    drop((w, g, aux));
    let after = LIVE.load(Ordering::Relaxed);
    assert!(
        after < before + SLACK,
        "handed-back buffers left {} bytes live",
        after.saturating_sub(before)
    );
}
