# Seeded bugs of the run driver (src/train/driver.rs): the loop every front end trains
# through, and what it promises a data-parallel run (every process makes the same
# collective calls, only the writer touches files, a stop seen anywhere stops all).
# Sourced by regenerate.sh (`gen ID FILE EXPR`); catalogue-driver.tsv names their killers.
gen driver-nonwriter-skips-agree src/train/driver.rs 's/let stop_now = engine\n\s*\.agree\(seen\)/let stop_now = (if engine.writes() { engine.agree(seen) } else { Ok(seen) })/'
gen driver-nonwriter-skips-snapshot src/train/driver.rs 's/let state = snapshot\(engine, done\)\?;\n(\s*)if let Some\(f\) = files\.as_mut\(\) \{/if let Some(f) = files.as_mut() {\n$1    let state = snapshot(engine, done)?;/'
gen driver-nonwriter-writes src/train/driver.rs 's/\(Some\(out\), true\) => Some\(Files::open/(Some(out), _) => Some(Files::open/'
gen driver-agreed-stop-ignored src/train/driver.rs 's/if stop_now \{/if seen {/'
gen driver-interrupt-ignored-mid-run src/train/driver.rs 's/(\/\/ Relaxed: as above; the step in progress ends normally either way\.\n\s*)!interrupt\.load\(Ordering::Relaxed\)/${1}true/'
gen driver-no-eval-at-stop src/train/driver.rs 's/ \|\| done == stop \{/ {/'
gen driver-checkpoint-every-not-restored src/train/driver.rs 's/\n\s*\.or\(saved\.checkpoint_every\)//'
gen driver-failed-start-leaves-output src/train/driver.rs 's/if let Some\(path\) = self\.remove\.take\(\) \{/if let Some(path) = self.remove.take().filter(|_| false) {/'
