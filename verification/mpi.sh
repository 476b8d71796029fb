#!/usr/bin/env bash
# The MPI checks (CI section): cllm across R processes under a real MPI launcher
# (OpenMPI's mpirun on this machine) gives the single-process bits, and every bad
# launch is refused.
# 1. The transport alone (examples/mpi_collectives): all-to-alls and all-gathers of
#    messages of different lengths (empty and several-MiB ones included) checked byte
#    for byte on every rank, the launch agreement over MPI, for R = 1, 2, 3; and
#    Transport::fail on one rank ending the whole job non-zero within the bound.
# 2. `cllm train` under `mpirun -np R` for R = 1, 2, 3: the final checkpoint's files
#    (model.safetensors, config.json, train_state.safetensors, train_state.json) `cmp`
#    equal to a single-process run's, and metrics.jsonl's step, loss, grad_norm, lr
#    and val_loss identical; also for R = 2, 3 at the default width (0.4M parameters,
#    about 2 MiB sent per rank per step), and for 2 ranks on different instruction-set
#    paths (rank 1 CLLM_ISA=portable).
# 3. Stopped at step 8 with 2 ranks (--stop-at), resumed with 3: the same final bits
#    and metrics (plus the evaluation a stop makes at its step).
# 4. A 2-rank run with checkpoints: one rank killed with SIGKILL once a checkpoint
#    exists (once the non-writing rank, once the writing rank 0): mpirun exits non-zero
#    within 30 s and the last checkpoint loads (`cllm eval`). Rank 0 failing to write
#    its checkpoint ends the job naming rank and step. A panic injected into one rank's
#    step 12 (the `fault-injection` build's CLLM_FAULT_PANIC, once on each rank): the
#    job ends non-zero within 30 s, the message names rank and step, step 10's
#    checkpoint loads.
# 5. Bad launches refused, non-zero, writing no checkpoint: 4 ranks for 3
#    micro-batches; ranks with different arguments (OpenMPI MPMD, --seed 1 vs --seed 2;
#    names `arguments`); a binary differing by one trailing byte (names `binary`);
#    texts differing by one byte (names `data`); one rank failing before MPI starts (a
#    bad CLLM_ISA); the build without the mpi feature started as 2 processes. For the
#    first and the last, also with mpirun told not to end the job at the first non-zero
#    exit: every rank prints the message and exits non-zero by itself. (The build
#    without the feature under `mpirun -np 1` still trains, with the single-process
#    bits.)
# Installs OpenMPI, libclang and jq with apt-get if missing; builds cllm without and
# then with `--features mpi` (copies of both, and of the example, run from a scratch
# directory, so a concurrent rebuild cannot swap a binary mid-check). The builds use the
# release profile, or with CLLM_MPI_PROFILE=test the test profile that `cargo test`
# has already built every dependency in (CI's choice: it saves two full dependency
# builds; the checks compare bits, which do not depend on the optimisation level).
# Lints the MPI code (`cargo clippy --features mpi,fault-injection`; CI's clippy builds
# without them).
# Every mpirun is bounded by `timeout`. Prints PASS/FAIL per check and a summary;
# exits non-zero on any failure. Owns only its scratch directory and the processes it
# starts.
# usage: verification/mpi.sh            env: CLLM_MPI_TRANSPORT_ONLY=1 runs part 1 only,
#                                            CLLM_MPI_PROFILE=release|test (default release)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# shellcheck source=verification/mpi_profile.sh
. "$ROOT/verification/mpi_profile.sh"
case $PROFILE in
  # Without the feature, the test profile's binary is the one `cargo test` builds (a
  # plain `cargo build --profile test` would resolve features without the
  # dev-dependencies and rebuild the crate).
  release) NOMPI_BUILD=(cargo build --release --quiet --bin cllm) ;;
  test) NOMPI_BUILD=(cargo test --no-run --quiet) ;;
