# Lossless compression (issue 18): bits-back round trips for every kind of
# samples, decoding that does not depend on the build, the ranks or the
# kernels' instruction set, the rate against −ELBO, and the errors.
# Sourced by run.sh (which defines mpi, expect, helpers, WORK, SMALL, FASHION).

# The first N Fashion-MNIST test images as uint8 .npy (N×28×28).
fashion_npy() {  # N PATH
    python3 -c "
import gzip, numpy as np
d = gzip.open('$FASHION/t10k-images-idx3-ubyte.gz').read()
np.save('$2', np.frombuffer(d, np.uint8, offset=16).reshape(-1, 28, 28)[:$1])"
}

# A model trained briefly on Fashion-MNIST, for the codec tests (made once).
fashion_codec_model() {
    local run="$WORK/codec-model"
    [ -e "$run/checkpoints/latest" ] || mpi 2 train --likelihood discretized-logistic --hidden-dim 200 --latent-dim 16 \
        --max-steps 300 --log-every 100 --run-dir "$run" >/dev/null
    echo "$run"
}

# The debug build of the binary (swift build, -Onone), for decoding with another build.
debug_binary() {
    local debug="$VAE_MPI_ROOT/.build/debug/vae-mpi"
    (cd "$VAE_MPI_ROOT" && swift build --product vae-mpi 2>&1 | grep -E "error|warning: unre" >&2) || true
    [ -x "$debug" ] || { echo "no debug build at $debug" >&2; return 1; }
    echo "$debug"
}

# Fashion-MNIST test images at np 2 with the release build; decoded at np 1, np 3 (another split of the chains over
# the ranks), by the debug build, and with oneDNN capped at AVX2: the same bytes every time, equal to the input.
compression_fashion() {
    local model out="$WORK/codec" debug
    model=$(fashion_codec_model)
    mkdir -p "$out"
    fashion_npy 300 "$out/images.npy"
    mpi 2 compress --checkpoint "$model" --images "$out/images.npy" --out "$out/f.vaez" --chunk-size 100 >"$out/c.out"
    cat "$out/c.out"
    expect "$out/c.out" "wrote .*f.vaez: 300 samples from .*images.npy, 3 chains on 2 ranks"
    expect "$out/c.out" "rate +[0-9.]+ bits per sub-pixel in all .*, [0-9.]+ net of fixed overhead"
    expect "$out/c.out" "speed +[0-9]+ samples/s"
    "$BINARY" decompress "$out/f.vaez" --out "$out/np1.npy" >"$out/d1.out"
    cat "$out/d1.out"
    cmp "$out/images.npy" "$out/np1.npy"
    mpi 3 decompress "$out/f.vaez" --out "$out/np3.npy" >/dev/null
    cmp "$out/images.npy" "$out/np3.npy"
    ONEDNN_MAX_CPU_ISA=AVX2 mpi 2 decompress "$out/f.vaez" --out "$out/avx2.npy" >/dev/null
    cmp "$out/images.npy" "$out/avx2.npy"
    # Written at np 4 (a chain per rank), read at np 3.
    mpi 4 compress --checkpoint "$model" --images "$out/images.npy" --out "$out/np4.vaez" >"$out/c4.out"
    expect "$out/c4.out" "4 chains on 4 ranks"
    mpi 3 decompress "$out/np4.vaez" --out "$out/np4-3.npy" >/dev/null
    cmp "$out/images.npy" "$out/np4-3.npy"
    echo "decoded identically at np 1, np 3 and with oneDNN capped at AVX2; written at np 4, read at np 3"
    # The debug build (-Onone; slower, so on 40 images): a file of the release build at np 2 decodes the same, and the
    # debug build codes the same chunks as the release build does at np 1 and np 2.
    debug=$(debug_binary)
    fashion_npy 40 "$out/few.npy"
    mpi 2 compress --checkpoint "$model" --images "$out/few.npy" --out "$out/few.vaez" --chunk-size 20 >/dev/null
    ONEDNN_MAX_CPU_ISA=AVX2 "$debug" decompress "$out/few.vaez" --out "$out/debug.npy" >"$out/debug.out"
    cat "$out/debug.out"
    cmp "$out/few.npy" "$out/debug.npy"
    "$debug" compress --checkpoint "$model" --images "$out/few.npy" --out "$out/h-debug.vaez" --chunk-size 20 >/dev/null
    "$BINARY" compress --checkpoint "$model" --images "$out/few.npy" --out "$out/h-release.vaez" --chunk-size 20 >/dev/null
    python3 - "$out/h-debug.vaez" "$out/h-release.vaez" "$out/few.vaez" <<'PY'
import sys
a, b, c = (open(p, "rb").read() for p in sys.argv[1:])
# The headers differ only in the -ELBO figure's last digits at most; the chunks (everything after the header) are equal.
def chunks(data):
    n = int.from_bytes(data[6:10], "little")
    return data[10 + n + 4:]
assert chunks(a) == chunks(b) == chunks(c), "the coded chunks differ between builds or ranks"
print("ok: the debug and release builds, at np 1 and np 2, code the same chunks")
PY
}

