//! Owns [`RankTrainer`]: one rank of a data-parallel run. It computes its own
//! micro-batches (on its own threads), exchanges partial gradient sums with the other
//! ranks through a [`Transport`], reduces and updates its shard of the parameters
//! (ZeRO stage 1: each rank keeps the AdamW moments of its shard only), and gathers
//! the updated weights. Must never touch files (the run driver does, on rank 0) and
//! never let the rank count or the arrival order change a number.
//!
//! # One step `s` on rank `r` of `R` (see [`plan`](super::plan) for why the bits
//! are the single-process bits)
//! 1. *Draw*: every rank draws all `M` micro-batches with the same sampler (cheap:
//!    window offsets and a copy), keeping only its own slots' tokens. So every rank's
//!    sampler is always at the same position, and any rank's state resumes any `R`.
//! 2. *Compute*: forward/backward of the rank's slots [`Plan::slots`], spread over
//!    its threads (each with its own context); slot `m` always holds micro-batch `m`.
//! 3. *Local sums*: each of the rank's maximal tree nodes [`Plan::nodes`] is summed
//!    with the pairwise kernel (a one-slot node is the slot itself).
//! 4. *Reduce-scatter* (one all-to-all): rank `r` sends rank `q` its node sums
//!    restricted to shard `q`. Rank `q` combines every rank's nodes in tree order
//!    ([`combine`]): its shard of the single-process summed gradient.
//! 5. *Decide* (one all-gather): each rank's micro-batch losses and its shard's
//!    gradient-norm block sums. Every rank runs the same pure [`decide`] on the same
//!    inputs in the same order: the same loss, norm, clip factor, learning rate, and
//!    the same errors (a non-finite step fails on every rank alike).
//! 6. *Update*: AdamW on the rank's shard ([`update_part`]).
//! 7. *All-gather* of the updated shards: every rank holds every weight again.
//!
//! A failure that only this rank sees (its forward/backward, a thread, a transport
//! error) is reported to the group with [`Transport::fail`] before it is returned,
//! so the other ranks stop instead of waiting; failures every rank sees alike (the
//! sampler's, the decision's) are returned on every rank without it.

use super::plan::{combine, Plan};
use super::transport::{Blocks, CommError, Transport};
use crate::data::{Sampler, TokenSource, Tokens};
use crate::model::{self, TrainingContext};
use crate::segments::reduce::pairwise_sum_into;
use crate::train::apply::decide;
use crate::train::driver::{DriverError, Engine};
use crate::train::norm::{self, NORM_BLOCK};
use crate::train::optim::{update_part, AdamState};
use crate::train::trainer::{checked_layout, decay_ranges, evaluate};
use crate::train::types::{StepStats, TrainConfig, TrainError, TrainState};
use crate::train::workers::MicroBatch;
use core::ops::Range;
use std::time::{Duration, Instant};

/// What the rank's training collectives cost so far: those of its steps and of the
/// stop agreement after each (a checkpoint's gather of the moments, and these
/// statistics' own exchange, are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    /// Steps completed.
    pub steps: u64,
    /// Bytes this rank sent to other ranks (its own share excluded).
    pub bytes_sent: u64,
    /// Wall time inside the transport's collectives.
    pub time: Duration,
}

/// One rank of a data-parallel run (see the module doc).
pub struct RankTrainer<T: Transport> {
    cfg: TrainConfig,
    decay: Vec<Range<usize>>,
    plan: Plan,
    transport: T,
    rank: usize,
    /// Every weight (all shards; the others' are refreshed by step 7).
    params: Vec<f32>,
    /// AdamW moments of this rank's shard only.
    m: Vec<f32>,
    v: Vec<f32>,
    /// Updates applied so far.
    t: u64,
    step: u64,
    sampler: Sampler,
    contexts: Vec<TrainingContext>,
    /// This rank's slots: gradients, inputs, losses.
    slots: Vec<Vec<f32>>,
    batches: Vec<MicroBatch>,
    losses: Vec<f32>,
    /// Where other ranks' micro-batches are drawn (and dropped).
    scratch: MicroBatch,
    /// Sums of this rank's nodes with more than one slot (in node order).
    node_sums: Vec<Vec<f32>>,
    /// This rank's shard of the summed gradient.
    grad: Vec<f32>,
    /// Buffers reused every step (so a step allocates almost nothing): the
    /// all-to-all's send bytes and counts, what it received, every rank's node sums
    /// over this rank's shard, and what the all-gathers received.
    send: Vec<u8>,
    counts: Vec<usize>,
    recv: Blocks,
    received: Vec<(Range<usize>, Vec<f32>)>,
    gathered: Blocks,
    /// The byte lengths this rank receives from each rank (known from the plan, so the
    /// transport need not exchange them): the all-to-all's node sums, the decision's
    /// losses and norm blocks, and one shard of floats (weights, moments).
    lens_sums: Vec<usize>,
    lens_decide: Vec<usize>,
    lens_shard: Vec<usize>,
    tokens: Vec<u32>,
    targets: Vec<u32>,
    comm: CommStats,
    poisoned: bool,
}

