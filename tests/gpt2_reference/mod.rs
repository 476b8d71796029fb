//! The plain, independent f64 GPT-2 used by the tests (loss, every parameter's
//! gradient, next-token logits; own loops, no cllm kernels; parameters read from the
//! flat buffer by their Hugging Face names), its finite-difference self-check, and
//! the f32-vs-f64 comparison with its tolerances.
//! Shared by `tests/model_reference.rs` (which proves the reference against f64
//! central differences and justifies the tolerances) and `tests/prop_threaded.rs`.
//! Must never call cllm's kernels.
#![allow(dead_code)]

use cllm::data::Rng;
use cllm::model::{GptConfig, ParamLayout};

// ---- the independent f64 reference ------------------------------------------------

/// Offsets of one block's tensors in the flat buffer (looked up by HF name).
pub struct BlockOff {
    ln1_w: usize,
    ln1_b: usize,
    attn_w: usize,
    attn_b: usize,
    aproj_w: usize,
    aproj_b: usize,
    ln2_w: usize,
    ln2_b: usize,
    fc_w: usize,
    fc_b: usize,
    mproj_w: usize,
    mproj_b: usize,
}

/// Offsets of every tensor, and the dimensions.
pub struct Reference {
    c: usize,
    nh: usize,
    v: usize,
    wte: usize,
    wpe: usize,
    blocks: Vec<BlockOff>,
    lnf_w: usize,
    lnf_b: usize,
}

/// Layer-norm intermediates of one sequence: normalized input and 1/std per row.
pub struct LnCache {
    xhat: Vec<f64>,
    rstd: Vec<f64>,
}

/// Intermediates of one block for one sequence (rows = positions).
pub struct BlockCache {
    x_in: Vec<f64>,
    ln1: LnCache,
    a1: Vec<f64>,
    qkv: Vec<f64>,
    probs: Vec<f64>,
    y: Vec<f64>,
    ln2: LnCache,
    a2: Vec<f64>,
    fc: Vec<f64>,
    gl: Vec<f64>,
}

/// Intermediates of one sequence.
pub struct SeqCache {
    blocks: Vec<BlockCache>,
    lnf: LnCache,
    af: Vec<f64>,
    probs_out: Vec<f64>,
}

pub const LN_EPS: f64 = 1e-5;

impl Reference {
    pub fn new(cfg: &GptConfig, layout: &ParamLayout) -> Self {
        let off = |name: String| {
            layout
                .get(&name)
                .unwrap_or_else(|| panic!("layout has no tensor {name}"))
                .offset
        };
        let blocks = (0..cfg.n_layer)
            .map(|i| BlockOff {
                ln1_w: off(format!("h.{i}.ln_1.weight")),
                ln1_b: off(format!("h.{i}.ln_1.bias")),
                attn_w: off(format!("h.{i}.attn.c_attn.weight")),
                attn_b: off(format!("h.{i}.attn.c_attn.bias")),
                aproj_w: off(format!("h.{i}.attn.c_proj.weight")),
                aproj_b: off(format!("h.{i}.attn.c_proj.bias")),
                ln2_w: off(format!("h.{i}.ln_2.weight")),
                ln2_b: off(format!("h.{i}.ln_2.bias")),
                fc_w: off(format!("h.{i}.mlp.c_fc.weight")),
                fc_b: off(format!("h.{i}.mlp.c_fc.bias")),
                mproj_w: off(format!("h.{i}.mlp.c_proj.weight")),
                mproj_b: off(format!("h.{i}.mlp.c_proj.bias")),
            })
            .collect();
        Reference {
            c: cfg.n_embd,
            nh: cfg.n_head,
            v: cfg.vocab_size,
            wte: off("wte.weight".into()),
            wpe: off("wpe.weight".into()),
            blocks,
            lnf_w: off("ln_f.weight".into()),
            lnf_b: off("ln_f.bias".into()),
        }
    }

