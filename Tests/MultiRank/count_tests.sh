# Interaction and count data (issue 20): interaction logs into sparse rows,
# Mult-VAE's recipe, held-out-user ranking metrics; Matrix Market count
# matrices under the negative binomial; refusals. Sourced by run.sh.

# A planted interaction log: 6 groups of users, each clicking mostly its
# group's 50 of 300 items, the rest by a Zipf popularity; ratings 1–3 are
# not clicks (--min-rating 4).
write_planted_log() {  # write_planted_log FILE USERS SEED
    python3 - "$1" "$2" "$3" <<'PY'
import csv, sys
import numpy as np
path, users, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
items, groups = 300, 6
pop = rng.zipf(1.5, items).astype(float); pop /= pop.sum()
with open(path, "w", newline="") as f:
    w = csv.writer(f); w.writerow(["userId", "movieId", "rating", "timestamp"])
    for u in range(users):
        g = u % groups
        n = int(rng.integers(8, 40))
        taste = rng.choice(np.arange(g * 50, g * 50 + 50), size=int(0.85 * n), replace=False)
        other = rng.choice(items, size=n - len(taste), replace=False, p=pop)
        for i in sorted(set(taste) | set(other)):
            w.writerow([f"u{u}", f"m{1000 + i}", rng.choice([4.0, 4.5, 5.0]), 0])
        for i in rng.choice(items, size=5, replace=False):
            w.writerow([f"u{u}", f"m{1000 + i}", rng.choice([1.0, 2.0, 3.0]), 0])
PY
}

interactions_recommend() {
    local d="$WORK/interactions" out="$WORK/interactions/out"
    mkdir -p "$d"
    write_planted_log "$d/ratings.csv" 1200 11
    local recipe=(--interactions "$d/ratings.csv" --user-column userId --item-column movieId --rating-column rating
                  --min-rating 4 --heldout-users 200 --likelihood multinomial --input-normalization l2 --input-dropout 0.5
                  --hidden-dims 600 --activation tanh --latent-dim 200 --beta 0.2 --kl-warmup-steps 200 --batch-size 100)
    mpi 2 train "${recipe[@]}" --epochs 30 --keep-best --run-dir "$d/run" >"$out" 2>&1
    cat "$out"
    # --keep-best selects by the held-out users' NDCG@100 (as the paper selects), not by the test loss.
    expect "$out" "best NDCG@100 0\.[0-9]{4} at step [0-9]+: checkpoints/best"
    python3 - "$d/run/metrics.jsonl" <<'PY'
import json, sys
evals = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
best = max(evals, key=lambda e: e["test_ndcg_at_100"])
last = evals[-1]
assert last["best_ndcg_at_100"] == best["test_ndcg_at_100"] and last["best_step"] == best["step"], (last, best)
assert last["best_test_loss"] == best["test_loss"], (last["best_test_loss"], best["test_loss"])
print("ok: checkpoints/best is the evaluation of highest NDCG@100:", best["step"], best["test_ndcg_at_100"])
PY
    expect "$out" "data +1000 train \(.*ratings.csv\), 200 test \(held out\) rows of 300 columns \(m1.*\), sparse rows \(CSR\), clicks, encoder reads x/‖x‖"
    expect "$out" "model +mlp 300-600-200, tanh"
    python3 -c "
import json
c = json.load(open('$d/run/config.json'))
assert c['input_dropout'] == 0.5 and c['data']['heldout_users'] == 200, c
assert c['data']['interactions'] == {'user': 'userId', 'item': 'movieId', 'rating': 'rating', 'min_rating': 4.0}, c['data']
print('ok: the recipe in config.json')"
    # The paper's metrics at np 1 and np 2: the same figures; the model well above popularity.
    mpi 2 recommend --checkpoint "$d/run" --evaluate >"$d/eval2" 2>&1
    "$BINARY" recommend --checkpoint "$d/run" --evaluate >"$d/eval1" 2>&1
    cat "$d/eval2"
    expect "$d/eval2" "held-out users: 200 .*; (19[0-9]|200) with at least 5 clicks scored"
    diff <(grep -E "^(model|popularity)" "$d/eval1") <(grep -E "^(model|popularity)" "$d/eval2")
    python3 - "$d/eval2" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = {k: [float(x) for x in re.search(k + r" +NDCG@100 ([0-9.]+) +Recall@20 ([0-9.]+) +Recall@50 ([0-9.]+)", text).groups()]
     for k in ("model", "popularity")}
# Measured: model 0.557 / 0.596 / 0.985, popularity 0.311 / 0.235 / 0.336.
assert m["model"][0] > m["popularity"][0] + 0.1 and m["model"][2] > 0.8, m
print("ok: model", m["model"], "popularity", m["popularity"])
PY
    # Each evaluation ranks the held-out users too: the last one is what recommend --evaluate finds.
    expect "$out" "held-out users NDCG@100 [0-9.]+, Recall@20 [0-9.]+, Recall@50 [0-9.]+ \(popularity"
    python3 - "$d/run/metrics.jsonl" "$d/eval2" <<'PY'
import json, re, sys
last = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l][-1]
model = re.search(r"model +NDCG@100 ([0-9.]+)", open(sys.argv[2]).read()).group(1)
assert "%.4f" % last["test_ndcg_at_100"] == model, (last["test_ndcg_at_100"], model)
assert last["popularity_ndcg_at_100"] < last["test_ndcg_at_100"]
print("ok: metrics.jsonl's last test_ndcg_at_100", model, "as recommend --evaluate")
PY
    # Recommendations name the original ids and leave out what each user has.
    mpi 2 recommend --checkpoint "$d/run" --top 5 --out "$d/recs.csv" >"$out" 2>&1
    expect "$out" "wrote .*recs.csv: the 5 best unseen items of 1000 users"
    python3 - "$d/ratings.csv" "$d/recs.csv" <<'PY'
