# Seeded bugs of `cllm train`'s crash and resume paths and of its leak check (sourced
# by regenerate.sh; `gen ID FILE EXPR`). Each one is killed only by the tests and
# scripts that check resuming (tests/cli.rs, the report unit tests) or by
# verification/lsan.sh; catalogue-cli.tsv names them.
gen cli-metrics-not-cut-at-resume src/train/report.rs 's/\n\s*kept\.retain\(\|\(_, _, s\)\| \*s <= step\);//'
gen cli-torn-line-kept src/train/report.rs 's/let bytes = bytes\.collect\(\);/let bytes = bytes.chain(rest.iter().copied()).collect();/'
gen cli-leak-moments-per-checkpoint src/train/checkpoint.rs 's/(atomic_write\(&tmp\.join\(STATE_TENSORS_FILE\), &bytes\)\?;\n)/$1    std::mem::forget(moments);\n/'
# A resume without DATA ignores the data its checkpoint names and reads the built-in
# corpus (a run on a user's text silently continues on other text).
gen cli-resume-forgets-data src/cli/train.rs 's/saved\?\.get\("data"\)\?\.as_str\(\)\.map\(PathBuf::from\)/saved.and(None)/'