    /// Sum of the losses of every sequence (`tokens.len() / seq` of them).
    pub fn total_loss(&self, p: &[f64], tokens: &[u32], targets: &[u32], seq: usize) -> f64 {
        let mut total = 0.0;
        for (tok, tgt) in tokens.chunks(seq).zip(targets.chunks(seq)) {
            let (_, rows) = self.forward(p, tok);
            for ((lse, logits), &y) in rows.iter().zip(tgt) {
                total += lse - logits[y as usize];
            }
        }
        total
    }

    /// Mean loss and gradient of the mean loss over all positions.
    pub fn loss_and_grad(
        &self,
        p: &[f64],
        tokens: &[u32],
        targets: &[u32],
        seq: usize,
    ) -> (f64, Vec<f64>) {
        let n = tokens.len() as f64;
        let mut g = vec![0.0; p.len()];
        let mut total = 0.0;
        for (tok, tgt) in tokens.chunks(seq).zip(targets.chunks(seq)) {
            let (cache, rows) = self.forward(p, tok);
            for ((lse, logits), &y) in rows.iter().zip(tgt) {
                total += lse - logits[y as usize];
            }
            self.backward(p, &mut g, tok, tgt, &cache, 1.0 / n);
        }
        (total / n, g)
    }

    /// Logits of the last position of one sequence.
    pub fn last_logits(&self, p: &[f64], tokens: &[u32]) -> Vec<f64> {
        let (_, rows) = self.forward(p, tokens);
        rows.last().expect("non-empty sequence").1.clone()
    }

    /// Forward of one sequence: the cache, and per position (logsumexp, logits).
    pub fn forward(&self, p: &[f64], tok: &[u32]) -> (SeqCache, Vec<(f64, Vec<f64>)>) {
        let (c, t, v) = (self.c, tok.len(), self.v);
        let mut x = vec![0.0; t * c];
        for (pos, &id) in tok.iter().enumerate() {
            for i in 0..c {
                x[pos * c + i] = p[self.wte + id as usize * c + i] + p[self.wpe + pos * c + i];
            }
        }
        let mut blocks = Vec::new();
        for b in &self.blocks {
            let x_in = x.clone();
            let (a1, ln1) = layernorm(&x_in, &p[b.ln1_w..], &p[b.ln1_b..], t, c);
            let qkv = linear(&a1, &p[b.attn_w..], &p[b.attn_b..], t, c, 3 * c);
            let (y, probs) = self.attention(&qkv, t);
            let proj = linear(&y, &p[b.aproj_w..], &p[b.aproj_b..], t, c, c);
            let x_mid: Vec<f64> = x_in.iter().zip(&proj).map(|(a, b)| a + b).collect();
            let (a2, ln2) = layernorm(&x_mid, &p[b.ln2_w..], &p[b.ln2_b..], t, c);
            let fc = linear(&a2, &p[b.fc_w..], &p[b.fc_b..], t, c, 4 * c);
            let gl: Vec<f64> = fc.iter().map(|&z| gelu(z)).collect();
            let proj2 = linear(&gl, &p[b.mproj_w..], &p[b.mproj_b..], t, 4 * c, c);
            x = x_mid.iter().zip(&proj2).map(|(a, b)| a + b).collect();
            blocks.push(BlockCache {
                x_in,
                ln1,
                a1,
                qkv,
                probs,
                y,
                ln2,
                a2,
                fc,
                gl,
            });
        }
        let (af, lnf) = layernorm(&x, &p[self.lnf_w..], &p[self.lnf_b..], t, c);
        let mut rows = Vec::new();
        let mut probs_out = vec![0.0; t * v];
        for pos in 0..t {
            let logits: Vec<f64> = (0..v)
                .map(|k| {
                    (0..c)
                        .map(|i| af[pos * c + i] * p[self.wte + k * c + i])
                        .sum()
                })
                .collect();
            let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
            for k in 0..v {
                probs_out[pos * v + k] = (logits[k] - m).exp() / z;
            }
            rows.push((m + z.ln(), logits));
        }
        let cache = SeqCache {
            blocks,
            lnf,
            af,
            probs_out,
        };
        (cache, rows)
    }

