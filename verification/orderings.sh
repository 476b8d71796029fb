#!/usr/bin/env bash
# The ordering campaign: every non-Relaxed atomic ordering in src/ has a seeded bug
# that weakens it (verification/orderings.md has the table and the reasoning). This
# script applies each bug to a scratch copy of HEAD and runs its killer:
#   * loom-killed bugs (verification/mutants/catalogue-orderings.tsv, plus the older
#     ordering bugs of catalogue.tsv and catalogue-dist.tsv listed in REUSED below): through
#     verification/mutants.sh, which also runs them in the CI campaign;
#   * TSan-killed bugs (verification/orderings-tsan.tsv, read only here): one TSan build
#     of tests/tsan_stress.rs per bug, then the binary run CLLM_TSAN_RUNS times (default
#     5); a bug counts as killed only if every run reports (k/5 printed);
#   * bugs judged not to be bugs (verification/orderings-judged.tsv: the ordering is
#     stronger than the protocol needs; one is left): with --judged, their listed checks
#     are run and the bug is expected to survive them (a kill means the judgement is
#     wrong);
#   * --sites (no build, a second): every non-Relaxed ordering in src/ (the grep in
#     verification/orderings.md) is a line that one of those bugs' patches changes;
#     a new ordering without a seeded bug fails it, naming file:line.
# usage: verification/orderings.sh [--sites] [--loom] [--tsan] [--judged] [ID ...]
#   no section flag = --sites --loom --tsan; IDs restrict the other sections to those bugs.
# env: CLLM_ORDERINGS_DIR scratch dir (default target/orderings), CLLM_TSAN_RUNS (5),
#      CLLM_TSAN_TARGET cargo target dir of the TSan builds (default CLLM_ORDERINGS_DIR/tsan-target;
#      pointing it at target/tsan reuses verification/tsan.sh's instrumented dependencies).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${CLLM_ORDERINGS_DIR:-$ROOT/target/orderings}
RUNS=${CLLM_TSAN_RUNS:-5}
TSAN_TARGET=${CLLM_TSAN_TARGET:-$SCRATCH/tsan-target}
REUSED=(wq-publish-relaxed wq-consume-relaxed event-no-fence pf-publish-relaxed seg-publish-relaxed dist-arrived-relaxed)
DO_LOOM=0; DO_TSAN=0; DO_SITES=0; DO_JUDGED=0; ONLY=()
for a in "$@"; do
  case $a in
    --loom) DO_LOOM=1 ;; --tsan) DO_TSAN=1 ;; --sites) DO_SITES=1 ;; --judged) DO_JUDGED=1 ;;
    *) ONLY+=("$a") ;;
  esac
