# Seeded bugs of the text path: the tokenizers (src/data/tokenizer.rs), the token cache
# (src/data/cache.rs), the word corpus (src/data/words.rs), preparing a run's text
# (src/data/prepare.rs), the default schedule, and the CLI's text checks.
# Sourced by regenerate.sh (`gen ID FILE EXPR`); catalogue-text.tsv names their killers.
gen text-warmup-share-of-run src/cli/train.rs 's/warmup: args\.warmup\.unwrap_or\(DEFAULT_WARMUP\),/warmup: args.warmup.unwrap_or(steps \/ 20),/'
gen text-bpe-sees-validation src/data/prepare.rs 's/let text = utf8\(train_text\)\?;/let text = utf8(&bytes)?;/'
gen text-bytes-per-token-of-inputs src/data/prepare.rs 's/val\.read\(start \+ 1, &mut window\);/val.read(start, &mut window);/'
gen text-empty-val-accepted src/data/prepare.rs 's/let none_asked = split == "validation" && self\.val_fraction == 0\.0;/let none_asked = split == "validation" \&\& n == 0;/'
gen text-refused-run-keeps-dirs src/cli/train.rs 's/let mut created = Created::new\(&\[&out, &cache_dir\]\);/let mut created = Created::new(\&[]);/'
gen text-checkpoint-vocab-unchecked src/cli/text.rs 's/if tokenizer\.vocab_size\(\) != ckpt\.model\.vocab_size \{/if false \&\& tokenizer.vocab_size() != ckpt.model.vocab_size {/'
gen text-cache-cut-after-space src/data/cache.rs 's/p > 0 && buf\[p\] == b && !whitespace_before\(buf, p\)/p > 0 \&\& buf[p] == b/'
gen text-words-floor-without-space src/data/words.rs 's/mean_bytes \+= w \* p \* src\.spelled_len\(a, b\) as f64;/mean_bytes += w * p * src.spelled_len(a, b).saturating_sub(1) as f64;/'
gen text-gpt2-merges-from-all-ranks src/data/tokenizer.rs 's/let parts = bpe_below\(piece, &ranks, rank as u32\);/let parts = bpe_below(piece, \&ranks, n as u32);/'
# A positional window read advances its file offset by the tokens of a 4 KiB piece, not
# their bytes: a window longer than one piece reads its later pieces from the wrong place.
gen text-pread-advance-by-tokens src/data/cache.rs 's/at \+= bytes\.len\(\) as u64;/at += chunk.len() as u64;/'