import csv, sys
seen = {}
for r in csv.DictReader(open(sys.argv[1])):
    if float(r["rating"]) >= 4: seen.setdefault(r["userId"], set()).add(r["movieId"])
rows = list(csv.DictReader(open(sys.argv[2])))
assert len(rows) == 5000 and rows[0]["item"].startswith("m"), rows[:2]
assert all(r["item"] not in seen[r["user"]] for r in rows)
group = lambda item: (int(item[1:]) - 1000) // 50
hits = sum(group(r["item"]) == int(r["user"][1:]) % 6 for r in rows) / len(rows)
assert hits > 0.6, hits   # measured 0.82; chance 1/6
print("ok: recommendations unseen, %.2f of them in the user's own group" % hits)
PY
    # A resumed run keeps the log's columns; the options belong to logs.
    if mpi 2 train --resume "$d/run" --min-rating 3 --epochs 31 >"$out" 2>&1; then return 1; fi
    expect "$out" "--interactions: cannot change when resuming"
    if mpi 2 train --train-file "$d/ratings.csv" --min-rating 4 --run-dir "$d/r2" >"$out" 2>&1; then return 1; fi
    expect "$out" "--min-rating: applies to an interaction log \(--interactions\)"
    if mpi 2 train --interactions "$d/ratings.csv" --likelihood multinomial --run-dir "$d/r3" >"$out" 2>&1; then return 1; fi
    expect "$out" "ratings.csv: has no column \"user\" \(--user-column\); its header has \"userId\", \"movieId\", \"rating\", \"timestamp\""
    [ ! -e "$d/r2" ] && [ ! -e "$d/r3" ]
    if "$BINARY" recommend --checkpoint "$d/run" --interactions "$d/ratings.csv" --evaluate >"$out" 2>&1; then return 1; fi
    expect "$out" "--interactions names users to recommend for"
}