# The rate of a trained model against its −ELBO (bits per sub-pixel): net of the fixed overhead, within 1.5 %.
compression_rate() {
    local model out="$WORK/codec-rate"
    model=$(fashion_codec_model)
    mkdir -p "$out"
    mpi 2 compress --checkpoint "$model" --data "$FASHION" --split test --out "$out/test.vaez" >"$out/c.out"
    cat "$out/c.out"
    python3 - "$out/c.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ratio = float(re.search(r"net rate / −ELBO = ([0-9.]+)", text).group(1))
total, net = map(float, re.search(r"rate +([0-9.]+) bits per sub-pixel in all .*, ([0-9.]+) net", text).groups())
elbo = float(re.search(r"−ELBO ([0-9.]+) bits", text).group(1))
print(f"10000 test images: total {total}, net {net}, −ELBO {elbo} bits per sub-pixel, net / −ELBO {ratio}")
assert ratio < 1.015, ratio
assert total < 1.015 * elbo, (total, elbo)
PY
    # The IDX file comes back as it was (raw, not gzipped).
    "$BINARY" decompress "$out/test.vaez" --out "$out/t10k-images-idx3-ubyte" >/dev/null
    python3 -c "
import gzip; a = gzip.open('$FASHION/t10k-images-idx3-ubyte.gz').read(); b = open('$out/t10k-images-idx3-ubyte', 'rb').read()
assert a == b, 'IDX differs'; print('ok: IDX bytes identical')"
}

