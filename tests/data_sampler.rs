//! The batch sampler is reproducible and resumable (same seed, same batches;
//! `from_state(state())`, also through JSON, continues the identical sequence), every
//! window lies inside the data with targets equal to the tokens shifted by one, start
//! offsets are uniform over all windows that fit, and bad arguments are errors that
//! leave the sampler unchanged, never panics. `eval_windows` gives non-overlapping,
//! in-bounds, evenly spread, deterministic windows.

use cllm::data::{eval_windows, DataError, Sampler, SamplerState};
use proptest::prelude::*;

/// Data whose token at position i is i, so a window reveals where it starts.
fn positions(len: usize) -> Vec<u32> {
    (0..len as u32).collect()
}

fn draw(s: &mut Sampler, data: &[u32], batch: usize, seq: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut tokens, mut targets) = (vec![0; batch * seq], vec![0; batch * seq]);
    s.next_batch(data, batch, seq, &mut tokens, &mut targets)
        .expect("valid batch");
    (tokens, targets)
}

proptest! {
    #[test]
    fn same_seed_same_batches(
        seed in any::<u64>(),
        len in 2usize..300,
        batch in 1usize..5,
        seq_frac in 0.0f64..1.0,
    ) {
        let seq = 1 + ((len - 2) as f64 * seq_frac) as usize; // 1..len-1
        let data = positions(len);
        let (mut a, mut b) = (Sampler::new(seed), Sampler::new(seed));
        for _ in 0..5 {
            prop_assert_eq!(draw(&mut a, &data, batch, seq), draw(&mut b, &data, batch, seq));
        }
        prop_assert_eq!(a.state(), b.state());
    }

    #[test]
    fn windows_are_inside_data_and_targets_are_shifted_tokens(
        seed in any::<u64>(),
        len in 2usize..300,
        batch in 1usize..5,
        seq_frac in 0.0f64..1.0,
    ) {
        let seq = 1 + ((len - 2) as f64 * seq_frac) as usize;
        let data = positions(len);
        let mut s = Sampler::new(seed);
        for _ in 0..5 {
            let (tokens, targets) = draw(&mut s, &data, batch, seq);
            for b in 0..batch {
                let start = tokens[b * seq] as usize;
                prop_assert!(start + seq < len, "window {start}..={} past {len}", start + seq);
                for t in 0..seq {
                    prop_assert_eq!(tokens[b * seq + t] as usize, start + t);
                    prop_assert_eq!(targets[b * seq + t] as usize, start + t + 1);
                }
            }
        }
    }

    #[test]
    fn resuming_from_state_continues_the_sequence(
        seed in any::<u64>(),
        before in 0usize..6,
        after in 1usize..6,
        len in 10usize..200,
    ) {
        let data = positions(len);
        let (batch, seq) = (3, 5);
        let mut s = Sampler::new(seed);
        for _ in 0..before {
            draw(&mut s, &data, batch, seq);
        }
        let state = s.state();
        prop_assert_eq!(state.batches, before as u64);
        let json = serde_json::to_string(&state).expect("serialize");
        let restored: SamplerState = serde_json::from_str(&json).expect("deserialize");
        prop_assert_eq!(restored, state);
        let (mut direct, mut via_json) = (Sampler::from_state(state), Sampler::from_state(restored));
        for _ in 0..after {
            let expected = draw(&mut s, &data, batch, seq);
            prop_assert_eq!(&draw(&mut direct, &data, batch, seq), &expected);
            prop_assert_eq!(&draw(&mut via_json, &data, batch, seq), &expected);
        }
        prop_assert_eq!(direct.state(), s.state());
    }

    #[test]
    fn bad_arguments_are_errors_not_panics(
        seed in any::<u64>(),
        len in 0usize..20,
        batch in 0usize..4,
        seq in 0usize..24,
        tokens_len in 0usize..40,
        targets_len in 0usize..40,
    ) {
        let data = positions(len);
        let (mut tokens, mut targets) = (vec![0; tokens_len], vec![0; targets_len]);
        let mut s = Sampler::new(seed);
        let before = s.state();
        let result = s.next_batch(&data, batch, seq, &mut tokens, &mut targets);
        let expected = batch * seq;
        if batch == 0 || seq == 0 {
            let is_bad_shape = matches!(result, Err(DataError::BadShape { .. }));
            prop_assert!(is_bad_shape, "{:?}", result);
        } else if len < seq + 1 {
            let is_too_short = matches!(result, Err(DataError::DataTooShort { have, need }) if have == len && need == seq + 1);
            prop_assert!(is_too_short, "{:?}", result);
        } else if tokens_len != expected || targets_len != expected {
            let is_slice_len = matches!(result, Err(DataError::SliceLength { expected: e, .. }) if e == expected);
            prop_assert!(is_slice_len, "{:?}", result);
        } else {
            prop_assert!(result.is_ok(), "{:?}", result);
            prop_assert_eq!(s.state().batches, 1);
            return Ok(());
        }
        prop_assert_eq!(s.state(), before, "a rejected call must not advance the sampler");
    }
}