count_matrix_nb() {
    local d="$WORK/counts" out="$WORK/counts/out"
    mkdir -p "$d/10x"
    # A 10x-style matrix: genes × cells, two cell types with different expression, gzipped, with names.
    python3 - "$d/10x" "${HELPERS%/*}" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from helpers import write_10x
d = sys.argv[1]
rng = np.random.default_rng(5)
genes, cells = 60, 400
kind = np.arange(cells) % 2
rates = np.where(kind[None, :] == 0, rng.gamma(2, 1, (genes, 1)), rng.gamma(2, 1, (genes, 1))[::-1])
library = rng.uniform(0.5, 2, cells)
x = rng.negative_binomial(5, 5 / (5 + rates * library[None, :]))
write_10x(d, x, metadata_line=True)
np.save(f"{d}/../dense.npy", np.ascontiguousarray(x.T).astype(np.int64))
PY
    mpi 2 train --train-file "$d/10x/matrix.mtx.gz" --transpose --test-fraction 0.1 --likelihood negative-binomial \
        --input-normalization log1p --latent-dim 4 --hidden-dim 64 --epochs 20 --batch-size 60 --run-dir "$d/run" >"$out" 2>&1
    cat "$out"
    expect "$out" "data +360 train \(.*matrix.mtx.gz\), 40 test \(held out\) rows of 60 columns \(ENSG00000, .*\), sparse rows \(CSR\), Matrix Market integers, encoder reads log\(1 \+ x\)"
    # The same counts as a dense int64 .npy train the same model, byte for byte.
    mpi 2 train --train-file "$d/dense.npy" --test-fraction 0.1 --likelihood negative-binomial \
        --input-normalization log1p --latent-dim 4 --hidden-dim 64 --epochs 20 --batch-size 60 --run-dir "$d/dense" >"$WORK/counts/dense.out" 2>&1
    expect "$WORK/counts/dense.out" "<i8 counts"
    cmp "$d/run/checkpoints/step-00000120.safetensors" "$d/dense/checkpoints/step-00000120.safetensors"
    # The latent means separate the two cell types.
    mpi 2 encode --checkpoint "$d/run" --images "$d/dense.npy" --out "$d/z.npy" >"$out" 2>&1 || { cat "$out"; return 1; }
    python3 - "$d/z.npy" <<'PY'
import sys
import numpy as np
z = np.load(sys.argv[1])
assert z.shape == (400, 4), z.shape
kind = np.arange(400) % 2
centres = np.stack([z[kind == k].mean(0) for k in (0, 1)])
nearest = np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), 1)
accuracy = (nearest == kind).mean()
assert accuracy > 0.9, accuracy
print("ok: the latent means separate the two cell types, nearest-centre accuracy %.3f" % accuracy)
PY
    # θ per gene (scVI's default), resumed exactly; not for ZINB, whose dropout logits share θ's head.
    local nb=(--train-file "$d/10x/matrix.mtx.gz" --transpose --test-fraction 0.1 --likelihood negative-binomial
              --dispersion feature --input-normalization log1p --latent-dim 4 --hidden-dim 64 --epochs 4 --batch-size 60)
    mpi 2 train "${nb[@]}" --run-dir "$d/theta" >"$out" 2>&1
    expect "$out" "model +mlp 60-64-4, dispersion per feature"
    mpi 2 train "${nb[@]}" --max-steps 10 --run-dir "$d/theta-part" >"$out" 2>&1
    mpi 2 train --resume "$d/theta-part" >"$out" 2>&1
    cmp "$d/theta/checkpoints/step-00000024.safetensors" "$d/theta-part/checkpoints/step-00000024.safetensors"
    if mpi 2 train "${nb[@]}" --likelihood zinb --run-dir "$d/theta-zinb" >"$out" 2>&1; then return 1; fi
    expect "$out" "a dispersion per feature applies to the negative-binomial likelihood, not to zinb"
    [ ! -e "$d/theta-zinb" ]
    # Count likelihoods refuse negative and fractional values; discrete ones still need levels.
    python3 -c "
import numpy as np
np.save('$d/neg.npy', np.array([[1, -2, 3]] * 20, dtype=np.int32))
np.save('$d/frac.npy', np.array([[1, 0.5, 3]] * 20, dtype=np.float32))"
    if mpi 2 train --train-file "$d/neg.npy" --test-fraction 0.1 --likelihood poisson --run-dir "$d/r1" >"$out" 2>&1; then return 1; fi
    expect "$out" "neg.npy: value -2 at index 1: counts are non-negative integers"
    if mpi 2 train --train-file "$d/frac.npy" --test-fraction 0.1 --likelihood poisson --run-dir "$d/r2" >"$out" 2>&1; then return 1; fi
    expect "$out" "non-negative integer counts; the values \(float32\) are not all whole numbers"
    if mpi 2 train --train-file "$d/dense.npy" --test-fraction 0.1 --likelihood bernoulli --run-dir "$d/r3" >"$out" 2>&1; then return 1; fi
    expect "$out" "integer samples \(<i8\) need their number of levels"
    if mpi 2 train --train-file "$d/dense.npy" --transpose --test-fraction 0.1 --likelihood poisson --run-dir "$d/r4" >"$out" 2>&1; then return 1; fi
    expect "$out" "--transpose applies to .mtx files"
    printf '%%%%MatrixMarket matrix coordinate integer general\n3 3 2\n1 1 4\n5 1 2\n' >"$d/bad.mtx"
    if mpi 2 train --train-file "$d/bad.mtx" --test-fraction 0.1 --likelihood poisson --run-dir "$d/r5" >"$out" 2>&1; then return 1; fi
    expect "$out" "bad.mtx: line 4: entry \(5, 1\) is outside the 3 × 3 matrix"
    for r in r1 r2 r3 r4 r5; do [ ! -e "$d/$r" ]; done
}

