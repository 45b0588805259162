#!/usr/bin/env bash
# Inpainting Fashion-MNIST test images with vae-mpi (issue 19): the lower half
# of every image removed, then 50 % of the pixels removed at random; the MSE
# and PSNR on the removed pixels (values in [0, 1]) of importance sampling,
# Metropolis-within-Gibbs and pseudo-Gibbs, beside the training set's mean
# image, in one table.
#
# Usage: scripts/inpaint-fashion.sh [COUNT]
#   COUNT  test images (default: the first 1,000)
# Two models, trained here when their runs are absent (about 2 minutes each
# at np 2): the MLP (400 hidden units, Z = 20) with a discretized logistic
# likelihood, 20 epochs, on complete training images (runs/fashion-inpaint-
# complete), and the same on training images with missing pixels (runs/
# fashion-inpaint-masked): a third complete, a third with 50 % of the pixels
# missing at random, a third with a random half (upper, lower, left or
# right) missing; the masks drawn once with numpy seed 7 (--mask FILE).
# Environment: NP (default 2), SAMPLES (importance draws, 1000), ITERATIONS
# (chain length, 200), OUT (pictures, arrays, table; default runs/inpaint-fashion).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
COUNT=${1:-1000}
NP=${NP:-2}
SAMPLES=${SAMPLES:-1000}
ITERATIONS=${ITERATIONS:-200}
OUT=${OUT:-runs/inpaint-fashion}
BINARY=.build/release/vae-mpi
[ -x "$BINARY" ] || die "build first: swift build -c release --product vae-mpi"
mapfile -t flags < <(mpirun_flags "$NP")
mpi() { mpirun "${flags[@]}" -np "$NP" "$BINARY" "$@"; }
mkdir -p "$OUT" runs
train() {  # RUN [train options]
    local run=$1
    shift
    [ -e "$run/checkpoints/latest" ] && return 0
    echo "training $run at np $NP"
    mpi train --likelihood discretized-logistic --epochs 20 --log-every 1000 --run-dir "$run" "$@" >"$run.train.log" 2>&1 ||
        { tail "$run.train.log"; exit 1; }
}
train runs/fashion-inpaint-complete
if [ ! -e runs/fashion-inpaint-masked/checkpoints/latest ]; then
    python3 - "$OUT/train-masks.npy" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(7)
n = 60000
m = np.ones((n, 28, 28), np.uint8)
kind = rng.integers(0, 3, n)
r = rng.random((n, 28, 28)) >= 0.5
m[kind == 1] = r[kind == 1]
half = rng.integers(0, 4, n)
for i in np.where(kind == 2)[0]:
    h = half[i]
    if h == 0: m[i, 14:, :] = 0
    elif h == 1: m[i, :14, :] = 0
    elif h == 2: m[i, :, 14:] = 0
    else: m[i, :, :14] = 0
np.save(sys.argv[1], m)
PY
    train runs/fashion-inpaint-masked --mask "$OUT/train-masks.npy"
fi
declare -A MASKS=([lower-half]="--mask-rect 0,14,28,14" [random-50]="--mask-random 0.5 --seed 1")
rows=()
for model in complete masked; do
    run=runs/fashion-inpaint-$model
    for mask in lower-half random-50; do
        for method in importance mwg pseudo-gibbs; do
            case $method in
                importance) sizes=(--samples "$SAMPLES") ;;
                *) sizes=(--iterations "$ITERATIONS") ;;
            esac
            log="$OUT/$model-$mask-$method.log"
            # shellcheck disable=SC2086
            mpi inpaint --checkpoint "$run" ${MASKS[$mask]} --count "$COUNT" --method "$method" "${sizes[@]}" \
                --out "$OUT/$model-$mask-$method.npy" >"$log" 2>&1 || { tail "$log"; exit 1; }
            line=$(grep "removed pixels" "$log")
            speed=$(grep -oE "[0-9.]+ images/s" "$log" | head -1)
            accepted=$(grep -oE "[0-9.]+ % of the moves accepted" "$log" | head -1 || true)
            read -r m p <<<"$(sed -E 's/.*removed pixels: MSE ([0-9.]+), PSNR ([0-9.]+) dB.*/\1 \2/' <<<"$line")"
            read -r bm bp <<<"$(sed -E 's/.*mean image: MSE ([0-9.]+), PSNR ([0-9.]+) dB.*/\1 \2/' <<<"$line")"
            rows+=("$(printf '%-9s %-11s %-13s %9s %8s %9s %8s   %-13s %s' "$model" "$mask" "$method" "$m" "$p" "$bm" "$bp" \
                "$speed" "${accepted:-}")")
            echo "${rows[-1]}"
        done
    done
done
{
    echo "Fashion-MNIST, the first $COUNT test images, np $NP (L = $SAMPLES, T = $ITERATIONS); MSE and PSNR on the removed pixels"
    printf '%-9s %-11s %-13s %9s %8s %9s %8s   %s\n' model mask method MSE "PSNR dB" "mean img" "PSNR dB" "speed"
    printf '%s\n' "${rows[@]}"
} | tee "$OUT/table.txt"
