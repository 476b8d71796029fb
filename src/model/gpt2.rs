//! Owns the GPT-2 forward and backward passes: the composition of the kernels over
//! the flat parameter buffer ([`super::layout`]) and a [`TrainingContext`].
//! Must never implement numerics itself (the kernels do), never use threads or
//! atomics, and never read anything but its arguments: the same inputs give the
//! same bits.
//!
//! # Forward (`N = B * T` positions)
//! `x = wte[tokens] + wpe[0..T]`; per block:
//! `x = x + c_proj(attn(c_attn(ln_1(x))))`, `x = x + mlp.c_proj(gelu(c_fc(ln_2(x))))`;
//! then `ln_f`, logits `= ln_f(x) @ wte^T` (tied head), cross-entropy per position.
//! The mean loss is the f64 sum of the per-position losses in position order, divided
//! by `N`.
//!
//! # Backward
//! The gradient buffer is zeroed, then every kernel accumulates into it. d loss /
//! d logits carries the factor `1/N` (the mean). The residual stream's gradient is one
//! buffer `dres`: a residual add passes it unchanged to both of its inputs, so the
//! branch's backward reads `dres` as its output gradient and the layer norm that
//! starts the branch adds its input gradient into `dres`, which then holds the
//! gradient of the block's input (this is exactly `residual_backward` into zeroed
//! buffers, without the copies).

use super::config::{GptConfig, ModelError};
use super::context::TrainingContext;
use super::kernels::{
    attention_backward, attention_forward, crossentropy_forward, crossentropy_forward_backward,
    encoder_backward, encoder_forward, gelu_backward, gelu_forward, gelu_recompute,
    layernorm_backward, layernorm_forward, lm_head_backward_split, lm_head_forward,
    lm_head_forward_split, matmul_backward_split, matmul_forward_residual_split,
    matmul_forward_split, RowSplit, Serial,
};
use core::ops::Range;

/// One micro-batch: `tokens`/`targets` are `[batch * seq]` (the context's shape),
/// row-major by sequence, each id below `vocab_size`; all of this is checked before
/// any work. `grads` (`n_params` floats) is OVERWRITTEN with d(mean loss)/d(params).
/// Returns the mean loss over the `batch * seq` positions (summed in f64, in order).
pub fn forward_backward(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    targets: &[u32],
    grads: &mut [f32],
) -> Result<f32, ModelError> {
    forward_backward_split(cfg, params, ctx, tokens, targets, grads, &Serial)
}

/// [`forward_backward`] with every matmul's output rows split over `split`'s parts
/// (intra-batch parallelism): the same bits, computed by more threads.
pub fn forward_backward_split(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    targets: &[u32],
    grads: &mut [f32],
    split: &dyn RowSplit,
) -> Result<f32, ModelError> {
    check_call(cfg, params, ctx)?;
    let n = ctx.batch * ctx.seq;
    check_tokens("tokens", tokens, n, cfg.vocab_size)?;
    check_tokens("targets", targets, n, cfg.vocab_size)?;
    check_len("grads", grads.len(), ctx.layout.len())?;

    let (b, t, v) = (ctx.batch, ctx.seq, cfg.vocab_size);
    forward(cfg, params, ctx, tokens, b, t, split);
    let r = ctx.layout.ranges();
    let c = cfg.n_embd;
    let wte = &params[r.wte.clone()];
    lm_head_forward_split(split, &mut ctx.logits, &ctx.lnf, wte, n, c, v);
    let dloss = 1.0 / n as f32;
    crossentropy_forward_backward(&mut ctx.logits, &mut ctx.losses, targets, n, v, dloss);
    let loss = mean_loss(&ctx.losses);
    backward(cfg, params, ctx, tokens, grads, split);
    Ok(loss)
}

/// Forward only (validation): the mean loss of one micro-batch, the same number
/// [`forward_backward`] returns for the same inputs. Same checks as there.
pub fn forward_loss(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    targets: &[u32],
) -> Result<f32, ModelError> {
    check_call(cfg, params, ctx)?;
    let n = ctx.batch * ctx.seq;
    check_tokens("tokens", tokens, n, cfg.vocab_size)?;
    check_tokens("targets", targets, n, cfg.vocab_size)?;

    let (b, t, v) = (ctx.batch, ctx.seq, cfg.vocab_size);
    forward(cfg, params, ctx, tokens, b, t, &Serial);
    let r = ctx.layout.ranges();
    lm_head_forward(
        &mut ctx.logits,
        &ctx.lnf,
        &params[r.wte.clone()],
        n,
        cfg.n_embd,
        v,
    );
    crossentropy_forward(&ctx.logits, &mut ctx.losses, targets, n, v);
    Ok(mean_loss(&ctx.losses))
}