# --covariate: a batch label from a CSV table (rows in another order, matched by barcode) conditions the
# model, as scVI's batch does. Two batches with a strong batch effect on a third of the genes: the
# conditional model's latents mix the batches and keep the cell types apart; an unconditional one's
# separate the batches.
count_covariate() {
    local d="$WORK/covariate" out="$WORK/covariate/out"
    mkdir -p "$d/10x"
    python3 - "$d" "${HELPERS%/*}" <<'PY'
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from helpers import write_10x
d = sys.argv[1]
rng = np.random.default_rng(7)
genes, cells = 60, 600
kind = np.arange(cells) % 2
batch = (np.arange(cells) // 2) % 2
base = rng.gamma(2, 1, (genes, 1))
rates = np.where(kind[None, :] == 0, base, base[::-1])
effect = np.ones((genes, 1)); effect[rng.permutation(genes)[:20]] = 4.0
rates = np.where(batch[None, :] == 1, rates * effect, rates)
x = rng.negative_binomial(5, 5 / (5 + rates * rng.uniform(0.5, 2, cells)[None, :]))
write_10x(f"{d}/10x", x)
with open(f"{d}/cells.csv", "w") as f:
    f.write("barcode,batch,cell_type\n")
    for j in rng.permutation(cells): f.write(f"CELL{j:04d}-1,run-{'AB'[batch[j]]},{'TB'[kind[j]]}\n")
np.save(f"{d}/kind.npy", kind)
np.save(f"{d}/batch.npy", batch)
PY
    local common=(--train-file "$d/10x/matrix.mtx.gz" --transpose --test-fraction 0.1 --likelihood negative-binomial
                  --input-normalization log1p --latent-dim 4 --hidden-dim 64 --epochs 100 --batch-size 60 --log-every 1000)
    mpi 2 train "${common[@]}" --covariate "$d/cells.csv:batch" --run-dir "$d/cond" >"$out" 2>&1
    cat "$out"
    expect "$out" "model +mlp 60-64-4, conditional on 2 classes"
    expect "$out" "encoder reads log\(1 \+ x\), 2 classes \(run-A, run-B\)"
    mpi 2 train "${common[@]}" --run-dir "$d/plain" >"$WORK/covariate/plain.out" 2>&1
    # The decoder only (scVI's encode_covariates=False): fc1 reads the 60 genes, not the batch.
    mpi 2 train "${common[@]}" --covariate "$d/cells.csv:batch" --no-encoder-condition --run-dir "$d/dec" >"$out" 2>&1
    expect "$out" "model +mlp 60-64-4, conditional on 2 classes \(decoder only\)"
    python3 -c "
import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers
t, _ = helpers.safetensors('$d/dec/checkpoints/step-00000900.safetensors')
print('fc1.weight', t['fc1.weight'][0]); assert t['fc1.weight'][0] == [64, 60] and t['fc3.weight'][0] == [64, 6]"
    mpi 2 encode --checkpoint "$d/dec" --images "$d/10x/matrix.mtx.gz" --labels "$d/cells.csv:batch" --out "$d/dec.npy" >"$out" 2>&1
    # encode looks the cells up in the same table, and names the labels.
    mpi 2 encode --checkpoint "$d/cond" --images "$d/10x/matrix.mtx.gz" --labels "$d/cells.csv:batch" --out "$d/cond.npy" >"$out" 2>&1
    expect "$out" "class names, line k names label k \(0 run-A, 1 run-B\)"
    mpi 2 encode --checkpoint "$d/plain" --images "$d/10x/matrix.mtx.gz" --labels "$d/cells.csv:batch" --out "$d/plain.npy" >"$out" 2>&1
    python3 - "$d" "${HELPERS%/*}" <<'PY'
import sys
import numpy as np
d = sys.argv[1]
kind, batch = np.load(f"{d}/kind.npy"), np.load(f"{d}/batch.npy")
assert (np.load(f"{d}/cond.labels.npy") == batch).all(), "labels matched by barcode"
assert open(f"{d}/cond.labels.txt").read().split() == ["run-A", "run-B"]
mix = {}
for r in ("cond", "dec", "plain"):
    z = np.load(f"{d}/{r}.npy")
    dist = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, 1)[:, :15]
    same_kind, same_batch = (kind[nn] == kind[:, None]).mean(), (batch[nn] == batch[:, None]).mean()
    print(f"{r}: of each cell's 15 nearest neighbours in z, {same_kind:.3f} share its cell type, {same_batch:.3f} its batch")
    assert same_kind > 0.95, (r, same_kind)
    mix[r] = same_batch
# Measured: conditional 0.515 (0.5 is perfect mixing), the decoder only 0.533, unconditional 0.996.
assert mix["cond"] < 0.65 and mix["dec"] < 0.65 and mix["plain"] > 0.9, mix
# Clusters, as a scientist would look for them: k-means (seeded, 10 restarts) and the adjusted Rand index.
sys.path.insert(0, sys.argv[2])
from helpers import kmeans, adjusted_rand_index as ari
found = {}
for r in ("cond", "plain"):
    z = np.load(f"{d}/{r}.npy")
    two, four = kmeans(z, 2), kmeans(z, 4)
    found[r] = (ari(two, kind), ari(four, batch))
    print(f"{r}: k-means, 2 clusters: ARI with the cell types {found[r][0]:.3f}; 4 clusters: ARI with the batches {found[r][1]:.3f}")
# Measured: both 1.000 with the cell types; with the batches -0.001 conditional, 0.495 unconditional.
assert found["cond"][0] > 0.9 and found["plain"][0] > 0.9, found
assert found["cond"][1] < 0.1 and found["plain"][1] > 0.3, found
PY
    # θ per gene and batch (scVI's gene-batch), resumed exactly; it needs the covariate.
    local fc=("${common[@]}" --epochs 4 --covariate "$d/cells.csv:batch" --dispersion feature-covariate)
    mpi 2 train "${fc[@]}" --run-dir "$d/fc" >"$out" 2>&1
    expect "$out" "model +mlp 60-64-4, conditional on 2 classes, dispersion per feature and covariate"
    mpi 2 train "${fc[@]}" --max-steps 10 --run-dir "$d/fc-part" >"$out" 2>&1
    mpi 2 train --resume "$d/fc-part" >"$out" 2>&1
    cmp "$d/fc/checkpoints/step-00000036.safetensors" "$d/fc-part/checkpoints/step-00000036.safetensors"
    python3 - "$d/fc/checkpoints/step-00000036.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
assert h["fc4_dispersion.weight"]["shape"] == [60, 2] and h["fc4_dispersion.bias"]["shape"] == [60], h["fc4_dispersion.weight"]
print("ok: log θ per gene (60) and batch (2)")
PY
    if mpi 2 train "${common[@]}" --dispersion feature-covariate --run-dir "$d/r0" >"$out" 2>&1; then return 1; fi
    expect "$out" "a dispersion per feature and covariate needs the covariate"
    # Errors: a missing column, an unmatched table, both label options, a table without a column.
    if mpi 2 train "${common[@]}" --covariate "$d/cells.csv:donor" --run-dir "$d/r1" >"$out" 2>&1; then return 1; fi
    expect "$out" "cells.csv: has no column \"donor\" \(its columns: barcode, batch, cell_type\)"
    head -301 "$d/cells.csv" >"$d/half.csv"
    if mpi 2 train "${common[@]}" --covariate "$d/half.csv:batch" --run-dir "$d/r2" >"$out" 2>&1; then return 1; fi
    expect "$out" "half.csv: has 300 rows but .*matrix.mtx.gz has 600 samples; no column of it holds all of"
    if mpi 2 train "${common[@]}" --covariate "$d/cells.csv:batch" --train-labels "$d/kind.npy" --run-dir "$d/r3" >"$out" 2>&1; then return 1; fi
    expect "$out" "--covariate: labels the training samples, as --train-labels does: give one"
    if mpi 2 train "${common[@]}" --covariate "$d/cells.csv" --run-dir "$d/r4" >"$out" 2>&1; then return 1; fi
    expect "$out" "is not FILE.csv:COLUMN \(a column of a CSV table\)"
    for r in r0 r1 r2 r3 r4; do [ ! -e "$d/$r" ]; done
}

