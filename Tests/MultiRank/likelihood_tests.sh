# Likelihoods and data kinds (issue 15): discrete likelihoods on integer
# levels, integer .npy arrays with their levels, and tables (CSV).
# Sourced by run.sh (which defines mpi, expect, helpers, WORK, SMALL).

# A discretized-logistic conv VAE (a mixture of 2) at np 2, stopped mid-epoch
# and resumed: byte-identical to the uninterrupted run. Bits per dimension are
# a code length here, so metrics.jsonl and evaluate report them.
discrete_conv_resume() {
    local args=(--data "$SMALL" --model conv --conv-channels 8,16 --likelihood discretized-logistic
                --logistic-mixtures 2 --batch-size 64 --lr 3e-3 --log-every 4 --epochs 2)
    mpi 2 train "${args[@]}" --run-dir "$WORK/dl-straight" >"$WORK/dl-straight.out" 2>&1
    cat "$WORK/dl-straight.out"
    expect "$WORK/dl-straight.out" "likelihood +discretized-logistic, 2 components, 256 levels"
    expect "$WORK/dl-straight.out" "test loss [0-9.]+ nats/sample .*, [0-9.]+ bits/dim, over 203 test samples"
    mpi 2 train "${args[@]}" --run-dir "$WORK/dl-resumed" --max-steps 11 >/dev/null
    mpi 2 train --resume "$WORK/dl-resumed" >/dev/null
    cmp "$WORK/dl-straight/checkpoints/step-00000032.safetensors" "$WORK/dl-resumed/checkpoints/step-00000032.safetensors"
    helpers check-run "$WORK/dl-straight" 2 203 2 12 12
    python3 -c "
import json
m = [json.loads(l) for l in open('$WORK/dl-straight/metrics.jsonl') if '\"eval\"' in l]
assert all('test_bits_per_dim' in e for e in m), m
print('ok: bits/dim', [round(e['test_bits_per_dim'], 4) for e in m])"
    grep -q '"dec.deconv2_mixture.weight"' "$WORK/dl-straight/checkpoints/step-00000032.json"
    # A resume cannot change the likelihood (it fixes the decoder's heads).
    if mpi 2 train --resume "$WORK/dl-straight" --logistic-mixtures 3 --epochs 3 >"$WORK/dl-change.out" 2>&1; then return 1; fi
    expect "$WORK/dl-change.out" "--logistic-mixtures: cannot change when resuming"
    mpi 2 evaluate --checkpoint "$WORK/dl-straight" --importance-samples 4 >"$WORK/dl-eval.out"
    cat "$WORK/dl-eval.out"
    expect "$WORK/dl-eval.out" "−ELBO +[0-9.]+ nats/sample, [0-9.]+ bits/dim"
    expect "$WORK/dl-eval.out" "−log p\(x\) ≈ +[0-9.]+ nats/sample, [0-9.]+ bits/dim \(importance-weighted, K = 4\)"
    # Samples drawn from the likelihood are levels (multiples of 1/255).
    "$BINARY" sample --checkpoint "$WORK/dl-straight" --count 5 --observation sample --out "$WORK/dl-samples.npy"
    python3 -c "
import numpy as np
a = np.load('$WORK/dl-samples.npy'); assert a.shape == (5, 1, 12, 12), a.shape
levels = a * 255; assert np.abs(levels - np.round(levels)).max() < 1e-3, 'not levels'
print('ok: sampled levels', sorted(set(np.round(levels).astype(int).ravel()))[:8], '...')"
}

