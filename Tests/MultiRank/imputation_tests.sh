# Incomplete data, importance-weighted training, imputation and inpainting
# (issue 19). Sourced by run.sh (which defines mpi, expect, helpers, WORK, SMALL).

# The breast-cancer table of scikit-learn with half of its entries removed as
# the MIWAE notebooks remove them (numpy seed 1234), as CSV with a header, an
# id column the model does not read, and empty cells; and the complete table.
miwae_table() {  # DIR
    python3 - "$1" <<'EOF'
import os, sys, numpy as np
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
import sklearn
folder = "/usr/lib/python3/dist-packages/sklearn/datasets/data"
if not os.path.exists(folder + "/breast_cancer.csv"):
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data")
lines = open(folder + "/breast_cancer.csv").read().splitlines()
data = np.array([[float(v) for v in l.split(",")[:30]] for l in lines[1:570]])
n, p = data.shape
np.random.seed(1234)
flat = data.copy().flatten()
flat[np.random.choice(n * p, n * p // 2, replace=False)] = np.nan
miss = flat.reshape(n, p)
names = ["c%d" % (j + 1) for j in range(p)]
def write(path, m):
    with open(path, "w") as f:
        f.write(",".join(names + ["id"]) + "\n")
        for i, row in enumerate(m):
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + ",row %d\n" % i)
write(out + "/bc.csv", miss)
write(out + "/bc-full.csv", data)
open(out + "/columns", "w").write(",".join(names))
EOF
}

imputation_table() {
    local dir="$WORK/miwae" columns
    miwae_table "$dir"
    columns=$(cat "$dir/columns")
    local args=(--train-file "$dir/bc.csv" --columns "$columns" --standardize --test-fraction 0 --likelihood student-t
                --hidden-dims 32,32 --latent-dim 4 --train-samples 5 --missing-fill learned --batch-size 32
                --lr 3e-3 --epochs 4 --log-every 20)
    mpi 2 train "${args[@]}" --run-dir "$dir/straight" >"$dir/straight.out" 2>&1
    cat "$dir/straight.out"
    expect "$dir/straight.out" "569 train .*, 569 test \(no test set: the training set\)"
    expect "$dir/straight.out" "missing values: 8535 of 17070 training values \(50.0 %\); the likelihood scores the observed ones only"
    expect "$dir/straight.out" "training-set loss [0-9.]+ nats/sample .* over the 569 training samples \(no test set\)"
    grep -qE '"evaluated_on" ?: ?"training set"' "$dir/straight/metrics.jsonl"
    grep -qE '"missing_fill"' "$dir/straight/checkpoints/step-00000072.json"
    # Stopped and resumed at np 2: the same bytes as the uninterrupted run.
    mpi 2 train "${args[@]}" --run-dir "$dir/resumed" --max-steps 25 >/dev/null
    mpi 2 train --resume "$dir/resumed" >/dev/null
    cmp "$dir/straight/checkpoints/step-00000072.safetensors" "$dir/resumed/checkpoints/step-00000072.safetensors"
    echo "resumed run identical"
    # Imputation at np 1 and np 2: the same file, rows in input order, observed fields as they were.
    "$BINARY" impute --checkpoint "$dir/straight" --data "$dir/bc.csv" --out "$dir/np1.csv" --samples 200 \
        --truth "$dir/bc-full.csv" >"$dir/impute1.out"
    cat "$dir/impute1.out"
    mpi 2 impute --checkpoint "$dir/straight" --data "$dir/bc.csv" --out "$dir/np2.csv" --samples 200 >/dev/null
    cmp "$dir/np1.csv" "$dir/np2.csv"
    expect "$dir/impute1.out" "569 rows of 30 values from .*bc.csv: 8535 missing \(50.0 %\)"
    expect "$dir/impute1.out" "MSE on the 8535 imputed entries: [0-9.]+ \(mean imputation [0-9.]+\); standardized [0-9.]+ \(mean imputation [0-9.]+\)"
    python3 - "$dir" <<'EOF'
import csv, re, sys
d = sys.argv[1]
src = list(csv.reader(open(d + "/bc.csv"))); out = list(csv.reader(open(d + "/np1.csv")))
assert src[0] == out[0], "header kept"
assert len(src) == len(out) == 570
for a, b in zip(src[1:], out[1:]):
    assert a[30] == b[30], "the id column is untouched"
    for x, y in zip(a[:30], b[:30]):
        assert y != "", "every cell filled"
        if x != "": assert x == y, (x, y)
line = open(d + "/impute1.out").read()
m = re.search(r"standardized ([0-9.]+) \(mean imputation ([0-9.]+)\)", line)
ours, mean = float(m.group(1)), float(m.group(2))
assert ours < 0.85 * mean, (ours, mean)
print("ok: observed fields kept, ids kept, standardized MSE %.4f below mean imputation %.4f" % (ours, mean))
EOF
    # Chains: Metropolis-within-Gibbs and pseudo-Gibbs, several imputations, np 1 = np 2.
    "$BINARY" impute --checkpoint "$dir/straight" --data "$dir/bc.csv" --out "$dir/mwg1.npy" --method mwg \
        --iterations 20 --multiple 3 >"$dir/mwg.out"
    cat "$dir/mwg.out"
    expect "$dir/mwg.out" "Metropolis-within-Gibbs, 3 chain\(s\) of 20 iterations .*; [0-9.]+ % of the moves accepted"
    mpi 2 impute --checkpoint "$dir/straight" --data "$dir/bc.csv" --out "$dir/mwg2.npy" --method mwg \
        --iterations 20 --multiple 3 >/dev/null
    cmp "$dir/mwg1.npy" "$dir/mwg2.npy"
    mpi 2 impute --checkpoint "$dir/straight" --data "$dir/bc.csv" --out "$dir/pg.csv" --method pseudo-gibbs \
        --iterations 10 --multiple 2 >"$dir/pg.out"
    expect "$dir/pg.out" "pseudo-Gibbs, 2 chain\(s\) of 10 iterations .*100.0 % of the moves accepted"
    python3 -c "
import numpy as np, csv
a = np.load('$dir/mwg1.npy'); assert a.shape == (3, 569, 30), a.shape
assert np.isfinite(a).all()
rows = list(csv.reader(open('$dir/pg.csv'))); assert rows[0][0] == 'imputation' and len(rows) == 1 + 2 * 569
print('ok: 3 imputations of 569 rows; pseudo-Gibbs CSV in long format')"
}

# K = 1 is the ELBO, byte for byte; K > 1 trains (and refuses a KL weight).
importance_weighted_training() {
    local args=(--data "$SMALL" --batch-size 64 --hidden-dim 32 --latent-dim 4 --max-steps 8 --log-every 4)
    mpi 2 train "${args[@]}" --run-dir "$WORK/iw-default" >/dev/null
    mpi 2 train "${args[@]}" --train-samples 1 --run-dir "$WORK/iw-k1" >/dev/null
    cmp "$WORK/iw-default/checkpoints/step-00000008.safetensors" "$WORK/iw-k1/checkpoints/step-00000008.safetensors"
    mpi 2 train "${args[@]}" --train-samples 8 --run-dir "$WORK/iw-k8" >"$WORK/iw-k8.out"
    cat "$WORK/iw-k8.out"
    grep -qE '"train_samples" ?: ?8' "$WORK/iw-k8/config.json"
    if cmp -s "$WORK/iw-default/checkpoints/step-00000008.safetensors" "$WORK/iw-k8/checkpoints/step-00000008.safetensors"; then
        echo "K = 8 trained the same model as K = 1"; return 1
    fi
    if mpi 2 train "${args[@]}" --train-samples 8 --beta 2 --run-dir "$WORK/iw-beta" >"$WORK/iw-beta.out" 2>&1; then return 1; fi
    expect "$WORK/iw-beta.out" "--train-samples \(8\) trains the importance-weighted bound, whose KL weight β is 1"
    expect "$WORK/iw-beta.out" "\(got β = 2.0\)"
    [ ! -e "$WORK/iw-beta" ]
    if mpi 2 train --resume "$WORK/iw-k8" --train-samples 4 --max-steps 12 >"$WORK/iw-change.out" 2>&1; then return 1; fi
    expect "$WORK/iw-change.out" "--train-samples: cannot change when resuming"
}

imputation_errors() {
    local dir="$WORK/imp-errors" out="$WORK/imp-errors/out"
    mkdir -p "$dir"
    python3 -c "
import numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 5)).astype(np.float32); full = x.copy()
x[rng.random(x.shape) < 0.3] = np.nan; x[7] = np.nan
np.save('$dir/x.npy', x); np.save('$dir/full.npy', full)
np.save('$dir/short-mask.npy', np.ones((59, 5), np.uint8)); np.save('$dir/bad-mask.npy', np.full((60, 5), 2, np.uint8))
np.save('$dir/truth-other.npy', full[:, :4])"
    # Training: a mask of another shape, or not of 0 and 1.
    if mpi 2 train --train-file "$dir/x.npy" --test-fraction 0 --likelihood gaussian --mask "$dir/short-mask.npy" \
        --run-dir "$dir/r1" >"$out" 2>&1; then return 1; fi
    expect "$out" "short-mask.npy: holds 295 mask values, but .*x.npy has 60 samples of 5 values \(300\): a mask has one 0 or 1 per value"
    [ ! -e "$dir/r1" ]
    if mpi 2 train --train-file "$dir/x.npy" --test-fraction 0 --likelihood gaussian --mask "$dir/bad-mask.npy" \
        --run-dir "$dir/r2" >"$out" 2>&1; then return 1; fi
    expect "$out" "bad-mask.npy: value 2.0 at sample 0, element 0: a mask holds 1 \(observed\) and 0 \(missing\)"
    [ ! -e "$dir/r2" ]
    # A row with every entry missing trains (the KL term only), and says so.
    mpi 2 train --train-file "$dir/x.npy" --test-fraction 0 --likelihood gaussian --hidden-dim 16 --latent-dim 2 \
        --epochs 2 --batch-size 16 --run-dir "$dir/run" >"$out" 2>&1
    expect "$out" "1 row with no observed value train the KL term only"
    # Imputation: the truth of another shape, a mask of another shape, bad options; nothing written.
    if mpi 2 impute --checkpoint "$dir/run" --data "$dir/x.npy" --out "$dir/o1.npy" --truth "$dir/truth-other.npy" \
        >"$out" 2>&1; then return 1; fi
    expect "$out" "truth-other.npy: holds 60 samples of 4 values, but .*x.npy has 60 of 5: the true values must have its shape"
    [ ! -e "$dir/o1.npy" ]
    if mpi 2 impute --checkpoint "$dir/run" --data "$dir/x.npy" --out "$dir/o2.npy" --mask "$dir/short-mask.npy" \
        >"$out" 2>&1; then return 1; fi
    expect "$out" "short-mask.npy: holds 295 mask values"
    [ ! -e "$dir/o2.npy" ]
    if "$BINARY" impute --checkpoint "$dir/run" --data "$dir/x.npy" --out "$dir/o3.npy" --method mwg --iterations 10 \
        --burn-in 10 >"$out" 2>&1; then return 1; fi
    expect "$out" "--burn-in \(10\) must be below --iterations \(10\)"
    if "$BINARY" impute --checkpoint "$dir/run" --data "$dir/x.npy" --out "$dir/o4.png" >"$out" 2>&1; then return 1; fi
    expect "$out" "--out must end in .csv or .npy"
    # The row with nothing observed is imputed too (from the model's marginal).
    "$BINARY" impute --checkpoint "$dir/run" --data "$dir/x.npy" --out "$dir/ok.npy" --samples 50 >"$out"
    expect "$out" "1 row with no observed value, imputed from the model's marginal"
    python3 -c "
