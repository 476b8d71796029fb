//! Proves the cross-ISA half of the guarantee kernel by kernel: every instruction-set
//! path this CPU runs (AVX-512, AVX2, portable; `cllm::isa::Isa::available`) gives
//! bitwise equal outputs and gradients for every kernel of a training step, on random
//! shapes that reach every edge (lengths not divisible by 16, 8 or 4, single rows,
//! every blocking path of the gemm: `k` blocks past 256, packed `B` blocks past 256
//! columns and 48 rows, transposed and strided operands, ragged tiles), and for the
//! whole model's loss and every parameter gradient.
//! Each case computes the portable result (with `cllm::isa::scoped`) and compares every
//! other path with it; NaN-filled output buffers make an unwritten element visible.
//! On a CPU without AVX-512 the AVX-512 comparisons are skipped and say so on stdout.
//! Must never touch: the kernels' internals (public entry points only).

use cllm::data::Rng;
use cllm::isa::{self, Isa};
use cllm::model::kernels::gemm::{gemm_on, gemm_then_add_on, Init};
use cllm::model::kernels::*;
use cllm::model::{forward_backward, init_params, GptConfig, ParamLayout, TrainingContext};
use cllm::train::norm::block_sums;
use cllm::train::optim::{update_range, AdamWConfig, StepScalars};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::sync::Once;

/// Every path this CPU runs, the portable one first; says once which are skipped.
fn paths() -> Vec<Isa> {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        for isa in Isa::ALL {
            let missing = isa.missing_features();
            if !missing.is_empty() {
                println!(
                    "skipped: no {} (the {isa} path is not compared)",
                    missing.join(", ")
                );
            }
        }
    });
    let mut v = Isa::available();
    v.sort();
    v
}

/// `f`'s result on every path equals the portable path's (`f` returns bit patterns).
fn same_on_every_path<T: PartialEq + core::fmt::Debug>(
    what: &str,
    f: impl Fn() -> T,
) -> Result<(), TestCaseError> {
    let want = isa::scoped(Isa::Portable, &f).expect("portable always runs");
    for p in paths() {
        let got = isa::scoped(p, &f).expect("available paths run");
        prop_assert_eq!(
            &got,
            &want,
            "{}: the {} path differs from portable",
            what,
            p
        );
    }
    Ok(())
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// `len` floats in about [-scale, scale), from `seed`.
fn data(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| (rng.next_f64() as f32 * 2.0 - 1.0) * scale)
        .collect()
}

