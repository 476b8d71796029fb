#!/usr/bin/env bash
# Seeded-bug campaign: apply each patch in verification/mutants/ to a scratch copy of the
# committed tree (HEAD), run the checks listed for it in catalogue*.tsv (in order, stopping at the
# first that fails), and print a table: bug, which check killed it, time to kill.
# Exit status is non-zero if any bug survives or any patch no longer applies. A bug in an
# instruction-set path this CPU lacks is listed as not run (verification/cpu.sh).
#
# usage: verification/mutants.sh [--all] [ID ...]
#   --all   run every listed check for each bug (shows every tool that kills it)
#   ID      only these bugs (default: all in the catalogue)
# env: CLLM_MUTANT_DIR   scratch directory (default: target/mutants under the repo)
#      CLLM_MUTANT_TIMEOUT  seconds per check before it counts as a hang (default 600; the first TSan build alone takes minutes)
#      CLLM_FUZZ_SECONDS    seconds per fuzz check (default 60)
#      CLLM_MUTANT_TARGET_DIR, CLLM_MUTANT_LSAN_DIR  build directories (default under the scratch
#                           directory; CI points them at the repo's own, so dependencies are not
#                           rebuilt). Cargo names cllm's artifacts by package, not by path, and
#                           checks them against source times relative to the package root: a
#                           later build in the repo would take a mutant's binary as fresh. So
#                           when these point outside the scratch directory, the campaign touches
#                           the repo's sources on exit, and the repo's next build rebuilds cllm.
#      CLLM_MUTANT_BASELINE=skip  do not re-run the checks on the unmutated copy (only after
#                           the full suite passed on the same committed tree, as in CI)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${CLLM_MUTANT_DIR:-$ROOT/target/mutants}
TIMEOUT=${CLLM_MUTANT_TIMEOUT:-600}
FUZZ_SECONDS=${CLLM_FUZZ_SECONDS:-60}
# The catalogue: catalogue.tsv plus one catalogue-AREA.tsv per area, read in name order.
CATALOGUES=("$ROOT"/verification/mutants/catalogue*.tsv)
# shellcheck source=verification/cpu.sh
. "$ROOT/verification/cpu.sh"
ALL=0
if [ "${1:-}" = "--all" ]; then ALL=1; shift; fi
ONLY=("$@")

mkdir -p "$SCRATCH"
LOG=$SCRATCH/logs
mkdir -p "$LOG"
export CARGO_TARGET_DIR=${CLLM_MUTANT_TARGET_DIR:-$SCRATCH/target}   # shared by all mutants: only cllm rebuilds
if [ -n "${CLLM_MUTANT_TARGET_DIR:-}${CLLM_MUTANT_LSAN_DIR:-}" ]; then
  # Mutants' artifacts land where the repo builds: make the repo's sources newer than them.
  trap 'find "$ROOT/src" "$ROOT/tests" "$ROOT/benches" "$ROOT/examples" "$ROOT/fuzz" \
    -name "*.rs" -exec touch {} +' EXIT
fi
export CARGO_TERM_COLOR=never
unset LOOM_MAX_PREEMPTIONS

# run_check ID CHECK -> exit status of the check (0 = the bug survived this check)
run_check() {
  local id=$1 check=$2 tool target filter
  tool=${check%%:*}; target=${check#*:}; filter=""
  if [ "$target" != "${target#*:}" ]; then filter=${target#*:}; target=${target%%:*}; fi
  local log="$LOG/$id.$tool.$target.log"
  case $tool in
    loom|shuttle|prop|test)
      (cd "$SCRATCH/work" && timeout "$TIMEOUT" cargo test -q --test "$target" -- $filter) >"$log" 2>&1 ;;
    lib)
      (cd "$SCRATCH/work" && timeout "$TIMEOUT" cargo test -q --lib -- "$target") >"$log" 2>&1 ;;
    fuzz)
      (cd "$SCRATCH/work" && CLLM_FUZZ_TARGETS=$target timeout "$((TIMEOUT + FUZZ_SECONDS))" \
        bash verification/fuzz.sh "$FUZZ_SECONDS") >"$log" 2>&1 ;;
    tsan)
      (cd "$SCRATCH/work" && timeout "$TIMEOUT" bash verification/tsan.sh) >"$log" 2>&1 ;;
    lsan)
      (cd "$SCRATCH/work" && CLLM_LSAN_TARGET_DIR=${CLLM_MUTANT_LSAN_DIR:-$SCRATCH/lsan} timeout "$TIMEOUT" bash verification/lsan.sh) >"$log" 2>&1 ;;
    *) echo "unknown check $check" >"$log"; return 0 ;;
  esac
}