    /// Causal multi-head attention of one sequence: output [t, c] and probabilities
    /// [nh, t, t] (zero above the diagonal).
    pub fn attention(&self, qkv: &[f64], t: usize) -> (Vec<f64>, Vec<f64>) {
        let (c, nh) = (self.c, self.nh);
        let hs = c / nh;
        let scale = 1.0 / (hs as f64).sqrt();
        let mut y = vec![0.0; t * c];
        let mut probs = vec![0.0; nh * t * t];
        for h in 0..nh {
            for i in 0..t {
                let q = |d: usize| qkv[i * 3 * c + h * hs + d];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..hs)
                            .map(|d| q(d) * qkv[j * 3 * c + c + h * hs + d])
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for j in 0..=i {
                    let pr = (scores[j] - m).exp() / z;
                    probs[(h * t + i) * t + j] = pr;
                    for d in 0..hs {
                        y[i * c + h * hs + d] += pr * qkv[j * 3 * c + 2 * c + h * hs + d];
                    }
                }
            }
        }
        (y, probs)
    }

    /// Gradient of the attention input qkv [t, 3c] from the output gradient dy [t, c].
    pub fn attention_backward(&self, dy: &[f64], qkv: &[f64], probs: &[f64], t: usize) -> Vec<f64> {
        let (c, nh) = (self.c, self.nh);
        let hs = c / nh;
        let scale = 1.0 / (hs as f64).sqrt();
        let mut dqkv = vec![0.0; t * 3 * c];
        for h in 0..nh {
            for i in 0..t {
                let pr = |j: usize| probs[(h * t + i) * t + j];
                // d loss / d prob[i][j] and d value.
                let mut dp = vec![0.0; i + 1];
                for j in 0..=i {
                    for d in 0..hs {
                        let dyd = dy[i * c + h * hs + d];
                        dp[j] += dyd * qkv[j * 3 * c + 2 * c + h * hs + d];
                        dqkv[j * 3 * c + 2 * c + h * hs + d] += pr(j) * dyd;
                    }
                }
                // Softmax backward to the scores, then to q and k.
                let dot: f64 = (0..=i).map(|j| pr(j) * dp[j]).sum();
                for j in 0..=i {
                    let ds = pr(j) * (dp[j] - dot) * scale;
                    for d in 0..hs {
                        dqkv[i * 3 * c + h * hs + d] += ds * qkv[j * 3 * c + c + h * hs + d];
                        dqkv[j * 3 * c + c + h * hs + d] += ds * qkv[i * 3 * c + h * hs + d];
                    }
                }
            }
        }
        dqkv
    }

    /// Accumulates into `g` the gradient of `scale * (sum of this sequence's losses)`.
    pub fn backward(
        &self,
        p: &[f64],
        g: &mut [f64],
        tok: &[u32],
        tgt: &[u32],
        cache: &SeqCache,
        scale: f64,
    ) {
        let (c, t, v) = (self.c, tok.len(), self.v);
        // Cross-entropy and tied head.
        let mut daf = vec![0.0; t * c];
        for pos in 0..t {
            for k in 0..v {
                let onehot = if tgt[pos] as usize == k { 1.0 } else { 0.0 };
                let dl = (cache.probs_out[pos * v + k] - onehot) * scale;
                for i in 0..c {
                    daf[pos * c + i] += dl * p[self.wte + k * c + i];
                    g[self.wte + k * c + i] += dl * cache.af[pos * c + i];
                }
            }
        }
        let mut dx = layernorm_backward(&daf, &cache.lnf, p, g, self.lnf_w, self.lnf_b, t, c);
        for (b, bc) in self.blocks.iter().zip(&cache.blocks).rev() {
            // x_out = x_mid + mlp(x_mid)
            let dgl = linear_backward(&dx, &bc.gl, p, g, b.mproj_w, b.mproj_b, t, 4 * c, c);
            let dfc: Vec<f64> = dgl
                .iter()
                .zip(&bc.fc)
                .map(|(d, &z)| d * gelu_grad(z))
                .collect();
            let da2 = linear_backward(&dfc, &bc.a2, p, g, b.fc_w, b.fc_b, t, c, 4 * c);
            let dmid = layernorm_backward(&da2, &bc.ln2, p, g, b.ln2_w, b.ln2_b, t, c);
            let dx_mid: Vec<f64> = dx.iter().zip(&dmid).map(|(a, b)| a + b).collect();
            // x_mid = x_in + attn(x_in)
            let dy = linear_backward(&dx_mid, &bc.y, p, g, b.aproj_w, b.aproj_b, t, c, c);
            let dqkv = self.attention_backward(&dy, &bc.qkv, &bc.probs, t);
            let da1 = linear_backward(&dqkv, &bc.a1, p, g, b.attn_w, b.attn_b, t, c, 3 * c);
            let din = layernorm_backward(&da1, &bc.ln1, p, g, b.ln1_w, b.ln1_b, t, c);
            debug_assert_eq!(bc.x_in.len(), din.len());
            dx = dx_mid.iter().zip(&din).map(|(a, b)| a + b).collect();
        }
        for (pos, &id) in tok.iter().enumerate() {
            for i in 0..c {
                g[self.wte + id as usize * c + i] += dx[pos * c + i];
                g[self.wpe + pos * c + i] += dx[pos * c + i];
            }
        }
    }
}

