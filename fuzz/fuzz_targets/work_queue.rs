//! Fuzz target: any sequence of WorkQueue operations at any capacity agrees with a
//! bounded VecDeque model (many laps around the ring; close at any point).
#![no_main]

use arbitrary::Arbitrary;
use cllm::queue::{PopError, PushError, WorkQueue};
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;

#[derive(Arbitrary, Debug)]
enum Op {
    TryPush,
    TryPop,
    /// Push `n` items, then pop `n` (drives many laps cheaply).
    Lap(u8),
    Close,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u16,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let capacity = 1 + usize::from(input.capacity % 300);
    let q: WorkQueue<u32> = WorkQueue::with_capacity(capacity);
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut next = 0u32;
    let mut push = |q: &WorkQueue<u32>, model: &mut VecDeque<u32>, closed: bool| {
        next += 1;
        let got = q.try_push(next);
        if closed {
            assert_eq!(got, Err(PushError::Closed(next)));
        } else if model.len() == capacity {
            assert_eq!(got, Err(PushError::Full(next)));
        } else {
            assert_eq!(got, Ok(()));
            model.push_back(next);
        }
    };
    let pop = |q: &WorkQueue<u32>, model: &mut VecDeque<u32>, closed: bool| {
        let want = match model.pop_front() {
            Some(x) => Ok(x),
            None if closed => Err(PopError::Closed),
            None => Err(PopError::Empty),
        };
        assert_eq!(q.try_pop(), want);
    };
    for op in input.ops {
        match op {
            Op::TryPush => push(&q, &mut model, closed),
            Op::TryPop => pop(&q, &mut model, closed),
            Op::Lap(n) => {
                for _ in 0..n {
                    push(&q, &mut model, closed);
                }
                for _ in 0..n {
                    pop(&q, &mut model, closed);
                }
            }
            Op::Close => {
                q.close();
                closed = true;
            }
        }
        assert_eq!(q.len(), model.len());
        assert_eq!(q.is_closed(), closed);
        assert_eq!(q.pushed() - q.popped(), model.len());
    }
});
