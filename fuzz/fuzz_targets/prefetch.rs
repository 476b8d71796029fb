//! Fuzz target: a PrefetchQueue with any capacity, item count, failure point and
//! consumer stop point delivers items in order, then the outcome, and drops every
//! item it made exactly once.
#![no_main]

use arbitrary::Arbitrary;
use cllm::queue::{PrefetchError, PrefetchQueue};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    items: u8,
    fail: bool,
    stop_after: Option<u8>,
}

struct Counted(usize, Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

fuzz_target!(|input: Input| {
    let capacity = 1 + usize::from(input.capacity % 64);
    let items = usize::from(input.items);
    let fail = input.fail;
    let made = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (m, d) = (made.clone(), dropped.clone());
    let mut q = PrefetchQueue::<Counted, usize>::spawn(capacity, move |tx| {
        for i in 0..items {
            m.fetch_add(1, Ordering::Relaxed);
            if tx.send(Counted(i, d.clone())).is_err() {
                return Ok(());
            }
        }
        if fail {
            Err(items)
        } else {
            Ok(())
        }
    })
    .expect("spawn");
    let limit = input.stop_after.map_or(usize::MAX, usize::from);
    let mut seen = 0;
    while seen < limit {
        match q.recv() {
            Ok(Some(c)) => {
                assert_eq!(c.0, seen);
                seen += 1;
            }
            Ok(None) => {
                assert!(!fail && seen == items);
                break;
            }
            Err(PrefetchError::Producer(n)) => {
                assert!(fail && seen == items && n == items);
                assert!(matches!(q.recv(), Ok(None)));
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    drop(q);
    assert_eq!(
        dropped.load(Ordering::Relaxed),
        made.load(Ordering::Relaxed)
    );
});