/// `out[r, j] = sum_i inp[r, i] * w[i, j] + b[j]` (w is [ni, no], row-major).
pub fn linear(inp: &[f64], w: &[f64], b: &[f64], rows: usize, ni: usize, no: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * no];
    for r in 0..rows {
        for j in 0..no {
            let mut s = b[j];
            for i in 0..ni {
                s += inp[r * ni + i] * w[i * no + j];
            }
            out[r * no + j] = s;
        }
    }
    out
}

/// Backward of [`linear`]: accumulates dW, db into `g` at `w_off`, `b_off`; returns din.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dout: &[f64],
    inp: &[f64],
    p: &[f64],
    g: &mut [f64],
    w_off: usize,
    b_off: usize,
    rows: usize,
    ni: usize,
    no: usize,
) -> Vec<f64> {
    let mut din = vec![0.0; rows * ni];
    for r in 0..rows {
        for j in 0..no {
            let d = dout[r * no + j];
            g[b_off + j] += d;
            for i in 0..ni {
                din[r * ni + i] += d * p[w_off + i * no + j];
                g[w_off + i * no + j] += d * inp[r * ni + i];
            }
        }
    }
    din
}

/// Row-wise layer norm with gain `w` and bias `b` (eps 1e-5, biased variance).
pub fn layernorm(x: &[f64], w: &[f64], b: &[f64], rows: usize, c: usize) -> (Vec<f64>, LnCache) {
    let mut out = vec![0.0; rows * c];
    let mut xhat = vec![0.0; rows * c];
    let mut rstd = vec![0.0; rows];
    for r in 0..rows {
        let row = &x[r * c..(r + 1) * c];
        let mean = row.iter().sum::<f64>() / c as f64;
        let var = row.iter().map(|z| (z - mean) * (z - mean)).sum::<f64>() / c as f64;
        rstd[r] = 1.0 / (var + LN_EPS).sqrt();
        for i in 0..c {
            xhat[r * c + i] = (row[i] - mean) * rstd[r];
            out[r * c + i] = xhat[r * c + i] * w[i] + b[i];
        }
    }
    (out, LnCache { xhat, rstd })
}

/// Backward of [`layernorm`]: accumulates dw, db into `g`; returns dx.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    dout: &[f64],
    cache: &LnCache,
    p: &[f64],
    g: &mut [f64],
    w_off: usize,
    b_off: usize,
    rows: usize,
    c: usize,
) -> Vec<f64> {
    let mut dx = vec![0.0; rows * c];
    for r in 0..rows {
        let xh = &cache.xhat[r * c..(r + 1) * c];
        let dy = &dout[r * c..(r + 1) * c];
        let dxhat: Vec<f64> = (0..c).map(|i| dy[i] * p[w_off + i]).collect();
        for i in 0..c {
            g[w_off + i] += dy[i] * xh[i];
            g[b_off + i] += dy[i];
        }
        let m1 = dxhat.iter().sum::<f64>() / c as f64;
        let m2 = dxhat.iter().zip(xh).map(|(a, b)| a * b).sum::<f64>() / c as f64;
        for i in 0..c {
            dx[r * c + i] = cache.rstd[r] * (dxhat[i] - m1 - xh[i] * m2);
        }
    }
    dx
}

