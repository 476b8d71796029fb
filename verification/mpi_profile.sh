# Sourced by verification/mpi.sh and verification/mpi_netns.sh, so both use one build:
# from TARGET (the cargo target directory) and CLLM_MPI_PROFILE (release, the default,
# or test: the profile whose dependencies `cargo test` has built), sets PROFILE, OUT
# (where that profile's binaries are) and MPI_FEATURES. The MPI build also carries the
# test-only fault-injection hook (inactive unless CLLM_FAULT_PANIC is set; no
# dependency): mpi.sh's panic checks need it.
# shellcheck shell=bash
MPI_FEATURES=mpi,fault-injection
PROFILE=${CLLM_MPI_PROFILE:-release}
case $PROFILE in
  release) OUT=$TARGET/release ;;
  test) OUT=$TARGET/debug ;;
  *) echo "CLLM_MPI_PROFILE must be release or test, not '$PROFILE'" >&2; exit 2 ;;
esac
