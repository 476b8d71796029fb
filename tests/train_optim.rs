//! Properties of the optimizer, the gradient norm and the schedule: a sharded AdamW
//! update equals the whole update bit for bit, the update matches an independent f64
//! transcription of the AdamW formula, the norm's block sums are the documented order
//! whatever the partition, and the schedule warms up and decays as documented.

use approx::{abs_diff_eq, relative_eq};
use cllm::train::norm::{block_sums, grad_norm, norm_from_blocks, NORM_BLOCK};
use cllm::train::optim::{update_range, AdamState, AdamWConfig};
use cllm::train::schedule::Schedule;
use proptest::prelude::*;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

proptest! {
    #[test]
    fn sharded_update_equals_whole_update(
        n in 1usize..600,
        cuts in proptest::collection::vec(0usize..600, 0..6),
        decay_cuts in proptest::collection::vec(0usize..600, 0..6),
        steps in 1usize..4,
        seed in any::<u64>(),
    ) {
        let cfg = AdamWConfig::default();
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (n + 1)).collect();
        bounds.extend([0, n]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut d: Vec<usize> = decay_cuts.into_iter().map(|c| c % (n + 1)).collect();
        d.sort_unstable();
        d.dedup();
        let decay: Vec<_> = d.chunks_exact(2).map(|c| c[0]..c[1]).collect();

        let (mut whole, mut sharded) = (values(n, seed), values(n, seed));
        let (mut sw, mut ss) = (AdamState::new(n), AdamState::new(n));
        for step in 0..steps {
            let grads = values(n, seed ^ ((step as u64 + 1) * 0x9E37));
            let s = sw.next_scalars(&cfg, 1e-2, 0.5);
            update_range(&cfg, &s, 0..n, &decay, &mut whole, &grads, &mut sw.m, &mut sw.v);
            sw.t += 1;
            for w in bounds.windows(2) {
                update_range(&cfg, &s, w[0]..w[1], &decay, &mut sharded, &grads, &mut ss.m, &mut ss.v);
            }
            ss.t += 1;
        }
        prop_assert!(whole.iter().zip(&sharded).all(|(a, b)| a.to_bits() == b.to_bits()));
        prop_assert_eq!(sw, ss);
    }

    #[test]
    fn update_matches_f64_adamw_formula(n in 1usize..64, seed in any::<u64>(), decay_all in any::<bool>()) {
        let cfg = AdamWConfig::default();
        let mut p = values(n, seed);
        let g = values(n, !seed);
        let mut st = AdamState::new(n);
        let (lr, scale) = (3e-3f32, 0.75f32);
        let decay: Vec<std::ops::Range<usize>> = if decay_all { std::iter::once(0..n).collect() } else { Vec::new() };
        let p0 = p.clone();
        for _ in 0..2 {
            let s = st.next_scalars(&cfg, lr, scale);
            update_range(&cfg, &s, 0..n, &decay, &mut p, &g, &mut st.m, &mut st.v);
            st.t += 1;
        }
        // Independent transcription (PyTorch AdamW semantics) in f64, two steps.
        let (b1, b2, eps) = (cfg.beta1 as f64, cfg.beta2 as f64, cfg.eps as f64);
        let wd = if decay_all { cfg.weight_decay as f64 } else { 0.0 };
        for i in 0..n {
            let (mut x, mut m, mut v) = (p0[i] as f64, 0.0f64, 0.0f64);
            for t in 1..=2 {
                let gr = g[i] as f64 * scale as f64;
                x *= 1.0 - lr as f64 * wd;
                m = b1 * m + (1.0 - b1) * gr;
                v = b2 * v + (1.0 - b2) * gr * gr;
                let mh = m / (1.0 - b1.powi(t));
                let vh = v / (1.0 - b2.powi(t));
                x -= lr as f64 * mh / (vh.sqrt() + eps);
            }
            prop_assert!(relative_eq!(p[i] as f64, x, epsilon = 1e-5, max_relative = 1e-5), "param {i}: {x} vs {}", p[i]);
        }
    }
}

proptest! {
    /// Block sums over any cut on the block grid, concatenated, give the whole
    /// buffer's norm bit for bit (what lets each worker sum its own part).
    #[test]
    fn norm_does_not_depend_on_the_partition(blocks in 1usize..8, tail in 0usize..NORM_BLOCK, cut in 0usize..8, scale in 0.01f32..4.0, seed in any::<u64>()) {
        let g: Vec<f32> = values(blocks * NORM_BLOCK + tail, seed).iter().map(|v| v * 1e3).collect();
        let cut = (cut % (blocks + 1)) * NORM_BLOCK;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        block_sums(&g, 0..cut, scale, &mut a);
        block_sums(&g, cut..g.len(), scale, &mut b);
        a.extend(b);
        prop_assert_eq!(norm_from_blocks(&a).to_bits(), grad_norm(&g, scale).to_bits());
    }

    /// Each block sum is exactly the order `cllm::train::norm` documents, transcribed
    /// here independently: 16 lanes (element i to lane i % 16) summed left to right,
    /// lanes added pairwise (l + l+8, then +4, +2, +1), a short block's tail after.
    #[test]
    fn norm_block_sums_follow_the_documented_order(len in 1usize..(3 * NORM_BLOCK), scale in 0.01f32..4.0, seed in any::<u64>()) {
        let g = values(len, seed);
        let sq = |v: f32| ((v * scale) as f64) * ((v * scale) as f64);
        let mut want = Vec::new();
        for block in g.chunks(NORM_BLOCK) {
            let full = block.len() / 16 * 16;
            let mut lane = [0.0f64; 16];
            for (i, &v) in block[..full].iter().enumerate() {
                lane[i % 16] += sq(v);
            }
            let l8: Vec<f64> = (0..8).map(|l| lane[l] + lane[l + 8]).collect();
            let l4: Vec<f64> = (0..4).map(|l| l8[l] + l8[l + 4]).collect();
            let l2: Vec<f64> = (0..2).map(|l| l4[l] + l4[l + 2]).collect();
            let mut s = l2[0] + l2[1];
            for &v in &block[full..] {
                s += sq(v);
            }
            want.push(s.to_bits());
        }
        let mut got = Vec::new();
        block_sums(&g, 0..g.len(), scale, &mut got);
        prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        let exact: f64 = g.iter().map(|&v| sq(v)).sum();
        prop_assert!(relative_eq!(grad_norm(&g, scale), exact.sqrt(), epsilon = 1e-42, max_relative = 1e-12));
    }
}

#[test]
fn schedule_warms_up_then_decays_to_the_floor() {
    let s = Schedule {
        max_lr: 1e-3,
        min_lr: 1e-4,
        warmup: 10,
        total: 110,
    };
    assert!(
        abs_diff_eq!(s.lr(0), 1e-4, epsilon = 1e-9),
        "first warm-up step is max/warmup"
    );
    assert!(
        abs_diff_eq!(s.lr(9), 1e-3, epsilon = 1e-9),
        "warm-up ends at the peak"
    );
    let lrs: Vec<f32> = (10..110).map(|t| s.lr(t)).collect();
    assert!(
        lrs.windows(2).all(|w| w[1] <= w[0]),
        "cosine phase never increases"
    );
    assert!(
        abs_diff_eq!(s.lr(60), 5.5e-4, epsilon = 1e-7),
        "half way the cosine is at the mid point"
    );
    assert_eq!(s.lr(110), 1e-4);
    assert_eq!(s.lr(10_000), 1e-4);
}