import numpy as np
a = np.load('$dir/ok.npy'); x = np.load('$dir/x.npy'); assert a.shape == x.shape and np.isfinite(a).all()
m = ~np.isnan(x); assert (a[m] == x[m]).all(); print('ok: every value filled, observed ones exact')"
}

inpainting() {
    local dir="$WORK/inpaint" out="$WORK/inpaint/out"
    mkdir -p "$dir"
    mpi 2 train --data "$SMALL" --batch-size 64 --hidden-dim 64 --latent-dim 4 --lr 3e-3 --epochs 2 --log-every 8 \
        --run-dir "$dir/run" >/dev/null
    "$BINARY" inpaint --checkpoint "$dir/run" --mask-rect 0,6,12,6 --count 24 --out "$dir/np1.npy" --samples 100 \
        >"$out"
    cat "$out"
    expect "$out" "repairing 24 images of 1×12×12 from the test set: 1728 missing values \(50.0 %\)"
    expect "$out" "on the 1728 removed pixels: MSE [0-9.]+, PSNR [0-9.]+ dB; the training set's mean image: MSE [0-9.]+, PSNR [0-9.]+ dB"
    expect "$out" "wrote .*np1-grid.png: damaged, repaired, original \(16 images\)"
    mpi 2 inpaint --checkpoint "$dir/run" --mask-rect 0,6,12,6 --count 24 --out "$dir/np2.npy" --samples 100 >/dev/null
    cmp "$dir/np1.npy" "$dir/np2.npy"
    python3 - "$dir" "$SMALL" <<'EOF'
import gzip, sys, numpy as np
d, small = sys.argv[1], sys.argv[2]
import glob
path = [p for p in glob.glob(small + "/t10k-images*")][0]
raw = (gzip.open(path) if path.endswith(".gz") else open(path, "rb")).read()
images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 12, 12)[:24]
out = np.load(d + "/np1.npy"); assert out.shape == (24, 1, 12, 12) and out.dtype == np.uint8, (out.shape, out.dtype)
assert (out[:, 0, :6] == images[:, :6]).all(), "observed pixels kept exactly"
print("ok: uint8 output, the upper halves exactly as read")
EOF
    # Random pixels, the chains, several imputations.
    mpi 2 inpaint --checkpoint "$dir/run" --mask-random 0.5 --seed 3 --count 8 --method mwg --iterations 10 \
        --multiple 2 --out "$dir/random.npy" >"$out"
    expect "$out" "Metropolis-within-Gibbs, 2 chain\(s\)"
    python3 -c "
