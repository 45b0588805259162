# Training controls and scoring, sourced by run.sh: learning-rate schedules,
# accumulation, the best checkpoint, early stopping, curves.png, and
# `vae-mpi score` (checked against scikit-learn).

# Every schedule's logged learning rate against its formula; a warm-up
# interrupted and resumed gives byte-identical parameters.
lr_schedules() {
    local a="$WORK/lr-a" b="$WORK/lr-b" s="$WORK/lr-step"
    local common=(--data "$SMALL" --epochs 3 --batch-size 64 --hidden-dim 32 --latent-dim 4 --log-every 1
                  --lr 4e-3 --lr-schedule cosine --lr-warmup-steps 20)
    mpi 2 train "${common[@]}" --run-dir "$a" >"$a.out" 2>&1
    cat "$a.out"
    expect "$a.out" "lr 0.004 \(cosine to 0 over 48 steps, after a 20-step linear warm-up from 0\)"
    mpi 2 train "${common[@]}" --run-dir "$b" --max-steps 13 >/dev/null 2>&1
    mpi 2 train --resume "$b" >"$b.out" 2>&1
    cmp "$a/checkpoints/step-00000048.safetensors" "$b/checkpoints/step-00000048.safetensors"
    echo "warm-up stopped at step 13 and resumed: byte-identical at step 48"
    mpi 2 train --data "$SMALL" --epochs 4 --batch-size 64 --hidden-dim 32 --log-every 1 --lr 1e-3 \
        --lr-schedule step --lr-decay-epochs 1,3 --lr-decay 0.5 --run-dir "$s" >"$s.out" 2>&1
    python3 - "$a" "$s" <<'PY'
import json, math, sys
def rates(run):
    return [(m["step"], m["epoch"], m["learning_rate"]) for m in map(json.loads, open(run + "/metrics.jsonl")) if m["type"] == "train"]
cosine = rates(sys.argv[1])
assert len(cosine) == 48, len(cosine)
for t, _, lr in cosine:
    want = 4e-3 * t / 20 if t <= 20 else 4e-3 * 0.5 * (1 + math.cos(math.pi * (t - 1 - 20) / 28))
    assert abs(lr - want) <= 1e-12 + 1e-9 * want, (t, lr, want)
steps = rates(sys.argv[2])
for t, epoch, lr in steps:
    want = 1e-3 * 0.5 ** sum(1 for e in (1, 3) if e < epoch)
    assert abs(lr - want) <= 1e-15, (t, epoch, lr, want)
print(f"cosine: {len(cosine)} steps, step: {len(steps)} steps, every logged rate matches its formula")
PY
}

# --accumulate under mpirun: the same result as one batch (to float order).
accumulation_np2() {
    local one="$WORK/acc-1" four="$WORK/acc-4"
    mpi 2 train --data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 32 --latent-dim 4 --run-dir "$one" >/dev/null 2>&1
    mpi 2 train --data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 32 --latent-dim 4 --accumulate 4 \
        --run-dir "$four" --verify-replicas >"$four.out" 2>&1
    cat "$four.out"
    expect "$four.out" "64 global \(32 on rank 0, in 4 micro-batches\)"
    python3 - "$one" "$four" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
def last_eval(run):
    return [m for m in map(json.loads, open(run + "/metrics.jsonl")) if m["type"] == "eval"][-1]["test_loss"]
a, b = last_eval(sys.argv[1]), last_eval(sys.argv[2])
print(f"test loss: one batch {a:.6f}, 4 micro-batches {b:.6f}")
assert abs(a - b) < 1e-4 * a
PY
}

