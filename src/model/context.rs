//! Owns [`TrainingContext`]: every buffer a forward/backward pass writes (activations
//! and activation gradients), allocated once per worker and reused step after step.
//! Must never hold parameters or parameter gradients (the caller owns those), and
//! never be shared between threads while a pass runs (it is plain `&mut` state).
//!
//! # Buffers (`N = batch * seq` positions, `C` width, `NH` heads, `V` vocabulary)
//! * `encoded [N,C]`: token + position embeddings (the residual stream entering block 0).
//! * per block: `ln1 [N,C]` (+ mean, rstd `[N]`), `qkv [N,3C]`, `atty [N,C]` (attention
//!   output before c_proj), `att [batch,NH,seq,seq]` (softmax probabilities),
//!   `residual2 [N,C]`, `ln2 [N,C]` (+ mean, rstd), `fch [N,4C]`, `gelu_s [N,4C]` (the
//!   GELU's sigmoid factor: `gelu(fch) = fch * gelu_s`, so the backward needs no
//!   exponential), `residual3 [N,C]` (the block's output). Each c_proj writes its
//!   residual sum (`residual2`, `residual3`) directly: the add is fused into the
//!   matmul's store, so the projection itself is never stored.
//! * `lnf [N,C]` (+ mean, rstd), `logits [N,V]` (overwritten in place by d loss /
//!   d logits), `losses [N]`.
//! * Gradient scratch, reused by every block: `dres [N,C]` (d loss / d the residual
//!   stream at the current point), `dln [N,C]`, `dqkv [N,3C]`, `datty [N,C]`,
//!   `datt [batch,NH,seq,seq]`, `dfch [N,4C]`, `dfch_gelu [N,4C]`. During the forward
//!   pass `dfch` holds each block's GELU output (the input of mlp.c_proj); the
//!   backward pass recomputes it there from `fch * gelu_s`, bitwise.
//!
//! Shorter runs (fewer positions, as in sampling) use prefixes of each buffer.

use super::config::{GptConfig, ModelError};
use super::layout::ParamLayout;

/// The activations of one transformer block.
#[derive(Debug)]
pub(crate) struct BlockActs {
    pub(crate) ln1: Vec<f32>,
    pub(crate) ln1_mean: Vec<f32>,
    pub(crate) ln1_rstd: Vec<f32>,
    pub(crate) qkv: Vec<f32>,
    pub(crate) atty: Vec<f32>,
    pub(crate) att: Vec<f32>,
    pub(crate) residual2: Vec<f32>,
    pub(crate) ln2: Vec<f32>,
    pub(crate) ln2_mean: Vec<f32>,
    pub(crate) ln2_rstd: Vec<f32>,
    pub(crate) fch: Vec<f32>,
    pub(crate) gelu_s: Vec<f32>,
    pub(crate) residual3: Vec<f32>,
}

/// Everything a forward/backward pass of one micro-batch writes (see the module doc).
/// Build one per worker with [`TrainingContext::new`] and pass it to every call of
/// [`super::gpt2::forward_backward`], [`super::gpt2::forward_loss`] and
/// [`super::gpt2::next_token_logits`] for the same config.
#[derive(Debug)]
pub struct TrainingContext {
    pub(crate) cfg: GptConfig,
    pub(crate) layout: ParamLayout,
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) encoded: Vec<f32>,
    pub(crate) blocks: Vec<BlockActs>,
    pub(crate) lnf: Vec<f32>,
    pub(crate) lnf_mean: Vec<f32>,
    pub(crate) lnf_rstd: Vec<f32>,
    pub(crate) logits: Vec<f32>,
    pub(crate) losses: Vec<f32>,
    pub(crate) dres: Vec<f32>,
    pub(crate) dln: Vec<f32>,
    pub(crate) dqkv: Vec<f32>,
    pub(crate) datty: Vec<f32>,
    pub(crate) datt: Vec<f32>,
    pub(crate) dfch: Vec<f32>,
    pub(crate) dfch_gelu: Vec<f32>,
    bytes: usize,
}