fn cfg(cases: u32) -> Config {
    Config {
        cases,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(cfg(48))]

    /// The matmul engine: any shape, layout and start, with and without the fused add.
    #[test]
    fn gemm_is_the_same_on_every_path(
        m in 1usize..70,
        n in 1usize..300,
        k in 1usize..300,
        layout in 0usize..4,
        pad in 0usize..3,
        init in 0usize..3,
        fused in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // A row-major (rows `pad` floats apart beyond k) or transposed (read down its
        // columns); B row-major or transposed; C with leading dimension n + pad.
        let (a_rs, a_cs) = if layout & 1 == 0 { (k + pad, 1) } else { (1, m + pad) };
        let (b_rs, b_cs) = if layout & 2 == 0 { (n, 1) } else { (1, k) };
        let ldc = n + pad;
        let a = data(m * k + (m.max(k)) * pad, seed, 1.0);
        let b = data(k * n, seed ^ 1, 1.0);
        let bias = data(n, seed ^ 2, 1.0);
        let add = data(m * ldc, seed ^ 3, 1.0);
        let old = data(m * ldc, seed ^ 4, 1.0);
        same_on_every_path("gemm", || {
            let mut c = old.clone();
            let init = match init {
                0 => Init::Zero,
                1 => Init::Bias(&bias),
                _ => Init::Accumulate,
            };
            let isa = isa::active();
            if fused {
                gemm_then_add_on(isa, m, n, k, &a, a_rs, a_cs, &b, b_rs, b_cs, &mut c, ldc, init, &add);
            } else {
                gemm_on(isa, m, n, k, &a, a_rs, a_cs, &b, b_rs, b_cs, &mut c, ldc, init);
            }
            bits(&c)
        })?;
    }

    /// Matmul forward and backward (weight, bias and input gradients) and the LM head.
    #[test]
    fn matmul_and_lm_head_are_the_same_on_every_path(
        n in 1usize..40,
        ic in 1usize..70,
        oc in 1usize..70,
        seed in any::<u64>(),
    ) {
        let inp = data(n * ic, seed, 1.0);
        let w = data(ic * oc, seed ^ 1, 1.0);
        let bias = data(oc, seed ^ 2, 1.0);
        let dout = data(n * oc, seed ^ 3, 1.0);
        same_on_every_path("matmul", || {
            let mut out = vec![f32::NAN; n * oc];
            matmul_forward(&mut out, &inp, &w, Some(&bias), n, ic, oc);
            let mut dinp = vec![f32::NAN; n * ic];
            let mut dw = vec![f32::NAN; ic * oc];
            let mut db = vec![f32::NAN; oc];
            matmul_backward(&mut dinp, &mut dw, Some(&mut db), &dout, &inp, &w, n, ic, oc);
            // The LM head: `wte` is [oc, ic] here (vocab oc, width ic).
            let mut logits = vec![f32::NAN; n * oc];
            lm_head_forward(&mut logits, &inp, &w, n, ic, oc);
            let mut dinp2 = vec![f32::NAN; n * ic];
            let mut dwte = vec![f32::NAN; oc * ic];
            lm_head_backward(&mut dinp2, &mut dwte, &dout, &inp, &w, n, ic, oc);
            [out, dinp, dw, db, logits, dinp2, dwte].map(|x| bits(&x))
        })?;
    }

    /// Layer norm forward and backward (rows grouped four at a time and alone).
    #[test]
    fn layernorm_is_the_same_on_every_path(
        n in 1usize..11,
        c in 1usize..70,
        seed in any::<u64>(),
    ) {
        let inp = data(n * c, seed, 2.0);
        let w = data(c, seed ^ 1, 1.0);
        let b = data(c, seed ^ 2, 1.0);
        let dout = data(n * c, seed ^ 3, 1.0);
        same_on_every_path("layernorm", || {
            let (mut out, mut mean, mut rstd) = (vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
            layernorm_forward(&mut out, &mut mean, &mut rstd, &inp, &w, &b, n, c);
            let (mut dinp, mut dw, mut db) = (vec![0.5; n * c], vec![0.25; c], vec![0.125; c]);
            layernorm_backward(&mut dinp, &mut dw, &mut db, &dout, &inp, &w, &mean, &rstd, n, c);
            [out, mean, rstd, dinp, dw, db].map(|x| bits(&x))
        })?;
    }

    /// Causal attention forward (scores, softmax, values) and backward (both products
    /// and the softmax backward).
    #[test]
    fn attention_is_the_same_on_every_path(
        b in 1usize..3,
        t in 1usize..40,
        nh in 1usize..4,
        hs in 1usize..20,
        seed in any::<u64>(),
    ) {
        let c = nh * hs;
        let qkv = data(b * t * 3 * c, seed, 1.5);
        let dout = data(b * t * c, seed ^ 1, 1.0);
        same_on_every_path("attention", || {
            let mut out = vec![f32::NAN; b * t * c];
            let mut att = vec![f32::NAN; b * nh * t * t];
            attention_forward(&mut out, &mut att, &qkv, b, t, c, nh);
            let mut dqkv = vec![f32::NAN; b * t * 3 * c];
            let mut scratch = vec![f32::NAN; b * nh * t * t];
            attention_backward(&mut dqkv, &mut scratch, &dout, &qkv, &att, b, t, c, nh);
            // The masked upper triangle of `att` is never written (nor read): compare
            // the causal part only.
            let causal: Vec<f32> = (0..b * nh)
                .flat_map(|bh| (0..t).flat_map(move |i| (0..=i).map(move |j| (bh, i, j))))
                .map(|(bh, i, j)| att[(bh * t + i) * t + j])
                .collect();
            [out, causal, dqkv].map(|x| bits(&x))
        })?;
    }

    /// GELU forward, recompute and backward; the residual add and its backward.
    #[test]
    fn elementwise_kernels_are_the_same_on_every_path(
        len in 0usize..300,
        seed in any::<u64>(),
    ) {
        let inp = data(len, seed, 6.0);
        let dout = data(len, seed ^ 1, 1.0);
        same_on_every_path("gelu and residual", || {
            let (mut out, mut s) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            gelu_forward(&mut out, &mut s, &inp);
            let mut again = vec![f32::NAN; len];
            gelu_recompute(&mut again, &inp, &s);
            let mut dinp = vec![f32::NAN; len];
            gelu_backward(&mut dinp, &inp, &s, &dout);
            let mut sum = vec![f32::NAN; len];
            residual_forward(&mut sum, &inp, &dout);
            let (mut da, mut db) = (inp.clone(), dout.clone());
            residual_backward(&mut da, &mut db, &out);
            [out, s, again, dinp, sum, da, db].map(|x| bits(&x))
        })?;
    }

    /// Softmax and cross-entropy (loss and logits gradient), and the sampling softmax.
    #[test]
    fn crossentropy_is_the_same_on_every_path(
        n in 1usize..6,
        v in 1usize..300,
        temperature in 0.1f32..3.0,
        seed in any::<u64>(),
    ) {
        let logits = data(n * v, seed, 8.0);
        let mut rng = Rng::new(seed ^ 1);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        same_on_every_path("cross-entropy", || {
            let mut losses = vec![f32::NAN; n];
            crossentropy_forward(&logits, &mut losses, &targets, n, v);
            let mut dl = logits.clone();
            let mut losses2 = vec![f32::NAN; n];
            crossentropy_forward_backward(&mut dl, &mut losses2, &targets, n, v, 1.0 / n as f32);
            let mut probs = vec![f32::NAN; v];
            softmax_row(&mut probs, &logits[..v], temperature);
            [losses, dl, losses2, probs].map(|x| bits(&x))
        })?;
    }

    /// Token and position embedding forward and backward.
    #[test]
    fn encoder_is_the_same_on_every_path(
        b in 1usize..3,
        t in 1usize..9,
        c in 1usize..40,
        vocab in 1usize..20,
        seed in any::<u64>(),
    ) {
        let wte = data(vocab * c, seed, 1.0);
        let wpe = data(t * c, seed ^ 1, 1.0);
        let dout = data(b * t * c, seed ^ 2, 1.0);
        let mut rng = Rng::new(seed ^ 3);
        let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(vocab) as u32).collect();
        same_on_every_path("encoder", || {
            let mut out = vec![f32::NAN; b * t * c];
            encoder_forward(&mut out, &tokens, &wte, &wpe, b, t, c);
            let (mut dwte, mut dwpe) = (vec![0.5; vocab * c], vec![0.25; t * c]);
            encoder_backward(&mut dwte, &mut dwpe, &dout, &tokens, b, t, c);
            [out, dwte, dwpe].map(|x| bits(&x))
        })?;
    }

    /// The strided transpose (attention's `K^T`, `V^T`): a pure copy on every path.
    #[test]
    fn transpose_is_the_same_on_every_path(
        rows in 1usize..40,
        cols in 1usize..40,
        pad in 0usize..5,
        seed in any::<u64>(),
    ) {
        let src = data(rows * (cols + pad), seed, 1.0);
        same_on_every_path("transpose", || {
            let mut dst = vec![f32::NAN; rows * cols];
            transpose::transpose(&mut dst, &src, rows, cols, cols + pad);
            bits(&dst)
        })?;
    }

    /// AdamW over a range with weight-decay spans, and the gradient norm's block sums.
    #[test]
    fn optimizer_and_norm_are_the_same_on_every_path(
        len in 1usize..1200,
        cut in 0usize..1200,
        step in 1i32..50,
        scale in 0.01f32..2.0,
        seed in any::<u64>(),
    ) {
        let cut = cut.min(len);
        let params = data(len, seed, 1.0);
        let grads = data(len, seed ^ 1, 1.0);
        let m0 = data(len, seed ^ 2, 0.1);
        let v0: Vec<f32> = data(len, seed ^ 3, 0.1).iter().map(|x| x * x).collect();
        let cfg = AdamWConfig::default();
        let s = StepScalars {
            lr: 1e-3,
            grad_scale: scale,
            bias1: 1.0 - cfg.beta1.powi(step),
            bias2: 1.0 - cfg.beta2.powi(step),
        };
        let decay = [0..cut / 2, cut..len];
        same_on_every_path("adamw and norm", || {
            let (mut p, mut m, mut v) = (params.clone(), m0.clone(), v0.clone());
            update_range(&cfg, &s, 0..len, &decay, &mut p, &grads, &mut m, &mut v);
            let mut blocks = Vec::new();
            block_sums(&grads, 0..len, scale, &mut blocks);
            let blocks: Vec<u64> = blocks.iter().map(|x| x.to_bits()).collect();
            ([p, m, v].map(|x| bits(&x)), blocks)
        })?;
    }
}

proptest! {
    #![proptest_config(cfg(24))]

    /// The whole model: the loss and every parameter gradient of one micro-batch.
    #[test]
    fn model_step_is_the_same_on_every_path(
        n_layer in 1usize..3,
        n_head in 1usize..3,
        hs in 1usize..12,
        seq in 1usize..20,
        vocab_size in 2usize..60,
        batch in 1usize..3,
        seed in any::<u64>(),
    ) {
        let cfg = GptConfig {
            n_layer,
            n_head,
            n_embd: n_head * hs,
            n_positions: seq,
            vocab_size,
        };
        let params = init_params(&cfg, seed);
        let mut rng = Rng::new(seed ^ 7);
        let ids: Vec<u32> = (0..batch * seq + 1).map(|_| rng.below(vocab_size) as u32).collect();
        let n_params = ParamLayout::new(&cfg).len();
        same_on_every_path("model", || {
            let mut ctx = TrainingContext::new(&cfg, batch, seq).expect("valid shape");
            let mut grads = vec![f32::NAN; n_params];
            let loss = forward_backward(&cfg, &params, &mut ctx, &ids[..batch * seq], &ids[1..], &mut grads)
                .expect("valid batch");
            (loss.to_bits(), bits(&grads))
        })?;
    }
}
