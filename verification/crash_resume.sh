#!/usr/bin/env bash
# Crash-resume equivalence, as a property of the `cllm train` binary: a run killed with
# SIGKILL at random moments KILLS times (checkpoints every 2 steps, so many kills land
# mid-checkpoint) and resumed after each kill ends with checkpoint files byte-identical
# (`cmp`) to an uninterrupted run's, and its metrics.jsonl shows every step exactly
# once with the uninterrupted run's loss. After each kill at most the steps since the
# last checkpoint may be lost, and the checkpoint never moves backwards.
# Each resume gives no cadence flag (the run's own must be restored) and picks a
# random thread count and scheduler (neither may change a bit).
# Owns only its scratch directory; never touches the source tree or another run.
# usage: verification/crash_resume.sh [KILLS [SEED]]   (default 5 kills, random seed)
#   CLLM_BIN=path  use this binary instead of building target/release/cllm
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KILLS=${1:-5}
SEED=${2:-$(( $(date +%s%N) % 1000000 ))}
echo "crash_resume: $KILLS kills, seed $SEED (reproduce: $0 $KILLS $SEED)"
RANDOM=$SEED
if [[ -z "${CLLM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release --quiet --bin cllm)
  CLLM_BIN="$ROOT/target/release/cllm"
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cllm-crash-resume.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
EVERY=2
STEPS=$(( 10 * KILLS + 20 ))
MODEL=(--layers 1 --width 8 --heads 2 --context 8 --batch 2 --micro-batches 2)
FRESH=(train "${MODEL[@]}" --steps "$STEPS" --checkpoint-every "$EVERY" --eval-every 5
       --eval-windows 2 --sample-tokens 0 --threads 2)
STATE=(model.safetensors config.json train_state.safetensors train_state.json)
fail() { echo "crash_resume: FAIL (seed $SEED): $*" >&2; exit 1; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The step of the checkpoint `latest` names in $1 (0 if none yet).
ckpt_step() {
  if [[ -f "$1/latest" ]]; then local n; n=$(<"$1/latest"); echo $(( 10#${n#step-} )); else echo 0; fi
}
# "step loss" of every per-step record (those with a loss) in the complete lines of a
# metrics.jsonl (a torn last line, with no newline yet, is left out).
steps_losses() {
  head -n "$(wc -l <"$1")" "$1" | sed -nE '/"loss"/s/.*"loss":([^,}]*).*"step":([0-9]+).*/\2 \1/p'
}
# The step of the last complete per-step record of $1 (0 if none).
last_logged() {
  [[ -f "$1" ]] || { echo 0; return; }
  local s; s=$(steps_losses "$1" | tail -1 | cut -d' ' -f1)
  echo "${s:-0}"
}

t0=$(ms)
"$CLLM_BIN" "${FRESH[@]}" --out "$WORK/ref" >"$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "the uninterrupted run failed"; }
ref_ms=$(( $(ms) - t0 ))
t0=$(ms)
"$CLLM_BIN" train "${MODEL[@]}" --steps 1 --eval-windows 2 --sample-tokens 0 --out "$WORK/probe" >/dev/null 2>&1
start_ms=$(( $(ms) - t0 ))
# The kill comes uniformly within the start-up and a KILLS-th of the whole run, so the
# kills are spread over start-up, training, evaluation and checkpoint writing, and the
# run is not over before the last one.
max_ms=$(( start_ms + ref_ms / KILLS + 1 ))
echo "crash_resume: $STEPS steps, checkpoint every $EVERY; uninterrupted run ${ref_ms} ms; kill within 0-${max_ms} ms"

RUN="$WORK/run"
prev=0 mid=0 starts=0
for ((i = 1; i <= KILLS; i++)); do
  threads=$(( RANDOM % 3 + 1 ))
  sched=$([[ $(( RANDOM % 2 )) == 0 ]] && echo lockfree || echo barrier)
  if [[ -f "$RUN/latest" ]]; then
    args=(train --resume "$RUN" --threads "$threads" --scheduler "$sched")
  else
    args=("${FRESH[@]}" --out "$RUN"); starts=$((starts + 1))
  fi
  delay=$(( RANDOM * 32768 + RANDOM ))
  delay=$(( delay % max_ms ))
  touch "$WORK/round-start"
  "$CLLM_BIN" "${args[@]}" >"$WORK/round.log" 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $(( delay / 1000 )) $(( delay % 1000 )))"
  kill -9 "$pid" 2>/dev/null || true
  rc=0; wait "$pid" 2>/dev/null || rc=$?
  [[ $rc == 0 ]] && fail "round $i: the run finished before its kill (make it longer)"
  [[ $rc == 137 ]] || { cat "$WORK/round.log"; fail "round $i: exit status $rc, not the kill's 137"; }
  k=$(ckpt_step "$RUN")
  logged=$(last_logged "$RUN/metrics.jsonl")
  # Killed while writing a checkpoint: a temporary directory or file this round began,
  # or the new checkpoint renamed into place before the old one was removed.
  if [[ -n $(find "$RUN" -maxdepth 2 -newer "$WORK/round-start" -name '.*tmp-*' ! -name '.metrics.jsonl.tmp-*' 2>/dev/null) ]] \
     || (( $(compgen -G "$RUN/step-*" | wc -l) > 1 )); then
    mid=$((mid + 1))
  fi
  (( k >= prev )) || fail "round $i: the checkpoint went back from step $prev to $k"
  (( logged - k <= EVERY )) || fail "round $i: logged step $logged but checkpoint only at $k (more than $EVERY steps lost)"
  prev=$k
done
"$CLLM_BIN" train --resume "$RUN" --threads 2 >"$WORK/final.log" 2>&1 || { cat "$WORK/final.log"; fail "the final resume failed"; }

final=$(printf 'step-%08d' "$STEPS")
[[ "$(<"$RUN/latest")" == "$final" ]] || fail "latest is $(<"$RUN/latest"), not $final"
for f in "${STATE[@]}"; do
  cmp "$WORK/ref/$final/$f" "$RUN/$final/$f" || fail "$f differs from the uninterrupted run's"
done
steps_losses "$WORK/ref/metrics.jsonl" >"$WORK/ref.steps"
steps_losses "$RUN/metrics.jsonl" >"$WORK/run.steps"
[[ $(wc -l <"$WORK/ref.steps") == "$STEPS" ]] || fail "the uninterrupted run logged $(wc -l <"$WORK/ref.steps") steps"
diff "$WORK/ref.steps" "$WORK/run.steps" >/dev/null \
  || fail "metrics.jsonl does not show each step once with the uninterrupted loss: $(diff "$WORK/ref.steps" "$WORK/run.steps" | head -5)"
echo "crash_resume: OK: $KILLS kills ($mid mid-checkpoint, $starts fresh start(s)), final checkpoint byte-identical, each of $STEPS steps logged once (seed $SEED)"