impl<T: Transport> RankTrainer<T> {
    /// Rank `transport.rank()` of a run of `transport.size()` ranks, starting from
    /// `state` (the same on every rank: the initial one or a checkpoint written by a
    /// run with any number of ranks), with `threads` threads for its micro-batches.
    pub fn new(
        cfg: TrainConfig,
        state: TrainState,
        threads: usize,
        transport: T,
    ) -> Result<Self, TrainError> {
        let layout = checked_layout(&cfg, &state, threads)?;
        let n = layout.len();
        let rank = transport.rank();
        let plan = Plan::new(transport.size(), cfg.micro_batches, n)?;
        let shard = plan.shard(rank);
        let owned = plan.slots(rank).len();
        let contexts = (0..threads.min(owned))
            .map(|_| TrainingContext::new(&cfg.model, cfg.batch, cfg.seq))
            .collect::<Result<Vec<_>, _>>()?;
        let micro = cfg.batch * cfg.seq;
        let batch = MicroBatch {
            tokens: vec![0; micro],
            targets: vec![0; micro],
        };
        let node_sums = plan
            .nodes(rank)
            .iter()
            .filter(|node| node.len() > 1)
            .map(|_| vec![0.0; n])
            .collect();
        Ok(RankTrainer {
            decay: decay_ranges(&layout),
            m: state.opt.m[shard.clone()].to_vec(),
            v: state.opt.v[shard.clone()].to_vec(),
            t: state.opt.t,
            step: state.step,
            sampler: Sampler::from_state(state.sampler),
            params: state.params,
            contexts,
            slots: vec![vec![0.0; n]; owned],
            batches: vec![batch.clone(); owned],
            losses: vec![0.0; owned],
            scratch: batch,
            node_sums,
            grad: vec![0.0; shard.len()],
            send: Vec::new(),
            counts: Vec::new(),
            recv: Blocks::default(),
            received: (0..plan.ranks())
                .flat_map(|p| plan.nodes(p))
                .map(|node| (node, vec![0.0; shard.len()]))
                .collect(),
            gathered: Blocks::default(),
            lens_sums: (0..plan.ranks())
                .map(|p| plan.nodes(p).len() * shard.len() * 4)
                .collect(),
            lens_decide: (0..plan.ranks())
                .map(|p| plan.slots(p).len() * 4 + plan.shard(p).len().div_ceil(NORM_BLOCK) * 8)
                .collect(),
            lens_shard: (0..plan.ranks()).map(|p| plan.shard(p).len() * 4).collect(),
            tokens: vec![0; micro],
            targets: vec![0; micro],
            comm: CommStats::default(),
            poisoned: false,
            cfg,
            plan,
            transport,
            rank,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The plan (slots, nodes and shards of every rank).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// This rank's index.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Steps completed.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Threads computing this rank's micro-batches.
    pub fn threads(&self) -> usize {
        self.contexts.len()
    }

    /// Every weight, as of the last completed step.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// This rank's shard of the last step's summed (not yet averaged) gradient, and
    /// where it sits in the whole gradient.
    pub fn gradient_shard(&self) -> (Range<usize>, &[f32]) {
        (self.plan.shard(self.rank), &self.grad)
    }

    /// What the collectives have cost so far.
    pub fn comm_stats(&self) -> CommStats {
        self.comm
    }

    /// One optimizer step (collective: every rank calls it). See the module doc.
    pub fn step(&mut self, train: &(impl TokenSource + ?Sized)) -> Result<StepStats, TrainError> {
        if self.poisoned {
            return Err(TrainError::Poisoned);
        }
        self.poisoned = true;
        let step = self.step;
        self.transport.begin_step(step);
        #[cfg(feature = "fault-injection")]
        injected_panic(self.rank, step);
        let stats = match self.step_inner(train) {
            Ok(stats) => stats,
            Err(Failure::Shared(e)) => return Err(e),
            Err(Failure::Local(e)) => {
                self.transport.fail(&naming_step(step, &e));
                return Err(e);
            }
        };
        self.poisoned = false;
        Ok(stats)
    }

    /// Run up to `steps` steps (collective). `on_step` runs after each; when it returns
    /// false on any rank, every rank stops after that same step.
    pub fn run(
        &mut self,
        train: &(impl TokenSource + ?Sized),
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<(), TrainError> {
        for _ in 0..steps {
            let stats = self.step(train)?;
            let go_on = on_step(&stats);
            if self.agree(!go_on)? {
                break;
            }
        }
        Ok(())
    }

    /// Collective: whether `stop` is true on any rank.
    pub fn agree(&mut self, stop: bool) -> Result<bool, TrainError> {
        let ones = vec![1; self.plan.ranks()];
        self.gather(&[stop as u8], &ones)
            .map_err(|e| self.comm_error(e))?;
        let all = &self.gathered;
        Ok((0..all.len()).any(|p| all.block(p).first() == Some(&1)))
    }

    /// Collective: the whole training state (the moments gathered from every shard).
    pub fn snapshot(&mut self) -> Result<TrainState, TrainError> {
        let n = self.params.len();
        let mut opt = AdamState::new(n);
        opt.t = self.t;
        let lens = self.lens_shard.clone();
        self.gather_uncounted(&f32_bytes(&self.m), &lens)
            .map_err(|e| self.comm_error(e))?;
        let m = core::mem::take(&mut self.gathered);
        self.gather_uncounted(&f32_bytes(&self.v), &lens)
            .map_err(|e| self.comm_error(e))?;
        let v = core::mem::take(&mut self.gathered);
        for p in 0..self.plan.ranks() {
            let (m, v, shard) = (m.block(p), v.block(p), self.plan.shard(p));
            let ok = read_f32s(m, &mut opt.m[shard.clone()]) && read_f32s(v, &mut opt.v[shard]);
            if !ok {
                let e = CommError::Malformed {
                    rank: p,
                    what: "optimizer shard of the wrong length".into(),
                };
                return Err(self.comm_error(e));
            }
        }
        Ok(TrainState {
            params: self.params.clone(),
            opt,
            step: self.step,
            sampler: self.sampler.state(),
        })
    }

    /// Collective: every rank's [`CommStats`], indexed by rank.
    pub fn gather_comm_stats(&mut self) -> Result<Vec<CommStats>, TrainError> {
        let c = self.comm;
        let mut mine = Vec::with_capacity(24);
        for x in [c.steps, c.bytes_sent, c.time.as_nanos() as u64] {
            mine.extend_from_slice(&x.to_le_bytes());
        }
        self.gather_uncounted(&mine, &vec![mine.len(); self.plan.ranks()])
            .map_err(|e| self.comm_error(e))?;
        let all = &self.gathered;
        let mut out = Vec::with_capacity(all.len());
        for p in 0..all.len() {
            let words: Vec<u64> = all
                .block(p)
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
                .collect();
            let [steps, bytes_sent, nanos] = words[..] else {
                let e = CommError::Malformed {
                    rank: p,
                    what: "communication statistics of the wrong length".into(),
                };
                return Err(self.comm_error(e));
            };
            out.push(CommStats {
                steps,
                bytes_sent,
                time: Duration::from_nanos(nanos),
            });
        }
        Ok(out)
    }

    /// Mean validation loss of the current weights (not collective: every rank holds
    /// every weight, so every rank computes the same value).
    pub fn eval(
        &mut self,
        data: &(impl TokenSource + ?Sized),
        max_windows: usize,
    ) -> Result<f32, TrainError> {
        let ctx = match self.contexts.first_mut() {
            Some(ctx) => ctx,
            None => return Err(TrainError::Config("this rank has no context".into())),
        };
        evaluate(
            &self.cfg,
            &self.params,
            ctx,
            data,
            max_windows,
            &mut self.tokens,
            &mut self.targets,
        )
    }

    /// Tell the other ranks this one has failed (`why` names the cause); they stop.
    pub fn fail(&mut self, why: &str) {
        self.transport.fail(why)
    }

    // ---- the step -------------------------------------------------------------

    fn step_inner(&mut self, train: &(impl TokenSource + ?Sized)) -> Result<StepStats, Failure> {
        let step = self.step;
        let cfg = &{ self.cfg };
        let owned = self.plan.slots(self.rank);
        // 1. Draw every micro-batch; keep this rank's.
        for m in 0..cfg.micro_batches {
            let b = match m.checked_sub(owned.start) {
                Some(i) if m < owned.end => &mut self.batches[i],
                _ => &mut self.scratch,
            };
            self.sampler
                .next_batch(train, cfg.batch, cfg.seq, &mut b.tokens, &mut b.targets)
                .map_err(|source| Failure::Shared(TrainError::Batch { step, source }))?;
        }
        // 2. Compute this rank's slots.
        self.compute(step).map_err(Failure::Local)?;
        // 3. Sum each local node.
        let isa = crate::isa::active();
        let nodes = self.plan.nodes(self.rank);
        let mut multi = self.node_sums.iter_mut();
        let mut sums: Vec<&[f32]> = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let local = node.start - owned.start..node.end - owned.start;
            if local.len() == 1 {
                sums.push(&self.slots[local.start]);
            } else {
                let inputs: Vec<&[f32]> = self.slots[local].iter().map(|s| &s[..]).collect();
                let Some(out) = multi.next() else {
                    unreachable!("one buffer per node of two or more slots");
                };
                pairwise_sum_into(&inputs, out, isa);
                sums.push(out);
            }
        }
        // 4. Reduce-scatter: node sums restricted to each rank's shard.
        let ranks = self.plan.ranks();
        let (send, counts) = (&mut self.send, &mut self.counts);
        send.clear();
        counts.clear();
        for q in 0..ranks {
            let (before, shard) = (send.len(), self.plan.shard(q));
            for sum in &sums {
                put_f32s(send, &sum[shard.clone()]);
            }
            counts.push(send.len() - before);
        }
        drop(sums);
        let sent = send.len() - counts[self.rank];
        let (send, counts, recv) = (&self.send, &self.counts, &mut self.recv);
        let lens = &self.lens_sums;
        timed(&mut self.comm, sent, &mut self.transport, |t| {
            t.all_to_all_flat(send, counts, Some(lens), recv)
        })
        .map_err(|e| Failure::Local(comm_error(step, self.rank, e)))?;
        let shard = self.plan.shard(self.rank);
        let mut next = self.received.iter_mut();
        for p in 0..ranks {
            let (msg, nodes) = (self.recv.block(p), self.plan.nodes(p));
            if msg.len() != nodes.len() * shard.len() * 4 {
                let what = format!(
                    "{} bytes of node sums, expected {} nodes x {} floats",
                    msg.len(),
                    nodes.len(),
                    shard.len()
                );
                return Err(Failure::Local(comm_error(
                    step,
                    self.rank,
                    CommError::Malformed { rank: p, what },
                )));
            }
            let width = shard.len() * 4;
            for i in 0..nodes.len() {
                let Some((_, sum)) = next.next() else {
                    unreachable!("one buffer per node of every rank");
                };
                read_f32s(&msg[i * width..(i + 1) * width], sum);
            }
        }
        let frontier: Vec<(Range<usize>, &[f32])> = self
            .received
            .iter()
            .map(|(n, s)| (n.clone(), &s[..]))
            .collect();
        combine(cfg.micro_batches, &frontier, &mut self.grad, isa).map_err(|e| {
            Failure::Local(comm_error(
                step,
                self.rank,
                CommError::Malformed {
                    rank: self.rank,
                    what: e.to_string(),
                },
            ))
        })?;
        // 5. Decide: every loss and every norm block, from every rank, in order.
        let mean_scale = 1.0 / cfg.micro_batches as f32;
        let mut blocks = Vec::new();
        norm::block_sums(&self.grad, 0..self.grad.len(), mean_scale, &mut blocks);
        let mut mine = f32_bytes(&self.losses);
        for b in &blocks {
            mine.extend_from_slice(&b.to_le_bytes());
        }
        self.gather(&mine, &self.lens_decide.clone())
            .map_err(|e| Failure::Local(comm_error(step, self.rank, e)))?;
        let all = &self.gathered;
        let mut losses = vec![0.0f32; cfg.micro_batches];
        let mut all_blocks = Vec::with_capacity(self.params.len().div_ceil(NORM_BLOCK));
        for p in 0..ranks {
            let (msg, slots) = (all.block(p), self.plan.slots(p));
            let n_blocks = self.plan.shard(p).len().div_ceil(NORM_BLOCK);
            let (l, b) = msg.split_at(msg.len().min(slots.len() * 4));
            if !read_f32s(l, &mut losses[slots]) || b.len() != n_blocks * 8 {
                let what = "losses and norm blocks of the wrong length".to_string();
                return Err(Failure::Local(comm_error(
                    step,
                    self.rank,
                    CommError::Malformed { rank: p, what },
                )));
            }
            all_blocks.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
            );
        }
        let grad_norm = norm::norm_from_blocks(&all_blocks);
        let (stats, scalars) =
            decide(cfg, &losses, grad_norm, step, self.t).map_err(Failure::Shared)?;
        // 6. Update this rank's shard.
        update_part(
            &cfg.adamw,
            &scalars,
            shard.clone(),
            &self.decay,
            &mut self.params[shard.clone()],
            &self.grad,
            &mut self.m,
            &mut self.v,
        );
        // 7. All-gather the updated shards.
        let mine = f32_bytes(&self.params[shard]);
        self.gather(&mine, &self.lens_shard.clone())
            .map_err(|e| Failure::Local(comm_error(step, self.rank, e)))?;
        for p in 0..ranks {
            let (msg, shard) = (self.gathered.block(p), self.plan.shard(p));
            if !read_f32s(msg, &mut self.params[shard]) {
                let what = "updated weights of the wrong length".to_string();
                return Err(Failure::Local(comm_error(
                    step,
                    self.rank,
                    CommError::Malformed { rank: p, what },
                )));
            }
        }
        self.t += 1;
        self.step += 1;
        self.comm.steps += 1;
        Ok(stats)
    }

    /// Forward/backward of this rank's slots, spread over its contexts (worker 0 on
    /// this thread).
    fn compute(&mut self, step: u64) -> Result<(), TrainError> {
        let workers = self.contexts.len();
        let per = self.slots.len().div_ceil(workers);
        let model_cfg = &self.cfg.model;
        let params = &self.params[..];
        let jobs = self
            .contexts
            .iter_mut()
            .zip(self.slots.chunks_mut(per))
            .zip(self.batches.chunks(per).zip(self.losses.chunks_mut(per)));
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            let mut first = None;
            for (w, ((ctx, grads), (batches, losses))) in jobs.enumerate() {
                let job = move || -> Result<(), TrainError> {
                    for ((g, b), l) in grads.iter_mut().zip(batches).zip(losses.iter_mut()) {
                        *l = model::forward_backward(
                            model_cfg, params, ctx, &b.tokens, &b.targets, g,
                        )
                        .map_err(|e| TrainError::WorkerFailed {
                            step,
                            worker: w,
                            source: Box::new(e.into()),
                        })?;
                    }
                    Ok(())
                };
                if w == 0 {
                    first = Some(job);
                    continue;
                }
                let spawned = std::thread::Builder::new()
                    .name(format!("cllm-rank-worker-{w}"))
                    .spawn_scoped(scope, job)
                    .map_err(|source| TrainError::Spawn {
                        index: w,
                        threads: workers,
                        source,
                    });
                handles.push((w, spawned));
            }
            let mut result = first.map_or(Ok(()), |mut job| job());
            for (w, handle) in handles {
                let outcome = match handle {
                    Ok(h) => h
                        .join()
                        .unwrap_or(Err(TrainError::WorkerPanicked { step, worker: w })),
                    Err(e) => Err(e),
                };
                if result.is_ok() {
                    result = outcome;
                }
            }
            result
        })
    }