pub const GELU_K: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)
pub const GELU_A: f64 = 0.044715;

/// GPT-2's gelu_new (tanh approximation).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + (GELU_K * (x + GELU_A * x * x * x)).tanh())
}

/// Derivative of [`gelu`].
pub fn gelu_grad(x: f64) -> f64 {
    let th = (GELU_K * (x + GELU_A * x * x * x)).tanh();
    0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_K * (1.0 + 3.0 * GELU_A * x * x)
}

// ---- test inputs --------------------------------------------------------------------

/// Random parameters (not GPT-2's init): matrices N(0, 0.4), biases N(0, 0.2),
/// layer-norm gains 1 + N(0, 0.3) and biases N(0, 0.3), so every gradient, including
/// the layer norms' and the biases', is exercised away from the special values 1/0.
pub fn random_params(layout: &ParamLayout, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut p = vec![0.0f32; layout.len()];
    for t in layout.tensors() {
        let is_ln = t.name.contains("ln_");
        let is_embedding = t.name.starts_with("wte") || t.name.starts_with("wpe");
        let (mean, std) = match (t.is_matrix(), is_ln, t.name.ends_with(".weight")) {
            (true, _, _) if is_embedding => (0.0, 1.0),
            (true, _, _) => (0.0, 0.4),
            (false, true, true) => (1.0, 0.3),
            (false, true, false) => (0.0, 0.3),
            (false, false, _) => (0.0, 0.2),
        };
        for x in &mut p[t.range()] {
            *x = (mean + std * rng.normal()) as f32;
        }
    }
    p
}

pub fn random_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab) as u32).collect()
}

pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

// ---- comparisons --------------------------------------------------------------------

/// Tolerances for cllm's f32 results against the f64 reference.
///
/// f32's unit roundoff is 6e-8. These models are at most two blocks deep with inner
/// dimensions of at most 32, so on well-conditioned inputs the f32 forward/backward
/// is accurate to a relative error of order 1e-6 (the fixed case below: 3e-7 worst
/// per-tensor relative L2 error). A per-tensor relative L2 error of 1e-3 (and a max
/// abs error of 1e-3 of the tensor's largest entry) leaves a wide margin, while any
/// wrong index, missing term, transposed weight or wrong scale gives an error of
/// order 1 (a single entry off by 1% is caught, see
/// `gradient_comparison_detects_a_one_percent_error`).
///
/// Roundoff is relative to the magnitude of the terms summed, not to the result, so
/// a tensor whose exact gradient is (nearly) zero (q/k columns when seq = 1, position
/// rows past seq) or nearly cancels gets an absolute allowance of `GRAD_ABS` times the
/// gradient scale: the largest reference gradient anywhere, or `1/N` (the scale of
/// d loss / d logits; when the model is nearly certain, `p - 1` in f32 is pure
/// roundoff of that size) if larger. Per tensor: `||g - r||_2 <= 1e-3 ||r||_2 +
/// floor * sqrt(numel)` and `max|g - r| <= 1e-3 max|r| + floor`. In 90,000 random
/// cases (`CLLM_MODEL_REF_CASES=N` runs N) nothing failed; the worst relative error of a
/// tensor holding a sizeable share of the gradient was 3.8e-3, in a width-3 model
/// with a layer-norm row of variance close to eps, where the allowance applied.
pub const GRAD_REL_L2: f64 = 1e-3;
pub const GRAD_ABS: f64 = 1e-4;
/// The loss and the sampling logits: error relative to max(1, |reference|) (for the
/// logits, the largest reference logit). Over 20,000 random cases the loss error had
/// median 4e-8 and maximum 5e-6, the logits' median 1e-7 and maximum 1e-5 (again in
/// ill-conditioned width-3 models); 1e-4 is 10x above the worst seen and still
/// 1000x below the effect of a wrong position, row or term.
pub const LOSS_REL: f64 = 1e-4;
pub const LOGIT_REL: f64 = 1e-4;

