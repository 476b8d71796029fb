//! Property tests of `cllm::model::kernels` against an independent model: a tiny `f64`
//! copy of every FORWARD written here with plain loops (deliberately simple, no shared
//! code with the library), differenced by central finite differences to check every
//! backward.
//!
//! Owns: (a) each f32 forward against its f64 model; (b) each backward against finite
//! differences of the f64 model, with gradient buffers pre-filled with random values so
//! the `+=` contract is checked too; (c) the matmul row-independence property, bitwise
//! (rows `[0, n)` in one call equal rows `[0, k)` and `[k, n)` in two), and that every
//! compiled gemm path gives the same bits; (d) attention causality and softmax rows;
//! (e) cross-entropy on huge logits, non-negative losses, gradient rows summing to 0.
//! Must never touch: the library's own code or any other module's tests.
//!
//! # Tolerances
//! Finite differences are taken in f64 with a step of `1e-6 (1 + |x|)`: truncation error
//! ~`h^2 = 1e-12`, round-off ~`1e-16 / 1e-6 = 1e-10`, so the differences are exact for
//! our purpose and all the error is the f32 kernel's. With inputs of size O(1) and at
//! most a few hundred terms per sum, f32 round-off (6e-8 per operation, growing at
//! worst linearly with the number of terms, and amplified by `rstd` in layernorm) stays
//! below ~2e-5 absolute, so we accept `|got - want| <= ATOL + RTOL |want|` with
//! `ATOL = 1e-4`, `RTOL = 1e-3`: five times the expected error, and still far below the
//! O(0.1..1) error of any dropped term, wrong sign or wrong factor.

use approx::{abs_diff_eq, relative_eq};
use cllm::isa::Isa;
use cllm::model::kernels::gemm::{gemm_on, gemm_then_add_on, Init};
use cllm::model::kernels::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-3;

// ---- data ---------------------------------------------------------------------------

/// SplitMix64: deterministic data from a proptest-chosen seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

// ---- comparison ---------------------------------------------------------------------

fn close(name: &str, got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: length", name);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        prop_assert!(
            relative_eq!(g, w, epsilon = ATOL, max_relative = RTOL),
            "{name}[{i}]: got {g}, want {w}"
        );
    }
    Ok(())
}

/// `grad_after - grad_before`: what the backward added.
fn added(after: &[f32], before: &[f32]) -> Vec<f64> {
    after
        .iter()
        .zip(before)
        .map(|(&a, &b)| a as f64 - b as f64)
        .collect()
}

/// Central differences of `f` at `x`, every coordinate.
fn fd(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let h = 1e-6 * (1.0 + x[i].abs());
            xp[i] = x[i] + h;
            let up = f(&xp);
            xp[i] = x[i] - h;
            let down = f(&xp);
            xp[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `sum(out * g)`: the scalar whose gradient a backward with `dout = g` computes.
fn project(out: &[f64], g: &[f64]) -> f64 {
    out.iter().zip(g).map(|(a, b)| a * b).sum()
}

// ---- the f64 model ------------------------------------------------------------------

fn encoder_ref(tokens: &[u32], wte: &[f64], wpe: &[f64], b: usize, t: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; b * t * c];
    for bi in 0..b {
        for ti in 0..t {
            let tok = tokens[bi * t + ti] as usize;
            for j in 0..c {
                out[(bi * t + ti) * c + j] = wte[tok * c + j] + wpe[ti * c + j];
            }
        }
    }
    out
}

fn layernorm_ref(x: &[f64], w: &[f64], bias: &[f64], n: usize, c: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * c];
    for i in 0..n {
        let row = &x[i * c..(i + 1) * c];
        let mean = row.iter().sum::<f64>() / c as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for j in 0..c {
            out[i * c + j] = (row[j] - mean) * rstd * w[j] + bias[j];
        }
    }
    out
}

/// `inp [n, ic] @ w [ic, oc] + bias`.
fn matmul_ref(
    inp: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
    n: usize,
    ic: usize,
    oc: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; n * oc];
    for i in 0..n {
        for o in 0..oc {
            let mut s = bias.map_or(0.0, |b| b[o]);
            for k in 0..ic {
                s += inp[i * ic + k] * w[k * oc + o];
            }
            out[i * oc + o] = s;
        }
    }
    out
}

/// `inp [n, c] @ wte [v, c]^T`.
fn lm_head_ref(inp: &[f64], wte: &[f64], n: usize, c: usize, v: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * v];
    for i in 0..n {
        for j in 0..v {
            out[i * v + j] = (0..c).map(|k| inp[i * c + k] * wte[j * c + k]).sum();
        }
    }
    out
}