    /// All-gather `local` into `self.gathered`; `expect`: every rank's length.
    fn gather(&mut self, local: &[u8], expect: &[usize]) -> Result<(), CommError> {
        let sent = local.len() * (self.plan.ranks() - 1);
        let recv = &mut self.gathered;
        timed(&mut self.comm, sent, &mut self.transport, |t| {
            t.all_gather_flat(local, Some(expect), recv)
        })
    }

    /// [`Self::gather`] without counting it in [`CommStats`].
    fn gather_uncounted(&mut self, local: &[u8], expect: &[usize]) -> Result<(), CommError> {
        let before = self.comm;
        let out = self.gather(local, expect);
        self.comm = before;
        out
    }

    fn comm_error(&mut self, e: CommError) -> TrainError {
        let e = comm_error(self.step, self.rank, e);
        self.transport.fail(&e.to_string());
        e
    }
}

/// A step's failure: seen by this rank only (the group must be told), or by every
/// rank alike (each returns it; nobody waits).
enum Failure {
    Local(TrainError),
    Shared(TrainError),
}

/// `e`'s message, starting with the step (most step errors name it already).
fn naming_step(step: u64, e: &TrainError) -> String {
    let msg = e.to_string();
    match msg.starts_with("step ") {
        true => msg,
        false => format!("step {step}: {msg}"),
    }
}

