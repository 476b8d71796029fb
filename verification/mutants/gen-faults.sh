# Seeded bugs of the training library's fault and error paths (sourced by
# regenerate.sh; `gen ID FILE EXPR`). Each one breaks how a failure reaches the caller
# (typed, with its step and worker, every thread joined); catalogue-faults.tsv names
# the tests that kill it (tests/train_errors.rs, tests/train_errors_spawn.rs, and for
# the gradient segments' abort, tests/loom_segments.rs).
gen faults-prefetch-error-generic src/train/lockfree.rs 's/PrefetchError::Producer\(e\) => e,/PrefetchError::Producer(_) => TrainError::Config("pre-fetch producer failed".into()),/'
gen faults-lockfree-panic-reported-as-abort src/train/lockfree.rs 's/StepError::Panicked \{ step, worker \} => TrainError::WorkerPanicked \{\n\s*step: first_step \+ step as u64,\n\s*worker,\n\s*\},/StepError::Panicked { .. } => TrainError::Aborted,/'
gen faults-lockfree-sampler-counts-failed-step src/train/lockfree.rs 's/step_sampler = f\.sampler_after;/step_sampler = f.sampler_after;\n                            sampler_after = f.sampler_after;/'
gen faults-lockfree-refused-worker-context-lost src/train/lockfree.rs 's/if let Some\(h\) = cell\.lock\(\)\.take\(\) \{\n\s*unstarted\.push\(h\.ctx\);\n\s*\}/drop(cell);/'
gen faults-barrier-worker-panic-dropped src/train/barrier.rs 's/Err\(_\) => Some\(TrainError::WorkerPanicked \{ step, worker \}\),/Err(_) => None,/'
gen faults-barrier-refused-spawn-panics src/train/barrier.rs 's/std::thread::Builder::new\(\)\n\s*\.name\(format!\("cllm-barrier-\{\}", i \+ 1\)\)\n\s*\.spawn_scoped\(scope, (move \|\| \{.*?\n                \})\);/Ok::<_, std::io::Error>(scope.spawn($1));/s'
gen faults-barrier-main-panic-escapes src/train/barrier.rs 's/\.unwrap_or\(Err\(TrainError::WorkerPanicked \{ step, worker: 0 \}\)\);/.unwrap_or_else(|payload| std::panic::resume_unwind(payload));/'
# GradientSegments::abort (cargo-mutants' `abort -> ()` and `is_aborted -> false`):
# a failed participant's abort sets nothing, or no wait ever sees it; a reducer or a
# writer waiting on the segments then never returns.
gen seg-abort-sets-nothing src/segments/mod.rs 's/(pub fn abort\(&self\) \{\n(?:\s*\/\/.*\n)*)\s*self\.aborted\.store\(true, Ordering::Relaxed\);\n/$1/'
gen seg-abort-never-seen src/segments/mod.rs 's/(pub fn is_aborted\(&self\) -> bool \{\n(?:\s*\/\/.*\n)*\s*)self\.aborted\.load\(Ordering::Relaxed\)/${1}false/'
