#!/usr/bin/env bash
# Every test: installs what is missing, builds, runs the unit tests
# (swift test) and the multi-rank tests (the release binary under mpirun).
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
ensure_python_packages numpy
build_release

cd "$VAE_MPI_ROOT"
say "== unit tests (swift test)"
swift test 2>&1 | tee /tmp/vae-mpi-unit-tests.log | grep -E "error|failed|Executed .* tests" >&2 || true
grep -q "with 0 failures" /tmp/vae-mpi-unit-tests.log && ! grep -qE "error:|failed \(" /tmp/vae-mpi-unit-tests.log ||
    die "unit tests failed (log: /tmp/vae-mpi-unit-tests.log)"

say "== multi-rank tests"
bash "$VAE_MPI_ROOT/Tests/MultiRank/run.sh"
