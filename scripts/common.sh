# Shared by the scripts in this directory (sourced, not run).
# Installs what vae-mpi needs on Debian/Ubuntu when it is missing, finds the
# Swift toolchain, and picks mpirun's flags for this machine.

set -euo pipefail

VAE_MPI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINARY="$VAE_MPI_ROOT/.build/release/vae-mpi"

# C libraries and tools from Debian, and the default dataset.
APT_PACKAGES=(pkg-config libopenblas-dev libdnnl-dev libopenmpi-dev openmpi-bin zlib1g-dev libpng-dev libturbojpeg0-dev libhdf5-dev dataset-fashion-mnist)

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$p"
    done
}

ensure_packages() {
    command -v dpkg-query >/dev/null || {
        say "not a Debian/Ubuntu system: install Open MPI, OpenBLAS, oneDNN, zlib, libpng and libjpeg-turbo (TurboJPEG) development files yourself"
        return 0
    }
    local missing
    missing=$(missing_packages)
    [ -z "$missing" ] && return 0
    say "installing: $(echo $missing)"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "missing Debian packages ($(echo $missing)); run as root or install them"
        sudo=sudo
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

ensure_swift() {
    if ! command -v swift >/dev/null; then
        local d
        for d in /opt/swift/usr/bin /usr/share/swift/usr/bin "$HOME/.swiftly/bin"; do
            [ -x "$d/swift" ] && export PATH="$d:$PATH" && break
        done
    fi
    command -v swift >/dev/null || die "no Swift toolchain: install Swift 6 from https://swift.org/install and put it on PATH"
}

# Python packages the tests use to read vae-mpi's files with their usual
# clients (and Pillow, to check decoded images). MODULE=PACKAGE when the
# two names differ (PIL=pillow).
ensure_python_packages() {
    local need=()
    local spec module
    for spec in "$@"; do
        module=${spec%%=*}
        python3 -c "import ${module}" 2>/dev/null || need+=("${spec#*=}")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    say "pip installing: ${need[*]}"
    python3 -m pip install -q --disable-pip-version-check "${need[@]}" 2>&1 | grep -v "WARNING: Running pip as the 'root' user" >&2 || true
}

build_release() {
    (cd "$VAE_MPI_ROOT" && swift build -c release --product vae-mpi 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' >&2) ||
        die "release build failed"
    [ -x "$BINARY" ] || die "release build did not produce $BINARY"
}

cores() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; }

# mpirun flags for NP ranks on this machine: root needs --allow-run-as-root;
# up to one rank per core, bind each rank to its core (ranks are
# single-threaded); more ranks than cores need --oversubscribe (and then
# binding would stack ranks, so none). With a hostfile its slots= decide.
# MPIRUN_FLAGS adds to these.
# THREADS=T (third argument) gives each rank T cores (--map-by slot:PE=T),
# so that its kernel threads do not share one.
mpirun_flags() {
    local np=$1 hostfile=${2:-} threads=${3:-1}
    local flags=()
    [ "$(id -u)" = 0 ] && flags+=(--allow-run-as-root)
    if [ -n "$hostfile" ]; then
        flags+=(--hostfile "$hostfile")   # the hostfile's slots= decide placement
        if [ "$threads" -gt 1 ]; then flags+=(--map-by "slot:PE=$threads" --bind-to core); else flags+=(--bind-to core); fi
    elif [ $((np * threads)) -gt "$(cores)" ]; then
        flags+=(--oversubscribe --bind-to none)
    elif [ "$threads" -gt 1 ]; then
        flags+=(--map-by "slot:PE=$threads" --bind-to core)
    else
        flags+=(--bind-to core)
    fi
    printf '%s\n' "${flags[@]}" ${MPIRUN_FLAGS:-}
}