# An RGB image folder (class folders, PNG and JPEG), 0/1 data under a Bernoulli model, and 1000-level int16 arrays:
# each round trip exact, names and order kept.
compression_kinds() {
    local out="$WORK/codec-kinds"
    mkdir -p "$out"
    # RGB folder: 8-bit images of 8×8 in two class folders; a JPEG among them.
    python3 - "$out/rgb" <<'PY'
import os, sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(4)
for c in ("cats", "dogs"):
    os.makedirs(os.path.join(sys.argv[1], c), exist_ok=True)
    for i in range(24):
        base = rng.integers(0, 256, size=3)
        img = np.clip(base + rng.integers(-30, 30, size=(8, 8, 3)), 0, 255).astype(np.uint8)
        name = f"{c}_{i:02d}." + ("jpg" if i == 5 else "png")
        Image.fromarray(img, "RGB").save(os.path.join(sys.argv[1], c, name))
PY
    mpi 2 train --data "$out/rgb" --likelihood beta-binomial --hidden-dim 32 --latent-dim 4 --epochs 3 --batch-size 16 \
        --run-dir "$out/rgb-run" >/dev/null
    mpi 2 compress --checkpoint "$out/rgb-run" --images "$out/rgb" --out "$out/rgb.vaez" >"$out/rgb.out"
    cat "$out/rgb.out"
    mpi 2 decompress "$out/rgb.vaez" --out "$out/rgb-back" >/dev/null
    python3 - "$out/rgb" "$out/rgb-back" <<'PY'
import os, sys
import numpy as np
from PIL import Image
names = sorted(os.path.relpath(os.path.join(d, f), sys.argv[1]) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
for n in names:
    back = os.path.splitext(n)[0] + ".png"
    a = np.asarray(Image.open(os.path.join(sys.argv[1], n)).convert("RGB"))
    b = np.asarray(Image.open(os.path.join(sys.argv[2], back)))
    assert a.shape == b.shape and (a == b).all(), n
print(f"ok: {len(names)} RGB images back pixel for pixel under their names (the JPEG as PNG)")
PY
    # 0/1 data with 2 levels, Bernoulli.
    python3 -c "
import numpy as np
rng = np.random.default_rng(5)
for s, n in (('train', 200), ('test', 40)):
    np.save('$out/bin-%s.npy' % s, (rng.random((n, 6, 6)) < rng.random((n, 1, 1))).astype(np.int64))"
    mpi 2 train --train-file "$out/bin-train.npy" --test-file "$out/bin-test.npy" --levels 2 --hidden-dim 16 \
        --latent-dim 2 --epochs 3 --batch-size 20 --run-dir "$out/bin-run" >"$out/bin-train.out" 2>&1
    expect "$out/bin-train.out" "bits/dim"
    mpi 2 compress --checkpoint "$out/bin-run" --images "$out/bin-test.npy" --out "$out/bin.vaez" >/dev/null
    "$BINARY" decompress "$out/bin.vaez" --out "$out/bin-back.npy" >/dev/null
    cmp "$out/bin-test.npy" "$out/bin-back.npy"
    # int16 arrays with 1000 levels, a discretized logistic mixture.
    python3 -c "
import numpy as np
rng = np.random.default_rng(6)
for s, n in (('train', 200), ('test', 30)):
    base = rng.integers(0, 1000, size=(n, 1))
    np.save('$out/w-%s.npy' % s, np.clip(base + rng.integers(-30, 30, size=(n, 12)), 0, 999).astype('>i2'))"
    mpi 2 train --train-file "$out/w-train.npy" --test-file "$out/w-test.npy" --levels 1000 --likelihood discretized-logistic \
        --logistic-mixtures 2 --hidden-dim 16 --latent-dim 2 --epochs 3 --batch-size 20 --run-dir "$out/w-run" >/dev/null
    mpi 2 compress --checkpoint "$out/w-run" --images "$out/w-test.npy" --out "$out/w.vaez" >/dev/null
    mpi 2 decompress "$out/w.vaez" --out "$out/w-back.npy" >/dev/null
    cmp "$out/w-test.npy" "$out/w-back.npy"
    echo "ok: 0/1 data (Bernoulli) and big-endian int16 with 1000 levels: byte-identical .npy files back"
}

# Errors: one clear message each, and nothing written.
compression_errors() {
    local model out="$WORK/codec-err" log="$WORK/codec-err.log"
    model=$(fashion_codec_model)
    mkdir -p "$out"
    fashion_npy 20 "$out/images.npy"
    "$BINARY" compress --checkpoint "$model" --images "$out/images.npy" --out "$out/f.vaez" >/dev/null
    # Another checkpoint (same architecture, other parameters).
    mpi 2 train --likelihood discretized-logistic --hidden-dim 200 --latent-dim 16 --max-steps 2 --run-dir "$out/other" >/dev/null
    if "$BINARY" decompress "$out/f.vaez" --checkpoint "$out/other" --out "$out/x.npy" >"$log" 2>&1; then return 1; fi
    cat "$log"
    expect "$log" "f.vaez was compressed with another model \(fnv1a64:[0-9a-f]+, checkpoint .*codec-model.*\) than .*other.* \(fnv1a64:[0-9a-f]+\)"
    # A flipped byte in a chunk, and a truncated file.
    python3 -c "
b = bytearray(open('$out/f.vaez', 'rb').read()); b[-7] ^= 0x10; open('$out/flipped.vaez', 'wb').write(b)
open('$out/cut.vaez', 'wb').write(open('$out/f.vaez', 'rb').read()[:-100])"
    if mpi 2 decompress "$out/flipped.vaez" --out "$out/x.npy" >"$log" 2>&1; then return 1; fi
    expect "$log" "flipped.vaez: chunk 0 fails its CRC-32 check \(the file is damaged\)"
    [ "$(count_lines "$log" "fails its CRC-32")" = 1 ]
    if "$BINARY" decompress "$out/cut.vaez" --out "$out/x.npy" >"$log" 2>&1; then return 1; fi
    expect "$log" "cut.vaez: truncated in chunk 0"
    # A likelihood without levels, and samples of another shape.
    mpi 2 train --data "$SMALL" --likelihood gaussian --hidden-dim 8 --latent-dim 2 --max-steps 2 --run-dir "$out/gauss" >/dev/null
    if "$BINARY" compress --checkpoint "$out/gauss" --data "$SMALL" --out "$out/y.vaez" >"$log" 2>&1; then return 1; fi
    expect "$log" "the gaussian likelihood is not a distribution over integer levels; bits-back coding needs a discrete one"
    if "$BINARY" compress --checkpoint "$model" --data "$SMALL" --out "$out/y.vaez" >"$log" 2>&1; then return 1; fi
    expect "$log" "samples are 1×12×12 but the model takes 1×28×28"
    # An existing output is not overwritten.
    if "$BINARY" decompress "$out/f.vaez" --out "$out/images.npy" >"$log" 2>&1; then return 1; fi
    expect "$log" "--out: .*images.npy exists; choose a new file"
    [ ! -e "$out/x.npy" ]
    [ ! -e "$out/y.vaez" ]
}