esac
T0=$(date +%s%N)
ms() { echo $(( $(date +%s%N) / 1000000 )); }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cllm-mpi.XXXXXX")
BG=()
cleanup() {
  local p
  for p in "${BG[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

PASSED=() FAILED=()
pass() { PASSED+=("$1"); printf 'PASS  %-58s %6s ms\n' "$1" "$2"; }
failc() {
  FAILED+=("$1"); printf 'FAIL  %-58s %6s ms\n' "$1" "$2"
  shift 2; [[ $# -gt 0 ]] && printf '      %s\n' "$@"
  return 0
}
# check NAME FUNCTION ARGS...: runs FUNCTION (which prints why on failure, and
# `info: ` lines worth showing on success) and times it.
check() {
  local name=$1; shift
  local t0 out rc; t0=$(ms)
  out=$("$@" 2>&1); rc=$?
  if [[ $rc == 0 ]]; then pass "$name" $(( $(ms) - t0 )); grep -E '^info: ' <<<"$out" | sed 's/^/      /';
  else failc "$name" $(( $(ms) - t0 )) "$(tail -n 25 <<<"$out")"; fi
}
summary() {
  echo
  echo "mpi.sh: ${#PASSED[@]} passed, ${#FAILED[@]} failed in $(( ($(date +%s%N) - T0) / 1000000000 )) s"
  local f; for f in "${FAILED[@]}"; do echo "  FAILED: $f"; done
  [[ ${#FAILED[@]} == 0 ]] && echo "mpi.sh: PASS" || echo "mpi.sh: FAIL"
  [[ ${#FAILED[@]} == 0 ]]
}

# ---- toolchain -------------------------------------------------------------------
need=()
for pkg in openmpi-bin libopenmpi-dev libclang-dev jq; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
  echo "mpi.sh: installing ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$WORK/apt.log" 2>&1 \
    || { cat "$WORK/apt.log"; echo "mpi.sh: FAIL (apt-get install ${need[*]})"; exit 1; }
fi
echo "mpi.sh: $(mpirun --version 2>&1 | head -1)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Root may run mpirun; more ranks than cores; no core binding (a rank's threads
# must not share one core).
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
LIMIT=90   # seconds for any one mpirun

# ---- builds ----------------------------------------------------------------------
t0=$(ms)
if ! "${NOMPI_BUILD[@]}" >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"; failc "build without the mpi feature" $(( $(ms) - t0 )); summary; exit 1
fi
cp "$OUT/cllm" "$WORK/cllm-nompi"
if cargo tree -e normal --prefix none | grep -qE '^mpi(-sys)? '; then
  failc "default build has no mpi dependency" 0 "$(cargo tree -e normal --prefix none | grep -E '^mpi')"
else
  pass "default build has no mpi dependency (cargo tree -e normal)" 0
fi
if ! cargo build --profile "$PROFILE" --quiet --features "$MPI_FEATURES" --bin cllm --example mpi_collectives >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"; failc "build with --features mpi" $(( $(ms) - t0 )); summary; exit 1
fi
# Copied at once: a later build in the same target directory re-links these paths.
cp "$OUT/cllm" "$WORK/cllm"
cp "$OUT/examples/mpi_collectives" "$WORK/mpi_collectives"
# CI's own clippy section builds without the feature: lint the MPI code here.
t1=$(ms)
if cargo clippy --quiet --features "$MPI_FEATURES" --lib --bins --examples -- -D warnings >"$WORK/clippy.log" 2>&1; then
  pass "cargo clippy --features mpi (lib, bins, examples)" $(( $(ms) - t1 ))
else
  failc "cargo clippy --features mpi (lib, bins, examples)" $(( $(ms) - t1 )) "$(tail -n 30 "$WORK/clippy.log")"
fi
echo "mpi.sh: builds ($PROFILE profile) done in $(( $(ms) - t0 )) ms"
CLLM="$WORK/cllm"
EX="$WORK/mpi_collectives"

# ---- 1. the transport alone ------------------------------------------------------
transport_check() {
  local r=$1 out rc
  out=$(timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np "$r" "$EX" check 2>&1); rc=$?
  echo "$out"
  [[ $rc == 0 ]] || { echo "exit status $rc"; return 1; }
  local ok; ok=$(grep -o "ok (" <<<"$out" | wc -l)
  [[ $ok == "$r" ]] || { echo "$ok of $r ranks reported ok"; return 1; }
}
transport_fail() {
  local r=$1 k=$2 out rc t0; t0=$(ms)
  out=$(timeout -k 5 30 "${MPIRUN[@]}" -np "$r" "$EX" fail "$k" 2>&1); rc=$?
  echo "$out"
  echo "info: exit status $rc after $(( $(ms) - t0 )) ms"
  [[ $rc != 0 ]] || { echo "the job exited 0 although rank $k failed"; return 1; }
  [[ $rc != 124 && $rc != 137 ]] || { echo "the job did not end within 30 s"; return 1; }
  grep -q "^rank $k of $r: deliberate failure" <<<"$out" || { echo "no 'rank $k of $r: ...' line"; return 1; }
  ! grep -q "a collective returned" <<<"$out" || { echo "a peer's collective returned"; return 1; }
}
for r in 1 2 3; do check "transport: all_to_all/all_gather/agreement, R=$r" transport_check "$r"; done
check "transport: fail on rank 1 of 3 ends the job non-zero" transport_fail 3 1
check "transport: fail on rank 0 of 2 ends the job non-zero" transport_fail 2 0
# A rank that panics between collectives: its panic hook aborts it (unwinding would
# reach MPI_Finalize, which waits for the others while they wait for it); the job ends.
transport_panic() {
  local r=$1 k=$2 out rc t0; t0=$(ms)
  out=$(timeout -k 5 30 "${MPIRUN[@]}" -np "$r" "$EX" panic "$k" 2>&1); rc=$?
  echo "$out" | grep -v '^\s*$' | tail -n 6
  echo "info: exit status $rc after $(( $(ms) - t0 )) ms"
  [[ $rc != 0 ]] || { echo "the job exited 0 although rank $k panicked"; return 1; }
  [[ $rc != 124 && $rc != 137 ]] || { echo "the job did not end within 30 s"; return 1; }
  grep -q "rank $k of $r: panicked" <<<"$out" || { echo "no 'rank $k of $r: panicked' line"; return 1; }
  ! grep -q "a collective returned" <<<"$out" || { echo "a peer's collective returned"; return 1; }
}
check "transport: a panic on rank 1 of 2 ends the job non-zero" transport_panic 2 1

if [[ "${CLLM_MPI_TRANSPORT_ONLY:-0}" == 1 ]]; then summary; exit $?; fi

# ---- 2. cllm train under mpirun: the single-process bits -------------------------
MODEL=(--layers 1 --width 32 --heads 2 --context 16 --batch 2 --micro-batches 6)
RUN=(--steps 20 --eval-every 10 --eval-windows 4 --sample-tokens 0)
STATE=(model.safetensors config.json train_state.safetensors train_state.json)

# The per-step numbers of a metrics.jsonl (no timings, no provenance).
numbers() {
  jq -c 'select(.loss != null) | {step, loss, grad_norm, lr, val_loss}' "$1"
}
# The rank count the run's last summary record reports (empty for a single-process
# run, which has none): proof that the ranks trained as one group, not as copies.
ranks_of() {
  jq -rs '[.[] | select(.ranks != null)] | last | .ranks // empty' "$1/metrics.jsonl"
}
# has_ranks DIR R
has_ranks() {
  local got; got=$(ranks_of "$1")
  [[ "$got" == "$2" ]] || { echo "$1: the run's summary reports ranks '${got}', want $2"; return 1; }
}
# same_run REF DIR [STOP]: the checkpoint `latest` names in each has the same name and
# the same bytes, and the metrics have the same numbers (except, with STOP, the
# validation loss of DIR's step STOP: a run stopped there evaluates there).
same_run() {
  local ref=$1 dir=$2 stop=${3:-0} f
  [[ -f "$dir/latest" ]] || { echo "$dir has no checkpoint"; return 1; }
  [[ "$(<"$ref/latest")" == "$(<"$dir/latest")" ]] || { echo "latest: $(<"$ref/latest") vs $(<"$dir/latest")"; return 1; }
  for f in "${STATE[@]}"; do
    cmp "$ref/$(<"$ref/latest")/$f" "$dir/$(<"$dir/latest")/$f" || return 1
  done
  local a b; a=$(numbers "$ref/metrics.jsonl")
  b=$(numbers "$dir/metrics.jsonl" | jq -c --argjson s "$stop" 'if .step == $s then .val_loss = null else . end')
  [[ -n "$a" ]] || { echo "no per-step records in $ref/metrics.jsonl"; return 1; }
  [[ "$a" == "$b" ]] || { echo "metrics differ:"; diff <(echo "$a") <(echo "$b") | head -10; return 1; }
}
ranks_run() { # ranks_run R THREADS OUT [ARGS...]
  local r=$1 t=$2 out=$3; shift 3
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np "$r" "$CLLM" train "${MODEL[@]}" "${RUN[@]}" \
    --threads "$t" --out "$out" "$@" >"$out.log" 2>&1
  local rc=$?
  [[ $rc == 0 ]] || { tail -n 20 "$out.log"; echo "mpirun -np $r: exit status $rc"; return 1; }
}
reference() {
  "$CLLM" train "${MODEL[@]}" "${RUN[@]}" --threads 2 --out "$WORK/ref" >"$WORK/ref.log" 2>&1 \
    || { cat "$WORK/ref.log"; return 1; }
  [[ -n "$(numbers "$WORK/ref/metrics.jsonl")" ]] || { echo "reference has no per-step metrics"; return 1; }
}
ranks_equal() { # ranks_equal R THREADS
  ranks_run "$1" "$2" "$WORK/r$1" && has_ranks "$WORK/r$1" "$1" && same_run "$WORK/ref" "$WORK/r$1"
}
check "reference: cllm train, one process (no mpirun), 2 threads" reference
check "R=1 x 2 threads: checkpoint cmp-equal, same losses" ranks_equal 1 2
check "R=2 x 2 threads: checkpoint cmp-equal, same losses" ranks_equal 2 2
check "R=3 x 1 thread: checkpoint cmp-equal, same losses" ranks_equal 3 1

# The default width (0.4M parameters): each step sends about 2 MiB per rank, past
# OpenMPI's eager limits, through the rendezvous protocol.
BIG=(--layers 2 --width 128 --heads 4 --context 64 --batch 4 --micro-batches 4 --steps 4
     --eval-every 4 --eval-windows 2 --sample-tokens 0)
big_equal() { # big_equal R
  local r=$1
  [[ -f "$WORK/bigref/latest" ]] || "$CLLM" train "${BIG[@]}" --threads 2 --out "$WORK/bigref" \
    >"$WORK/bigref.log" 2>&1 || { cat "$WORK/bigref.log"; return 1; }
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np "$r" "$CLLM" train "${BIG[@]}" --threads 1 \
    --out "$WORK/big$r" >"$WORK/big$r.log" 2>&1 || { tail "$WORK/big$r.log"; return 1; }
  grep -E '^communication' "$WORK/big$r.log" | sed 's/^/info: /'
  has_ranks "$WORK/big$r" "$r" && same_run "$WORK/bigref" "$WORK/big$r"
}
check "R=2, 0.4M parameters (MiB messages): cmp-equal to one process" big_equal 2
check "R=3, 0.4M parameters (MiB messages): cmp-equal to one process" big_equal 3

# Ranks on different instruction-set paths (rank 1 portable, rank 0 the fastest):
# every path gives the same bits, so the group does too.
mixed_isa() {
  local d="$WORK/isa"
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np 1 "$CLLM" train "${MODEL[@]}" "${RUN[@]}" --threads 1 \
    --out "$d" : -np 1 -x CLLM_ISA=portable "$CLLM" train "${MODEL[@]}" "${RUN[@]}" --threads 1 \
    --out "$d" >"$d.log" 2>&1 || { tail "$d.log"; return 1; }
  has_ranks "$d" 2 && same_run "$WORK/ref" "$d"
}
check "R=2, rank 1 on the portable path: cmp-equal to one process" mixed_isa

# ---- 3. stop with 2 ranks, resume with 3 -----------------------------------------
stop_resume() {
  local d="$WORK/sr"
  ranks_run 2 1 "$d" --stop-at 8 || return 1
  [[ "$(<"$d/latest")" == step-00000008 ]] || { echo "stopped at $(<"$d/latest"), not step 8"; return 1; }
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np 3 "$CLLM" train --resume "$d" --threads 1 >"$d.resume.log" 2>&1 \
    || { tail -n 20 "$d.resume.log"; echo "resume with 3 ranks failed"; return 1; }
  grep -q '"step":8,.*"val_loss"' "$d/metrics.jsonl" || { echo "no evaluation at the stop step"; return 1; }
  has_ranks "$d" 3 && same_run "$WORK/ref" "$d" 8
}
check "stop at 8 with 2 ranks, resume with 3: same bits as one process" stop_resume

# ---- 4. a rank killed mid-run ----------------------------------------------------
# kill_rank K: 2 ranks checkpointing every 5 steps; once a checkpoint exists, SIGKILL
# rank K; mpirun must exit non-zero within 30 s naming rank K, the other rank must say
# which step it was in, the checkpoint must load.
kill_rank() {
  local k=$1 d="$WORK/kill-$1" i pid p victim="" t0 rc
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np 2 "$CLLM" train "${MODEL[@]}" --steps 1000000 \
    --eval-every 1000000 --eval-windows 2 --sample-tokens 0 --checkpoint-every 5 \
    --threads 1 --out "$d" >"$d.log" 2>&1 &
  pid=$!; BG+=("$pid")
  for ((i = 0; i < 300; i++)); do [[ -f "$d/latest" ]] && break; sleep 0.1; done
  [[ -f "$d/latest" ]] || { kill -9 "$pid"; tail "$d.log"; echo "no checkpoint within 30 s"; return 1; }
  for p in $(pgrep -f "^$CLLM train .*--out $d\$"); do
    grep -qz "^OMPI_COMM_WORLD_RANK=$k\$" "/proc/$p/environ" 2>/dev/null && victim=$p
  done
  [[ -n "$victim" ]] || { kill -9 "$pid"; echo "rank $k's process not found"; return 1; }
  kill -9 "$victim"; t0=$(ms)
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; echo "mpirun still running 30 s after the kill"; return 1; fi
  rc=0; wait "$pid" || rc=$?
  echo "info: rank $k (pid $victim) killed; mpirun exited $rc after $(( $(ms) - t0 )) ms; checkpoint $(<"$d/latest")"
  [[ $rc != 0 ]] || { echo "mpirun exited 0 after a rank was killed"; return 1; }
  # mpirun names the dead rank; the survivor, terminated by the launcher, names the
  # step it was in.
  grep -q "process rank $k with PID" "$d.log" \
    || { tail -n 20 "$d.log"; echo "mpirun did not name the killed rank $k"; return 1; }
  grep -qE "rank $((1 - k)) of 2: terminated .* during step [0-9]+" "$d.log" \
    || { tail -n 20 "$d.log"; echo "rank $((1 - k)) did not say which step it was in"; return 1; }
  echo "info: $(grep -E "rank $((1 - k)) of 2: terminated" "$d.log")"
  "$CLLM" eval --checkpoint "$d" --max-windows 4 >"$d.eval.log" 2>&1 \
    || { cat "$d.eval.log"; echo "the last checkpoint does not load"; return 1; }
}
check "kill -9 rank 1 of 2: mpirun ends non-zero <30 s naming it, rank 0 names its step, checkpoint loads" kill_rank 1
check "kill -9 rank 0 of 2: mpirun ends non-zero <30 s naming it, rank 1 names its step, checkpoint loads" kill_rank 0

# ---- 4b. a rank that fails mid-run on its own ---------------------------------------
# Rank 0 alone writes files: an output directory on a 200 KiB tmpfs makes its first
# checkpoint (step 10) fail with ENOSPC while rank 1 is already waiting in the next
# step's collective. Rank 0 must end the job (MPI_Abort) with a message naming the rank
# and the step, within the bound (needs root for the mount; skipped otherwise).
rank_fails() {
  local d=$WORK/full rc out t0
  if [[ $(id -u) != 0 ]]; then echo "info: skipped (needs root to mount a tmpfs)"; return 0; fi
  mkdir -p "$d" && mount -t tmpfs -o size=200k tmpfs "$d" || { echo "mount failed"; return 1; }
  t0=$(ms)
  out=$(timeout -k 5 30 "${MPIRUN[@]}" -np 2 "$CLLM" train "${MODEL[@]}" --steps 40 --eval-every 10 \
    --checkpoint-every 10 --sample-tokens 0 --threads 1 --out "$d/run" 2>&1); rc=$?
  umount "$d"
  echo "$out" | grep -E 'rank|step' | tail -n 4
  echo "info: mpirun exited $rc after $(( $(ms) - t0 )) ms"
  [[ $rc != 0 && $rc != 124 && $rc != 137 ]] || { echo "exit status $rc (want a failure, not a timeout)"; return 1; }
  grep -qE 'rank 0 of 2: after step 10: .*No space left on device' <<<"$out" \
    || { echo "no message naming rank 0, step 10 and the cause"; return 1; }
}
check "rank 0's checkpoint write fails at step 10: job ends, rank and step named" rank_fails

# A panic inside `cllm train`'s step on one rank (the build's fault-injection hook:
# CLLM_FAULT_PANIC=RANK:STEP panics that rank as it begins that step): the panic hook
# names the rank and step and aborts the process, mpirun ends the job non-zero within
# 30 s, and the checkpoint written before (step 10, every 5) loads.
rank_panics() {
  local k=$1 d="$WORK/panic-$1" rc=0 t0
  t0=$(ms)
  CLLM_FAULT_PANIC=$k:12 timeout -k 5 30 "${MPIRUN[@]}" -x CLLM_FAULT_PANIC -np 2 "$CLLM" train \
    "${MODEL[@]}" --steps 40 --eval-every 1000 --eval-windows 2 --sample-tokens 0 \
    --checkpoint-every 5 --threads 2 --out "$d" >"$d.log" 2>&1 || rc=$?
  echo "info: mpirun exited $rc after $(( $(ms) - t0 )) ms; checkpoint $(cat "$d/latest" 2>/dev/null)"
  [[ $rc != 0 && $rc != 124 && $rc != 137 ]] || { tail -n 20 "$d.log"; echo "exit status $rc (want a failure, not a timeout)"; return 1; }
  grep -q "injected panic (CLLM_FAULT_PANIC=$k:12)" "$d.log" \
    || { tail -n 20 "$d.log"; echo "the panic's own message is missing"; return 1; }
  grep -qE "rank $k of 2: panicked during step 12" "$d.log" \
    || { tail -n 20 "$d.log"; echo "no message naming rank $k and step 12"; return 1; }
  echo "info: $(grep -E "rank $k of 2: panicked" "$d.log")"
  [[ $(cat "$d/latest" 2>/dev/null) == step-00000010 ]] \
    || { echo "the last checkpoint is not step 10's"; return 1; }
  "$CLLM" eval --checkpoint "$d" --max-windows 4 >"$d.eval.log" 2>&1 \
    || { cat "$d.eval.log"; echo "the last checkpoint does not load"; return 1; }
}
check "panic in rank 1's step 12: job ends non-zero <30 s, rank and step named, checkpoint loads" rank_panics 1
check "panic in rank 0's step 12: job ends non-zero <30 s, rank and step named, checkpoint loads" rank_panics 0

# ---- 5. bad launches ------------------------------------------------------------
# refused NAME PATTERN COUNT MPIRUN-ARGS...: non-zero exit, PATTERN at least COUNT
# times in the output, and no checkpoint in $WORK/bad-NAME.
refused() {
  local name=$1 pat=$2 count=$3 out rc n; shift 3
  out=$(timeout -k 5 "$LIMIT" "${MPIRUN[@]}" "$@" 2>&1); rc=$?
  echo "$out" | grep -v '^\s*$' | tail -n 12
  [[ $rc != 0 ]] || { echo "exit status 0"; return 1; }
  [[ $rc != 124 && $rc != 137 ]] || { echo "timed out"; return 1; }
  n=$(grep -oE -- "$pat" <<<"$out" | wc -l)
  [[ $n -ge $count ]] || { echo "'$pat' printed $n times, want $count"; return 1; }
  [[ ! -e "$WORK/bad-$name/latest" ]] || { echo "a refused run wrote a checkpoint"; return 1; }
}
# every_rank_refuses NAME PATTERN R MPIRUN-ARGS...: the same launch with mpirun told
# not to end the job at the first non-zero exit (so a slower rank is not killed before
# it speaks), each rank wrapped to report its own exit status: all R ranks exit
# non-zero and print PATTERN (by default mpirun ends the others as soon as one exits,
# and their lines may be lost).
every_rank_refuses() {
  local name=$1 pat=$2 r=$3 out n bad; shift 3
  out=$(timeout -k 5 "$LIMIT" "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 "$@" 2>&1)
  echo "$out" | grep -v '^\s*$' | tail -n 12
  # mpirun merges the ranks' stdout and stderr, sometimes within a line: count
  # occurrences, not lines.
  n=$(grep -oE -- "$pat" <<<"$out" | wc -l)
  [[ $n == "$r" ]] || { echo "'$pat' printed $n times, want $r (one per rank)"; return 1; }
  n=$(grep -oE 'rank-exit [0-9]+ [1-9][0-9]*' <<<"$out" | wc -l)
  bad=$(grep -oE 'rank-exit [0-9]+ 0( |$)' <<<"$out")
  [[ $n == "$r" && -z "$bad" ]] || { echo "$n of $r ranks exited non-zero ${bad}"; return 1; }
  [[ ! -e "$WORK/bad-$name/latest" ]] || { echo "a refused run wrote a checkpoint"; return 1; }
}
# Runs "$@" and prints "rank-exit RANK STATUS".
WRAP=(bash -c '"$@"; echo "rank-exit $OMPI_COMM_WORLD_RANK $?"' wrap)
SMALL=(train "${MODEL[@]}" "${RUN[@]}" --threads 1)
check "4 ranks for 3 micro-batches: the job is refused, non-zero" \
  refused np4 "4 ranks but only 3 micro-batch" 1 \
  -np 4 "$CLLM" train --layers 1 --width 32 --heads 2 --context 16 --batch 2 \
  --micro-batches 3 "${RUN[@]}" --threads 1 --out "$WORK/bad-np4"
check "4 ranks for 3 micro-batches: every rank refuses, non-zero" \
  every_rank_refuses np4e "4 ranks but only 3 micro-batch" 4 \
  -np 4 "${WRAP[@]}" "$CLLM" train --layers 1 --width 32 --heads 2 --context 16 --batch 2 \
  --micro-batches 3 "${RUN[@]}" --threads 1 --out "$WORK/bad-np4e"
check "ranks with different --seed: refused naming arguments" \
  refused seed "arguments differs" 1 \
  -np 1 "$CLLM" "${SMALL[@]}" --seed 1 --out "$WORK/bad-seed" : \
  -np 1 "$CLLM" "${SMALL[@]}" --seed 2 --out "$WORK/bad-seed"
cp "$CLLM" "$WORK/cllm-other"; printf '\0' >>"$WORK/cllm-other"
check "ranks running binaries one byte apart: refused naming binary" \
  refused binary "binary differs" 1 \
  -np 1 "$CLLM" "${SMALL[@]}" --out "$WORK/bad-binary" : \
  -np 1 "$WORK/cllm-other" "${SMALL[@]}" --out "$WORK/bad-binary"
seq 1 8000 >"$WORK/data-a.txt"; cp "$WORK/data-a.txt" "$WORK/data-b.txt"
printf 'x' | dd of="$WORK/data-b.txt" bs=1 seek=20000 conv=notrunc status=none
check "ranks reading texts one byte apart: refused naming data" \
  refused data "data differs" 1 \
  -np 1 "$CLLM" train "$WORK/data-a.txt" "${MODEL[@]}" "${RUN[@]}" --threads 1 --out "$WORK/bad-data" : \
  -np 1 "$CLLM" train "$WORK/data-b.txt" "${MODEL[@]}" "${RUN[@]}" --threads 1 --out "$WORK/bad-data"
# A rank that fails on its own before MPI starts (a bad CLLM_ISA on rank 1 only): the
# job ends, non-zero, within the bound.
check "rank 1 failing at start (bad CLLM_ISA): the job ends non-zero" \
  refused isa "unknown instruction-set path" 1 \
  -np 1 "$CLLM" "${SMALL[@]}" --out "$WORK/bad-isa" : \
  -np 1 -x CLLM_ISA=bogus "$CLLM" "${SMALL[@]}" --out "$WORK/bad-isa"
check "build without the mpi feature under mpirun -np 2: refused" \
  refused nompi "built without MPI support" 1 \
  -np 2 "$WORK/cllm-nompi" "${SMALL[@]}" --out "$WORK/bad-nompi"
check "build without the mpi feature, 2 processes: every rank refuses" \
  every_rank_refuses nompie "built without MPI support" 2 \
  -np 2 "${WRAP[@]}" "$WORK/cllm-nompi" "${SMALL[@]}" --out "$WORK/bad-nompie"
nompi_single() {
  timeout -k 5 "$LIMIT" "${MPIRUN[@]}" -np 1 "$WORK/cllm-nompi" train "${MODEL[@]}" "${RUN[@]}" \
    --threads 2 --out "$WORK/nompi1" >"$WORK/nompi1.log" 2>&1 || { tail "$WORK/nompi1.log"; return 1; }
  [[ -z "$(ranks_of "$WORK/nompi1")" ]] || { echo "the build without MPI reported ranks"; return 1; }
  same_run "$WORK/ref" "$WORK/nompi1"
}
check "build without the mpi feature under mpirun -np 1: trains, same bits" nompi_single

summary
