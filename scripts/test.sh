#!/usr/bin/env bash
# Every test: installs what is missing, builds, runs the unit tests
# (swift test), the multi-rank tests (the release binary under mpirun), the
# multi-host test (ranks on two network-namespace hosts over TCP), and the
# fuzz regressions (every saved crasher) with a short fuzz pass per parser.
source "$(dirname "$0")/common.sh"
APT_PACKAGES+=(iproute2 util-linux)   # the multi-host test's network namespaces
ensure_packages
ensure_swift
ensure_python_packages numpy tensorboard safetensors PIL=pillow sklearn=scikit-learn h5py
build_release

cd "$VAE_MPI_ROOT"
say "== unit tests (swift test)"
log=$(mktemp /tmp/vae-mpi-unit-tests.XXXXXX.log)
if swift test >"$log" 2>&1; then
    grep -E "^Test Suite '.*' (passed|failed)|Executed [0-9]+ tests" "$log" | tail -1 >&2
else
    grep -E "error|failed|Fatal" "$log" | head -40 >&2
    die "unit tests failed (full log: $log)"
fi

say "== multi-rank tests"
bash "$VAE_MPI_ROOT/Tests/MultiRank/run.sh"

say "== multi-host test (network namespaces as hosts)"
bash "$VAE_MPI_ROOT/scripts/cluster-test.sh"

say "== fuzzing: saved crashers, then ${FUZZ_SECONDS:-10} s per parser"
FUZZ_SECONDS=${FUZZ_SECONDS:-10} bash "$VAE_MPI_ROOT/scripts/fuzz.sh"