/// The logits of the token following `tokens` (one sequence, `1..=ctx.seq()` ids,
/// each below `vocab_size`), for sampling: writes `vocab_size` floats into `logits`.
pub fn next_token_logits(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    logits: &mut [f32],
) -> Result<(), ModelError> {
    check_call(cfg, params, ctx)?;
    let len = tokens.len();
    if len == 0 {
        return Err(ModelError::Zero {
            field: "tokens length",
        });
    }
    if len > ctx.seq {
        return Err(ModelError::SequenceTooLong {
            seq: len,
            max: ctx.seq,
            limit: "the context's seq",
        });
    }
    check_tokens("tokens", tokens, len, cfg.vocab_size)?;
    check_len("logits", logits.len(), cfg.vocab_size)?;

    forward(cfg, params, ctx, tokens, 1, len, &Serial);
    let c = cfg.n_embd;
    let last = &ctx.lnf[(len - 1) * c..len * c];
    let wte = &params[ctx.layout.ranges().wte.clone()];
    lm_head_forward(logits, last, wte, 1, c, cfg.vocab_size);
    Ok(())
}

/// The context matches the config and the parameters have the layout's length.
fn check_call(cfg: &GptConfig, params: &[f32], ctx: &TrainingContext) -> Result<(), ModelError> {
    if ctx.cfg != *cfg {
        return Err(ModelError::ContextMismatch {
            built: ctx.cfg,
            called: *cfg,
        });
    }
    check_len("params", params.len(), ctx.layout.len())
}

fn check_len(what: &'static str, got: usize, want: usize) -> Result<(), ModelError> {
    if got == want {
        Ok(())
    } else {
        Err(ModelError::Length { what, got, want })
    }
}

/// `ids` has `n` elements, each below `vocab_size`.
fn check_tokens(
    what: &'static str,
    ids: &[u32],
    n: usize,
    vocab_size: usize,
) -> Result<(), ModelError> {
    check_len(what, ids.len(), n)?;
    match ids.iter().position(|&x| x as usize >= vocab_size) {
        None => Ok(()),
        Some(index) => Err(ModelError::TokenOutOfRange {
            what,
            index,
            value: ids[index],
            vocab_size,
        }),
    }
}

/// Mean of the per-position losses: f64 sum in position order, divided by the count.
fn mean_loss(losses: &[f32]) -> f32 {
    let mut sum = 0.0f64;
    for &l in losses {
        sum += f64::from(l);
    }
    (sum / losses.len() as f64) as f32
}

