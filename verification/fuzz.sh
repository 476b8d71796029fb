#!/usr/bin/env bash
# Fuzz campaign: builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS
# (default 60), then prints a table of runs and execs/s per target. Exits non-zero if
# any target finds a crash (the input is kept in fuzz/artifacts/TARGET/).
# Installs cargo-fuzz when missing. Uses nightly when installed, else RUSTC_BOOTSTRAP=1
# on stable.
# usage: verification/fuzz.sh [SECONDS]      env: CLLM_FUZZ_TARGETS="t1 t2" (default all)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECONDS_PER_TARGET=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz); echo "fuzz: using the nightly toolchain"
else
  export RUSTC_BOOTSTRAP=1; fuzz=(cargo fuzz); echo "fuzz: no nightly; RUSTC_BOOTSTRAP=1 on $(rustc --version)"
  rm -f fuzz/target/.rustc_info.json  # a failed compiler probe is cached there
fi
targets=${CLLM_FUZZ_TARGETS:-$("${fuzz[@]}" list)}
for t in $targets; do
  "${fuzz[@]}" build --release "$t"
done
status=0
report=""
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  # Tracked seeds (fuzz/seeds/TARGET) start the corpus where random bytes rarely reach.
  if [ -d "fuzz/seeds/$t" ]; then cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/"; fi
  log=$(mktemp)
  if "${fuzz[@]}" run --release "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" \
       -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see fuzz/artifacts/$t)"; status=1
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -5
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  secs=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  report+=$(printf '%-12s %12s %10s  %s' "$t" "${runs:-?}" "${secs:-?}" "$result")$'\n'
  rm -f "$log"
done
printf '%-12s %12s %10s  %s\n' target runs "exec/s" result
printf '%s' "$report"
exit $status
