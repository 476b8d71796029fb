#!/usr/bin/env bash
# LeakSanitizer campaign: the threaded test binaries (worker teams, pre-fetch thread,
# failing and panicking steps) and a short `cllm train` run with a resume, built with
# -Zsanitizer=leak. Zero leaks required: exits non-zero on any report.
# Built like verification/tsan.sh (nightly when installed, else RUSTC_BOOTSTRAP=1;
# std is not rebuilt, hence -Cunsafe-allow-abi-mismatch=sanitizer), in its own
# CARGO_TARGET_DIR (target/lsan, or $CLLM_LSAN_TARGET_DIR) so it never invalidates
# the normal builds.
# Owns only target/lsan and its scratch directory.
# usage: verification/lsan.sh [extra --test NAME ...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly); echo "lsan: using the nightly toolchain"
else
  export RUSTC_BOOTSTRAP=1; cargo=(cargo); echo "lsan: no nightly; using RUSTC_BOOTSTRAP=1 on $(rustc --version)"
fi
TARGET=x86_64-unknown-linux-gnu
export RUSTFLAGS="-Zsanitizer=leak -Cunsafe-allow-abi-mismatch=sanitizer"
export CARGO_TARGET_DIR="${CLLM_LSAN_TARGET_DIR:-$ROOT/target/lsan}"
# A leak makes the process exit 23 (LSan's report is printed at exit). The
# suppressions file, if any, may name only uninstrumented std symbols, with reasons.
export LSAN_OPTIONS="exitcode=23"
if [[ -f verification/lsan.supp ]]; then
  LSAN_OPTIONS+=":suppressions=$ROOT/verification/lsan.supp"
fi
tests=(--test train_threaded --test train_faults --test train_trainer "$@")
start=$(date +%s)
"${cargo[@]}" test --target "$TARGET" "${tests[@]}"
# The binary (cargo test built it, instrumented, for the integration tests): a short
# threaded run with checkpoints, interrupted by --stop-at and resumed (the CLI's
# checkpoint, metrics and resume paths, both schedulers).
bin="$CARGO_TARGET_DIR/$TARGET/debug/cllm"
work=$(mktemp -d "${TMPDIR:-/tmp}/cllm-lsan.XXXXXX")
trap 'rm -rf "$work"' EXIT
model=(--layers 1 --width 8 --heads 2 --context 8 --batch 2 --micro-batches 2 --eval-windows 2)
run() {
  local rc=0
  "$bin" "$@" >"$work/log" 2>&1 || rc=$?
  if (( rc != 0 )); then
    cat "$work/log"; echo "lsan: cllm $* failed (exit $rc; 23 is a leak)"; exit 1
  fi
}
run train "${model[@]}" --steps 6 --stop-at 3 --checkpoint-every 2 --eval-every 2 \
  --sample-tokens 8 --threads 3 --out "$work/run"
run train --resume "$work/run" --threads 2 --scheduler barrier
echo "lsan: zero leaks ($(( $(date +%s) - start )) s)"
