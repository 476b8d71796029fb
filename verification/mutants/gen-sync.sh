# Seeded bugs of the production waiting code (src/sync), the step protocol's fault
# paths and its spin-then-park waits (src/step/mod.rs). Sourced by regenerate.sh (its
# `gen` function); rows in catalogue-sync.tsv.
gen sync-wait-if-not-while src/sync/std_impl.rs 's/let mut guard = self\.lock\.lock\(\);\n(\s*)while !ready\(\) \{/let mut guard = self.lock.lock();\n${1}if !ready() {/'
gen sync-notify-without-lock src/sync/std_impl.rs 's/let _guard = self\.lock\.lock\(\);\n(\s*)self\.cond\.notify_all\(\);/self.cond.notify_all();/'
gen sync-notify-one src/sync/std_impl.rs 's/self\.cond\.notify_all\(\);/self.cond.notify_one();/'
gen sync-event-notify-needs-two-waiters src/sync/event.rs 's/if self\.waiters\.load\(Ordering::Relaxed\) != 0 \{/if self.waiters.load(Ordering::Relaxed) > 1 {/'
gen step-spin-gives-up-as-ready src/step/mod.rs 's/(P::spin_loop\(\);\n\s*\}\n\s*)false\n\}/${1}limit > 0\n}/'
gen step-guard-no-abort src/step/mod.rs 's/Err\(_\) => \{\n\s*self\.abort\(\);\n(\s*)Err\(StepError::Panicked/Err(_) => {\n${1}Err(StepError::Panicked/'
gen step-abort-no-updated-notify src/step/mod.rs 's/(self\.summarized_event\.notify\(\);\n)\s*self\.updated_event\.notify\(\);\n(\s*\}\n\n\s*\/\/\/ Whether the run was aborted)/$1$2/'
gen step-abort-no-summarized-notify src/step/mod.rs 's/(self\.fed_event\.notify\(\);\n)\s*self\.summarized_event\.notify\(\);\n(\s*self\.updated_event\.notify\(\);\n\s*\}\n\n\s*\/\/\/ Whether the run was aborted)/$1$2/'
gen step-abort-no-fed-notify src/step/mod.rs 's/(self\.segments\.abort\(\);\n\s*self\.jobs\.close\(\);\n)\s*self\.fed_event\.notify\(\);\n/$1/'
gen step-decide-error-not-aborting src/step/mod.rs 's/let decision = self\.decide\(step, hooks\)\.inspect_err\(\|_\| self\.abort\(\)\)\?;/let decision = self.decide(step, hooks)?;/'
# WorkQueue::pop / push never count their spins (cargo-mutants' `spins += 1` ->
# `spins *= 1`): a waiter spins forever instead of parking after SPIN_LIMIT spins. Same
# results, a burnt core; only a test that watches the wait cell sees it.
gen wq-pop-never-parks src/queue/work.rs 's/(pub fn pop\(&self\) -> Option<T> \{(?:(?!\n    \}).)*?)spins \+= 1;/${1}spins *= 1;/s'
gen wq-push-never-parks src/queue/work.rs 's/(pub fn push\(&self, mut value: T\) -> Result<\(\), Closed<T>> \{(?:(?!\n    \}).)*?)spins \+= 1;/${1}spins *= 1;/s'
# Event::wait_until never deregisters its waiter (cargo-mutants' `fetch_sub` -> `0` in
# Std's atomic word): every later notify signals the wait cell although nobody waits.
# Same results, a lock and a signal per notify; only a test that counts signals sees it.
gen sync-event-waiter-never-leaves src/sync/event.rs 's/(self\.cell\.wait_until\(&mut ready\);\n)\s*self\.waiters\.fetch_sub\(1, Ordering::Relaxed\);\n/$1/'
# WorkQueue::close wakes the waiters but never sets the closed mark (cargo-mutants'
# `fetch_or` -> `0` in Std's atomic word): a parked popper sleeps on, pushes still land.
gen wq-close-marks-nothing src/queue/work.rs 's/\n\s*self\.tail\.fetch_or\(self\.mark_bit, Ordering::Relaxed\);\n/\n/'
# Std's AtomicFlag::swap (cargo-mutants' `swap -> true` and `-> false`): the Team's
# helper-panic flag is never cleared (every later task re-raises an old panic), or the
# swap reports the value just stored (a helper's panic is never re-raised). Loom and
# shuttle run their own flags; only a test on production's Std sees these.
gen sync-std-swap-never-clears src/sync/std_impl.rs 's/atomic::AtomicBool::swap\(self, v, order\)/atomic::AtomicBool::load(self, order)/'
gen sync-std-swap-returns-new src/sync/std_impl.rs 's/atomic::AtomicBool::swap\(self, v, order\)/{ atomic::AtomicBool::swap(self, v, order); v }/'
# The pre-fetch queue's waits never count their spins (cargo-mutants' `spins += 1` ->
# `spins *= 1` in Producer::send and PrefetchQueue::recv): the producer on a full ring,
# or the consumer on an empty one, spins forever instead of parking. Same items in the
# same order, a burnt core; only a test that watches the wait cell sees it.
gen pf-producer-never-parks src/queue/prefetch.rs 's/(pub fn send\(&mut self, value: T\) -> Result<\(\), Stopped<T>> \{(?:(?!\n    \}).)*?)spins \+= 1;/${1}spins *= 1;/s'
gen pf-consumer-never-parks src/queue/prefetch.rs 's/(pub fn recv\(&mut self\) -> Result<Option<T>, PrefetchError<E>> \{(?:(?!\n    \}).)*?)spins \+= 1;/${1}spins *= 1;/s'
# WorkQueue::try_with_capacity reserves its slots with a panicking reserve: a capacity
# whose slot array overflows the allocator panics instead of returning None.
gen wq-huge-capacity-panics src/queue/work.rs 's/slots\.try_reserve_exact\(capacity\)\.ok\(\)\?;/slots.reserve_exact(capacity);/'
# WorkQueue's Drop finds a leftover's slot by position modulo the capacity (positions
# count laps in their upper bits, so after the first lap this is the wrong slot: one
# item dropped twice, another leaked). cargo-mutants' `mark_bit - 1` -> `mark_bit / 1`
# in Drop survived a test that never dropped a queue past its first lap.
gen wq-drop-slot-by-position src/queue/work.rs 's/let slot = &self\.slots\[head & \(self\.mark_bit - 1\)\];/let slot = &self.slots[head % self.slots.len()];/'
# Producer::is_stopped reads the flag inverted: the producer is told the consumer left
# while it still waits (cargo-mutants' `is_stopped -> true` survived: the only check ran
# after the consumer was gone).
gen pf-is-stopped-inverted src/queue/prefetch.rs 's/(pub fn is_stopped\(&self\) -> bool \{\n(?:\s*\/\/[^\n]*\n)*\s*)self\.shared\.stop\.load\(Ordering::Relaxed\)/${1}!self.shared.stop.load(Ordering::Relaxed)/'
# WorkQueue::capacity reports the rounded-up position bound instead of the slots asked
# for (cargo-mutants' `capacity -> 0` survived: nothing compared it with the request).
gen wq-capacity-is-mark-bit src/queue/work.rs 's/(pub fn capacity\(&self\) -> usize \{\n\s*)self\.slots\.len\(\)/${1}self.mark_bit/'
# WorkQueue's Debug form leaves out the closed flag (cargo-mutants' `fmt -> Ok(())`
# survived: no test read the Debug form).
gen wq-debug-omits-closed src/queue/work.rs 's/\n\s*\.field\("closed", &self\.is_closed\(\)\)//'
# The step protocol's shared buffers (RawBuf) are released only when empty: a protocol
# dropped without handing its buffers back (an aborted or failed run) leaks them.
# cargo-mutants' `RawBuf::drop -> ()` survived the step binaries and LeakSanitizer:
# no fault test drops a protocol that still holds them; tests/step_drop.rs does, and
# counts the live bytes.
gen step-rawbuf-leaked src/step/mod.rs 's/(impl Drop for RawBuf \{\n\s*fn drop\(&mut self\) \{\n)/${1}        if self.len != 0 {\n            return;\n        }\n/'