fn comm_error(step: u64, rank: usize, source: CommError) -> TrainError {
    TrainError::Comm { step, rank, source }
}

/// Run one collective on `transport`, counting its time and the `sent` bytes this
/// rank sends to others.
fn timed<T: Transport, R>(
    comm: &mut CommStats,
    sent: usize,
    transport: &mut T,
    f: impl FnOnce(&mut T) -> Result<R, CommError>,
) -> Result<R, CommError> {
    comm.bytes_sent += sent as u64;
    let started = Instant::now();
    let out = f(transport);
    comm.time += started.elapsed();
    out
}

/// `xs` as little-endian bytes.
pub fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * 4);
    put_f32s(&mut out, xs);
    out
}

/// Append `xs` as little-endian bytes (sized once, then filled in 4-byte chunks,
/// which compiles to a plain copy on little-endian machines).
fn put_f32s(out: &mut Vec<u8>, xs: &[f32]) {
    let start = out.len();
    out.resize(start + xs.len() * 4, 0);
    for (c, x) in out[start..].chunks_exact_mut(4).zip(xs) {
        c.copy_from_slice(&x.to_le_bytes());
    }
}

/// Decode little-endian `f32`s into `out`; false if the length does not match.
fn read_f32s(bytes: &[u8], out: &mut [f32]) -> bool {
    if bytes.len() != out.len() * 4 {
        return false;
    }
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    true
}

