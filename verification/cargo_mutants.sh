#!/usr/bin/env bash
# An outside judge of the suite: cargo-mutants (not written by us) mutates the protocol
# modules (src/sync, src/queue, src/segments, src/step, src/train/optim.rs) and runs the
# test binaries that check them; a mutant that every test survives is a gap, unless it is
# listed as equivalent in verification/cargo-mutants-equivalent.tsv.
#
# The mutants are made from a copy of the committed tree (HEAD), never from work in
# progress. The full set (about 580 mutants) takes many hours on 2 cores; `--shard K/N`
# (with round-robin sharding, so every file is sampled) runs a fixed, reproducible part.
#
# usage: verification/cargo_mutants.sh [--area A] [--iterate] [cargo-mutants options, e.g. --shard 0/8]
#   --area A    only area A's files (optim, sync, queue, segments or step), tested by the
#               binaries aimed at it: minutes per mutant fewer, a few hours for an area. A
#               mutant these miss may still die in another binary (the rate is a floor).
#   --iterate   re-test only the mutants the previous run in the same output dir missed
# env: CLLM_CM_DIR  work directory (default target/cargo-mutants under the repo)
#      CLLM_CM_TIMEOUT_MULTIPLIER  test timeout over the baseline's test time (default 4;
#      2 suits an otherwise idle machine: a hanging mutant costs less; never under 120 s)
# Prints the outcome counts and the kill rate: caught (incl. timeouts) / viable, where
# viable = caught + missed + timeouts (unviable mutants do not build and prove nothing),
# and lists every missed mutant that is not in the equivalents file.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AREA=""
if [ "${1:-}" = --area ]; then AREA=${2:?--area needs a name}; shift 2; fi
WORK=${CLLM_CM_DIR:-$ROOT/target/cargo-mutants${AREA:+-$AREA}}
EQUIV=$ROOT/verification/cargo-mutants-equivalent.tsv
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
mkdir -p "$WORK"
rm -rf "$WORK/src"; mkdir -p "$WORK/src"
git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$WORK/src"
cd "$WORK/src"
export CARGO_TERM_COLOR=never
unset LOOM_MAX_PREEMPTIONS

# Passed with --cargo-arg, so they limit the build as well as the run: a mutant then
# rebuilds only these binaries, not every test target.
tests_of() { for t in "$@"; do TESTS+=("--cargo-arg=--test=$t"); done; }
TESTS=(--cargo-arg=--lib)
case $AREA in
  "")
    FILES=(--file 'src/sync/*.rs' --file 'src/queue/*.rs' --file 'src/segments/*.rs'
      --file 'src/step/*.rs' --file src/train/optim.rs)
    # The tests that check these modules: unit tests, the model checkers, the properties
    # and the threaded trainer (every test binary that drives a protocol module).
    for t in "$ROOT"/tests/*.rs; do
      case $(basename "$t" .rs) in
        loom_*|shuttle_*|prop_core|prop_segments|prop_threaded|prop_api_mix|train_optim|train_threaded|train_faults|train_errors*|std_wait|std_parks|step_drop|tsan_stress)
          tests_of "$(basename "$t" .rs)" ;;
      esac
    done ;;
  optim) FILES=(--file src/train/optim.rs); tests_of train_optim prop_threaded train_trainer ;;
  sync) FILES=(--file 'src/sync/*.rs'); tests_of std_wait std_parks loom_spin shuttle_spin loom_orderings ;;
  queue) FILES=(--file 'src/queue/*.rs'); tests_of loom_core loom_prefetch shuttle_core shuttle_prefetch prop_core std_parks ;;
  segments) FILES=(--file 'src/segments/*.rs'); tests_of loom_segments shuttle_segments prop_segments prop_core ;;
  step) FILES=(--file 'src/step/*.rs'); tests_of loom_step loom_step_faults shuttle_step train_threaded train_faults prop_threaded step_drop ;;
  *) echo "cargo_mutants.sh: unknown area '$AREA' (optim, sync, queue, segments or step)" >&2; exit 2 ;;
esac

# Round-robin sharding (every file sampled by every shard) needs --shard.
SHARDING=()
for a in "$@"; do case $a in --shard|--shard=*) SHARDING=(--sharding round-robin) ;; esac; done
rc=0
cargo mutants "${FILES[@]}" -o "$WORK" --timeout-multiplier "${CLLM_CM_TIMEOUT_MULTIPLIER:-4}" --minimum-test-timeout 120 \
  "${SHARDING[@]}" "${TESTS[@]}" "$@" || rc=$?
# 2 = some mutants missed, 3 = some timed out: results to count. Anything else (a usage
# error, a failing baseline) is the campaign failing.
case $rc in 0|2|3) ;; *) echo "cargo_mutants.sh: cargo mutants failed (exit $rc)" >&2; exit "$rc" ;; esac

OUT=$WORK/mutants.out
# grep -c prints 0 itself (and exits 1) on an empty file.
count() { if [ -f "$OUT/$1.txt" ]; then grep -c . "$OUT/$1.txt" || true; else echo 0; fi; }
caught=$(count caught); missed=$(count missed); timeout=$(count timeout); unviable=$(count unviable)
viable=$((caught + missed + timeout))
echo "cargo-mutants: caught $caught, timeouts $timeout, missed $missed, unviable $unviable"
# killed / out of, as "k / n = p%" (nothing when n is 0).
rate() { [ "$2" -gt 0 ] && echo "$1 / $2 = $(echo "scale=1; 100 * $1 / $2" | bc)%" || true; }
killed=$((caught + timeout))
echo "kill rate: $(rate "$killed" "$viable")"
# A mutant is matched without its line number (file, column, mutation and function),
# so an entry still matches after an edit above it moves the line.
unline() { sed -E 's/^([^:]+):[0-9]+:([0-9]+):/\1:\2:/'; }
unexplained=0; equivalent=0
if [ -f "$OUT/missed.txt" ]; then
  while IFS= read -r m; do
    if [ -f "$EQUIV" ] && cut -f1 "$EQUIV" | unline | grep -qxF "$(echo "$m" | unline)"; then
      equivalent=$((equivalent + 1)); continue
    fi
    echo "missed (not listed as equivalent): $m"; unexplained=$((unexplained + 1))
  done <"$OUT/missed.txt"
fi
echo "missed and listed as equivalent: $equivalent; missed and not explained: $unexplained"
echo "kill rate without the equivalent mutants: $(rate "$killed" $((viable - equivalent)))"
