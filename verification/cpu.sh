# Sourced by verification/mutants.sh and .ci/run: which seeded bugs this CPU can run.
# A bug in an instruction-set path this CPU lacks (its id names the path, e.g. avx512)
# mutates code that never runs here, so no check can kill it on this machine: the
# campaign reports it as not run (never as killed or survived), and CI's rotation
# picks among the bugs this CPU can run.

# Features the AVX-512 path needs (src/isa/mod.rs, Isa::Avx512's required features).
CLLM_AVX512_FEATURES=(avx512f avx512vl avx2 fma)

# cpu_missing ID: prints the CPU features bug ID needs that this CPU lacks (nothing if
# it can run here).
cpu_missing() {
  local id=$1 f missing=()
  case $id in
    *avx512*)
      for f in "${CLLM_AVX512_FEATURES[@]}"; do
        grep -qw "$f" /proc/cpuinfo 2>/dev/null || missing+=("$f")
      done ;;
  esac
  echo "${missing[*]}"
}