done
[ $DO_LOOM$DO_TSAN$DO_SITES$DO_JUDGED = 0000 ] && { DO_LOOM=1; DO_TSAN=1; DO_SITES=1; }
mkdir -p "$SCRATCH/logs"
selected() { [ ${#ONLY[@]} -eq 0 ] || printf '%s\n' "${ONLY[@]}" | grep -qx "$1"; }
ids_of() { grep -v -E '^(#|$)' "$1" | cut -f1; }
status=0

# A fresh copy of HEAD with bug $1 applied, in $SCRATCH/work.
copy_patched() {
  rm -rf "$SCRATCH/work"; mkdir -p "$SCRATCH/work"
  git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SCRATCH/work"
  find "$SCRATCH/work" -type f -exec touch {} +
  (cd "$SCRATCH/work" && patch -p1 -s <"$ROOT/verification/mutants/$1.patch")
}

if [ $DO_SITES = 1 ]; then
  echo "== every non-Relaxed ordering in src/ has a seeded bug"
  # The old-file line numbers each ordering patch removes or changes, as FILE:LINE.
  covered=$(for id in "${REUSED[@]}" $(ids_of "$ROOT/verification/mutants/catalogue-orderings.tsv") \
      $(ids_of "$ROOT/verification/orderings-tsan.tsv") $(ids_of "$ROOT/verification/orderings-judged.tsv"); do
    awk '/^--- a\// { f = substr($2, 3) } /^@@/ { split($2, a, ","); n = -a[1] - 1; next }
         /^-/ && !/^---/ { n++; print f ":" n; next } /^ / { n++ }' "$ROOT/verification/mutants/$id.patch"
  done | sort -u)
  sites=$(cd "$ROOT" && grep -rn -E '\b(Acquire|Release|AcqRel|SeqCst)\b' src \
    | grep -v -E '^\S+:\s*(//|///|//!)' | cut -d: -f1,2)
  missing=$(comm -23 <(printf '%s\n' "$sites" | sort -u) <(printf '%s\n' "$covered"))
  echo "$(printf '%s\n' "$sites" | grep -c .) sites; $(printf '%s\n' "$missing" | grep -c .) without a seeded bug"
  if [ -n "$missing" ]; then printf 'no seeded bug weakens %s\n' $missing; status=1; fi
fi

if [ $DO_LOOM = 1 ]; then
  ids=()
  for id in "${REUSED[@]}" $(ids_of "$ROOT/verification/mutants/catalogue-orderings.tsv"); do
    selected "$id" && ids+=("$id")
  done
  if [ ${#ids[@]} -gt 0 ]; then
    echo "== loom-killed ordering bugs (verification/mutants.sh)"
    CLLM_MUTANT_DIR=$SCRATCH/mut bash "$ROOT/verification/mutants.sh" "${ids[@]}" || status=1
  fi
fi

if [ $DO_TSAN = 1 ] && [ -s "$ROOT/verification/orderings-tsan.tsv" ]; then
  echo "== TSan-killed ordering bugs ($RUNS runs each, one build each)"
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then cargo=(cargo +nightly)
  else export RUSTC_BOOTSTRAP=1; cargo=(cargo); fi
  # tsan_build: build tests/tsan_stress.rs in $SCRATCH/work under TSan; print the binary.
  tsan_build() {
    (cd "$SCRATCH/work" && RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
      CARGO_TARGET_DIR=$TSAN_TARGET "${cargo[@]}" test --target x86_64-unknown-linux-gnu \
      --test tsan_stress --no-run --message-format=json 2>>"$1" \
      | grep -o '"executable":"[^"]*tsan_stress[^"]*"' | cut -d'"' -f4 | tail -1)
  }
  tsan_run() {
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$ROOT/verification/tsan.supp" \
      timeout 600 "$1" >>"$2" 2>&1
  }
  # Baseline: the unmutated binary must run clean, or a report would mean nothing.
  log=$SCRATCH/logs/baseline.tsan.log
  rm -rf "$SCRATCH/work"; mkdir -p "$SCRATCH/work"
  git -C "$ROOT" archive --format=tar HEAD | tar -x -C "$SCRATCH/work"
  find "$SCRATCH/work" -type f -exec touch {} +
  bin=$(tsan_build "$log")
  if [ -z "$bin" ] || ! tsan_run "$bin" "$log"; then
    echo "TSan baseline: the unmutated tsan_stress does not run clean (see $log); TSan kills not counted"
    exit 2
  fi
  echo "TSan baseline: the unmutated tsan_stress runs clean"
  printf '%-36s %-8s %s\n' bug reports description
  while IFS=$'\t' read -r id checks desc; do
    case "$id" in ''|'#'*) continue ;; esac
    selected "$id" || continue
    log=$SCRATCH/logs/$id.tsan.log
    if ! copy_patched "$id" >"$log" 2>&1; then
      printf '%-36s %-8s %s\n' "$id" "NO PATCH" "$desc"; status=1; continue
    fi
    bin=$(tsan_build "$log")
    if [ -z "$bin" ]; then
      printf '%-36s %-8s %s\n' "$id" "NO BUILD" "$desc"; status=1; continue
    fi
    k=0
    for _ in $(seq "$RUNS"); do
      tsan_run "$bin" "$log" || k=$((k + 1))
    done
    printf '%-36s %-8s %s\n' "$id" "$k/$RUNS" "$desc"
    [ $k -eq "$RUNS" ] || status=1
  done <"$ROOT/verification/orderings-tsan.tsv"
fi

if [ $DO_JUDGED = 1 ] && [ -s "$ROOT/verification/orderings-judged.tsv" ]; then
  echo "== ordering weakenings judged not to be bugs (expected to survive)"
  printf '%-36s %-22s %s\n' bug result description
  while IFS=$'\t' read -r id checks desc; do
    case "$id" in ''|'#'*) continue ;; esac
    selected "$id" || continue
    log=$SCRATCH/logs/$id.judged.log
    if ! copy_patched "$id" >"$log" 2>&1; then
      printf '%-36s %-22s %s\n' "$id" "NO PATCH" "$desc"; status=1; continue
    fi
    result="survives (as judged)"
    for check in $checks; do
      target=${check#*:}
      if ! (cd "$SCRATCH/work" && CARGO_TARGET_DIR=$SCRATCH/mut/target timeout 600 \
            cargo test -q --test "$target") >>"$log" 2>&1; then
        result="KILLED by $check"; status=1; break
      fi
    done
    printf '%-36s %-22s %s\n' "$id" "$result" "$desc"
  done <"$ROOT/verification/orderings-judged.tsv"
fi
exit $status