# copy_tree: a fresh scratch copy of the committed tree (HEAD). Uncommitted edits are
# deliberately not included: work in progress must not decide whether a bug is killed.
copy_tree() {
  rm -rf "$SCRATCH/work"; mkdir -p "$SCRATCH/work"
  git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SCRATCH/work"
  # git archive stamps every file with the commit time, older than a mutant built
  # earlier in the shared target directory: touch the sources so cargo rebuilds.
  find "$SCRATCH/work" -type f -exec touch {} +
}

# build_failed LOG: the check did not get as far as running (a mutant that does not
# compile proves nothing about the checks).
build_failed() { grep -qE '^error\[E[0-9]+\]|could not compile' "$1"; }

# The selected rows of the catalogue.
SELECTED=$SCRATCH/selected.tsv
: >"$SELECTED"
while IFS=$'\t' read -r id checks desc; do
  case "$id" in ''|'#'*) continue ;; esac
  if [ ${#ONLY[@]} -gt 0 ] && ! printf '%s\n' "${ONLY[@]}" | grep -qx "$id"; then continue; fi
  printf '%s\t%s\t%s\n' "$id" "$checks" "$desc" >>"$SELECTED"
done < <(cat "${CATALOGUES[@]}")

# Baseline: every check must pass on the unmutated copy, or a kill would mean nothing.
# CLLM_MUTANT_BASELINE=skip trusts a run of the same committed tree's full checks that
# already passed (CI runs cargo test, TSan, LSan and the fuzz smoke on the clean clone
# first, and every check here is a part of one of those).
copy_tree
checks_all=$(cut -f2 "$SELECTED" | tr ' ' '\n' | grep . | sort -u)
if [ "${CLLM_MUTANT_BASELINE:-run}" = skip ]; then
  echo "baseline: skipped (CLLM_MUTANT_BASELINE=skip: the full suite passed on this tree)"
  checks_all=""
fi
for check in $checks_all; do
  run_check baseline "$check"; status=$?
  if [ $status -eq 124 ]; then
    echo "baseline: check $check timed out after ${TIMEOUT}s on the unmutated source (loaded machine? raise CLLM_MUTANT_TIMEOUT); aborting"
    exit 2
  elif [ $status -ne 0 ]; then
    echo "baseline: check $check fails on the unmutated source (see $LOG/baseline.*); aborting"
    exit 2
  fi
done
[ -z "$checks_all" ] || echo "baseline: all $(echo "$checks_all" | wc -l) checks pass on the unmutated source"

printf '%-28s %-34s %8s  %s\n' "bug" "killed by" "seconds" "description"
survivors=0; total=0; not_run=0
while IFS=$'\t' read -r id checks desc; do
  missing=$(cpu_missing "$id")
  if [ -n "$missing" ]; then
    printf '%-28s %-34s %8s  %s\n' "$id" "NOT RUN (CPU lacks $missing)" "-" "$desc"
    not_run=$((not_run + 1)); continue
  fi
  total=$((total + 1))
  copy_tree
  if ! (cd "$SCRATCH/work" && patch -p1 -s <"$ROOT/verification/mutants/$id.patch") >"$LOG/$id.patch.log" 2>&1; then
    printf '%-28s %-34s %8s  %s\n' "$id" "PATCH DOES NOT APPLY" "-" "$desc"
    survivors=$((survivors + 1)); continue
  fi
  killers=""; first_time=""
  for check in $checks; do
    start=$(date +%s.%N)
    run_check "$id" "$check"; status=$?
    secs=$(printf '%.0f' "$(echo "$(date +%s.%N) - $start" | bc)")
    if [ $status -ne 0 ] && build_failed "$LOG/$id.${check%%:*}.$(echo "${check#*:}" | cut -d: -f1).log"; then
      killers="BUILD FAILS ($check)"; first_time=""; break
    fi
    if [ $status -ne 0 ]; then
      label=$check; [ $status -eq 124 ] && label="$check(hang)"
      killers="${killers:+$killers,}$label"; first_time=${first_time:-$secs}
      [ $ALL -eq 1 ] || break
    fi
  done
  if [ "${killers#BUILD FAILS}" != "$killers" ]; then
    printf '%-28s %-34s %8s  %s\n' "$id" "$killers" "-" "$desc"
    survivors=$((survivors + 1))
  elif [ -z "$killers" ]; then
    printf '%-28s %-34s %8s  %s\n' "$id" "SURVIVED" "-" "$desc"
    survivors=$((survivors + 1))
  else
    printf '%-28s %-34s %8s  %s\n' "$id" "$killers" "$first_time" "$desc"
  fi
done <"$SELECTED"
echo "seeded bugs: $((total - survivors)) killed, $survivors survived (of $total)"
[ $not_run -eq 0 ] || echo "seeded bugs not run: $not_run (their code needs CPU features this machine lacks; run them on one that has them)"
[ $survivors -eq 0 ]
