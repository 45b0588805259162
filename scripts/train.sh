#!/usr/bin/env bash
# The main job: sets up (scripts/setup.sh), then trains the default VAE on
# Fashion-MNIST under mpirun with one rank per core.
#
#   scripts/train.sh                       # defaults: 10 epochs, writes runs/<timestamp>
#   NP=4 scripts/train.sh --epochs 20      # ranks from NP; arguments go to `vae-mpi train`
#   HOSTFILE=hostfiles/cluster NP=16 scripts/train.sh
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

np=${NP:-$(cores)}
mapfile -t flags < <(mpirun_flags "$np" "${HOSTFILE:-}")
cd "$VAE_MPI_ROOT"
say "mpirun ${flags[*]} -np $np $BINARY train $*"
exec mpirun "${flags[@]}" -np "$np" "$BINARY" train "$@"
