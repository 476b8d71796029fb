# Seeded bugs of the ordering campaign (sourced by regenerate.sh; `gen ID FILE EXPR`).
# One bug per non-Relaxed atomic ordering in src/ that no older bug already weakens:
# each weakens exactly one ordering one step (Release/Acquire/AcqRel -> Relaxed or
# one half; SeqCst -> AcqRel/Acquire/Release; a SeqCst fence -> removed or AcqRel).
# Which list a bug is in (catalogue-orderings.tsv: killed by loom in CI;
# orderings-tsan.tsv: TSan 5/5; orderings-judged.tsv: judged stronger than needed, one
# left) and why is in verification/orderings.md. The other orderings once judged
# stronger than needed are Relaxed now, so they have no bug.

# ---- src/sync/event.rs ----
gen ord-event-wait-fence-acqrel src/sync/event.rs 's/(self\.waiters\.fetch_add\(1, Ordering::Relaxed\);\n\s*\/\/[^\n]*\n\s*P::fence\(Ordering::)SeqCst\)/${1}AcqRel)/'
gen ord-event-notify-no-fence src/sync/event.rs 's/(pub fn notify\(&self\) \{\n\s*\/\/[^\n]*\n)\s*P::fence\(Ordering::SeqCst\);\n/$1/'
gen ord-event-notify-fence-acqrel src/sync/event.rs 's/(pub fn notify\(&self\) \{\n\s*\/\/[^\n]*\n\s*P::fence\(Ordering::)SeqCst\)/${1}AcqRel)/'

# ---- src/step/mod.rs ----
gen ord-step-updated-load-relaxed src/step/mod.rs 's/self\.updated\.load\(Ordering::Acquire\) >= target/self.updated.load(Ordering::Relaxed) >= target/'
gen ord-step-updated-add-relaxed src/step/mod.rs 's/self\.updated\.fetch_add\(1, Ordering::Release\)/self.updated.fetch_add(1, Ordering::Relaxed)/'
gen ord-step-summarized-load-relaxed src/step/mod.rs 's/self\.summarized\.load\(Ordering::Acquire\) >= target/self.summarized.load(Ordering::Relaxed) >= target/'
gen ord-step-summarized-add-relaxed src/step/mod.rs 's/self\.summarized\.fetch_add\(1, Ordering::Release\)/self.summarized.fetch_add(1, Ordering::Relaxed)/'

# ---- src/step/team.rs ----
gen ord-team-generation-store-relaxed src/step/team.rs 's/self\.generation\.store\(g, Ordering::Release\)/self.generation.store(g, Ordering::Relaxed)/'
gen ord-team-generation-load-relaxed src/step/team.rs 's/self\.generation\.load\(Ordering::Acquire\) > seen/self.generation.load(Ordering::Relaxed) > seen/'
gen ord-team-done-load-relaxed src/step/team.rs 's/self\.done\.load\(Ordering::Acquire\) >= target/self.done.load(Ordering::Relaxed) >= target/'
gen ord-team-done-add-relaxed src/step/team.rs 's/self\.done\.fetch_add\(1, Ordering::Release\)/self.done.fetch_add(1, Ordering::Relaxed)/'

# ---- src/segments/mod.rs ----
gen ord-seg-claim-cas-relaxed src/segments/mod.rs 's/\.compare_exchange\(stamp, stamp \+ 1, Ordering::Acquire, Ordering::Relaxed\)/.compare_exchange(stamp, stamp + 1, Ordering::Relaxed, Ordering::Relaxed)/'
gen ord-seg-reduced-add-acquire-only src/segments/mod.rs 's/self\.reduced\.fetch_add\(1, Ordering::AcqRel\)/self.reduced.fetch_add(1, Ordering::Acquire)/'
gen ord-seg-reduced-add-release-only src/segments/mod.rs 's/self\.reduced\.fetch_add\(1, Ordering::AcqRel\)/self.reduced.fetch_add(1, Ordering::Release)/'
gen ord-seg-free-store-relaxed src/segments/mod.rs 's/slot\.stamp\.store\(3 \* \(step \+ 1\), Ordering::Release\)/slot.stamp.store(3 * (step + 1), Ordering::Relaxed)/'
gen ord-seg-published-load-relaxed src/segments/mod.rs 's/self\.published\.load\(Ordering::Acquire\) >= target/self.published.load(Ordering::Relaxed) >= target/'
gen ord-seg-unclaim-store-relaxed src/segments/mod.rs 's/\.store\(3 \* self\.step, Ordering::Release\)/.store(3 * self.step, Ordering::Relaxed)/'

# ---- src/queue/prefetch.rs ----
gen ord-pf-recv-tail-load-relaxed src/queue/prefetch.rs 's/(if self\.head == self\.cached_tail \{\n(?:\s*\/\/[^\n]*\n)*\s*self\.cached_tail = shared\.tail\.load\(Ordering::)Acquire\)/${1}Relaxed)/'
gen ord-pf-recv-done-load-relaxed src/queue/prefetch.rs 's/if shared\.done\.load\(Ordering::Acquire\) \{/if shared.done.load(Ordering::Relaxed) {/'
gen ord-pf-head-store-relaxed src/queue/prefetch.rs 's/shared\.head\.store\(self\.head, Ordering::Release\)/shared.head.store(self.head, Ordering::Relaxed)/'
gen ord-pf-send-head-load-relaxed src/queue/prefetch.rs 's/self\.cached_head = shared\.head\.load\(Ordering::Acquire\)/self.cached_head = shared.head.load(Ordering::Relaxed)/'
gen ord-pf-done-store-relaxed src/queue/prefetch.rs 's/self\.shared\.done\.store\(true, Ordering::Release\)/self.shared.done.store(true, Ordering::Relaxed)/'

# ---- src/queue/work.rs ----
gen ord-wq-push-stamp-relaxed src/queue/work.rs 's/(previous value happens before we overwrite the cell\.\n\s*let stamp = slot\.stamp\.load\(Ordering::)Acquire\)/${1}Relaxed)/'
gen ord-wq-free-stamp-relaxed src/queue/work.rs 's/\.store\(head\.wrapping_add\(self\.one_lap\), Ordering::Release\)/.store(head.wrapping_add(self.one_lap), Ordering::Relaxed)/'
gen ord-wq-pop-fence-acqrel src/queue/work.rs 's/P::fence\(Ordering::SeqCst\);\n(\s*let tail = self\.tail\.load\(Ordering::Relaxed\);\n\s*if tail & !self\.mark_bit == head)/P::fence(Ordering::AcqRel);\n$1/'
# src/dist/memory.rs (the in-memory cross-rank transport)
gen ord-dist-arrived-load-relaxed src/dist/memory.rs 's/s\.arrived\.load\(Ordering::Acquire\) >= target/s.arrived.load(Ordering::Relaxed) >= target/'
gen ord-dist-deaths-load-relaxed src/dist/memory.rs 's/s\.deaths\.load\(Ordering::Acquire\) > 0/s.deaths.load(Ordering::Relaxed) > 0/'
gen ord-dist-deaths-add-relaxed src/dist/memory.rs 's/s\.deaths\.fetch_add\(1, Ordering::Release\)/s.deaths.fetch_add(1, Ordering::Relaxed)/'
gen ord-dist-first-load-relaxed src/dist/memory.rs 's/let rank = s\.first\.load\(Ordering::Acquire\);/let rank = s.first.load(Ordering::Relaxed);/'
gen ord-dist-first-cas-relaxed src/dist/memory.rs 's/Ordering::Release, Ordering::Relaxed\)/Ordering::Relaxed, Ordering::Relaxed)/'
