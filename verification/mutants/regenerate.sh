#!/usr/bin/env bash
# Regenerate every seeded-bug patch from the current source. Each bug is one perl
# substitution on one file; a substitution that no longer matches is an error, so a
# refactor that moves the code under a bug is noticed instead of silently dropping it.
# usage: verification/mutants/regenerate.sh   (from anywhere)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
gen() {
  local name=$1 file=$2 expr=$3 tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/a/$(dirname "$file")" "$tmp/b/$(dirname "$file")"
  cp "$file" "$tmp/a/$file"; cp "$file" "$tmp/b/$file"
  perl -0pi -e "$expr" "$tmp/b/$file"
  if cmp -s "$tmp/a/$file" "$tmp/b/$file"; then echo "no longer matches: $name" >&2; rm -rf "$tmp"; return 1; fi
  (cd "$tmp" && diff -u --label "a/$file" --label "b/$file" "a/$file" "b/$file" || true) >"verification/mutants/$name.patch"
  rm -rf "$tmp"
  echo "regenerated $name"
}
gen wq-publish-relaxed src/queue/work.rs 's/slot\.stamp\.store\(tail \+ 1, Ordering::Release\)/slot.stamp.store(tail + 1, Ordering::Relaxed)/'
gen wq-consume-relaxed src/queue/work.rs 's/(Acquire: pairs with the pusher.s Release stamp store \(the value is written\).\n\s*let stamp = slot\.stamp\.load\(Ordering::)Acquire/${1}Relaxed/'
gen wq-tail-load-store src/queue/work.rs 's/match self\.tail\.compare_exchange_weak\(\s*tail,\s*next,\s*Ordering::Relaxed,\s*Ordering::Relaxed,\s*\) \{/match { self.tail.store(next, Ordering::Relaxed); Ok::<usize, usize>(tail) } {/'
gen wq-no-wake-on-push src/queue/work.rs 's/(slot\.stamp\.store\(tail \+ 1, Ordering::Release\);\n)\s*self\.not_empty\.notify\(\);\n/$1/'
gen wq-no-wake-on-pop src/queue/work.rs 's/(\.store\(head\.wrapping_add\(self\.one_lap\), Ordering::Release\);\n)\s*self\.not_full\.notify\(\);\n/$1/'
gen wq-no-wake-on-close src/queue/work.rs 's/(self\.tail\.fetch_or\(self\.mark_bit, Ordering::Relaxed\);\n)\s*self\.not_empty\.notify\(\);\n/$1/'
gen wq-full-off-by-one src/queue/work.rs 's/\} else if stamp\.wrapping_add\(self\.one_lap\) == tail \+ 1 \{/} else if stamp.wrapping_add(self.one_lap) == tail {/'
gen wq-wrap-off-by-one src/queue/work.rs 's/if index \+ 1 < self\.slots\.len\(\) \{/if index < self.slots.len() {/'
gen event-no-fence src/sync/event.rs 's/(self\.waiters\.fetch_add\(1, Ordering::Relaxed\);\n\s*\/\/[^\n]*\n)\s*P::fence\(Ordering::SeqCst\);\n/$1/'
gen pf-publish-relaxed src/queue/prefetch.rs 's/shared\.tail\.store\(self\.tail, Ordering::Release\)/shared.tail.store(self.tail, Ordering::Relaxed)/'
gen pf-done-before-last-item src/queue/prefetch.rs 's/(if shared\.done\.load\(Ordering::Acquire\) \{\n)(?:\s*\/\/[^\n]*\n)*\s*self\.cached_tail = shared\.tail\.load\(Ordering::Relaxed\);\n\s*if self\.head != self\.cached_tail \{\n\s*continue;\n\s*\}\n/$1/'
gen pf-head-freed-before-read src/queue/prefetch.rs 's/(let slot = &shared\.slots\[self\.head % shared\.slots\.len\(\)\];\n)/$1        shared.head.store(self.head + 1, Ordering::Release);\n/'
gen pf-no-wake-on-stop src/queue/prefetch.rs 's/(self\.shared\.stop\.store\(true, Ordering::Relaxed\);\n)\s*self\.shared\.not_full\.notify\(\);\n/$1/'
gen seg-slot-reused-early src/segments/mod.rs 's/if done == \(step \+ 1\) \* n_parts \{/if done == step * n_parts + 1 {/'
gen seg-reduced-before-published src/segments/mod.rs 's/let target = \(step \+ 1\) \* self\.n_slots\(\);/let target = (step + 1) * self.n_slots() - 1;/'
gen seg-publish-relaxed src/segments/mod.rs 's/segments\.published\.fetch_add\(1, Ordering::Release\);/segments.published.fetch_add(1, Ordering::Relaxed);/'
gen seg-claim-without-cas src/segments/mod.rs 's/if state\s*\.stamp\s*\.compare_exchange\(stamp, stamp \+ 1, Ordering::Acquire, Ordering::Relaxed\)\s*\.is_ok\(\)/if { state.stamp.store(stamp + 1, Ordering::Release); true }/'
gen seg-part-reduced-twice src/segments/mod.rs 's/if generation\s*\.compare_exchange\(step, step \+ 1, Ordering::Relaxed, Ordering::Relaxed\)\s*\.is_err\(\)/if { generation.store(step + 1, Ordering::Relaxed); false }/'
gen reduce-tree-split-moved src/segments/reduce.rs 's/let mid = inputs\.len\(\) \/ 2;/let mid = inputs.len().div_ceil(2);/'
gen train-batch-slot-mismatch src/train/barrier.rs 's/\(&\*batches\.get\(\)\)\[mb\]/(&*batches.get())[(mb + 1) % m]/'
gen step-lead-gates-on-summarized src/step/mod.rs 's/self\.updated\.load\(Ordering::Acquire\) >= target/self.summarized.load(Ordering::Acquire) >= target/'
gen step-loss-after-publish src/step/mod.rs 's/(\n\s*self\.losses\[job\.slot\]\.with_mut\(\|l\| \{.*?\n\s*\}\);)(\n\s*slot\.publish\(\);)/$2$1/s'
gen step-part-claim-load-store src/step/mod.rs 's/if self\.claims\[p\]\s*\.compare_exchange\(step, step \+ 1, Ordering::Relaxed, Ordering::Relaxed\)\s*\.is_ok\(\)/if self.claims[p].load(Ordering::Relaxed) == step && { self.claims[p].store(step + 1, Ordering::Relaxed); true }/'
gen step-lead-skips-update-wait src/step/mod.rs 's/let target = \(step \+ 1\) \* self\.n_parts\(\);/let target = step * self.n_parts();/'
gen step-summary-arrival-order src/step/mod.rs 's/self\.summaries\[p\]\.with_mut\(\|s\| \{/self.summaries[self.summarized.load(Ordering::Relaxed) % self.n_parts()].with_mut(|s| {/'
gen step-update-overlaps-next-part src/step/mod.rs 's/(fn update<H: StepHooks<J>>\(&self, p: usize, decision: &H::Decision, hooks: &mut H\) \{\n\s*let range = )self\.segments\.part_range\(p\);/${1}{ let r = self.segments.part_range(p); r.start..(r.end + 1).min(self.weights.len) };/'
gen step-decide-before-summarized src/step/mod.rs 's/let target = \(step \+ 1\) \* n_parts;/let target = (step + 1) * n_parts - 1;/'
gen team-run-returns-early src/step/team.rs 's/let target = g \* \(self\.size - 1\);/let target = (g - 1) * (self.size - 1);/'
gen team-helper-wrong-part src/step/team.rs 's/\(\|\| f\(helper\)\)/(|| f(helper - 1))/'
gen gemm-packed-wrong-tile src/model/kernels/gemm.rs 's/bp\.ptr\.add\(tile_ix \* bp\.tile_len\)/bp.ptr.add((tile_ix + 1) % bp.tiles * bp.tile_len)/'
gen grads-wpe-not-zeroed src/model/gpt2.rs 's/for range in \[&r\.wpe, &r\.ln_f_w, &r\.ln_f_b\]/for range in [&r.ln_f_w, &r.ln_f_b]/'
gen matmul-dweight-accumulates src/model/kernels/matmul.rs 's/gemm\(r\.len\(\), oc, n, a, 1, ic, dout, oc, 1, d, oc, Init::Zero\)/gemm(r.len(), oc, n, a, 1, ic, dout, oc, 1, d, oc, Init::Accumulate)/'
gen norm-lanes-paired-wrong src/train/norm.rs 's/acc\[l\] \+= acc\[l \+ width\];/acc[l] += acc[2 * width - 1 - l];/'
gen gemm-transposed-pack-first-k-block src/model/kernels/gemm.rs 's/p\.b\.add\(k0 \+ j \* p\.b_cs\)/p.b.add(j * p.b_cs)/'
gen gemm-add-every-k-block src/model/kernels/gemm.rs 's/Some\(add\) if k0 \+ kb == p\.k => End::AddStore\(add\)/Some(add) => End::AddStore(add)/'
gen layernorm-group-wrong-rstd src/model/kernels/layernorm.rs 's/let \(dm, dnm, rr\) = \(dnorm_mean\[row\], dnorm_norm_mean\[row\], r\[row\]\);/let (dm, dnm, rr) = (dnorm_mean[row], dnorm_norm_mean[row], r[0]);/'
gen dot-rows-fused-tail src/model/kernels/mod.rs 's/(for \(&p, &q\) in a\[r\]\[full\.\.\]\.iter\(\)\.zip\(&b\[r\]\[full\.\.\]\) \{\n\s*)s \+= p \* q;/${1}s = p.mul_add(q, s);/'
gen isa-avx512-tail-mask-short src/model/kernels/gemm.rs 's/\(\(1u32 << n\) - 1\) as __mmask16/((1u32 << (n - 1)) - 1) as __mmask16/'
gen isa-avx512-unfused-fma src/model/kernels/gemm.rs 's/fma: \|a, b, c\| _mm512_fmadd_ps\(a, b, c\)/fma: |a, b, c| _mm512_add_ps(_mm512_mul_ps(a, b), c)/'
gen isa-avx512-load-past-end src/model/kernels/gemm.rs 's/load_n: \|p, n\| _mm512_maskz_loadu_ps\(zmm_mask\(n\), p\)/load_n: |p, n| _mm512_maskz_mov_ps(zmm_mask(n), _mm512_loadu_ps(p))/'
gen isa-avx512-skips-last-k-block src/model/kernels/gemm.rs 's/    while k0 < p\.k \{\n        let kb = KC\.min\(p\.k - k0\);/    while k0 < p.k \&\& !(V::W == 16 \&\& k0 > 0 \&\& k0 + KC >= p.k) {\n        let kb = KC.min(p.k - k0);/'
gen isa-sum-order-on-avx512 src/model/kernels/mod.rs 's/(fn combine\(a: \[f32; LANES\]\) -> f32 \{\n)(\s*)(\(\(a\[0\] \+ a\[1\]\) \+ \(a\[2\] \+ a\[3\]\)\) \+ \(\(a\[4\] \+ a\[5\]\) \+ \(a\[6\] \+ a\[7\]\)\))/${1}${2}if crate::isa::active() == crate::isa::Isa::Avx512 { return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])); }\n${2}${3}/'
gen isa-ymm-mask-one-lane-more src/model/kernels/gemm.rs 's/_mm256_set1_epi32\(n as i32\)/_mm256_set1_epi32(n as i32 + 1)/'
gen isa-env-ignored src/isa/mod.rs 's/let isa = match Isa::from_env\(\) \{/let isa = match Ok::<Option<Isa>, IsaError>(None) {/'
gen isa-scoped-not-restored src/isa/mod.rs 's/LOCAL\.with\(\|l\| l\.set\(self\.0\)\);/let _ = self.0;/'
# Each area keeps its bugs in gen-AREA.sh (lines of `gen`, as above) beside its
# catalogue-AREA.tsv.
for area in "$ROOT"/verification/mutants/gen-*.sh; do
  [ -e "$area" ] || continue
  # shellcheck source=/dev/null
  . "$area"
done
