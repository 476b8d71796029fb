#!/usr/bin/env bash
# ThreadSanitizer campaign: the std-thread stress binary (tests/tsan_stress.rs, no libtest
# harness) built with -Zsanitizer=thread. Zero reports required: exits non-zero on any.
# Uses the nightly toolchain when installed, else RUSTC_BOOTSTRAP=1 on stable (std is
# not rebuilt: there is no rust-src here, hence -Cunsafe-allow-abi-mismatch=sanitizer).
# usage: verification/tsan.sh [extra --test NAME ...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly); echo "tsan: using the nightly toolchain"
else
  export RUSTC_BOOTSTRAP=1; cargo=(cargo); echo "tsan: no nightly; using RUSTC_BOOTSTRAP=1 on $(rustc --version)"
fi
export RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer"
export CARGO_TARGET_DIR="$ROOT/target/tsan"
# halt_on_error: the first report fails the run. The suppressions file names only exact
# uninstrumented std symbols, each with its reason.
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$ROOT/verification/tsan.supp"
tests=(--test tsan_stress "$@")
start=$(date +%s)
"${cargo[@]}" test --target x86_64-unknown-linux-gnu "${tests[@]}"
echo "tsan: zero reports ($(( $(date +%s) - start )) s)"
