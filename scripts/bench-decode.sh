#!/usr/bin/env bash
# Image-folder decoding throughput: Fashion-MNIST written as 70,000 PNG (and
# JPEG) files in train/ and test/ class folders, then `vae-mpi train
# --max-steps 1` at np 1 and 2, which prints the header scan's time and the
# decode rate per rank. Folders are made once under $BENCH_DIR.
#   bash scripts/bench-decode.sh            (REPEATS=3 NPS="1 2" FORMATS="png jpg")
source "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/tmp/vae-mpi-decode-bench}
REPEATS=${REPEATS:-3}
NPS=${NPS:-1 2}
FORMATS=${FORMATS:-png jpg}
[ -x "$BINARY" ] || build_release
ensure_python_packages numpy PIL=pillow
for format in $FORMATS; do
    [ -d "$BENCH_DIR/$format/test" ] && continue
    say "writing Fashion-MNIST as $format files into $BENCH_DIR/$format"
    python3 - "$BENCH_DIR/$format" "$format" <<'PY'
import gzip, os, sys, numpy as np
from PIL import Image
out, fmt = sys.argv[1], sys.argv[2]
src = "/usr/share/datasets/fashion-mnist"
names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
for split, prefix in [("train", "train"), ("test", "t10k")]:
    x = np.frombuffer(gzip.open(f"{src}/{prefix}-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(f"{src}/{prefix}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    for i, (image, label) in enumerate(zip(x, y)):
        os.makedirs(f"{out}/{split}/{names[label]}", exist_ok=True)
        Image.fromarray(image).save(f"{out}/{split}/{names[label]}/{i:05d}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
PY
done
for format in $FORMATS; do
    for np in $NPS; do
        for r in $(seq "$REPEATS"); do
            mapfile -t flags < <(mpirun_flags "$np")
            run=$(mktemp -d /tmp/vae-mpi-decode-run.XXXXXX)
            out=$(mpirun "${flags[@]}" -np "$np" "$BINARY" train --data "$BENCH_DIR/$format" --max-steps 1 \
                  --run-dir "$run/run" 2>&1)
            rm -rf "$run"
            scan=$(grep -oE "headers read in [0-9.]+ s" <<<"$out" | grep -oE "[0-9.]+")
            rate=$(grep -oE "[0-9]+ images/s per rank" <<<"$out" | grep -oE "^[0-9]+")
            seconds=$(grep -oE "on every rank\) in [0-9.]+ s" <<<"$out" | grep -oE "[0-9.]+")
            echo "DECODE {\"format\": \"$format\", \"ranks\": $np, \"scan_s\": $scan, \"decode_s\": $seconds, \"images_per_s_per_rank\": $rate}"
        done
    done
done
