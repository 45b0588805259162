#!/usr/bin/env bash
# vae-mpi's lossless compression against general-purpose compressors, on the
# same images, in one table (bits per sub-pixel: compressed bits / (N·D)):
#
#   - xz -9e, bzip2 -9, zstd -19 --long, gzip -9 on the raw pixels (one stream);
#   - PNG (Pillow, optimize=True) and WebP lossless (Pillow) one file per image;
#   - vae-mpi compress with a trained model: the total rate (everything in the
#     .vaez file) and the net rate, beside the model's −ELBO; compress and
#     decompress speed at np 1 and np 2; the round trip checked byte for byte.
#
#   scripts/bench-compression.sh runs/MODEL                    # Fashion-MNIST's 10,000 test images
#   IMAGES=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz COUNT=2000 scripts/bench-compression.sh runs/MODEL
#
# The model needs a discrete likelihood (see README, Lossless compression, for
# the training command of the model this table was measured with).
source "$(dirname "$0")/common.sh"
APT_PACKAGES+=(xz-utils bzip2 zstd gzip)
ensure_packages
ensure_swift
ensure_python_packages numpy PIL=pillow
build_release

model=${1:?usage: bench-compression.sh CHECKPOINT (a run directory with a discrete-likelihood model)}
images=${IMAGES:-/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}
count=${COUNT:-10000}
work=$(mktemp -d /tmp/vae-mpi-bench-compression.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The samples: an uint8 .npy of the first COUNT images, and their raw pixels.
python3 - "$images" "$count" "$work" <<'PY'
import gzip, sys
import numpy as np
path, count, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
if data[:6] == b"\x93NUMPY":
    import io
    a = np.load(io.BytesIO(data))
else:
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    a = np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)
a = np.ascontiguousarray(a[:count].astype(np.uint8))
np.save(f"{work}/images.npy", a)
open(f"{work}/raw", "wb").write(a.tobytes())
print(f"{a.shape[0]} images of {a.shape[1:]} from {path}", file=sys.stderr)
PY

results="$work/results.tsv"
dims=$(python3 -c "import numpy as np; a = np.load('$work/images.npy', mmap_mode='r'); print(a.size)")
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }  # name, bytes, note
for tool in "xz -9e" "bzip2 -9" "zstd -19 --long -q" "gzip -9"; do
    say "  $tool"
    $tool -c "$work/raw" >"$work/out"
    row "${tool% -q}" "$(stat -c %s "$work/out")" "one stream of the raw pixels"
done
say "  PNG and WebP lossless, one file per image (Pillow)"
python3 - "$work" >>"$results" <<'PY'
import io, sys
import numpy as np
from PIL import Image
a = np.load(sys.argv[1] + "/images.npy")
def size(image, **kw):
    buffer = io.BytesIO()
    image.save(buffer, **kw)
    return buffer.tell()
def frames(x):
    return [Image.fromarray(x[i] if x.ndim == 3 else np.moveaxis(x[i], 0, -1)) for i in range(len(x))]
png = sum(size(f, format="PNG", optimize=True) for f in frames(a))
webp = sum(size(f, format="WEBP", lossless=True, quality=100, method=6) for f in frames(a))
print(f"PNG (Pillow, optimize=True)\t{png}\tone file per image")
print(f"WebP lossless (Pillow, method 6)\t{webp}\tone file per image")
PY

mapfile -t flags1 < <(mpirun_flags 1)
mapfile -t flags2 < <(mpirun_flags 2)
for np in 1 2; do
    flags=("${flags1[@]}")
    [ $np = 2 ] && flags=("${flags2[@]}")
    say "  vae-mpi compress and decompress at np $np"
    rm -f "$work/f.vaez" "$work/back.npy"
    timeout 3600 mpirun "${flags[@]}" -np $np "$BINARY" compress --checkpoint "$model" --images "$work/images.npy" \
        --out "$work/f.vaez" >"$work/compress-$np.out" 2>&1 || die "compress failed: $(tail -3 "$work/compress-$np.out")"
    timeout 3600 mpirun "${flags[@]}" -np $np "$BINARY" decompress "$work/f.vaez" --checkpoint "$model" \
        --out "$work/back.npy" >"$work/decompress-$np.out" 2>&1 || die "decompress failed: $(tail -3 "$work/decompress-$np.out")"
    cmp -s "$work/images.npy" "$work/back.npy" || die "the round trip at np $np is not byte-identical"
done
python3 - "$results" "$dims" "$work" <<'PY'
import re, sys
results, dims, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [line.rstrip("\n").split("\t") for line in open(results)]
c1, c2 = open(f"{work}/compress-1.out").read(), open(f"{work}/compress-2.out").read()
d1, d2 = open(f"{work}/decompress-1.out").read(), open(f"{work}/decompress-2.out").read()
total, net = map(float, re.search(r"rate +([0-9.]+) bits per sub-pixel in all .*, ([0-9.]+) net", c2).groups())
elbo = float(re.search(r"−ELBO ([0-9.]+) bits", c2).group(1))
speed = lambda text: re.search(r"speed +([0-9]+) samples/s", text).group(1)
table = [(name, int(size) * 8 / dims, note) for name, size, note in rows]
table.append(("vae-mpi compress (everything in the file)", total,
              f"net {net:.4f}, model −ELBO {elbo:.4f}: net / −ELBO = {net / elbo:.4f}"))
table.sort(key=lambda r: r[1])
print(f"\n{'compressor':<44} {'bits/dim':>8}   note")
for name, rate, note in table:
    print(f"{name:<44} {rate:>8.4f}   {note}")
print(f"\nvae-mpi speed, samples/s: compress {speed(c1)} at np 1, {speed(c2)} at np 2; "
      f"decompress {speed(d1)} at np 1, {speed(d2)} at np 2 (round trips byte-identical)")
PY