/// Returns `(out [b*t, c], att [b, nh, t, t])`.
fn attention_ref(qkv: &[f64], b: usize, t: usize, c: usize, nh: usize) -> (Vec<f64>, Vec<f64>) {
    let hs = c / nh;
    let mut out = vec![0.0; b * t * c];
    let mut att = vec![0.0; b * nh * t * t];
    let q = |bi: usize, ti: usize, h: usize, d: usize| qkv[(bi * t + ti) * 3 * c + h * hs + d];
    let k = |bi: usize, ti: usize, h: usize, d: usize| qkv[(bi * t + ti) * 3 * c + c + h * hs + d];
    let v =
        |bi: usize, ti: usize, h: usize, d: usize| qkv[(bi * t + ti) * 3 * c + 2 * c + h * hs + d];
    for bi in 0..b {
        for h in 0..nh {
            for t1 in 0..t {
                let scores: Vec<f64> = (0..=t1)
                    .map(|t2| {
                        (0..hs)
                            .map(|d| q(bi, t1, h, d) * k(bi, t2, h, d))
                            .sum::<f64>()
                            / (hs as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for t2 in 0..=t1 {
                    let p = (scores[t2] - m).exp() / z;
                    att[((bi * nh + h) * t + t1) * t + t2] = p;
                    for d in 0..hs {
                        out[(bi * t + t1) * c + h * hs + d] += p * v(bi, t2, h, d);
                    }
                }
            }
        }
    }
    (out, att)
}

fn gelu_ref(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// `-ln softmax(logits[i])[targets[i]]` per row.
fn crossentropy_ref(logits: &[f64], targets: &[u32], n: usize, v: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let row = &logits[i * v..(i + 1) * v];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            lse - row[targets[i] as usize]
        })
        .collect()
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        ..Config::default()
    }
}

// ---- forward + gradient properties ----------------------------------------------------

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn encoder_matches_model(b in 1usize..4, t in 1usize..6, c in 1usize..6, vocab in 2usize..8, extra_t in 0usize..3, seed: u64) {
        let mut rng = Rng(seed);
        let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(vocab) as u32).collect();
        let wte = rng.vec(vocab * c, -1.0, 1.0);
        let wpe = rng.vec((t + extra_t) * c, -1.0, 1.0);
        let mut out = vec![f32::NAN; b * t * c];
        encoder_forward(&mut out, &tokens, &wte, &wpe, b, t, c);
        close("out", &f64s(&out), &encoder_ref(&tokens, &f64s(&wte), &f64s(&wpe), b, t, c))?;

        let g = rng.vec(b * t * c, -1.0, 1.0);
        let (dwte0, dwpe0) = (rng.vec(wte.len(), -1.0, 1.0), rng.vec(wpe.len(), -1.0, 1.0));
        let (mut dwte, mut dwpe) = (dwte0.clone(), dwpe0.clone());
        encoder_backward(&mut dwte, &mut dwpe, &g, &tokens, b, t, c);
        let (wte64, wpe64, g64) = (f64s(&wte), f64s(&wpe), f64s(&g));
        close("dwte", &added(&dwte, &dwte0), &fd(&wte64, |x| project(&encoder_ref(&tokens, x, &wpe64, b, t, c), &g64)))?;
        close("dwpe", &added(&dwpe, &dwpe0), &fd(&wpe64, |x| project(&encoder_ref(&tokens, &wte64, x, b, t, c), &g64)))?;
    }

    #[test]
    fn layernorm_matches_model(n in 1usize..6, c in 2usize..9, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * c, -2.0, 2.0);
        let w = rng.vec(c, 0.5, 1.5);
        let bias = rng.vec(c, -1.0, 1.0);
        let (mut out, mut mean, mut rstd) = (vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &bias, n, c);
        let (x64, w64, b64) = (f64s(&x), f64s(&w), f64s(&bias));
        close("out", &f64s(&out), &layernorm_ref(&x64, &w64, &b64, n, c))?;
        for i in 0..n {
            let row = &x64[i * c..(i + 1) * c];
            let m = row.iter().sum::<f64>() / c as f64;
            prop_assert!(abs_diff_eq!(mean[i] as f64, m, epsilon = ATOL));
        }

        let g = rng.vec(n * c, -1.0, 1.0);
        let g64 = f64s(&g);
        let (dx0, dw0, db0) = (rng.vec(n * c, -1.0, 1.0), rng.vec(c, -1.0, 1.0), rng.vec(c, -1.0, 1.0));
        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        layernorm_backward(&mut dx, &mut dw, &mut db, &g, &x, &w, &mean, &rstd, n, c);
        close("dinp", &added(&dx, &dx0), &fd(&x64, |v| project(&layernorm_ref(v, &w64, &b64, n, c), &g64)))?;
        close("dweight", &added(&dw, &dw0), &fd(&w64, |v| project(&layernorm_ref(&x64, v, &b64, n, c), &g64)))?;
        close("dbias", &added(&db, &db0), &fd(&b64, |v| project(&layernorm_ref(&x64, &w64, v, n, c), &g64)))?;
    }

    #[test]
    fn matmul_matches_model(n in 1usize..11, ic in 1usize..9, oc in 1usize..40, with_bias: bool, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * ic, -1.0, 1.0);
        let w = rng.vec(ic * oc, -1.0, 1.0);
        let bias = rng.vec(oc, -1.0, 1.0);
        let bias_opt = if with_bias { Some(&bias[..]) } else { None };
        let mut out = vec![f32::NAN; n * oc];
        matmul_forward(&mut out, &x, &w, bias_opt, n, ic, oc);
        let (x64, w64, b64) = (f64s(&x), f64s(&w), f64s(&bias));
        let b64_opt = if with_bias { Some(&b64[..]) } else { None };
        close("out", &f64s(&out), &matmul_ref(&x64, &w64, b64_opt, n, ic, oc))?;

        let g = rng.vec(n * oc, -1.0, 1.0);
        let g64 = f64s(&g);
        // Every gradient is overwritten (NaN on entry: an element left unwritten fails
        // the check); without a bias, `dbias` is left alone.
        let db0 = if with_bias { vec![f32::NAN; oc] } else { rng.vec(oc, -1.0, 1.0) };
        let (mut dx, mut dw, mut db) = (vec![f32::NAN; n * ic], vec![f32::NAN; ic * oc], db0.clone());
        matmul_backward(&mut dx, &mut dw, if with_bias { Some(&mut db[..]) } else { None }, &g, &x, &w, n, ic, oc);
        close("dinp", &f64s(&dx), &fd(&x64, |v| project(&matmul_ref(v, &w64, b64_opt, n, ic, oc), &g64)))?;
        close("dweight", &f64s(&dw), &fd(&w64, |v| project(&matmul_ref(&x64, v, b64_opt, n, ic, oc), &g64)))?;
        if with_bias {
            close("dbias", &f64s(&db), &fd(&b64, |v| project(&matmul_ref(&x64, &w64, Some(v), n, ic, oc), &g64)))?;
        } else {
            prop_assert_eq!(db, db0, "dbias touched without a bias");
        }
    }

    #[test]
    fn lm_head_matches_model(n in 1usize..8, c in 1usize..9, v in 2usize..40, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * c, -1.0, 1.0);
        let wte = rng.vec(v * c, -1.0, 1.0);
        let mut logits = vec![f32::NAN; n * v];
        lm_head_forward(&mut logits, &x, &wte, n, c, v);
        let (x64, wte64) = (f64s(&x), f64s(&wte));
        close("logits", &f64s(&logits), &lm_head_ref(&x64, &wte64, n, c, v))?;

        let g = rng.vec(n * v, -1.0, 1.0);
        let g64 = f64s(&g);
        // Both gradients are overwritten (NaN on entry).
        let (mut dx, mut dw) = (vec![f32::NAN; n * c], vec![f32::NAN; v * c]);
        lm_head_backward(&mut dx, &mut dw, &g, &x, &wte, n, c, v);
        close("dinp", &f64s(&dx), &fd(&x64, |y| project(&lm_head_ref(y, &wte64, n, c, v), &g64)))?;
        close("dwte", &f64s(&dw), &fd(&wte64, |y| project(&lm_head_ref(&x64, y, n, c, v), &g64)))?;
    }

    #[test]
    fn attention_matches_model(b in 1usize..4, t in 1usize..6, nh in 1usize..4, hs in 1usize..5, seed: u64) {
        let c = nh * hs;
        let mut rng = Rng(seed);
        let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
        let mut out = vec![f32::NAN; b * t * c];
        let mut att = vec![f32::NAN; b * nh * t * t];
        attention_forward(&mut out, &mut att, &qkv, b, t, c, nh);
        let qkv64 = f64s(&qkv);
        let (out_ref, att_ref) = attention_ref(&qkv64, b, t, c, nh);
        close("out", &f64s(&out), &out_ref)?;
        close("att", &f64s(&att), &att_ref)?;

        let g = rng.vec(b * t * c, -1.0, 1.0);
        let g64 = f64s(&g);
        // dqkv is overwritten and the scratch's contents on entry must not matter: both
        // start as NaN.
        let mut dqkv = vec![f32::NAN; qkv.len()];
        let mut scratch = vec![f32::NAN; att.len()];
        attention_backward(&mut dqkv, &mut scratch, &g, &qkv, &att, b, t, c, nh);
        close("dqkv", &f64s(&dqkv), &fd(&qkv64, |y| project(&attention_ref(y, b, t, c, nh).0, &g64)))?;
    }

    #[test]
    fn gelu_matches_model(len in 1usize..40, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(len, -6.0, 6.0);
        let (mut out, mut s) = (vec![f32::NAN; len], vec![f32::NAN; len]);
        gelu_forward(&mut out, &mut s, &x);
        let x64 = f64s(&x);
        close("out", &f64s(&out), &x64.iter().map(|&v| gelu_ref(v)).collect::<Vec<_>>())?;
        // The backward pass's recomputation of the output is the forward's, bitwise.
        let mut again = vec![f32::NAN; len];
        gelu_recompute(&mut again, &x, &s);
        prop_assert_eq!(bits(&again), bits(&out), "gelu_recompute");

        let g = rng.vec(len, -1.0, 1.0);
        let g64 = f64s(&g);
        let mut d = vec![f32::NAN; len]; // overwritten
        gelu_backward(&mut d, &x, &s, &g);
        let f = |y: &[f64]| project(&y.iter().map(|&v| gelu_ref(v)).collect::<Vec<_>>(), &g64);
        close("dinp", &f64s(&d), &fd(&x64, f))?;
    }

    #[test]
    fn residual_matches_model(len in 1usize..40, seed: u64) {
        let mut rng = Rng(seed);
        let (a, bv) = (rng.vec(len, -1.0, 1.0), rng.vec(len, -1.0, 1.0));
        let mut out = vec![f32::NAN; len];
        residual_forward(&mut out, &a, &bv);
        let (a64, b64) = (f64s(&a), f64s(&bv));
        let sum = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p + q).collect::<Vec<_>>();
        close("out", &f64s(&out), &sum(&a64, &b64))?;

        let g = rng.vec(len, -1.0, 1.0);
        let g64 = f64s(&g);
        let (da0, db0) = (rng.vec(len, -1.0, 1.0), rng.vec(len, -1.0, 1.0));
        let (mut da, mut db) = (da0.clone(), db0.clone());
        residual_backward(&mut da, &mut db, &g);
        close("da", &added(&da, &da0), &fd(&a64, |y| project(&sum(y, &b64), &g64)))?;
        close("db", &added(&db, &db0), &fd(&b64, |y| project(&sum(&a64, y), &g64)))?;
    }

    #[test]
    fn crossentropy_matches_model(n in 1usize..6, v in 2usize..8, seed: u64) {
        let mut rng = Rng(seed);
        let logits = rng.vec(n * v, -3.0, 3.0);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        let dloss = 1.0 / n as f32;
        let logits64 = f64s(&logits);
        let want = crossentropy_ref(&logits64, &targets, n, v);

        let mut losses = vec![f32::NAN; n];
        crossentropy_forward(&logits, &mut losses, &targets, n, v);
        close("forward losses", &f64s(&losses), &want)?;

        let mut d = logits.clone();
        let mut fused = vec![f32::NAN; n];
        crossentropy_forward_backward(&mut d, &mut fused, &targets, n, v, dloss);
        prop_assert_eq!(&fused, &losses, "fused and forward-only losses differ");
        let f = |y: &[f64]| crossentropy_ref(y, &targets, n, v).iter().sum::<f64>() * dloss as f64;
        close("dlogits", &f64s(&d), &fd(&logits64, f))?;
    }

    #[test]
    fn softmax_row_matches_model(v in 1usize..20, temperature in 0.05f32..4.0, seed: u64) {
        let mut rng = Rng(seed);
        let logits = rng.vec(v, -5.0, 5.0);
        let mut probs = vec![f32::NAN; v];
        softmax_row(&mut probs, &logits, temperature);
        let scaled: Vec<f64> = logits.iter().map(|&x| x as f64 / temperature as f64).collect();
        let m = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scaled.iter().map(|x| (x - m).exp()).sum();
        close("probs", &f64s(&probs), &scaled.iter().map(|x| (x - m).exp() / z).collect::<Vec<_>>())?;

        // Non-positive or NaN temperature: one-hot at the first maximum.
        for bad in [0.0, -1.0, f32::NAN] {
            softmax_row(&mut probs, &logits, bad);
            let best = (0..v).fold(0, |best, i| if logits[i] > logits[best] { i } else { best });
            for (i, &p) in probs.iter().enumerate() {
                prop_assert_eq!(p, if i == best { 1.0 } else { 0.0 });
            }
        }
    }
}

