# Seeded bugs of state carried across steps and across Trainer calls: only properties
# that run several steps per call, or mix the public calls (step, run, a run stopped by
# its callback, restarts and checkpoints), can see them. Sourced by regenerate.sh.
# The lock-free run starts from the sampler position of the last `state()` call, not the
# trainer's live sampler (stale after a `step` not followed by `state()`).
gen props-lockfree-run-stale-sampler src/train/trainer.rs 's/\n\s*self\.state\.sampler = self\.sampler\.state\(\);(\n\s*let contexts = core::mem::take\(&mut self\.contexts\);)/$1/'
# A lock-free run stopped by its callback counts the updates it was asked for, not the
# ones it made (bias correction of every later update is off).
gen props-stopped-run-counts-asked-updates src/train/lockfree.rs 's/state\.opt\.t \+= done;/state.opt.t += steps;/'
# A lock-free run counts one optimizer update per call, whatever its step count.
gen props-update-count-per-run src/train/lockfree.rs 's/state\.opt\.t \+= done;/state.opt.t += 1;/'
# The barrier run names its gradient slots' step by the training step instead of the
# slots' own count: a trainer restored at step k > 0 waits forever for k earlier steps.
gen props-barrier-slot-step-from-state src/train/barrier.rs 's/\*g = \(r\.segments\.completed_steps\(\), step\);/*g = (step as usize, step);/'
# The barrier run takes the training step from its gradient slots' own step count (equal
# for a trainer that started at step 0, not for one restored at step k > 0: wrong step
# numbers and learning rates after a resume).
gen props-barrier-step-from-slot-count src/train/barrier.rs 's/let step = state\.step \+ done;/let step = r.segments.completed_steps() as u64;/'
# `Trainer::step` names its gradient slots' step by the training step: a trainer restored
# at step k > 0 waits forever for k earlier steps (the watchdogs turn that into exit 124).
gen props-step-slot-step-from-state src/train/trainer.rs 's/let seg_step = self\.segments\.completed_steps\(\);/let seg_step = self.state.step as usize;/'
# The final layer norm's input gradient is not cleared before its backward accumulates
# into it: a context reused after another micro-batch adds that batch's gradient.
gen props-final-dres-not-cleared src/model/gpt2.rs 's/\n\s*dres\.fill\(0\.0\);//'