/// A rank is driven like a single-process trainer: rank 0 writes the files, every
/// rank makes the same collective calls.
impl<T: Transport> Engine for RankTrainer<T> {
    fn config(&self) -> &TrainConfig {
        RankTrainer::config(self)
    }

    fn step_count(&self) -> u64 {
        RankTrainer::step_count(self)
    }

    fn run(
        &mut self,
        train: &Tokens,
        steps: u64,
        on_step: &mut dyn FnMut(&StepStats) -> bool,
    ) -> Result<(), TrainError> {
        RankTrainer::run(self, train, steps, on_step)
    }

    fn eval(&mut self, val: &dyn TokenSource, windows: usize) -> Result<f32, TrainError> {
        RankTrainer::eval(self, val, windows)
    }

    fn snapshot(&mut self) -> Result<TrainState, TrainError> {
        RankTrainer::snapshot(self)
    }

    fn agree(&mut self, stop: bool) -> Result<bool, TrainError> {
        RankTrainer::agree(self, stop)
    }

    fn writes(&self) -> bool {
        self.rank == 0
    }

    fn summary_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let c = self.comm;
        let per_step = |x: f64| if c.steps > 0 { x / c.steps as f64 } else { 0.0 };
        let mut fields = serde_json::Map::new();
        fields.insert("ranks".into(), self.plan.ranks().into());
        fields.insert("threads_per_rank".into(), self.threads().into());
        fields.insert(
            "bytes_sent_per_step".into(),
            per_step(c.bytes_sent as f64).into(),
        );
        fields.insert(
            "comm_seconds_per_step".into(),
            per_step(c.time.as_secs_f64()).into(),
        );
        fields
    }

    fn fail(&mut self, error: &DriverError) {
        let msg = error.to_string();
        self.transport.fail(&match msg.starts_with("step ") {
            true => msg,
            false => format!("after step {}: {msg}", self.step),
        });
    }
}

/// The `fault-injection` feature's hook (a test build only): panics if
/// `CLLM_FAULT_PANIC` is `RANK:STEP` for this rank and step. A value of any other form
/// also panics (naming it), so a check that sets it wrongly fails instead of passing
/// without the fault it meant to inject.
#[cfg(feature = "fault-injection")]
fn injected_panic(rank: usize, step: u64) {
    let Ok(spec) = std::env::var("CLLM_FAULT_PANIC") else {
        return;
    };
    let parsed = spec
        .split_once(':')
        .and_then(|(r, s)| Some((r.parse::<usize>().ok()?, s.parse::<u64>().ok()?)));
    match parsed {
        Some((r, s)) if r == rank && s == step => {
            panic!("injected panic (CLLM_FAULT_PANIC={spec})")
        }
        Some(_) => {}
        None => panic!("CLLM_FAULT_PANIC must be RANK:STEP (two integers), not {spec:?}"),
    }
}