import numpy as np; a = np.load('$dir/random.npy'); assert a.shape == (2, 8, 1, 12, 12), a.shape; print('ok', a.shape)"
    # Errors: no damage named, two named, a rectangle outside the images; nothing written.
    if "$BINARY" inpaint --checkpoint "$dir/run" --out "$dir/e1.npy" >"$out" 2>&1; then return 1; fi
    expect "$out" "no pixel of the test set is missing"
    if "$BINARY" inpaint --checkpoint "$dir/run" --mask-rect 0,0,2,2 --mask-random 0.5 --out "$dir/e2.npy" >"$out" 2>&1; then return 1; fi
    expect "$out" "give one of them"
    if "$BINARY" inpaint --checkpoint "$dir/run" --mask-rect 20,0,2,2 --out "$dir/e3.npy" >"$out" 2>&1; then return 1; fi
    expect "$out" "--mask-rect: starts outside the 12×12 images"
    [ ! -e "$dir/e1.npy" ]
    [ ! -e "$dir/e2.npy" ]
    [ ! -e "$dir/e3.npy" ]
}

# A folder of masks beside a folder of images: same relative names, .png, dark pixels missing.
image_folder_masks() {
    local d="$WORK/mask-folder" out="$WORK/mask-folder/out"
    python3 - "$d" <<'PY'
import os, sys, numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(3)
for split, n in (("train", 40), ("test", 8)):
    os.makedirs(f"{d}/images/{split}", exist_ok=True); os.makedirs(f"{d}/masks/{split}", exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(f"{d}/images/{split}/img{i:02d}.jpg")
        if i % 2 == 0:   # every other image: its lower 4 rows missing
            m = np.full((16, 16), 255, np.uint8); m[12:] = 0
            Image.fromarray(m).save(f"{d}/masks/{split}/img{i:02d}.png")
os.makedirs(f"{d}/bad/train", exist_ok=True)
Image.fromarray(np.zeros((8, 8), np.uint8)).save(f"{d}/bad/train/img00.png")
PY
    mpi 2 train --data "$d/images" --mask "$d/masks" --likelihood discretized-logistic --hidden-dim 32 --latent-dim 2 \
        --epochs 2 --batch-size 8 --run-dir "$d/run" >"$out" 2>&1
    cat "$out"
    # 20 of 40 training images with 4 of 16 rows missing: 20·64 of 40·256 values.
    expect "$out" "missing values: 1280 of 10240 training values \(12.5 %\)"
    expect "$out" "test loss [0-9.]+ nats/sample"
    # A mask of another size names both files; a mask file for a folder is refused; nothing is written.
    if mpi 2 train --data "$d/images" --mask "$d/bad" --run-dir "$d/r2" >"$out" 2>&1; then return 1; fi
    expect "$out" "bad/train/img00.png: is 8 × 8 pixels but its image .*images/train/img00.jpg is 16 × 16: a mask has the image's size"
    [ ! -e "$d/r2" ]
    if mpi 2 train --data "$d/images" --mask "$d/bad/train/img00.png" --run-dir "$d/r3" >"$out" 2>&1; then return 1; fi
    expect "$out" "img00.png: is not a folder: the masks of an image folder are a folder of images beside it"
    [ ! -e "$d/r3" ]
}