impl TrainingContext {
    /// Buffers for micro-batches of `batch` sequences of `seq` tokens of model `cfg`.
    /// Refuses an invalid config, a zero `batch` or `seq`, `seq > cfg.n_positions`,
    /// and sizes whose memory cannot be counted or allocated.
    pub fn new(cfg: &GptConfig, batch: usize, seq: usize) -> Result<Self, ModelError> {
        cfg.validate()?;
        if batch == 0 {
            return Err(ModelError::Zero { field: "batch" });
        }
        if seq == 0 {
            return Err(ModelError::Zero { field: "seq" });
        }
        if seq > cfg.n_positions {
            return Err(ModelError::SequenceTooLong {
                seq,
                max: cfg.n_positions,
                limit: "n_positions",
            });
        }
        let sizes = Sizes::new(cfg, batch, seq).ok_or(ModelError::OutOfMemory { bytes: None })?;
        let bytes = sizes
            .total_floats(cfg.n_layer)
            .and_then(|f| f.checked_mul(core::mem::size_of::<f32>()))
            .ok_or(ModelError::OutOfMemory { bytes: None })?;
        if bytes > isize::MAX as usize {
            return Err(ModelError::OutOfMemory { bytes: Some(bytes) });
        }
        let s = &sizes;
        let mut blocks = Vec::new();
        blocks
            .try_reserve_exact(cfg.n_layer)
            .map_err(|_| ModelError::OutOfMemory { bytes: Some(bytes) })?;
        for _ in 0..cfg.n_layer {
            blocks.push(BlockActs {
                ln1: alloc(s.nc, bytes)?,
                ln1_mean: alloc(s.n, bytes)?,
                ln1_rstd: alloc(s.n, bytes)?,
                qkv: alloc(s.nc3, bytes)?,
                atty: alloc(s.nc, bytes)?,
                att: alloc(s.att, bytes)?,
                residual2: alloc(s.nc, bytes)?,
                ln2: alloc(s.nc, bytes)?,
                ln2_mean: alloc(s.n, bytes)?,
                ln2_rstd: alloc(s.n, bytes)?,
                fch: alloc(s.nc4, bytes)?,
                gelu_s: alloc(s.nc4, bytes)?,
                residual3: alloc(s.nc, bytes)?,
            });
        }
        Ok(TrainingContext {
            cfg: *cfg,
            layout: ParamLayout::new(cfg),
            batch,
            seq,
            encoded: alloc(s.nc, bytes)?,
            blocks,
            lnf: alloc(s.nc, bytes)?,
            lnf_mean: alloc(s.n, bytes)?,
            lnf_rstd: alloc(s.n, bytes)?,
            logits: alloc(s.nv, bytes)?,
            losses: alloc(s.n, bytes)?,
            dres: alloc(s.nc, bytes)?,
            dln: alloc(s.nc, bytes)?,
            dqkv: alloc(s.nc3, bytes)?,
            datty: alloc(s.nc, bytes)?,
            datt: alloc(s.att, bytes)?,
            dfch: alloc(s.nc4, bytes)?,
            dfch_gelu: alloc(s.nc4, bytes)?,
            bytes,
        })
    }

    /// Sequences per micro-batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Tokens per sequence.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The config this context was built for.
    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The parameter layout of that config.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Bytes of the float buffers it owns (activations and activation gradients;
    /// the small bookkeeping structures are not counted).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Buffer sizes in floats, all checked against overflow.
struct Sizes {
    n: usize,
    nc: usize,
    nc3: usize,
    nc4: usize,
    nv: usize,
    att: usize,
}

impl Sizes {
    fn new(cfg: &GptConfig, batch: usize, seq: usize) -> Option<Self> {
        let n = batch.checked_mul(seq)?;
        let nc = n.checked_mul(cfg.n_embd)?;
        Some(Sizes {
            n,
            nc,
            nc3: nc.checked_mul(3)?,
            nc4: nc.checked_mul(4)?,
            nv: n.checked_mul(cfg.vocab_size)?,
            att: n.checked_mul(cfg.n_head)?.checked_mul(seq)?,
        })
    }

    /// Floats of every buffer of the module doc, for `n_layer` blocks.
    fn total_floats(&self, n_layer: usize) -> Option<usize> {
        let add = |parts: &[usize]| parts.iter().try_fold(0usize, |acc, &x| acc.checked_add(x));
        // ln1, atty, residual2, ln2, residual3 (5 x nc), four stat vectors.
        let block = add(&[
            self.nc.checked_mul(5)?,
            self.n.checked_mul(4)?,
            self.nc3,
            self.att,
            self.nc4.checked_mul(2)?,
        ])?;
        // encoded, lnf, dres, dln, datty (5 x nc), lnf stats + losses (3 x n).
        let global = add(&[
            self.nc.checked_mul(5)?,
            self.n.checked_mul(3)?,
            self.nv,
            self.nc3,
            self.att,
            self.nc4.checked_mul(2)?,
        ])?;
        block.checked_mul(n_layer)?.checked_add(global)
    }
}

/// A zeroed buffer of `n` floats, or `OutOfMemory` (naming the context's total bytes).
fn alloc(n: usize, total_bytes: usize) -> Result<Vec<f32>, ModelError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| ModelError::OutOfMemory {
            bytes: Some(total_bytes),
        })?;
    v.resize(n, 0.0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes()` (computed from the sizes before allocating) is exactly the sum of
    /// the buffers actually allocated.
    #[test]
    fn bytes_counts_every_buffer() {
        let cfg = GptConfig {
            n_layer: 3,
            n_head: 2,
            n_embd: 6,
            n_positions: 9,
            vocab_size: 11,
        };
        let ctx = TrainingContext::new(&cfg, 2, 7).unwrap();
        let mut floats = [
            &ctx.encoded,
            &ctx.lnf,
            &ctx.lnf_mean,
            &ctx.lnf_rstd,
            &ctx.logits,
            &ctx.losses,
            &ctx.dres,
            &ctx.dln,
            &ctx.dqkv,
            &ctx.datty,
            &ctx.datt,
            &ctx.dfch,
            &ctx.dfch_gelu,
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>();
        assert_eq!(ctx.blocks.len(), 3);
        for a in &ctx.blocks {
            floats += [
                &a.ln1,
                &a.ln1_mean,
                &a.ln1_rstd,
                &a.qkv,
                &a.atty,
                &a.att,
                &a.residual2,
                &a.ln2,
                &a.ln2_mean,
                &a.ln2_rstd,
                &a.fch,
                &a.gelu_s,
                &a.residual3,
            ]
            .iter()
            .map(|v| v.len())
            .sum::<usize>();
        }
        assert_eq!(ctx.bytes(), floats * 4);
    }
}