# checkpoints/best survives retention and kill -9 at any moment; early stopping stops and says so.
best_and_early_stop() {
    local run="$WORK/best-killed" i pid before
    for i in 1 2 3 4; do
        local args=(train --data "$SMALL" --run-dir "$run" --epochs 40 --batch-size 64 --hidden-dim 32 --lr 2e-2
                    --checkpoint-every 1 --keep-checkpoints 1 --keep-best --log-every 10)
        [ -e "$run/checkpoints/latest" ] && args=(train --resume "$run" --checkpoint-every 1 --keep-checkpoints 1 --log-every 10)
        before=$(cat "$run/checkpoints/best" 2>/dev/null || echo none)
        mpi 2 "${args[@]}" >"$WORK/best-killed-$i.out" 2>&1 &
        pid=$!
        for _ in $(seq 600); do
            [ "$(cat "$run/checkpoints/best" 2>/dev/null || echo none)" != "$before" ] && break
            sleep 0.05
        done
        sleep "$(python3 -c "import random; print(round(random.uniform(0, 0.6), 2))")"
        pkill -9 -f -- "$run" || true
        wait "$pid" 2>/dev/null || true
        "$BINARY" inspect --checkpoint "$run/checkpoints/best" >"$WORK/best-inspect-$i.out" || { cat "$WORK/best-inspect-$i.out"; return 1; }
        "$BINARY" inspect --checkpoint "$run" >/dev/null
        echo "kill $i: best = $(cat "$run/checkpoints/best"), latest = $(cat "$run/checkpoints/latest"), both verified; $(ls "$run/checkpoints" | grep -c safetensors) checkpoints kept"
    done
    # Early stopping, from a fresh run: where the test losses say, and said once.
    local es="$WORK/early-stop"
    mpi 2 train --data "$SMALL" --run-dir "$es" --epochs 40 --batch-size 64 --hidden-dim 32 --lr 2e-2 \
        --early-stop 2 --keep-best >"$es.out" 2>&1
    cat "$es.out"
    expect "$es.out" "early stop at step [0-9]+: the test loss has not improved for 2 evaluations \(best test loss [0-9.]+ at step [0-9]+, kept as checkpoints/best\)"
    python3 - "$es" <<'PY'
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
losses = [m["test_loss"] for m in ms if m["type"] == "eval"]
best, since = float("inf"), 0
for i, loss in enumerate(losses):
    if loss < best: best, since = loss, 0
    else: since += 1
    if since >= 2: break
assert i == len(losses) - 1 and since == 2, (losses, i)
stop = [m for m in ms if m["type"] == "early_stop"]
assert len(stop) == 1 and abs(stop[0]["best_test_loss"] - best) < 1e-9, stop
print(f"stopped after evaluation {len(losses)} of 40 epochs; best {best:.3f}")
PY
}

# curves.png: decodes, has the planned size, and holds plotted lines.
curves_picture() {
    local run="$WORK/lr-a"
    python3 - "$run/curves.png" <<'PY'
import sys
import numpy as np
from PIL import Image
im = np.array(Image.open(sys.argv[1]).convert("RGB")).astype(int)
h, w, _ = im.shape
assert (w, h) == (820, 22 + 4 * (190 + 48)), (w, h)
background = (im == 255).all(-1)
ink = 1 - background.mean()
assert 0.03 < ink < 0.4, ink
def near(color):
    return (np.abs(im - np.array(color)).sum(-1) < 30).sum()
colors = {"train (blue)": (31, 119, 180), "test (orange)": (255, 127, 14), "KL train (green)": (44, 160, 44),
          "KL test (red)": (214, 39, 40), "learning rate (purple)": (148, 103, 189)}
for name, color in colors.items():
    assert near(color) > 200, (name, near(color))
print(f"curves.png {w}x{h}, {ink:.1%} of the pixels drawn; every series colour present")
PY
}

