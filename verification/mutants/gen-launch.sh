# Seeded bugs of the launch checks (src/dist/launch.rs): the rank count a launcher
# announced, ranks <= micro-batches, the FNV-1a fingerprints, and the launch agreement
# that must fail on every rank alike.
# Sourced by regenerate.sh (`gen ID FILE EXPR`); catalogue-launch.tsv names their killers.
gen launch-ranks-limit-off-by-one src/dist/launch.rs 's/if ranks > micro_batches \{/if ranks > micro_batches + 1 {/'
gen launch-zero-size-accepted src/dist/launch.rs 's/first_number\(&SIZE_VARS, get\)\.filter\(\|&n\| n > 0\)/first_number(&SIZE_VARS, get)/'
gen launch-fnv-basis src/dist/launch.rs 's/OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;/OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2324;/'
gen launch-reader-drops-bytes src/dist/launch.rs 's/Ok\(n\) => h\.write\(&buf\[\.\.n\]\),/Ok(n) => h.write(&buf[..n.min(4096)]),/'
gen launch-values-ignored src/dist/launch.rs 's/if mine\.1 != theirs\.1 \{/if mine.0 != theirs.0 {/'
gen launch-compared-with-self src/dist/launch.rs 's/let reference = match lists\.first\(\) \{/let reference = match lists.get(t.rank()) {/'
gen launch-trailing-bytes-accepted src/dist/launch.rs 's/msg\.is_empty\(\)\.then_some\(items\)/Some(items)/'