/// `error <= bound`, false for a NaN error (so a NaN never passes a check).
pub fn within(error: f64, bound: f64) -> bool {
    error <= bound
}

/// Compares every tensor's gradient; returns the worst relative L2 error seen.
pub fn compare_grads(
    layout: &ParamLayout,
    got: &[f32],
    want: &[f64],
    n_positions: usize,
) -> Result<f64, String> {
    let gmax = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let floor = GRAD_ABS * gmax.max(1.0 / n_positions as f64);
    let mut worst = 0.0f64;
    for t in layout.tensors() {
        let (g, w) = (&got[t.range()], &want[t.range()]);
        let mut err2 = 0.0;
        let mut ref2 = 0.0;
        let mut max_abs = 0.0f64;
        for (&a, &b) in g.iter().zip(w) {
            let e = f64::from(a) - b;
            err2 += e * e;
            ref2 += b * b;
            max_abs = max_abs.max(e.abs());
        }
        let (err, norm) = (err2.sqrt(), ref2.sqrt());
        if !within(err, GRAD_REL_L2 * norm + floor * (t.numel() as f64).sqrt()) {
            return Err(format!(
                "{}: L2 error {err:e} vs reference norm {norm:e} (floor {floor:e})",
                t.name
            ));
        }
        let wmax = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if !within(max_abs, GRAD_REL_L2 * wmax + floor) {
            return Err(format!(
                "{}: max abs error {max_abs:e} vs reference max {wmax:e} (floor {floor:e})",
                t.name
            ));
        }
        if norm > 0.0 {
            worst = worst.max(err / norm);
        }
    }
    Ok(worst)
}

/// Checks the reference's hand-written gradient against f64 central differences of
/// the reference's own loss on three elements of every tensor (first, last, random).
#[allow(clippy::too_many_arguments)]
pub fn check_reference_by_differences(
    r: &Reference,
    layout: &ParamLayout,
    p: &[f64],
    grad: &[f64],
    tokens: &[u32],
    targets: &[u32],
    seq: usize,
    rng: &mut Rng,
) -> Result<(), String> {
    let n = tokens.len() as f64;
    // Fourth-order central differences in f64: with step h the truncation error is
    // O(h^4 f^(5)) and the cancellation error ~ 1e-16 * loss / h. Smooth cases: with
    // h = 1e-4 both are below 1e-11, so the tolerance 1e-6 + 1e-4 |g| is far above
    // them and far below any formula error (which is of the order of g itself).
    // Near a layer norm whose input row has variance close to eps the loss has large
    // high derivatives; the estimate at h/2 then differs from the one at h, and that
    // difference (a bound on the truncation error of the h/2 estimate, which is 16
    // times smaller than the h one's) is added to the tolerance.
    let h = 1e-4;
    let mut q = p.to_vec();
    let mut loss_at = |i: usize, x: f64| {
        q[i] = x;
        let l = r.total_loss(&q, tokens, targets, seq) / n;
        q[i] = p[i];
        l
    };
    let mut fd = |i: usize, h: f64| {
        let d1 = loss_at(i, p[i] + h) - loss_at(i, p[i] - h);
        let d2 = loss_at(i, p[i] + 2.0 * h) - loss_at(i, p[i] - 2.0 * h);
        (8.0 * d1 - d2) / (12.0 * h)
    };
    for t in layout.tensors() {
        let r0 = t.range();
        for i in [r0.start, r0.end - 1, r0.start + rng.below(t.numel())] {
            let (coarse, fine) = (fd(i, h), fd(i, h / 2.0));
            let tol = 1e-6 + 1e-4 * grad[i].abs() + (coarse - fine).abs();
            if !within((fine - grad[i]).abs(), tol) {
                return Err(format!(
                    "reference backward disagrees with central differences at {}[{}]: {} vs {fine} (step h: {coarse})",
                    t.name,
                    i - r0.start,
                    grad[i]
                ));
            }
        }
    }
    Ok(())
}