/// The forward pass of `b` sequences of `t` tokens, up to and including `ln_f` (its
/// output is `ctx.lnf[..b * t * C]`). Uses prefixes of the context's buffers; the
/// caller has checked every length and id.
fn forward(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    b: usize,
    t: usize,
    split: &dyn RowSplit,
) {
    let (c, nh) = (cfg.n_embd, cfg.n_head);
    let n = b * t;
    let (nc, att_len) = (n * c, b * nh * t * t);
    let r = ctx.layout.ranges();
    let p = |range: &Range<usize>| &params[range.clone()];
    let encoded = &mut ctx.encoded[..nc];
    encoder_forward(encoded, tokens, p(&r.wte), p(&r.wpe), b, t, c);
    for (l, w) in r.blocks.iter().enumerate() {
        let (done, rest) = ctx.blocks.split_at_mut(l);
        let a = &mut rest[0];
        let residual: &[f32] = match done.last() {
            None => &ctx.encoded[..nc],
            Some(prev) => &prev.residual3[..nc],
        };
        let (ln1, ln1_mean, ln1_rstd) =
            (&mut a.ln1[..nc], &mut a.ln1_mean[..n], &mut a.ln1_rstd[..n]);
        layernorm_forward(
            ln1,
            ln1_mean,
            ln1_rstd,
            residual,
            p(&w.ln_1_w),
            p(&w.ln_1_b),
            n,
            c,
        );
        let qkv = &mut a.qkv[..3 * nc];
        matmul_forward_split(
            split,
            qkv,
            ln1,
            p(&w.c_attn_w),
            Some(p(&w.c_attn_b)),
            n,
            c,
            3 * c,
        );
        let (atty, att) = (&mut a.atty[..nc], &mut a.att[..att_len]);
        attention_forward(atty, att, qkv, b, t, c, nh);
        // residual2 = residual + c_proj(atty), the add fused into the matmul's store.
        let residual2 = &mut a.residual2[..nc];
        matmul_forward_residual_split(
            split,
            residual2,
            residual,
            atty,
            p(&w.attn_proj_w),
            Some(p(&w.attn_proj_b)),
            n,
            c,
            c,
        );
        let (ln2, ln2_mean, ln2_rstd) =
            (&mut a.ln2[..nc], &mut a.ln2_mean[..n], &mut a.ln2_rstd[..n]);
        layernorm_forward(
            ln2,
            ln2_mean,
            ln2_rstd,
            residual2,
            p(&w.ln_2_w),
            p(&w.ln_2_b),
            n,
            c,
        );
        let fch = &mut a.fch[..4 * nc];
        matmul_forward_split(
            split,
            fch,
            ln2,
            p(&w.c_fc_w),
            Some(p(&w.c_fc_b)),
            n,
            c,
            4 * c,
        );
        // The GELU output goes to backward scratch (`dfch`, free during the forward);
        // the block keeps `fch` and the sigmoid factor.
        let fch_gelu = &mut ctx.dfch[..4 * nc];
        gelu_forward(fch_gelu, &mut a.gelu_s[..4 * nc], fch);
        matmul_forward_residual_split(
            split,
            &mut a.residual3[..nc],
            residual2,
            fch_gelu,
            p(&w.mlp_proj_w),
            Some(p(&w.mlp_proj_b)),
            n,
            4 * c,
            c,
        );
    }
    let last: &[f32] = match ctx.blocks.last() {
        None => &ctx.encoded[..nc],
        Some(a) => &a.residual3[..nc],
    };
    layernorm_forward(
        &mut ctx.lnf[..nc],
        &mut ctx.lnf_mean[..n],
        &mut ctx.lnf_rstd[..n],
        last,
        p(&r.ln_f_w),
        p(&r.ln_f_b),
        n,
        c,
    );
}