# Integer arrays with their levels: int16 values 0…999 (--levels 1000) with a
# beta-binomial MLP at np 2; a value out of range and a missing --levels are
# refused naming the file; a Bernoulli model of gray levels reports no bits/dim.
integer_levels() {
    local data="$WORK/int16" out="$WORK/int16.out"
    mkdir -p "$data"
    python3 -c "
import numpy as np
rng = np.random.default_rng(3)
for name, n in (('train', 300), ('test', 60)):
    base = rng.integers(0, 1000, size=(n, 1)) 
    a = np.clip(base + rng.integers(-40, 40, size=(n, 20)), 0, 999).astype(np.int16)
    np.save('$data/%s-images.npy' % name, a)"
    mpi 2 train --data "$data" --levels 1000 --likelihood beta-binomial --hidden-dim 32 --latent-dim 2 --epochs 2 \
        --batch-size 30 --lr 3e-3 --run-dir "$WORK/int16-run" >"$out" 2>&1
    cat "$out"
    expect "$out" "data +300 train .*, 60 test .* vectors of 20 values, 1000 levels"
    expect "$out" "likelihood +beta-binomial, 1000 levels"
    expect "$out" "bits/dim, over 60 test samples"
    if mpi 2 train --data "$data" --run-dir "$WORK/int16-b" >"$out" 2>&1; then return 1; fi
    expect "$out" "train-images.npy: integer samples \(<i2\) need their number of levels K .*: give it with --levels K"
    if mpi 2 train --data "$data" --levels 500 --run-dir "$WORK/int16-c" >"$out" 2>&1; then return 1; fi
    expect "$out" "train-images.npy: value [0-9]+ at index [0-9]+ is outside the 500 levels 0…499 \(--levels\)"
    # A discrete likelihood on float data: the rule, and the option that fixes it.
    python3 "$HELPERS" make-npy-dataset "$WORK/floats" 40 10 1 8 8 with-test 1.0 0.0
    if mpi 2 train --data "$WORK/floats" --likelihood discretized-logistic --run-dir "$WORK/int16-d" >"$out" 2>&1; then
        return 1
    fi
    expect "$out" "--likelihood discretized-logistic: .*train-images.npy: the discretized-logistic likelihood needs integer levels 0…K−1 .*the values are real \(float32\); integer arrays need --levels K"
    # Nothing written by the refused runs. (One test per line: under set -e, a failure before the last of an
    # && list would not end the test.)
    [ ! -e "$WORK/int16-b/config.json" ]
    [ ! -e "$WORK/int16-c/config.json" ]
    [ ! -e "$WORK/int16-d/config.json" ]
}

# A table at np 2: the MLP on a CSV with a header, chosen columns (an id
# column of text left out), integer labels and standardization; encode writes
# the latents as CSV with a header; reconstruct and sample write CSV in the
# original units with the training columns' header.
tabular_csv() {
    local data="$WORK/table" run="$WORK/table-run" out="$WORK/table.out"
    mkdir -p "$data"
    python3 - "$data" <<'PY'
import csv, sys
import numpy as np
rng = np.random.default_rng(7)
def write(path, n):
    z = rng.normal(size=(n, 2))
    labels = (z[:, 0] > 0).astype(int)
    x = np.column_stack([1000 + 300 * z[:, 0], 0.01 * z[:, 1], 5 + z[:, 0] + z[:, 1], -20 + 4 * z[:, 1]])
    x += 0.05 * rng.normal(size=x.shape) * np.array([300, 0.01, 1, 4])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "income", "rate", "score", "temp", "kind"])
        for i in range(n):
            w.writerow([f"u{i:04d}"] + [f"{v:.6g}" for v in x[i]] + [labels[i]])
write(sys.argv[1] + "/train.csv", 400)
write(sys.argv[1] + "/test.csv", 100)
PY
    mpi 2 train --train-file "$data/train.csv" --test-file "$data/test.csv" --columns income,rate,score,temp \
        --label-column kind --standardize --hidden-dim 32 --latent-dim 2 --epochs 40 --batch-size 40 --lr 5e-3 \
        --likelihood gaussian-learned --run-dir "$run" >"$out" 2>&1
    cat "$out"
    expect "$out" "data +400 train \(.*train.csv\), 100 test \(.*test.csv\) rows of 4 columns \(income, rate, score, temp\), standardized$"
    # No pictures of table rows: the curves and the latent scatter only.
    [ ! -e "$run/samples" ]
    [ ! -e "$run/reconstructions" ]
    [ -e "$run/curves.png" ]
    [ -e "$run/latent-scatter/epoch-0040.png" ]
    python3 -c "
