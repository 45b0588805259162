#!/usr/bin/env bash
# Installs what vae-mpi needs (Debian packages: Open MPI, OpenBLAS, zlib,
# libpng, Fashion-MNIST) when missing, then builds the release binary.
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release
say "built $BINARY"
