#!/usr/bin/env bash
# Data-parallel throughput, measured back to back: for each shape, ROUNDS alternating
# runs of `cllm bench` as 1 process x 2 threads (lock-free scheduler) and as 2 MPI
# ranks x 1 thread, then the median tokens/s of each and their ratio, with the bytes
# rank 0 sends per step and its time in collectives. The ratio reported is the median
# of the per-round ratios (each pair ran back to back, so load drift cancels best). Timings are for people (the
# machine is shared and noisy): never a pass/fail check.
# usage: verification/mpi_bench.sh [ROUNDS (default 5)] [STEPS (default 30)]
# env: CLLM_MPI_BIND=none|core|... passes --bind-to to mpirun (default: OpenMPI's own,
#      which binds each of 2 ranks to a core).
# env: CLLM_MPI_SHAPES (default "s m").
# Needs MPI (see verification/mpi.sh, which installs it); builds with --features mpi.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-5}
STEPS=${2:-30}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --features mpi --quiet)
BIN=$TARGET/release/cllm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "shape  round  1x2 tokens/s  2x1 tokens/s  ratio  KiB sent/step (rank 0/1)  collective ms/step (rank 0/1)"
for shape in ${CLLM_MPI_SHAPES:-s m}; do
  : > "$work/one"; : > "$work/two"; : > "$work/ratio"
  for ((i = 1; i <= ROUNDS; i++)); do
    one=$("$BIN" bench --shape "$shape" --max-threads 2 --scheduler lockfree --steps "$STEPS" \
      --out "$work/b1" | awk '$1 == "lock-free" && $3 == 2 {print $4}')
    out=$(mpirun --oversubscribe ${CLLM_MPI_BIND:+--bind-to "$CLLM_MPI_BIND"} -np 2 "$BIN" bench --shape "$shape" --max-threads 1 \
      --steps "$STEPS" --out "$work/b2")
    two=$(grep '^tokens/s' <<<"$out" | awk '{print $2}' | tr -d ';')
    # Both ranks: KiB sent per step and ms per step in collectives, "rank0/rank1".
    kib=$(grep -oE 'sent [0-9.]+ KiB' <<<"$out" | awk '{print $2}' | paste -sd/)
    ms=$(grep -oE '[0-9.]+ ms per step in collectives' <<<"$out" | awk '{print $1}' | paste -sd/)
    echo "$one" >> "$work/one"; echo "$two" >> "$work/two"
    awk -v a="$two" -v b="$one" 'BEGIN {print a / b}' >> "$work/ratio"
    printf '%-6s %5d  %12.0f  %12.0f  %5.3f  %24s  %29s\n' "$shape" "$i" "$one" "$two" \
      "$(awk -v a="$two" -v b="$one" 'BEGIN {print a / b}')" "$kib" "$ms"
  done
  m1=$(median < "$work/one"); m2=$(median < "$work/two")
  printf '%-6s median %11.0f  %12.0f  %5.3f  (median of the round ratios: 2 ranks x 1 thread / 1 process x 2 threads)\n' \
    "$shape" "$m1" "$m2" "$(median < "$work/ratio")"
done