# --validation-users: training evaluates (and --keep-best chooses) on validation users; the test users
# are left for recommend --evaluate, as Mult-VAE selects on validation users and reports test users.
interactions_validation() {
    local d="$WORK/validation" out="$WORK/validation/out"
    mkdir -p "$d"
    write_planted_log "$d/ratings.csv" 600 13
    local recipe=(--interactions "$d/ratings.csv" --user-column userId --item-column movieId --rating-column rating
                  --min-rating 4 --heldout-users 100 --validation-users 80 --likelihood multinomial
                  --input-normalization l2 --input-dropout 0.5 --hidden-dims 100 --activation tanh --latent-dim 20
                  --beta 0.2 --kl-warmup-steps 50 --batch-size 70)
    mpi 2 train "${recipe[@]}" --epochs 8 --keep-best --run-dir "$d/run" >"$out" 2>&1
    cat "$out"
    expect "$out" "data +420 train \(.*ratings.csv\), 80 validation \(held out; the evaluations below\), 100 test users \(held out for recommend --evaluate\)"
    expect "$out" "epoch 8 step [0-9]+: validation loss [0-9.]+ nats/sample .* over 80 validation samples, .*; validation users NDCG@100 0\.[0-9]{4}"
    expect "$out" "best NDCG@100 0\.[0-9]{4} at step [0-9]+: checkpoints/best"
    expect "$out" "final validation loss"
    python3 - "$d/run/metrics.jsonl" "$d/run/config.json" <<'PY'
import json, sys
evals = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
assert evals and all(e["evaluated_on"] == "validation users" and e["test_samples"] == 80 for e in evals), evals[-1]
c = json.load(open(sys.argv[2]))
assert c["data"]["validation_users"] == 80 and c["data"]["heldout_users"] == 100, c["data"]
print("ok: every evaluation on the 80 validation users, recorded as such")
PY
    # recommend --evaluate ranks the 100 test users, never seen in training or selection.
    mpi 2 recommend --checkpoint "$d/run" --evaluate >"$out" 2>&1
    cat "$out"
    expect "$out" "held-out users: 100 .*; (9[0-9]|100) with at least 5 clicks scored"
    # Fixed on resume; validation users need held-out users.
    if mpi 2 train --resume "$d/run" --validation-users 50 --epochs 9 >"$out" 2>&1; then return 1; fi
    expect "$out" "--validation-users: cannot change when resuming"
    if mpi 2 train --interactions "$d/ratings.csv" --user-column userId --item-column movieId --validation-users 50 \
        --likelihood multinomial --run-dir "$d/r1" >"$out" 2>&1; then return 1; fi
    expect "$out" "validation users are held out beside the test users of heldout_users: give both"
    [ ! -e "$d/r1" ]
    # A covariate from a column of the log itself (one value per user, on each of its rows): the held-out
    # users are ranked with theirs, and new users need theirs, matched by the model's category names.
    python3 - "$d/ratings.csv" "$d/regions.csv" "$d/new.csv" "$d/new-unknown.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
region = lambda user: "r%d" % (sum(map(ord, user)) % 3)
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(rows[0] + ["region"])
    for r in rows[1:]: w.writerow(r + [region(r[0])])
users = sorted({r[0] for r in rows[1:]})[:5]
for path, rename in ((sys.argv[3], {}), (sys.argv[4], {"r1": "r7"})):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(rows[0] + ["region"])
        for r in rows[1:]:
            if r[0] in users: w.writerow(r + [rename.get(region(r[0]), region(r[0]))])
PY
    recipe[1]="$d/regions.csv"
    mpi 2 train "${recipe[@]}" --epochs 3 --covariate "$d/regions.csv:region" --run-dir "$d/cov" >"$out" 2>&1
    cat "$out"
    expect "$out" "conditional on 3 classes"
    expect "$out" "validation users NDCG@100 0\.[0-9]{4}"
    mpi 2 recommend --checkpoint "$d/cov" --evaluate >"$out" 2>&1
    expect "$out" "model +NDCG@100 0\.[0-9]{4}"
    if mpi 2 recommend --checkpoint "$d/cov" --interactions "$d/new.csv" --out "$d/recs.csv" >"$out" 2>&1; then return 1; fi
    expect "$out" "--labels: is needed: the model in .* is conditioned on a covariate"
    mpi 2 recommend --checkpoint "$d/cov" --interactions "$d/new.csv" --labels "$d/new.csv:region" --out "$d/recs.csv" >"$out" 2>&1
    expect "$out" "wrote .*recs.csv: the 20 best unseen items of 5 users"
    if mpi 2 recommend --checkpoint "$d/cov" --interactions "$d/new-unknown.csv" --labels "$d/new-unknown.csv:region" \
        --out "$d/recs2.csv" >"$out" 2>&1; then return 1; fi
    expect "$out" "\"r7\" \(in .*new-unknown.csv\) is not one of the model's categories \(r0, r1, r2\)"
    [ ! -e "$d/recs2.csv" ]
}
