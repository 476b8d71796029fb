//! Owns [`Plan`]: which rank computes which micro-batches, which maximal subtrees of
//! the single-process summation tree each rank sums locally, which parameter range
//! (shard) each rank reduces and updates, and [`combine`], the evaluation of the tree
//! from those subtree sums. Pure arithmetic: must never move bytes, spawn threads or
//! know what a parameter is.
//!
//! # Why the bits cannot depend on the number of ranks
//! The single-process step sums its `M` micro-batch gradients in one fixed pairwise
//! tree over slot index ([`crate::segments::reduce`]): node `[a, b)` is slot `a` if
//! `b - a = 1`, else `node[a, mid) + node[mid, b)` with `mid = a + (b - a) / 2`,
//! elementwise, left operand first. Every float of the summed gradient is that tree of
//! IEEE additions, nothing else.
//!
//! With `R` ranks, rank `r` computes the contiguous slots
//! `[r M / R, (r + 1) M / R)` ([`Plan::slots`]; at least one each, so `R <= M`). That
//! range is covered exactly by the *maximal* tree nodes inside it ([`Plan::nodes`],
//! at most two per tree level, in slot order); the rank sums each of them with the
//! same pairwise kernel, which evaluates exactly that node's subtree. Together the
//! ranks' nodes form a frontier that cuts the tree: every node above it has both
//! children at or above the frontier. [`combine`] evaluates the tree from the
//! frontier up, adding the same two operands in the same order as the single-process
//! tree. So each summed float is the same expression over the same slot gradients,
//! whatever `R` is and whoever answers first: bitwise identical.
//!
//! # Shards
//! The parameters are cut into `R` contiguous ranges on the [`NORM_BLOCK`] grid
//! ([`Plan::shard`]): rank `q` receives every rank's node sums restricted to shard `q`,
//! combines them, computes that shard's gradient-norm block sums (the blocks are the
//! global blocks, so the norm is the single-process norm) and updates that shard with
//! AdamW. A model smaller than `R` blocks leaves some shards empty; that is allowed.

use crate::isa::Isa;
use crate::segments::reduce::pairwise_sum_into;
use crate::train::norm::NORM_BLOCK;
use core::ops::Range;
use std::borrow::Cow;

/// A plan that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No ranks.
    #[error("a data-parallel run needs at least one rank")]
    NoRanks,
    /// More ranks than micro-batches: some rank would compute nothing.
    #[error(
        "{ranks} ranks but only {micro_batches} micro-batch(es) per step: every rank \
         computes at least one (use --micro-batches {ranks} or more, or fewer ranks)"
    )]
    TooManyRanks {
        /// Ranks asked for.
        ranks: usize,
        /// Micro-batches per step.
        micro_batches: usize,
    },
}

/// The assignment of micro-batches, subtrees and parameter shards to ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    ranks: usize,
    slots: usize,
    params: usize,
}

impl Plan {
    /// The plan for `ranks` ranks, `slots` micro-batches per step and `params`
    /// parameters.
    pub fn new(ranks: usize, slots: usize, params: usize) -> Result<Plan, PlanError> {
        if ranks == 0 {
            return Err(PlanError::NoRanks);
        }
        if ranks > slots {
            return Err(PlanError::TooManyRanks {
                ranks,
                micro_batches: slots,
            });
        }
        Ok(Plan {
            ranks,
            slots,
            params,
        })
    }

    /// Ranks.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// Micro-batches (slots) per step.
    pub fn n_slots(&self) -> usize {
        self.slots
    }

    /// Parameters.
    pub fn n_params(&self) -> usize {
        self.params
    }

    /// The micro-batches rank `rank` computes: `[r M / R, (r + 1) M / R)`.
    pub fn slots(&self, rank: usize) -> Range<usize> {
        split(self.slots, self.ranks, rank)
    }

    /// The maximal tree nodes inside [`Plan::slots`]`(rank)`, in slot order.
    pub fn nodes(&self, rank: usize) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        maximal_nodes(0..self.slots, &self.slots(rank), &mut out);
        out
    }

    /// The parameter range rank `rank` reduces and updates: a contiguous run of
    /// [`NORM_BLOCK`]-float blocks (the last shard ends at the last parameter).
    pub fn shard(&self, rank: usize) -> Range<usize> {
        let blocks = self.params.div_ceil(NORM_BLOCK);
        let b = split(blocks, self.ranks, rank);
        (b.start * NORM_BLOCK).min(self.params)..(b.end * NORM_BLOCK).min(self.params)
    }
}

/// `[r n / k, (r + 1) n / k)`: part `r` of `n` items cut into `k` near-equal runs.
fn split(n: usize, k: usize, r: usize) -> Range<usize> {
    r * n / k..(r + 1) * n / k
}

/// The children of tree node `node` (which has at least two slots).
pub fn children(node: &Range<usize>) -> (Range<usize>, Range<usize>) {
    let mid = node.start + (node.end - node.start) / 2;
    (node.start..mid, mid..node.end)
}