# vae-mpi score: equal at np 1 and 2, the IWAE mean equals evaluate's,
# AUROC and AP equal scikit-learn's; --train-classes; bad options.
scoring() {
    local d="$WORK/score-data" run="$WORK/score-run" out
    images classes "$d" 150 3 12 1 classes
    mpi 2 train --data "$d" --train-classes 0,class_1 --epochs 3 --batch-size 32 --hidden-dim 32 --latent-dim 4 \
        --run-dir "$run" >"$run.out" 2>&1
    cat "$run.out"
    expect "$run.out" "found 150 images in .*score-data"
    expect "$run.out" "keeping 89 training and 11 test images of classes 0, class_1"
    expect "$run.out" "data +89 train .*, 11 test \(held out\) images of 1×12×12, 3 classes"
    python3 -c "
import json; c = json.load(open('$run/config.json')); assert c['data']['train_classes'] == ['0', 'class_1'], c['data']"
    "$BINARY" score --checkpoint "$run" --importance-samples 5 --out "$WORK/scores-np1.csv" >"$WORK/score-np1.out"
    mpi 2 score --checkpoint "$run" --importance-samples 5 --out "$WORK/scores-np2.csv" --normal-classes 0,1 \
        --contamination 0.1 >"$WORK/score-np2.out"
    cat "$WORK/score-np2.out"
    cmp "$WORK/scores-np1.csv" "$WORK/scores-np2.csv"
    echo "scores identical at np 1 and np 2"
    expect "$WORK/score-np2.out" "scored 15 test images"
    expect "$WORK/score-np2.out" "neg_log_px +AUROC [0-9.]+  AP [0-9.]+  threshold [0-9.]+: TP [0-9]+  FP [0-9]+  TN [0-9]+  FN [0-9]+"
    [ -s "$WORK/scores-np2-histogram.png" ]
    "$BINARY" evaluate --checkpoint "$run" --images "$d" --importance-samples 5 --json >"$WORK/score-eval.json"
    mpi 2 score --checkpoint "$run" --images "$d" --importance-samples 5 --out "$WORK/scores-all.csv" >/dev/null
    "$BINARY" score --checkpoint "$run" --images "$d" --importance-samples 5 --out "$WORK/scores.npy" >/dev/null
    python3 - "$WORK/scores-np2.csv" "$WORK/score-np2.out" "$WORK/score-eval.json" "$WORK/scores-all.csv" "$WORK/scores.npy" <<'PY'
import csv, json, re, sys
import numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["index"]) for r in rows] == list(range(len(rows)))
labels = np.array([int(r["label"]) for r in rows])
anomaly = ~np.isin(labels, [0, 1])
printed = {m.group(1): (float(m.group(2)), float(m.group(3)))
           for m in re.finditer(r"^  (\w+)\s+AUROC ([0-9.]+)  AP ([0-9.]+)", open(sys.argv[2]).read(), re.M)}
for name in ("neg_elbo", "reconstruction_nll", "kl", "neg_log_px"):
    s = np.array([float(r[name]) for r in rows])
    auc, ap = roc_auc_score(anomaly, s), average_precision_score(anomaly, s)
    assert abs(printed[name][0] - auc) < 6e-4 and abs(printed[name][1] - ap) < 6e-4, (name, printed[name], auc, ap)
    print(f"{name}: AUROC {auc:.4f} AP {ap:.4f} (scikit-learn) = printed {printed[name]}")
e = json.loads(open(sys.argv[3]).read())
rows = list(csv.DictReader(open(sys.argv[4])))
assert len(rows) == 150, len(rows)
mean_elbo = np.mean([float(r["neg_elbo"]) for r in rows])
mean_iw = np.mean([float(r["neg_log_px"]) for r in rows])
assert abs(mean_elbo - e["loss"]) < 1e-5 * abs(e["loss"]), (mean_elbo, e["loss"])
assert abs(mean_iw - e["importance_weighted_nll"]) < 1e-5 * abs(e["importance_weighted_nll"]), (mean_iw, e)
m = np.load(sys.argv[5])
assert m.shape == (len(rows), 4) and m.dtype == np.float64
assert np.allclose(m[:, 0], [float(r["neg_elbo"]) for r in rows], atol=1e-5)
print(f"means equal evaluate's: -ELBO {mean_elbo:.4f} vs {e['loss']:.4f}, -log p(x) {mean_iw:.4f} vs {e['importance_weighted_nll']:.4f}")
PY
    out="$WORK/score-err.out"
    if "$BINARY" score --checkpoint "$run" --normal-classes 0,7 >"$out" 2>&1; then return 1; fi
    expect "$out" "--normal-classes: no class 7 in the test set \(its classes: 0 class_0, 1 class_1, 2 class_2\)"
    if "$BINARY" score --checkpoint "$run" --normal-classes 0 --contamination 1.5 >"$out" 2>&1; then return 1; fi
    expect "$out" "--contamination must be between 0 and 1, exclusive \(got 1.5\)"
    if "$BINARY" score --checkpoint "$run" --out "$WORK/x.txt" >"$out" 2>&1; then return 1; fi
    expect "$out" "--out must end in .csv or .npy"
    if mpi 2 train --data "$d" --train-classes 9 --run-dir "$WORK/score-no" >"$out" 2>&1; then return 1; fi
    expect "$out" "--train-classes: .* has no class 9 \(its classes: 0 class_0"
    [ ! -e "$WORK/score-no" ]
}