/// The backward pass of the full context shape, after [`forward`] and the fused
/// cross-entropy left d loss / d logits in `ctx.logits`. Overwrites all of `grads`:
/// the matmul and LM-head backwards overwrite the weights' and biases' gradients
/// (`wte`'s first, before the encoder adds to it); the layer norms' and `wpe`'s,
/// which their kernels accumulate, are zeroed here first ([`zero_accumulated`]).
/// No pass zeroes the whole buffer.
fn backward(
    cfg: &GptConfig,
    params: &[f32],
    ctx: &mut TrainingContext,
    tokens: &[u32],
    grads: &mut [f32],
    split: &dyn RowSplit,
) {
    let (b, t) = (ctx.batch, ctx.seq);
    let (c, nh, v) = (cfg.n_embd, cfg.n_head, cfg.vocab_size);
    let n = b * t;
    let r = ctx.layout.ranges();
    let p = |range: &Range<usize>| &params[range.clone()];
    zero_accumulated(grads, r);
    let TrainingContext {
        encoded,
        blocks,
        lnf,
        lnf_mean,
        lnf_rstd,
        logits: dlogits,
        dres,
        dln,
        dqkv,
        datty,
        datt,
        dfch,
        dfch_gelu,
        ..
    } = ctx;

    // Head: logits = lnf @ wte^T, lnf = ln_f(x_L). (The matmul, GELU and attention
    // backwards overwrite their input gradients, so only `dres` is zeroed.)
    lm_head_backward_split(
        split,
        dln,
        &mut grads[r.wte.clone()],
        dlogits,
        lnf,
        p(&r.wte),
        n,
        c,
        v,
    );
    let x_last: &[f32] = match blocks.last() {
        None => encoded,
        Some(a) => &a.residual3,
    };
    dres.fill(0.0);
    let (dw, db) = two_mut(grads, &r.ln_f_w, &r.ln_f_b);
    layernorm_backward(
        dres,
        dw,
        db,
        dln,
        x_last,
        p(&r.ln_f_w),
        lnf_mean,
        lnf_rstd,
        n,
        c,
    );

    for (l, w) in r.blocks.iter().enumerate().rev() {
        let a = &blocks[l];
        let residual: &[f32] = match l.checked_sub(1) {
            None => encoded,
            Some(prev) => &blocks[prev].residual3,
        };
        // dres = d loss / d residual3 = d loss / d (mlp.c_proj output). The c_proj
        // input (the GELU output) is recomputed into `dfch` first, bitwise as in the
        // forward; `gelu_backward` then overwrites `dfch` with its own gradient.
        gelu_recompute(dfch, &a.fch, &a.gelu_s);
        let (dw, db) = two_mut(grads, &w.mlp_proj_w, &w.mlp_proj_b);
        matmul_backward_split(
            split,
            dfch_gelu,
            dw,
            Some(db),
            dres,
            dfch,
            p(&w.mlp_proj_w),
            n,
            4 * c,
            c,
        );
        gelu_backward(dfch, &a.fch, &a.gelu_s, dfch_gelu);
        let (dw, db) = two_mut(grads, &w.c_fc_w, &w.c_fc_b);
        matmul_backward_split(
            split,
            dln,
            dw,
            Some(db),
            dfch,
            &a.ln2,
            p(&w.c_fc_w),
            n,
            c,
            4 * c,
        );
        let (dw, db) = two_mut(grads, &w.ln_2_w, &w.ln_2_b);
        layernorm_backward(
            dres,
            dw,
            db,
            dln,
            &a.residual2,
            p(&w.ln_2_w),
            &a.ln2_mean,
            &a.ln2_rstd,
            n,
            c,
        );
        // dres = d loss / d residual2 = d loss / d (attn.c_proj output).
        let (dw, db) = two_mut(grads, &w.attn_proj_w, &w.attn_proj_b);
        matmul_backward_split(
            split,
            datty,
            dw,
            Some(db),
            dres,
            &a.atty,
            p(&w.attn_proj_w),
            n,
            c,
            c,
        );
        // (datt is scratch: the kernel ignores its contents on entry.)
        attention_backward(dqkv, datt, datty, &a.qkv, &a.att, b, t, c, nh);
        let (dw, db) = two_mut(grads, &w.c_attn_w, &w.c_attn_b);
        matmul_backward_split(
            split,
            dln,
            dw,
            Some(db),
            dqkv,
            &a.ln1,
            p(&w.c_attn_w),
            n,
            c,
            3 * c,
        );
        let (dw, db) = two_mut(grads, &w.ln_1_w, &w.ln_1_b);
        layernorm_backward(
            dres,
            dw,
            db,
            dln,
            residual,
            p(&w.ln_1_w),
            &a.ln1_mean,
            &a.ln1_rstd,
            n,
            c,
        );
        // dres = d loss / d (this block's input).
    }

    let (dwte, dwpe) = two_mut(grads, &r.wte, &r.wpe);
    encoder_backward(dwte, dwpe, dres, tokens, b, t, c);
}

/// Zeroes the gradients that [`backward`]'s kernels accumulate into rather than
/// overwrite: `wpe` and every layer norm's weight and bias (a few `C`-sized vectors
/// and one `[T, C]` matrix; every other float of `grads` is overwritten).
fn zero_accumulated(grads: &mut [f32], r: &crate::model::layout::ParamRanges) {
    let norms = r
        .blocks
        .iter()
        .flat_map(|w| [&w.ln_1_w, &w.ln_1_b, &w.ln_2_w, &w.ln_2_b]);
    for range in [&r.wpe, &r.ln_f_w, &r.ln_f_b].into_iter().chain(norms) {
        grads[range.clone()].fill(0.0);
    }
}

/// Disjoint mutable views of two tensors of the flat buffer; `first` ends at or
/// before `second` starts (the layout's order, an internal invariant).
fn two_mut<'a>(
    buf: &'a mut [f32],
    first: &Range<usize>,
    second: &Range<usize>,
) -> (&'a mut [f32], &'a mut [f32]) {
    debug_assert!(first.end <= second.start);
    let (lo, hi) = buf.split_at_mut(second.start);
    (&mut lo[first.clone()], &mut hi[..second.len()])
}