/// Push the maximal nodes of the subtree at `node` that lie inside `within`.
fn maximal_nodes(node: Range<usize>, within: &Range<usize>, out: &mut Vec<Range<usize>>) {
    if node.end <= within.start || node.start >= within.end {
        return;
    }
    if within.start <= node.start && node.end <= within.end {
        out.push(node);
        return;
    }
    let (left, right) = children(&node);
    maximal_nodes(left, within, out);
    maximal_nodes(right, within, out);
}

/// A combination the frontier does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CombineError {
    /// A slot is covered by no frontier node (or the nodes are not tree nodes).
    #[error("slots {0:?} are covered by no node sum")]
    Uncovered(Range<usize>),
    /// A node sum has the wrong length.
    #[error("the sum of node {node:?} has {got} floats, expected {want}")]
    Length {
        /// The node.
        node: Range<usize>,
        /// Its length.
        got: usize,
        /// The output length.
        want: usize,
    },
}

/// `out = node[0, n_slots)` of the summation tree, evaluated from `frontier`: the sums
/// of tree nodes that cover `0..n_slots` exactly (every rank's [`Plan::nodes`],
/// in any order), each as long as `out`. The adds above the frontier are the
/// single-process tree's, in its order (see the module doc).
pub fn combine(
    n_slots: usize,
    frontier: &[(Range<usize>, &[f32])],
    out: &mut [f32],
    isa: Isa,
) -> Result<(), CombineError> {
    for (node, sum) in frontier {
        if sum.len() != out.len() {
            return Err(CombineError::Length {
                node: node.clone(),
                got: sum.len(),
                want: out.len(),
            });
        }
    }
    match combine_node(0..n_slots, frontier, isa)? {
        Sum::Frontier(sum) => out.copy_from_slice(sum),
        Sum::Children(l, r) => add(&l, &r, out, isa),
    }
    Ok(())
}

/// A node's sum: a frontier node's own, or the two children it adds.
enum Sum<'a> {
    Frontier(&'a [f32]),
    Children(Cow<'a, [f32]>, Cow<'a, [f32]>),
}

/// The sum of tree node `node`, borrowed from the frontier where it is a frontier
/// node (so adding two frontier nodes copies nothing).
fn combine_node<'a>(
    node: Range<usize>,
    frontier: &[(Range<usize>, &'a [f32])],
    isa: Isa,
) -> Result<Sum<'a>, CombineError> {
    if let Some((_, sum)) = frontier.iter().find(|(n, _)| *n == node) {
        return Ok(Sum::Frontier(sum));
    }
    if node.end - node.start < 2 {
        return Err(CombineError::Uncovered(node));
    }
    let (left, right) = children(&node);
    let side = |node| -> Result<Cow<'a, [f32]>, CombineError> {
        Ok(match combine_node(node, frontier, isa)? {
            Sum::Frontier(sum) => Cow::Borrowed(sum),
            Sum::Children(l, r) => {
                let mut out = vec![0.0f32; l.len()];
                add(&l, &r, &mut out, isa);
                Cow::Owned(out)
            }
        })
    };
    Ok(Sum::Children(side(left)?, side(right)?))
}

/// `out = left + right`: the tree's own add for a two-input node.
fn add(left: &[f32], right: &[f32], out: &mut [f32], isa: Isa) {
    pairwise_sum_into(&[left, right], out, isa);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rank count's nodes tile the slots in order, and each node is a tree node
    /// (reached from the root by halving).
    #[test]
    fn nodes_tile_the_slots_and_are_tree_nodes() {
        fn is_node(n: &Range<usize>, at: Range<usize>) -> bool {
            if *n == at {
                return true;
            }
            if at.end - at.start < 2 || n.start < at.start || n.end > at.end {
                return false;
            }
            let (l, r) = children(&at);
            is_node(n, l) || is_node(n, r)
        }
        for m in 1..=40 {
            for r in 1..=m {
                let plan = Plan::new(r, m, 1000).unwrap();
                let mut next = 0;
                for rank in 0..r {
                    let slots = plan.slots(rank);
                    assert!(!slots.is_empty(), "M={m} R={r}: rank {rank} owns nothing");
                    for node in plan.nodes(rank) {
                        assert_eq!(node.start, next, "M={m} R={r}");
                        assert!(is_node(&node, 0..m), "M={m} R={r}: {node:?}");
                        next = node.end;
                    }
                    assert_eq!(next, slots.end);
                }
                assert_eq!(next, m);
            }
        }
    }

    /// Shards are block-aligned, contiguous and cover every parameter.
    #[test]
    fn shards_cover_the_parameters_on_the_block_grid() {
        for params in [1, 255, 256, 257, 1000, 4096, 100_000] {
            for r in 1..=8 {
                let plan = Plan::new(r, 8, params).unwrap();
                let mut at = 0;
                for rank in 0..r {
                    let s = plan.shard(rank);
                    assert_eq!(s.start, at);
                    assert!(s.start.is_multiple_of(NORM_BLOCK) || s.is_empty());
                    at = s.end;
                }
                assert_eq!(at, params);
            }
        }
    }

    #[test]
    fn more_ranks_than_micro_batches_is_refused() {
        assert_eq!(
            Plan::new(3, 2, 10),
            Err(PlanError::TooManyRanks {
                ranks: 3,
                micro_batches: 2
            })
        );
        assert_eq!(Plan::new(0, 2, 10), Err(PlanError::NoRanks));
    }
}