import json
c = json.load(open('$run/config.json'))['data']
assert c['column_names'] == ['income', 'rate', 'score', 'temp'], c
s = c['standardization']; assert abs(s['mean'][0] - 1000) < 60 and 200 < s['standard_deviation'][0] < 400, s
print('ok: standardization in config.json', [round(m, 3) for m in s['mean']])"
    mpi 2 encode --checkpoint "$run" --out "$run/latents.csv"
    python3 -c "
import csv
rows = list(csv.reader(open('$run/latents.csv')))
assert rows[0] == ['z1', 'z2', 'label'], rows[0]
assert len(rows) == 101 and all(len(r) == 3 for r in rows), len(rows)
assert set(r[2] for r in rows[1:]) == {'0', '1'}
print('ok: latents.csv', rows[:2])"
    "$BINARY" reconstruct --checkpoint "$run" --count 100 --out "$run/recon.csv"
    python3 - "$data/test.csv" "$run/recon.csv" <<'PY'
import csv, sys
import numpy as np
original = list(csv.reader(open(sys.argv[1])))
recon = list(csv.reader(open(sys.argv[2])))
assert recon[0] == ["income", "rate", "score", "temp"], recon[0]
x = np.array([[float(v) for v in r[1:5]] for r in original[1:]])
y = np.array([[float(v) for v in r] for r in recon[1:]])
assert y.shape == (100, 4), y.shape
# In the original units: each column's mean reconstruction error is a small part of its spread
# (measured: 0.03-0.04; the data hold 0.05 of noise on two latent factors).
error = np.abs(x - y).mean(0) / x.std(0)
assert (error < 0.15).all(), error
assert abs(y[:, 0].mean() - 1000) < 150, y[:, 0].mean()
print("ok: reconstructions in the original units, relative errors", np.round(error, 3))
PY
    "$BINARY" sample --checkpoint "$run" --count 7 --out "$run/samples.csv"
    head -2 "$run/samples.csv"
    [ "$(head -1 "$run/samples.csv")" = "income,rate,score,temp" ]
    [ "$(wc -l <"$run/samples.csv")" = 8 ]
    # Pictures of table rows are refused; the conv family needs images; a resume keeps the standardization.
    if "$BINARY" sample --checkpoint "$run" --out "$run/s.png" >"$out" 2>&1; then return 1; fi
    expect "$out" "--out: .* models rows of a table \(columns income, rate, score, temp\), not images: write a .csv or .npy file"
    if mpi 2 train --train-file "$data/train.csv" --test-file "$data/test.csv" --columns income,rate,score,temp \
        --model conv --run-dir "$WORK/table-conv" >"$out" 2>&1; then return 1; fi
    expect "$out" "--model conv: the conv VAE needs images \(C×H×W\), not rows of a table; .* \(use --model mlp for rows of a table\)"
    if mpi 2 train --resume "$run" --no-standardize --epochs 41 >"$out" 2>&1; then return 1; fi
    expect "$out" "--standardize: cannot change when resuming"
    # A missing value in a table trains (the likelihood scores the observed values), and says so.
    sed 's/^u0003,\([^,]*\),[^,]*,/u0003,\1,NA,/' "$data/train.csv" >"$data/holes.csv"
    mpi 2 train --train-file "$data/holes.csv" --test-file "$data/test.csv" --columns income,rate,score,temp \
        --likelihood gaussian --standardize --epochs 1 --run-dir "$WORK/table-holes" >"$out" 2>&1
    expect "$out" "missing values: 1 of [0-9]* training values"
}
