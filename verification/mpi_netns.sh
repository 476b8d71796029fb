#!/usr/bin/env bash
# cllm across two "hosts": two network namespaces joined by a veth pair, one MPI rank
# in each, so every byte between the ranks crosses a network interface (OpenMPI's TCP
# transport) instead of shared memory. Checks: the transport alone
# (examples/mpi_collectives check, 2 ranks), then `cllm train` with one rank per
# namespace, whose final checkpoint must `cmp` equal to a single-process run's and whose
# metrics must have the same numbers; then the rank in the second namespace is killed
# with SIGKILL mid-run: mpirun must end non-zero within 30 s, the checkpoint must load.
# Network: the private 10.231.77.0/24, used only inside the two namespaces (no route
# to or from the host's network; traffic stays on the veth pair). OpenMPI is started in
# the first namespace without ssh: its remote-launch agent (plm_rsh_agent) is a small
# script that runs the daemon with `ip netns exec` in the namespace the host argument
# names.
# Needs root (ip netns) and a build with `--features mpi`; builds it if absent.
# Owns only its scratch directory and the two namespaces it creates (deleted on exit,
# with any process still running in them); every step is bounded with timeout.
# usage: verification/mpi_netns.sh      env: CLLM_BIN, CLLM_MPI_EXAMPLE (prebuilt binaries),
#                                            CLLM_MPI_PROFILE=release|test (as mpi.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NET=10.231.77
NS1="cllm-mpi-a-$$" NS2="cllm-mpi-b-$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cllm-mpi-netns.XXXXXX")
cleanup() {
  local ns p
  for ns in "$NS1" "$NS2"; do
    if ip netns list | grep -qw "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "mpi_netns: FAIL: $*" >&2; exit 1; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
T0=$(ms)

if [[ -z "${CLLM_BIN:-}" || -z "${CLLM_MPI_EXAMPLE:-}" ]]; then
  # The same profile and features as mpi.sh's build, so that build is reused.
  # shellcheck source=verification/mpi_profile.sh
  . "$ROOT/verification/mpi_profile.sh"
  timeout 900 cargo build --profile "$PROFILE" --quiet --features "$MPI_FEATURES" --bin cllm \
    --example mpi_collectives || fail "cargo build --profile $PROFILE --features $MPI_FEATURES"
  CLLM_BIN=$OUT/cllm CLLM_MPI_EXAMPLE=$OUT/examples/mpi_collectives
fi
cp "$CLLM_BIN" "$WORK/cllm"
cp "$CLLM_MPI_EXAMPLE" "$WORK/mpi_collectives"

# ---- the two hosts -----------------------------------------------------------------
ip netns add "$NS1"
ip netns add "$NS2"
ip link add "cmpa$$" type veth peer name "cmpb$$"
ip link set "cmpa$$" netns "$NS1"
ip link set "cmpb$$" netns "$NS2"
ip -n "$NS1" addr add "$NET.1/24" dev "cmpa$$"
ip -n "$NS2" addr add "$NET.2/24" dev "cmpb$$"
for ns in "$NS1" "$NS2"; do
  ip -n "$ns" link set lo up
done
ip -n "$NS1" link set "cmpa$$" up
ip -n "$NS2" link set "cmpb$$" up
echo "mpi_netns: namespaces $NS1 ($NET.1) and $NS2 ($NET.2) up"

# The remote-launch agent: OpenMPI calls `AGENT [options] HOST COMMAND...`.
cat >"$WORK/agent" <<EOF
#!/usr/bin/env bash
while [[ \$# -gt 0 && \$1 == -* ]]; do shift; done
host=\$1; shift
case \$host in
  $NET.1) ns=$NS1 ;;
  $NET.2) ns=$NS2 ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" bash -c "\$*"
EOF
chmod +x "$WORK/agent"
printf '%s slots=1\n%s slots=1\n' "$NET.1" "$NET.2" >"$WORK/hosts"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun2() {
  timeout -k 5 120 ip netns exec "$NS1" mpirun --hostfile "$WORK/hosts" -np 2 --bind-to none \
    --mca plm_rsh_agent "$WORK/agent" --mca btl tcp,self \
    --mca btl_tcp_if_include "$NET.0/24" --mca oob_tcp_if_include "$NET.0/24" "$@"
}

# ---- the transport alone -----------------------------------------------------------
t0=$(ms)
out=$(mpirun2 "$WORK/mpi_collectives" check 2>&1) || { echo "$out"; fail "transport check"; }
echo "$out"
[[ $(grep -o "ok (" <<<"$out" | wc -l) == 2 ]] || fail "transport check: not both ranks reported ok"
# One rank per namespace: each rank prints its network namespace's inode.
where=$(mpirun2 bash -c 'echo "rank $OMPI_COMM_WORLD_RANK netns $(readlink /proc/self/ns/net)"' 2>&1) \
  || { echo "$where"; fail "placement probe"; }
echo "$where"
[[ $(awk '{print $4}' <<<"$where" | sort -u | wc -l) == 2 ]] || fail "the two ranks share a namespace"
echo "mpi_netns: PASS transport check across namespaces ($(( $(ms) - t0 )) ms)"

# ---- cllm train across the namespaces ----------------------------------------------
MODEL=(--layers 1 --width 32 --heads 2 --context 16 --batch 2 --micro-batches 6)
RUN=(--steps 20 --eval-every 10 --eval-windows 4 --sample-tokens 0)
t0=$(ms)
timeout 120 "$WORK/cllm" train "${MODEL[@]}" "${RUN[@]}" --threads 2 --out "$WORK/ref" \
  >"$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "single-process reference run"; }
mpirun2 "$WORK/cllm" train "${MODEL[@]}" "${RUN[@]}" --threads 1 --out "$WORK/two" \
  >"$WORK/two.log" 2>&1 || { tail -n 30 "$WORK/two.log"; fail "cllm train with one rank per namespace"; }
[[ -f "$WORK/two/latest" && "$(<"$WORK/ref/latest")" == "$(<"$WORK/two/latest")" ]] \
  || fail "checkpoint names differ"
for f in model.safetensors config.json train_state.safetensors train_state.json; do
  cmp "$WORK/ref/$(<"$WORK/ref/latest")/$f" "$WORK/two/$(<"$WORK/two/latest")/$f" || fail "$f differs"
done
ranks=$(jq -rs '[.[] | select(.ranks != null)] | last | .ranks // empty' "$WORK/two/metrics.jsonl")
[[ "$ranks" == 2 ]] || fail "the run's summary reports ranks '$ranks', not 2 (two copies instead of one group?)"
numbers() { jq -c 'select(.loss != null) | {step, loss, grad_norm, lr, val_loss}' "$1"; }
[[ -n "$(numbers "$WORK/ref/metrics.jsonl")" ]] || fail "the reference has no per-step metrics"
[[ "$(numbers "$WORK/ref/metrics.jsonl")" == "$(numbers "$WORK/two/metrics.jsonl")" ]] || fail "metrics differ"
echo "mpi_netns: PASS cllm train, 2 ranks in 2 namespaces: checkpoint cmp-equal to one process ($(( $(ms) - t0 )) ms)"
# ---- the remote rank killed -------------------------------------------------------
# Rank 1 lives in the second namespace; its death must reach mpirun in the first one
# (through the daemon there, over TCP) and end the job, non-zero, within 30 s.
t0=$(ms)
mpirun2 "$WORK/cllm" train "${MODEL[@]}" --steps 1000000 --eval-every 1000000 --eval-windows 2 \
  --sample-tokens 0 --checkpoint-every 5 --threads 1 --out "$WORK/kill" >"$WORK/kill.log" 2>&1 &
job=$!
for ((i = 0; i < 300; i++)); do [[ -f "$WORK/kill/latest" ]] && break; sleep 0.1; done
[[ -f "$WORK/kill/latest" ]] || { kill -9 "$job"; tail "$WORK/kill.log"; fail "no checkpoint within 30 s"; }
victim=""
for p in $(ip netns pids "$NS2"); do
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$WORK/cllm train " && victim=$p
done
[[ -n "$victim" ]] || { kill -9 "$job"; fail "no cllm process in $NS2"; }
kill -9 "$victim"; tk=$(ms)
for ((i = 0; i < 300; i++)); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then kill -9 "$job"; fail "mpirun still running 30 s after the remote rank's kill"; fi
rc=0; wait "$job" || rc=$?
[[ $rc != 0 ]] || fail "mpirun exited 0 after the remote rank was killed"
timeout 60 "$WORK/cllm" eval --checkpoint "$WORK/kill" --max-windows 4 >"$WORK/kill.eval.log" 2>&1 \
  || { cat "$WORK/kill.eval.log"; fail "the last checkpoint does not load"; }
echo "mpi_netns: PASS rank 1 (in $NS2) killed: mpirun exited $rc after $(( $(ms) - tk )) ms, checkpoint $(<"$WORK/kill/latest") loads ($(( $(ms) - t0 )) ms)"
echo "mpi_netns: PASS ($(( $(ms) - T0 )) ms)"
