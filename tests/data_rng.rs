//! The hand-written generator is a fixed function of its seed (pinned known answers,
//! so a change of algorithm cannot pass unnoticed), resumes exactly from its state and
//! through JSON, keeps `next_f64` in `[0, 1)` and `below(n)` in `0..n`, and draws
//! `below(n)` and `normal()` with the right distributions.

use cllm::data::Rng;
use proptest::prelude::*;

#[test]
fn seed_stream_is_pinned() {
    // First outputs for seed 0: xoshiro256** seeded with four SplitMix64 outputs of 0
    // (computed with an independent transcription of both reference algorithms).
    let mut r = Rng::new(0);
    let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    assert_eq!(first, PINNED_SEED0);
}

const PINNED_SEED0: [u64; 3] = [PIN0, PIN1, PIN2];
const PIN0: u64 = 0x99EC_5F36_CB75_F2B4;
const PIN1: u64 = 0xBF6E_1F78_4956_452A;
const PIN2: u64 = 0x1A5F_849D_4933_E6E0;

proptest! {
    #[test]
    fn state_round_trip_continues_the_stream(seed in any::<u64>(), skip in 0usize..50) {
        let mut r = Rng::new(seed);
        for _ in 0..skip {
            r.next_u64();
        }
        let mut resumed = Rng::from_state(r.state());
        let json = serde_json::to_string(&r).expect("serialize");
        let mut from_json: Rng = serde_json::from_str(&json).expect("deserialize");
        for _ in 0..20 {
            let x = r.next_u64();
            prop_assert_eq!(resumed.next_u64(), x);
            prop_assert_eq!(from_json.next_u64(), x);
        }
    }

    #[test]
    fn ranges_hold(seed in any::<u64>(), n in 1usize..1_000_000) {
        let mut r = Rng::new(seed);
        for _ in 0..100 {
            let f = r.next_f64();
            prop_assert!((0.0..1.0).contains(&f));
            let o = r.next_f64_open0();
            prop_assert!(o > 0.0 && o <= 1.0);
            prop_assert!(r.below(n) < n);
        }
        prop_assert!(r.below(usize::MAX) < usize::MAX);
    }
}

#[test]
fn different_seeds_differ() {
    let a: Vec<u64> = (0..4)
        .scan(Rng::new(1), |r, _| Some(r.next_u64()))
        .collect();
    let b: Vec<u64> = (0..4)
        .scan(Rng::new(2), |r, _| Some(r.next_u64()))
        .collect();
    assert_ne!(a, b);
}

#[test]
fn zero_state_is_replaced_not_stuck() {
    let mut r = Rng::from_state([0; 4]);
    assert_ne!(r.next_u64(), 0);
    assert_eq!(Rng::from_state([0; 4]), Rng::new(0));
    assert_eq!(Rng::new(5).below(0), 0);
}

#[test]
fn below_is_uniform() {
    // n = 3 does not divide 2^64, so a plain `x % n` or a biased multiply would show.
    for n in [3usize, 7, 10] {
        let mut r = Rng::new(n as u64);
        let draws = 60_000;
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[r.below(n)] += 1;
        }
        let e = draws as f64 / n as f64;
        let chi2: f64 = counts.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
        // At most 9 degrees of freedom: the 1e-5 quantile is about 37.
        assert!(chi2 < 37.0, "n {n}: {counts:?}");
    }
}

#[test]
fn normal_has_mean_0_and_variance_1() {
    let mut r = Rng::new(77);
    let n = 200_000;
    let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    let within_1sd = xs.iter().filter(|x| x.abs() < 1.0).count() as f64 / n as f64;
    // Standard errors: mean 0.0022, variance 0.0032, P(|x| < 1) 0.001; 5 of each.
    assert!(mean.abs() < 0.011, "mean {mean}");
    assert!((var - 1.0).abs() < 0.016, "variance {var}");
    assert!(
        (within_1sd - 0.682_689).abs() < 0.005,
        "P(|x|<1) {within_1sd}"
    );
}