#[test]
fn different_seeds_give_different_batches() {
    let data = positions(10_000);
    let a = draw(&mut Sampler::new(1), &data, 8, 16);
    let b = draw(&mut Sampler::new(2), &data, 8, 16);
    assert_ne!(a, b);
}

#[test]
fn huge_shapes_are_errors() {
    let data = positions(10);
    let mut s = Sampler::new(0);
    let (mut x, mut y) = (vec![0; 4], vec![0; 4]);
    assert!(matches!(
        s.next_batch(&data, usize::MAX, 2, &mut x, &mut y),
        Err(DataError::BadShape { .. })
    ));
    assert!(matches!(
        s.next_batch(&data, 1, usize::MAX, &mut x, &mut y),
        Err(DataError::BadShape { .. })
    ));
}

#[test]
fn start_offsets_are_uniform_over_every_window() {
    // 12 tokens, seq 4: starts 0..=7 (8 windows). Each must appear, none favoured.
    let (len, seq, batch, batches) = (12usize, 4usize, 16usize, 2_000usize);
    let data = positions(len);
    let n_starts = len - seq;
    let mut counts = vec![0u64; n_starts];
    let mut s = Sampler::new(42);
    for _ in 0..batches {
        let (tokens, _) = draw(&mut s, &data, batch, seq);
        for b in 0..batch {
            counts[tokens[b * seq] as usize] += 1;
        }
    }
    let expected = (batch * batches) as f64 / n_starts as f64;
    let chi2: f64 = counts
        .iter()
        .map(|&o| (o as f64 - expected).powi(2) / expected)
        .sum();
    // 7 degrees of freedom: 1e-5 quantile is about 33.
    assert!(chi2 < 33.0, "counts {counts:?}, chi-square {chi2}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "every window must be reachable"
    );
}

#[test]
fn shortest_data_has_one_window() {
    let data = positions(6);
    let mut s = Sampler::new(9);
    for _ in 0..10 {
        let (tokens, targets) = draw(&mut s, &data, 2, 5);
        assert_eq!(tokens, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
        assert_eq!(targets, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]);
    }
}

proptest! {
    #[test]
    fn eval_windows_are_disjoint_in_bounds_and_even(
        data_len in 0usize..5000,
        seq in 0usize..200,
        max_windows in 0usize..64,
    ) {
        let w = eval_windows(data_len, seq, max_windows);
        prop_assert_eq!(&w, &eval_windows(data_len, seq, max_windows));
        let width = seq + 1;
        prop_assert_eq!(w.len(), max_windows.min(data_len / width));
        if let Some(&first) = w.first() {
            prop_assert_eq!(first, 0);
        }
        if let (true, Some(&last)) = (w.len() >= 2, w.last()) {
            prop_assert_eq!(last + width, data_len);
        }
        for pair in w.windows(2) {
            prop_assert!(pair[0] + width <= pair[1], "overlap: {:?}", pair);
        }
        // Evenly spread: the gaps between windows differ by at most one token.
        let gaps: Vec<usize> = w.windows(2).map(|p| p[1] - p[0] - width).collect();
        if let (Some(lo), Some(hi)) = (gaps.iter().min(), gaps.iter().max()) {
            prop_assert!(hi - lo <= 1, "gaps {:?}", gaps);
        }
    }
}

#[test]
fn eval_windows_edge_cases() {
    assert_eq!(eval_windows(0, 4, 10), Vec::<usize>::new());
    assert_eq!(eval_windows(4, 4, 10), Vec::<usize>::new()); // needs 5 tokens
    assert_eq!(eval_windows(5, 4, 10), vec![0]);
    assert_eq!(eval_windows(100, 9, 0), Vec::<usize>::new());
    assert_eq!(
        eval_windows(100, 9, 100),
        (0..10).map(|i| i * 10).collect::<Vec<_>>()
    );
    assert_eq!(eval_windows(100, usize::MAX, 3), Vec::<usize>::new());
    assert_eq!(eval_windows(usize::MAX, 0, 2), vec![0, usize::MAX - 1]);
}
