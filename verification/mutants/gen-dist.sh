# Seeded bugs of the cross-rank step (src/dist: the plan, the in-memory transport and
# the rank trainer). Sourced by regenerate.sh; `gen ID FILE EXPR`. Each one makes the
# bits depend on the number of ranks or on who answers first, loses or races a message,
# or hangs a rank whose peer failed; catalogue-dist.tsv names the checks that kill it
# (tests/loom_dist.rs, tests/shuttle_dist.rs, tests/prop_dist.rs, tests/dist_ranks.rs,
# the plan's unit tests).
gen dist-combine-serial-sum src/dist/rank.rs 's/combine\(cfg\.micro_batches, &frontier, &mut self\.grad, isa\)/{ self.grad.fill(0.0); for (_, s) in &frontier { for (g, x) in self.grad.iter_mut().zip(s.iter()) { *g += *x; } } Ok::<(), super::plan::CombineError>(()) }/'
gen dist-combine-match-by-start src/dist/plan.rs 's/\.find\(\|\(n, _\)\| \*n == node\)/.find(|(n, _)| n.start == node.start)/'
gen dist-shard-end-off-by-one src/dist/plan.rs 's/\(b\.end \* NORM_BLOCK\)\.min\(self\.params\)/(b.end * NORM_BLOCK + 1).min(self.params)/'
gen dist-decide-own-losses src/dist/rank.rs 's/decide\(cfg, &losses, grad_norm, step, self\.t\)/decide(cfg, &self.losses, grad_norm, step, self.t)/'
gen dist-decide-own-norm-blocks src/dist/rank.rs 's/let grad_norm = norm::norm_from_blocks\(&all_blocks\);/let grad_norm = norm::norm_from_blocks(&blocks);/'
gen dist-weights-gathered-before-update src/dist/rank.rs 's/( *\/\/ 6\. Update this rank.s shard\.\n.*?\n *\);\n)( *\/\/ 7\. All-gather the updated shards\.\n)( *let mine = f32_bytes\(&self\.params\[)shard(\]\);\n)/$2$3shard.clone()$4$1/s'
gen dist-fresh-sampler-on-other-ranks src/dist/rank.rs 's/sampler: Sampler::from_state\(state\.sampler\),/sampler: if rank == 0 { Sampler::from_state(state.sampler) } else { Sampler::new(cfg.seed) },/'
gen dist-nodes-whole-slot-range src/dist/plan.rs 's/maximal_nodes\(0\.\.self\.slots, &self\.slots\(rank\), &mut out\);/out.push(self.slots(rank));/'
gen dist-arrived-relaxed src/dist/memory.rs 's/s\.arrived\.fetch_add\(1, Ordering::Release\);/s.arrived.fetch_add(1, Ordering::Relaxed);/'
gen dist-single-buffer src/dist/memory.rs 's/let parity = self\.round % 2;/let parity = 0;/'
gen dist-deaths-not-checked src/dist/memory.rs 's/let failed = \|\| s\.deaths\.load\(Ordering::Acquire\) > 0;/let failed = || false;/'
gen dist-no-wake-on-death src/dist/memory.rs 's/(s\.deaths\.fetch_add\(1, Ordering::Release\);\n)\s*s\.event\.notify\(\);\n/$1/'
gen dist-no-wake-on-arrival src/dist/memory.rs 's/(s\.arrived\.fetch_add\(1, Ordering::Release\);\n)\s*s\.event\.notify\(\);\n/$1/'
gen dist-failed-round-forgotten src/dist/memory.rs 's/            self\.broken = Some\(e\.clone\(\)\);\n//'
gen dist-first-death-not-named src/dist/memory.rs 's/let rank = s\.first\.load\(Ordering::Acquire\);/let rank = usize::MAX;/'