// ---- matmul: larger shapes, row independence, paths --------------------------------

proptest! {
    #![proptest_config(config(64))]

    /// Shapes that reach the full 32-wide register tiles, partial row blocks and more
    /// than one 256-deep `k` block, against the f64 model (forward and the backward
    /// formulas, whose finite-difference check is above on small shapes).
    #[test]
    fn matmul_large_shapes_match_model(n in 1usize..40, ic in 1usize..300, oc in 1usize..80, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * ic, -1.0, 1.0);
        let w = rng.vec(ic * oc, -1.0, 1.0);
        let bias = rng.vec(oc, -1.0, 1.0);
        let g = rng.vec(n * oc, -1.0, 1.0);
        let (x64, w64, b64, g64) = (f64s(&x), f64s(&w), f64s(&bias), f64s(&g));
        let mut out = vec![f32::NAN; n * oc];
        matmul_forward(&mut out, &x, &w, Some(&bias), n, ic, oc);
        close("out", &f64s(&out), &matmul_ref(&x64, &w64, Some(&b64), n, ic, oc))?;

        let (mut dx, mut dw, mut db) = (vec![f32::NAN; n * ic], vec![f32::NAN; ic * oc], vec![f32::NAN; oc]);
        matmul_backward(&mut dx, &mut dw, Some(&mut db), &g, &x, &w, n, ic, oc);
        let mut dx_ref = vec![0.0; n * ic];
        let mut dw_ref = vec![0.0; ic * oc];
        let mut db_ref = vec![0.0; oc];
        for i in 0..n {
            for o in 0..oc {
                db_ref[o] += g64[i * oc + o];
                for k in 0..ic {
                    dx_ref[i * ic + k] += g64[i * oc + o] * w64[k * oc + o];
                    dw_ref[k * oc + o] += x64[i * ic + k] * g64[i * oc + o];
                }
            }
        }
        close("dinp", &f64s(&dx), &dx_ref)?;
        close("dweight", &f64s(&dw), &dw_ref)?;
        close("dbias", &f64s(&db), &db_ref)?;

        // The LM head is the same engine with the weight transposed.
        let mut logits = vec![f32::NAN; n * oc];
        let wte: Vec<f32> = (0..oc * ic).map(|idx| w[(idx % ic) * oc + idx / ic]).collect();
        lm_head_forward(&mut logits, &x, &wte, n, ic, oc);
        close("logits", &f64s(&logits), &matmul_ref(&x64, &w64, None, n, ic, oc))?;
    }

    /// Rows `[0, n)` in one call equal rows `[0, k)` and `[k, n)` in two calls, bitwise,
    /// for the forward, the LM head and `dinp` of the backward.
    #[test]
    fn matmul_rows_are_independent(n in 2usize..40, ic in 1usize..300, oc in 1usize..80, split in 1usize..40, seed: u64) {
        let k = split % (n - 1) + 1; // 1..n
        let mut rng = Rng(seed);
        let x = rng.vec(n * ic, -1.0, 1.0);
        let w = rng.vec(ic * oc, -1.0, 1.0);
        let bias = rng.vec(oc, -1.0, 1.0);
        let g = rng.vec(n * oc, -1.0, 1.0);

        let mut whole = vec![0.0; n * oc];
        matmul_forward(&mut whole, &x, &w, Some(&bias), n, ic, oc);
        let mut parts = vec![0.0; n * oc];
        let (p0, p1) = parts.split_at_mut(k * oc);
        matmul_forward(p0, &x[..k * ic], &w, Some(&bias), k, ic, oc);
        matmul_forward(p1, &x[k * ic..], &w, Some(&bias), n - k, ic, oc);
        prop_assert_eq!(bits(&whole), bits(&parts), "matmul_forward");

        // LM head with c = ic, v = oc (wte [oc, ic]).
        let wte = rng.vec(oc * ic, -1.0, 1.0);
        lm_head_forward(&mut whole, &x, &wte, n, ic, oc);
        let (p0, p1) = parts.split_at_mut(k * oc);
        lm_head_forward(p0, &x[..k * ic], &wte, k, ic, oc);
        lm_head_forward(p1, &x[k * ic..], &wte, n - k, ic, oc);
        prop_assert_eq!(bits(&whole), bits(&parts), "lm_head_forward");

        let dx0 = rng.vec(n * ic, -1.0, 1.0);
        let mut dx_whole = dx0.clone();
        let mut dw = vec![0.0; ic * oc];
        matmul_backward(&mut dx_whole, &mut dw, None, &g, &x, &w, n, ic, oc);
        let mut dx_parts = dx0.clone();
        let (d0, d1) = dx_parts.split_at_mut(k * ic);
        matmul_backward(d0, &mut dw, None, &g[..k * oc], &x[..k * ic], &w, k, ic, oc);
        matmul_backward(d1, &mut dw, None, &g[k * oc..], &x[k * ic..], &w, n - k, ic, oc);
        prop_assert_eq!(bits(&dx_whole), bits(&dx_parts), "matmul_backward dinp");
    }

    /// `sum_rows`/`dot_rows` give each of their rows exactly the bits `sum`/`dot` give
    /// it alone (the interleaving only overlaps independent chains).
    #[test]
    fn reductions_of_row_groups_are_the_rows_alone(len in 0usize..100, seed: u64) {
        let mut rng = Rng(seed);
        let a: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(len, -10.0, 10.0)).collect();
        let b: Vec<Vec<f32>> = (0..4).map(|_| rng.vec(len, -10.0, 10.0)).collect();
        let (ar, br): ([&[f32]; 4], [&[f32]; 4]) = (std::array::from_fn(|r| &a[r][..]), std::array::from_fn(|r| &b[r][..]));
        let (sums, dots) = (sum_rows(ar), dot_rows(ar, br));
        for r in 0..4 {
            prop_assert_eq!(sums[r].to_bits(), sum(&a[r]).to_bits(), "sum row {}", r);
            prop_assert_eq!(dots[r].to_bits(), dot(&a[r], &b[r]).to_bits(), "dot row {}", r);
        }
    }

    /// Layer norm over `n` rows at once (in interleaved groups of rows) gives every row
    /// exactly the bits it gets alone, forward and backward; the parameter gradients
    /// equal those accumulated by one call per row, in row order.
    #[test]
    fn layernorm_rows_are_independent(n in 1usize..20, c in 1usize..150, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * c, -3.0, 3.0);
        let w = rng.vec(c, 0.5, 1.5);
        let bias = rng.vec(c, -1.0, 1.0);
        let g = rng.vec(n * c, -1.0, 1.0);
        let (mut out, mut mean, mut rstd) = (vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &bias, n, c);
        let dx0 = rng.vec(n * c, -1.0, 1.0);
        let (dw0, db0) = (rng.vec(c, -1.0, 1.0), rng.vec(c, -1.0, 1.0));
        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        layernorm_backward(&mut dx, &mut dw, &mut db, &g, &x, &w, &mean, &rstd, n, c);
        let (mut dw1, mut db1) = (dw0, db0);
        for i in 0..n {
            let row = i * c..(i + 1) * c;
            let (mut o, mut m, mut r) = (vec![f32::NAN; c], [f32::NAN], [f32::NAN]);
            layernorm_forward(&mut o, &mut m, &mut r, &x[row.clone()], &w, &bias, 1, c);
            prop_assert_eq!(bits(&o), bits(&out[row.clone()]), "out row {}", i);
            prop_assert_eq!((m[0].to_bits(), r[0].to_bits()), (mean[i].to_bits(), rstd[i].to_bits()));
            let mut d = dx0[row.clone()].to_vec();
            layernorm_backward(&mut d, &mut dw1, &mut db1, &g[row.clone()], &x[row.clone()], &w, &m, &r, 1, c);
            prop_assert_eq!(bits(&d), bits(&dx[row]), "dinp row {}", i);
        }
        prop_assert_eq!(bits(&dw1), bits(&dw), "dweight");
        prop_assert_eq!(bits(&db1), bits(&db), "dbias");
    }

    /// The projection with its residual add fused into the store gives exactly the
    /// bits of the projection followed by `residual_forward`, for any split of the
    /// rows (as intra-batch parallelism splits them).
    #[test]
    fn matmul_with_fused_residual_is_matmul_then_residual(n in 1usize..40, ic in 1usize..300, oc in 1usize..80, parts in 1usize..5, with_bias: bool, seed: u64) {
        let mut rng = Rng(seed);
        let x = rng.vec(n * ic, -1.0, 1.0);
        let w = rng.vec(ic * oc, -1.0, 1.0);
        let bias = rng.vec(oc, -1.0, 1.0);
        let bias = if with_bias { Some(&bias[..]) } else { None };
        let res = rng.vec(n * oc, -4.0, 4.0);
        let mut proj = vec![f32::NAN; n * oc];
        matmul_forward(&mut proj, &x, &w, bias, n, ic, oc);
        let mut want = vec![f32::NAN; n * oc];
        residual_forward(&mut want, &res, &proj);
        let mut got = vec![f32::NAN; n * oc];
        matmul_forward_residual_split(&Parts(parts), &mut got, &res, &x, &w, bias, n, ic, oc);
        prop_assert_eq!(bits(&got), bits(&want));
    }

    /// Every gemm path this CPU supports gives the same bits (the portable one always
    /// runs), for each way a chain can start.
    #[test]
    fn gemm_paths_agree_bitwise(m in 1usize..20, n in 1usize..70, k in 0usize..300, seed: u64) {
        let mut rng = Rng(seed);
        let a = rng.vec(m * k.max(1), -1.0, 1.0);
        let b = rng.vec(k.max(1) * n, -1.0, 1.0);
        let bias = rng.vec(n, -1.0, 1.0);
        let c0 = rng.vec(m * n, -1.0, 1.0);
        for init in [Init::Zero, Init::Bias(&bias), Init::Accumulate] {
            let mut reference = c0.clone();
            gemm_on(Isa::Portable, m, n, k, &a, k, 1, &b, n, 1, &mut reference, n, init);
            for path in Isa::available() {
                let mut c = c0.clone();
                gemm_on(path, m, n, k, &a, k, 1, &b, n, 1, &mut c, n, init);
                prop_assert_eq!(bits(&c), bits(&reference), "{:?} vs portable, {:?}", path, init);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Shapes big enough to take every blocking decision (packed `B` from each of its
    /// three layouts, column blocks past 256, `k` blocks past 256, packed strided `A`,
    /// edge tiles) give, on every
    /// path, exactly the chain the module doc states:
    /// `acc = start; for kk in 0..k { acc = fma(A[i, kk], B[kk, j], acc) }`, and
    /// `gemm_then_add` stores `add[i, j] + acc` instead.
    #[test]
    fn gemm_is_the_documented_chain(m in 1usize..100, n in 1usize..600, k in 0usize..600, strided: bool, b_layout in 0usize..3, init_kind in 0usize..3, then_add: bool, seed: u64) {
        let mut rng = Rng(seed);
        let a = rng.vec(m * k.max(1), -1.0, 1.0);
        // Room for the widest layout below (every other float).
        let b = rng.vec(2 * k.max(1) * n, -1.0, 1.0);
        let bias = rng.vec(n, -1.0, 1.0);
        let c0 = rng.vec(m * n, -1.0, 1.0);
        let add = rng.vec(m * n, -4.0, 4.0);
        // A[i, kk] at i * a_rs + kk * a_cs: row-major, or read down columns (as `inp^T`).
        let (a_rs, a_cs) = if strided { (1, m) } else { (k, 1) };
        // B[kk, j] at kk * b_rs + j * b_cs: row-major, a transposed `[n, k]` matrix, or
        // neither stride 1 (every other float of a `[k, 2n]` matrix).
        let (b_rs, b_cs) = [(n, 1), (1, k.max(1)), (2 * n, 2)][b_layout];
        let init = [Init::Zero, Init::Bias(&bias), Init::Accumulate][init_kind];
        let mut expected = c0.clone();
        for i in 0..m {
            for j in 0..n {
                let mut acc = match init {
                    Init::Zero => 0.0f32,
                    Init::Bias(bias) => bias[j],
                    Init::Accumulate => c0[i * n + j],
                };
                for kk in 0..k {
                    acc = a[i * a_rs + kk * a_cs].mul_add(b[kk * b_rs + j * b_cs], acc);
                }
                expected[i * n + j] = if then_add { add[i * n + j] + acc } else { acc };
            }
        }
        for path in Isa::available() {
            let mut c = c0.clone();
            if then_add {
                gemm_then_add_on(path, m, n, k, &a, a_rs, a_cs, &b, b_rs, b_cs, &mut c, n, init, &add);
            } else {
                gemm_on(path, m, n, k, &a, a_rs, a_cs, &b, b_rs, b_cs, &mut c, n, init);
            }
            prop_assert_eq!(bits(&c), bits(&expected), "{:?}, {:?}", path, init);
        }
    }
}

/// A row split into `self.0` parts, run one after another on this thread.
struct Parts(usize);

impl RowSplit for Parts {
    fn parts(&self) -> usize {
        self.0
    }
    fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        (0..self.0).for_each(f)
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// The data of the bitwise tests is sensitive to summation order: summing the same
/// products in another order changes some bits, so an implementation whose order
/// depended on the row count or the path would be caught.
#[test]
fn generated_data_makes_summation_order_visible() {
    let mut rng = Rng(7);
    let (n, ic, oc) = (16, 200, 40);
    let x = rng.vec(n * ic, -1.0, 1.0);
    let w = rng.vec(ic * oc, -1.0, 1.0);
    let mut out = vec![0.0; n * oc];
    matmul_forward(&mut out, &x, &w, None, n, ic, oc);
    let mut differ = 0;
    for i in 0..n {
        for o in 0..oc {
            let reversed = (0..ic)
                .rev()
                .fold(0.0f32, |s, k| x[i * ic + k].mul_add(w[k * oc + o], s));
            differ += usize::from(reversed.to_bits() != out[i * oc + o].to_bits());
        }
    }
    assert!(differ > n * oc / 4, "only {differ} of {} differ", n * oc);
}

// ---- attention: causality and softmax rows -------------------------------------------

proptest! {
    #![proptest_config(config(192))]

    /// Changing q, k and v at position `p` of batch row `bp` never changes an output or
    /// attention row at an earlier position, nor anything of another batch row; and it
    /// does change the output at `p` itself (so the comparison is not vacuous).
    #[test]
    fn attention_is_causal(b in 1usize..4, t in 2usize..7, nh in 1usize..4, hs in 1usize..5, pos in 0usize..7, bsel in 0usize..4, seed: u64) {
        let c = nh * hs;
        let p = pos % t;
        let bp = bsel % b;
        let mut rng = Rng(seed);
        let qkv = rng.vec(b * t * 3 * c, -2.0, 2.0);
        let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
        attention_forward(&mut out, &mut att, &qkv, b, t, c, nh);
        let mut qkv2 = qkv.clone();
        for x in &mut qkv2[(bp * t + p) * 3 * c..(bp * t + p + 1) * 3 * c] {
            *x += rng.uniform(0.5, 1.5);
        }
        let (mut out2, mut att2) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
        attention_forward(&mut out2, &mut att2, &qkv2, b, t, c, nh);
        for bi in 0..b {
            for ti in 0..t {
                let row = (bi * t + ti) * c..(bi * t + ti + 1) * c;
                if bi != bp || ti < p {
                    prop_assert_eq!(bits(&out[row.clone()]), bits(&out2[row]), "out b{} t{}", bi, ti);
                    for h in 0..nh {
                        let a = ((bi * nh + h) * t + ti) * t;
                        prop_assert_eq!(bits(&att[a..a + t]), bits(&att2[a..a + t]), "att b{} h{} t{}", bi, h, ti);
                    }
                } else if ti == p {
                    prop_assert_ne!(bits(&out[row.clone()]), bits(&out2[row]), "position {} ignored its own v", p);
                }
            }
        }
    }

    /// Every attention row is a probability distribution over positions `<= t1`:
    /// entries in [0, 1], zero above the diagonal, summing to 1.
    #[test]
    fn attention_rows_are_distributions(b in 1usize..3, t in 1usize..9, nh in 1usize..4, hs in 1usize..5, scale in 0.1f32..20.0, seed: u64) {
        let c = nh * hs;
        let mut rng = Rng(seed);
        let qkv = rng.vec(b * t * 3 * c, -scale, scale);
        let (mut out, mut att) = (vec![0.0; b * t * c], vec![f32::NAN; b * nh * t * t]);
        attention_forward(&mut out, &mut att, &qkv, b, t, c, nh);
        for (r, row) in att.chunks_exact(t).enumerate() {
            let t1 = r % t;
            for (t2, &a) in row.iter().enumerate() {
                if t2 > t1 {
                    prop_assert_eq!(a, 0.0, "row {} col {} above the diagonal", r, t2);
                } else {
                    prop_assert!((0.0..=1.0).contains(&a), "row {} col {}: {}", r, t2, a);
                }
            }
            let s: f64 = row.iter().map(|&a| a as f64).sum();
            prop_assert!(abs_diff_eq!(s, 1.0, epsilon = 1e-5), "row {} sums to {}", r, s);
        }
    }

    /// Huge logits (|x| up to 1e4, differences far beyond e^88): losses finite, >= 0,
    /// equal to the f64 model; dlogits finite, each row summing to ~0.
    #[test]
    fn crossentropy_is_stable(n in 1usize..6, v in 2usize..12, mag in 1.0f32..1e4, seed: u64) {
        let mut rng = Rng(seed);
        let logits = rng.vec(n * v, -mag, mag);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        let mut losses = vec![f32::NAN; n];
        let mut d = logits.clone();
        crossentropy_forward_backward(&mut d, &mut losses, &targets, n, v, 1.0);
        let want = crossentropy_ref(&f64s(&logits), &targets, n, v);
        for (i, (&l, &w)) in losses.iter().zip(&want).enumerate() {
            prop_assert!(l.is_finite() && l >= 0.0, "loss {} = {}", i, l);
            // x - max is rounded to f32: half an ulp of 2e4 is ~1e-3.
            prop_assert!(relative_eq!(l as f64, w, epsilon = 4e-3, max_relative = 1e-5), "loss {}: got {}, want {}", i, l, w);
        }
        for (i, row) in d.chunks_exact(v).enumerate() {
            prop_assert!(row.iter().all(|x| x.is_finite()), "row {} not finite", i);
            let s: f64 = row.iter().map(|&x| x as f64).sum();
            prop_assert!(abs_diff_eq!(s, 0.0, epsilon = 1e-5), "dlogits row {} sums to {}", i, s);
        }
    }
}

/// Shapes that do not fit the slices (including strides whose products overflow)
/// panic before any unchecked access.
#[test]
fn gemm_rejects_shapes_that_do_not_fit() {
    let a = vec![1.0f32; 12];
    let b = vec![1.0f32; 12];
    // (m, n, k, a_rs, a_cs, b_rs, b_cs)
    let calls: [(usize, usize, usize, usize, usize, usize, usize); 5] = [
        (4, 4, 4, 4, 1, 4, 1),          // A needs 16 floats
        (2, 2, 2, usize::MAX, 1, 2, 1), // (m - 1) * a_rs overflows
        (3, 5, 3, 3, 1, 5, 1),          // B needs 3 rows of 5 = 15 floats
        (2, 5, 3, 3, 1, 1, 3),          // B^T: 5 columns of 3 = 15 floats
        (2, 2, 2, 2, 1, 1, usize::MAX), // (n - 1) * b_cs overflows
    ];
    for (m, n, k, a_rs, a_cs, b_rs, b_cs) in calls {
        let result = std::panic::catch_unwind(|| {
            let mut c = vec![0.0f32; m * n];
            gemm_on(
                cllm::isa::active(),
                m,
                n,
                k,
                &a,
                a_rs,
                a_cs,
                &b,
                b_rs,
                b_cs,
                &mut c,
                n,
                Init::Zero,
            );
        });
        assert!(
            result.is_err(),
            "m={m} n={n} k={k} a_rs={a_rs} did not panic"
        );
    }
    // The matrix added to C must cover C's shape (3 x 3 with ldc 3: 9 floats).
    let short = vec![1.0f32; 8];
    let result = std::panic::catch_unwind(|| {
        let mut c = vec![0.0f32; 9];
        gemm_then_add_on(
            cllm::isa::active(),
            3,
            3,
            4,
            &a,
            4,
            1,
            &b,
            3,
            1,
            &mut c,
            3,
            Init::Zero,
            &short,
        );
    });
    assert!(result.is_err(), "a short added matrix did not panic");
}
