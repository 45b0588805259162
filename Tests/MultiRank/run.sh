#!/usr/bin/env bash
# Multi-rank tests: the release binary under `mpirun --timeout`, inside an
# outer `timeout`, so a hang fails its test instead of stalling CI.
# Run by scripts/test.sh (after the release build); alone: bash Tests/MultiRank/run.sh
# (ONLY=REGEX for the tests whose names match, KEEP_WORK=1 to keep their files).
source "$(dirname "$0")/../../scripts/common.sh"
set +e  # each test decides; failures are counted, not fatal

[ -x "$BINARY" ] || die "build first: swift build -c release"
WORK=$(mktemp -d /tmp/vae-mpi-multirank.XXXXXX)
# The decompression cache of gzipped and HDF5 inputs: the tests' own, empty at the start.
export VAE_MPI_CACHE=$WORK/cache
HELPERS="$VAE_MPI_ROOT/Tests/MultiRank/helpers.py"
CLIENTS="$VAE_MPI_ROOT/Tests/MultiRank/clients.py"
SMALL="$WORK/small-data"
FASHION=/usr/share/datasets/fashion-mnist
MPI_TIMEOUT=${MPI_TIMEOUT:-180}
passed=0
failed=()

helpers() { python3 "$HELPERS" "$@"; }

# vae-mpi under mpirun: `mpi NP ARGS...` (binary arguments after NP).
mpi() {
    local np=$1
    shift
    local flags
    mapfile -t flags < <(mpirun_flags "$np")
    timeout -k 10 $((MPI_TIMEOUT + 30)) mpirun "${flags[@]}" --timeout "$MPI_TIMEOUT" -np "$np" "$BINARY" "$@"
}

expect() {  # expect FILE REGEX: the file contains a line matching REGEX
    grep -qE -- "$2" "$1" || { echo "expected /$2/ in $1:"; tail -20 "$1"; return 1; }
}

count_lines() { grep -cE -- "$2" "$1" || true; }

run_test() {
    local name=$1
    shift
    # ONLY=REGEX runs just the tests whose names match (while developing).
    if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return 0; fi
    local log="$WORK/$name.log"
    local start=$SECONDS
    # Not in an `if`: errexit is ignored inside a condition, even in a subshell.
    (set -e; "$@") >"$log" 2>&1
    local status=$?
    if [ $status -eq 0 ]; then
        passed=$((passed + 1))
        say "  ok    $name ($((SECONDS - start)) s)"
    else
        failed+=("$name")
        say "  FAIL  $name ($((SECONDS - start)) s); last lines of $log:"
        tail -25 "$log" | sed 's/^/        /' >&2
    fi
}

# --- training on a small IDX dataset the test writes, at np 1, 2 and 4 -----
# 997 training images do not divide by 2 or 4: shards of 498/499 and 249/250.
small_run() {
    local np=$1 run="$WORK/small-np$1"
    mpi "$np" train --data "$SMALL" --run-dir "$run" --epochs 2 --batch-size 64 --hidden-dim 64 \
        --latent-dim 4 --lr 3e-3 --log-every 4 --verify-replicas >"$run.out" 2>"$run.err"
    cat "$run.out" "$run.err"
    expect "$run.out" "replicas identical on $np rank"
    [ "$(count_lines "$run.out" "replicas identical")" = 2 ]
    [ ! -s "$run.err" ] || { echo "unexpected stderr"; return 1; }
    helpers check-run "$run" 2 203 "$np" 12 12
}

# A run that several tests read: made by the first that needs it, so that no
# test depends on another test's run directory (ONLY= can pick any one).
shared_small_run() {
    local run="$WORK/shared-small-np2"
    [ -e "$run/checkpoints/latest" ] || mpi 2 train --data "$SMALL" --run-dir "$run" --epochs 2 --batch-size 64 \
        --hidden-dim 64 --latent-dim 4 --lr 3e-3 --log-every 4 >/dev/null
    echo "$run"
}

# --- the default dataset ------------------------------------------------------
fashion_run() {
    local run="$WORK/fashion-np2"
    mpi 2 train --run-dir "$run" --max-steps 60 --log-every 20 --verify-replicas >"$run.out" 2>&1
    cat "$run.out"
    expect "$run.out" "replicas identical on 2 ranks"
    expect "$run.out" "60000 train \(.*\), 10000 test \(.*\) images of 1×28×28"
    helpers check-run "$run" 1 10000 2 28 28
}

# --- same seed and np: byte-identical checkpoints; another seed differs -------
determinism() {
    local a="$WORK/det-a" b="$WORK/det-b" c="$WORK/det-c"
    for r in "$a" "$b"; do
        mpi 2 train --data "$SMALL" --run-dir "$r" --epochs 1 --max-steps 12 --batch-size 50 --hidden-dim 64 \
            --latent-dim 4 --seed 7 >/dev/null
    done
    mpi 2 train --data "$SMALL" --run-dir "$c" --epochs 1 --max-steps 12 --batch-size 50 --hidden-dim 64 \
        --latent-dim 4 --seed 8 >/dev/null
    helpers same-tensors "$a/checkpoints/step-00000012.safetensors" "$b/checkpoints/step-00000012.safetensors"
    cmp "$a/checkpoints/step-00000012.safetensors" "$b/checkpoints/step-00000012.safetensors"
    # (Not `! cmd`: set -e ignores a negated command's status.)
    if helpers same-tensors "$a/checkpoints/step-00000012.safetensors" "$c/checkpoints/step-00000012.safetensors"; then
        return 1
    fi
}

# --- np=2 at the same global batch learns as np=1 does --------------------------
# Same data, model, optimizer and global batch; only the order of samples within
# the epoch and the reparameterisation noise differ (both are keyed by rank), so
# the two runs are like two seeds of one experiment. Measured on this machine
# (Fashion-MNIST, 300 steps, seeds 1-5): test losses 267.5-269.9, standard
# deviation 0.6 nats (0.24 %); same-seed np=1 vs np=2 differences 0.00-0.64 %.
# Tolerance 1 %: about 3 standard deviations of that difference. What it
# catches: ranks that do not share gradients (each would see half the data per
# step), lost or repeated samples, a wrong learning rate or step count. (A
# gradient scaled by a constant would not show: Adam is scale-invariant; the
# exact sum-and-count reduction is checked by the golden and unit tests.)
np2_learns_like_np1() {
    local l1 l2
    mpi 1 train --run-dir "$WORK/learn-np1" --max-steps 300 --log-every 100 >/dev/null
    mpi 2 train --run-dir "$WORK/learn-np2" --max-steps 300 --log-every 100 >/dev/null
    l1=$(helpers final-test-loss "$WORK/learn-np1")
    l2=$(helpers final-test-loss "$WORK/learn-np2")
    echo "test loss after 300 steps: np=1 $l1, np=2 $l2"
    python3 -c "import sys; a, b = $l1, $l2; sys.exit(0 if abs(a - b) / a < 0.01 else 1)"
}

# --- user errors: a clear message naming what is wrong, non-zero exit, no hang -
errors() {
    local out="$WORK/err.out"

    # A missing dataset directory, under np 2: named once, by rank 0.
    if mpi 2 train --data "$WORK/no-such-dir" --run-dir "$WORK/e1" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "error.*$WORK/no-such-dir: no such file"
    [ "$(count_lines "$out" "no such file")" = 1 ]

    # A garbled image file (bad magic) and a truncated one.
    local bad="$WORK/bad-data"
    mkdir -p "$bad"
    cp "$SMALL"/* "$bad/"
    printf 'garbage that is not IDX' | gzip >"$bad/train-images-idx3-ubyte.gz"
    if mpi 2 train --data "$bad" --run-dir "$WORK/e2" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "$bad/train-images-idx3-ubyte.gz: not an IDX file"
    head -c 1000 "$SMALL/t10k-images-idx3-ubyte" >"$bad/t10k-images-idx3-ubyte"
    cp "$SMALL/train-images-idx3-ubyte.gz" "$bad/"
    if mpi 2 train --data "$bad" --run-dir "$WORK/e3" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "$bad/t10k-images-idx3-ubyte: truncated: header promises 29248 bytes, file has 1000"

    # Bad options: named once, exit code of a usage error.
    if mpi 2 train --epochs 0 >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "--epochs must be at least 1"
    [ "$(count_lines "$out" "must be at least 1")" = 1 ]
    if mpi 1 train --no-such-option >"$out" 2>&1; then return 1; fi
    expect "$out" "Unknown option '--no-such-option'"
    # Rank 0 starting 1.5 s after rank 1 (a slow node): rank 1 must not end the
    # job before rank 0 has said what is wrong (mpirun stopped rank 0 about 1 s
    # after rank 1 failed, before rank 0 had parsed), and on one line.
    local flags
    mapfile -t flags < <(mpirun_flags 2)
    if timeout -k 10 $((MPI_TIMEOUT + 30)) mpirun "${flags[@]}" --timeout "$MPI_TIMEOUT" -np 2 \
        sh -c '[ "${OMPI_COMM_WORLD_RANK:-0}" = 0 ] && sleep 1.5; exec "$0" "$@"' "$BINARY" train --epochs 0 \
        >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "^Error: --epochs must be at least 1"
    if mpi 4 train --data "$SMALL" --batch-size 3 --run-dir "$WORK/e4" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "--batch-size: the global batch \(3\) must be at least the number of ranks \(4\)"

    # A run directory that already holds a run (its own, so that this test needs no other's).
    mpi 2 train --data "$SMALL" --run-dir "$WORK/err-taken" --max-steps 1 --hidden-dim 8 --latent-dim 2 >/dev/null
    if mpi 2 train --data "$SMALL" --run-dir "$WORK/err-taken" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "already holds a run"

    # Nothing half-written: the failed runs left no run directory behind.
    # (One test per line: under set -e, a failure before the last of an && list would not end the test.)
    [ ! -e "$WORK/e1/config.json" ]
    [ ! -e "$WORK/e2/config.json" ]
    [ ! -e "$WORK/e4" ]
}

# --- one rank fails mid-training: the whole job ends promptly -------------------
rank_failure() {
    local out="$WORK/abort.out" start=$SECONDS
    if VAE_MPI_FAIL_AT=1:5 mpi 2 train --data "$SMALL" --run-dir "$WORK/abort" --epochs 50 \
        >"$out" 2>&1; then
        return 1
    fi
    cat "$out"
    expect "$out" "vae-mpi: error \(rank 1\): injected failure at step 5"
    [ $((SECONDS - start)) -lt 60 ]
}

# --- a replica that silently diverges is caught by --verify-replicas ----------
replica_divergence() {
    local out="$WORK/diverge.out"
    # Through MPI's allreduce: with the shared-memory reduction every rank copies each slice from the rank
    # that updated it, every step, so replicas cannot drift apart (the nudge is overwritten at the next step).
    if VAE_MPI_SHARED_MEMORY=0 VAE_MPI_DIVERGE_AT=2:3 mpi 4 train --data "$SMALL" --run-dir "$WORK/diverge" --epochs 2 --batch-size 64 \
        --hidden-dim 32 --latent-dim 4 --verify-replicas >"$out" 2>&1; then
        return 1
    fi
    cat "$out"
    expect "$out" "vae-mpi: error: model replicas differ from rank 0 \([0-9a-f]+\): rank 2 \([0-9a-f]+\)"
    [ "$(count_lines "$out" "replicas differ")" = 1 ]
}

# --- a hostfile ----------------------------------------------------------------
hostfile_run() {
    local flags
    mapfile -t flags < <(mpirun_flags 2 "$VAE_MPI_ROOT/hostfiles/localhost")
    timeout -k 10 200 mpirun "${flags[@]}" --timeout 180 -np 2 "$BINARY" train --data "$SMALL" \
        --run-dir "$WORK/hostfile" --epochs 1 --batch-size 64 --hidden-dim 64 --latent-dim 4 --log-every 4 \
        --verify-replicas
    helpers check-run "$WORK/hostfile" 1 203 2 12 12
}


# --- checkpoints and resumption (issue: checkpoints with exact resume) ----------
SMALL_ARGS=(--batch-size 64 --hidden-dim 64 --latent-dim 4 --lr 3e-3 --log-every 4 --epochs 3)

# 997 images, 2 ranks, batch 64: 16 steps per epoch; step 21 is mid-epoch 2.
# The uninterrupted run to step 40 (made once, by the first test that needs it).
straight_run() {
    [ -e "$WORK/straight/checkpoints/step-00000040.safetensors" ] ||
        mpi 2 train --data "$SMALL" "${SMALL_ARGS[@]}" --run-dir "$WORK/straight" --max-steps 40 >/dev/null
}

resume_exact() {
    local out="$WORK/resume.out"
    straight_run
    mpi 2 train --data "$SMALL" "${SMALL_ARGS[@]}" --run-dir "$WORK/interrupted" --max-steps 21 >/dev/null
    mpi 2 train --resume "$WORK/interrupted" --max-steps 40 >"$out"
    cat "$out"
    expect "$out" "resuming from .*step-00000021.safetensors: step 21, epoch 2 \(5 of 16 steps done\)"
    cmp "$WORK/straight/checkpoints/step-00000040.safetensors" "$WORK/interrupted/checkpoints/step-00000040.safetensors"
    echo "parameters and Adam state at step 40 are byte-identical"
    python3 "$CLIENTS" tensorboard "$WORK/interrupted"
}

resume_other_world_size() {
    local out="$WORK/resume-ws.out"
    mpi 2 train --data "$SMALL" "${SMALL_ARGS[@]}" --run-dir "$WORK/ws4" --max-steps 21 >/dev/null
    cp -r "$WORK/ws4" "$WORK/ws1"
    mpi 4 train --resume "$WORK/ws4" >"$out"
    cat "$out"
    expect "$out" "written by 2 ranks, this run has 4, so the data position moves to the start of epoch 3"
    # Epoch 3 alone at 4 ranks (249/250 images per rank, 16 per step): 16 steps, 21 → 37.
    python3 -c "import json; s = json.load(open('$WORK/ws4/checkpoints/step-00000037.json')); assert s['world_size'] == 4 and s['epoch'] == 3, s"
    mpi 1 train --resume "$WORK/ws1/checkpoints/step-00000021.json" >"$out"
    expect "$out" "written by 2 ranks, this run has 1"
    python3 -c "import json; s = json.load(open('$WORK/ws1/checkpoints/step-00000037.json')); assert s['world_size'] == 1, s"
}

# kill -9 at random moments while checkpoints are being written (every
# step); the `latest` pointer must always name a complete, verified checkpoint.
# Each round waits until the run has written a checkpoint of its own (so the
# kill lands while checkpoints are being written, however slow the machine),
# then kills it after a random 0-0.8 s.
kill_during_checkpoints() {
    local run="$WORK/killed" i pid before
    for i in 1 2 3 4 5 6; do
        local args=(train --run-dir "$run" --checkpoint-every 1 --keep-checkpoints 2 --log-every 10)
        [ -e "$run/checkpoints/latest" ] && args=(train --resume "$run" --checkpoint-every 1 --keep-checkpoints 2 --log-every 10)
        before=$(cat "$run/checkpoints/latest" 2>/dev/null || echo none)
        mpi 2 "${args[@]}" >"$WORK/killed-$i.out" 2>&1 &
        pid=$!
        for _ in $(seq 600); do
            [ "$(cat "$run/checkpoints/latest" 2>/dev/null || echo none)" != "$before" ] && break
            sleep 0.05
        done
        sleep "$(python3 -c "import random; print(round(random.uniform(0, 0.8), 2))")"
        pkill -9 -f -- "$run" || true
        wait "$pid" 2>/dev/null || true
        if [ -e "$run/checkpoints/latest" ]; then
            "$BINARY" inspect --checkpoint "$run" >"$WORK/killed-inspect-$i.out" || {
                cat "$WORK/killed-inspect-$i.out"
                return 1
            }
            echo "kill $i: latest = $(cat "$run/checkpoints/latest"), verified"
        else
            echo "kill $i: no checkpoint was written"
            return 1
        fi
    done
    [ -e "$run/checkpoints/latest" ]
    local step
    step=$(python3 -c "import json; print(json.load(open('$run/checkpoints/' + open('$run/checkpoints/latest').read().strip() + '.json'))['step'])")
    mpi 2 train --resume "$run" --max-steps $((step + 5)) --keep-checkpoints 2 >/dev/null
    "$BINARY" inspect --checkpoint "$run" >"$WORK/killed-final.out"
    head -2 "$WORK/killed-final.out"
}

damaged_checkpoint() {
    local out="$WORK/damaged.out" run="$WORK/damaged"
    straight_run
    cp -r "$WORK/straight" "$run"
    local file="$run/checkpoints/step-00000040.safetensors"
    python3 -c "
import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-5] ^= 0x40; open(p, 'wb').write(b)" "$file"
    if "$BINARY" inspect --checkpoint "$run" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "$file: corrupt or truncated file: tensor .* fails its checksum"
    if mpi 2 train --resume "$run" >"$out" 2>&1; then return 1; fi
    expect "$out" "fails its checksum"
    [ "$(count_lines "$out" "fails its checksum")" = 1 ]
    head -c 5000 "$WORK/straight/checkpoints/step-00000040.safetensors" >"$file"
    if "$BINARY" inspect --checkpoint "$file" >"$out" 2>&1; then return 1; fi
    expect "$out" "$file: corrupt or truncated file"
    # Options that fix the model cannot change on resume.
    if mpi 2 train --resume "$WORK/straight/checkpoints/step-00000040.json" --hidden-dim 32 >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "--hidden-dim: cannot change when resuming"
}

# --- subcommands on a checkpoint, their outputs read back ------------------------
subcommands() {
    local ck out="$WORK/sub"
    ck=$(shared_small_run)
    mkdir -p "$out"
    "$BINARY" sample --checkpoint "$ck" --count 20 --columns 5 --out "$out/samples.png"
    python3 -c "import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers; assert helpers.png_size('$out/samples.png') == (72, 58, 1)"
    "$BINARY" reconstruct --checkpoint "$ck" --data "$SMALL" --count 10 --columns 5 --out "$out/pairs.png"
    python3 -c "import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers; assert helpers.png_size('$out/pairs.png') == (72, 58, 1)"
    mpi 2 interpolate --checkpoint "$ck" --data "$SMALL" --from 3 --to 7 --steps 6 --out "$out/strip.png"
    python3 -c "import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers; assert helpers.png_size('$out/strip.png') == (114, 16, 1)"
    "$BINARY" encode --checkpoint "$ck" --data "$SMALL" --out "$out/latents.npy"
    mpi 2 encode --checkpoint "$ck" --data "$SMALL" --out "$out/np2-latents.npy"
    python3 "$CLIENTS" npy "$out/latents.npy" "$out/labels.npy" 203 4
    python3 "$CLIENTS" npy "$out/np2-latents.npy" "$out/np2-labels.npy" 203 4
    python3 "$CLIENTS" same-npy "$out/latents.npy" "$out/np2-latents.npy"
    # evaluate: the run's last test loss, at any number of ranks; IWAE tighter.
    "$BINARY" evaluate --checkpoint "$ck" --data "$SMALL" --importance-samples 20 --json >"$out/eval1.json"
    mpi 2 evaluate --checkpoint "$ck" --data "$SMALL" --importance-samples 20 --json >"$out/eval2.json"
    mpi 2 evaluate --checkpoint "$ck" --data "$SMALL" --importance-samples 20
    python3 - "$out/eval1.json" "$out/eval2.json" "$ck/metrics.jsonl" <<'PY'
import json, math, sys
e1, e2 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
last = [json.loads(l) for l in open(sys.argv[3]) if '"eval"' in l][-1]
assert e2["loss"] == last["test_loss"], (e2["loss"], last["test_loss"])  # same blocks as training
assert math.isclose(e1["loss"], last["test_loss"], rel_tol=1e-6)
assert math.isclose(e1["importance_weighted_nll"], e2["importance_weighted_nll"], rel_tol=1e-6)
assert e1["importance_weighted_nll"] < e1["loss"], "IWAE bound is tighter than the ELBO"
assert e1["importance_samples"] == 20
print("ok: evaluate reproduces the test loss", last["test_loss"], "; IWAE", e1["importance_weighted_nll"])
PY
    "$BINARY" inspect --checkpoint "$ck" --json >"$out/inspect.json"
    "$BINARY" inspect --checkpoint "$ck"
    python3 "$CLIENTS" safetensors "$ck/checkpoints/step-00000032.safetensors" "$out/inspect.json"
    python3 "$CLIENTS" torch-load "$ck/checkpoints/step-00000032.safetensors" 64 4 144
    python3 "$CLIENTS" tensorboard "$ck"
}

latent_pictures() {
    local run="$WORK/latent2" out="$WORK/latent-map"
    mpi 2 train --data "$SMALL" --run-dir "$run" --epochs 2 --batch-size 64 --hidden-dim 64 --latent-dim 2 --lr 3e-3 >/dev/null
    python3 -c "import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers; \
        assert helpers.png_size('$run/latent-manifold/epoch-0002.png') == (240, 240, 1); \
        w, h, c = helpers.png_size('$run/latent-scatter/epoch-0002.png'); assert c == 3 and w > 600 and h > 600"
    mpi 2 latent-map --checkpoint "$run" --data "$SMALL" --out "$out" --label-names small,large
    python3 -c "import sys; sys.path.insert(0, '${HELPERS%/*}'); import helpers; \
        assert helpers.png_size('$out-manifold.png') == (240, 240, 1); \
        w, h, c = helpers.png_size('$out-scatter.png'); assert c == 3 and w > 600 and h > 600"
    if "$BINARY" latent-map --checkpoint "$WORK/small-np2" --data "$SMALL" --out "$out-bad" >"$out.err" 2>&1; then return 1; fi
    expect "$out.err" "latent-map needs 2"
}

# --- model zoo: conv VAE, Gaussian likelihoods, KL controls, NPY data -----------
conv_run() {
    local run="$WORK/conv-np2"
    mpi 2 train --data "$SMALL" --model conv --conv-channels 8,16 --run-dir "$run" --epochs 2 --batch-size 64 \
        --lr 3e-3 --log-every 4 --verify-replicas >"$run.out" 2>&1
    cat "$run.out"
    expect "$run.out" "conv 1×12×12 → 8, 16 → 16"
    expect "$run.out" "replicas identical on 2 ranks"
    helpers check-run "$run" 2 203 2 12 12
    "$BINARY" inspect --checkpoint "$run" | grep -E "enc.conv1.weight +\[8, 1, 3, 3\]"
    "$BINARY" sample --checkpoint "$run" --count 4 --out "$WORK/conv-samples.png"
    mpi 2 evaluate --checkpoint "$run" --importance-samples 5
    # Resume exactly, as for the MLP.
    mpi 2 train --data "$SMALL" --model conv --conv-channels 8,16 --run-dir "$WORK/conv-a" --epochs 2 \
        --batch-size 64 --max-steps 20 >/dev/null
    mpi 2 train --data "$SMALL" --model conv --conv-channels 8,16 --run-dir "$WORK/conv-b" --epochs 2 \
        --batch-size 64 --max-steps 11 >/dev/null
    mpi 2 train --resume "$WORK/conv-b" --max-steps 20 >/dev/null
    cmp "$WORK/conv-a/checkpoints/step-00000020.safetensors" "$WORK/conv-b/checkpoints/step-00000020.safetensors"
}

# Colour images of 16×20 stored as float32 .npy, standardized (values
# outside [0, 1]): Gaussian likelihoods, both models, every subcommand.
gaussian_npy() {
    local data="$WORK/rgb" out
    python3 "$HELPERS" make-npy-dataset "$data" 300 60 3 16 20 with-test 2.0 -1.0
    for model in mlp conv; do
        for likelihood in gaussian gaussian-learned; do
            local run="$WORK/rgb-$model-$likelihood" sigma=()
            [ "$likelihood" = gaussian ] && sigma=(--sigma 0.5)
            mpi 2 train --data "$data" --model "$model" --likelihood "$likelihood" "${sigma[@]}" --hidden-dim 64 \
                --latent-dim 4 --conv-channels 8,16 --epochs 2 --batch-size 32 --lr 2e-3 --log-every 5 \
                --run-dir "$run" >"$run.out" 2>&1
            cat "$run.out"
            helpers check-run "$run" 2 60 2 16 20 3
            "$BINARY" sample --checkpoint "$run" --count 6 --out "$run/s.png"
            "$BINARY" reconstruct --checkpoint "$run" --count 4 --out "$run/r.png"
            "$BINARY" interpolate --checkpoint "$run" --from 0 --to 5 --steps 3 --out "$run/i.png"
            mpi 2 encode --checkpoint "$run" --out "$run/latents.npy"
            python3 "$CLIENTS" npy "$run/latents.npy" "$run/labels.npy" 60 4
            mpi 2 evaluate --checkpoint "$run" --importance-samples 5 --json >"$run/eval.json"
            python3 -c "import json; e = json.load(open('$run/eval.json')); assert e['importance_weighted_nll'] < e['loss'] + 1e-6, e"
            mpi 2 train --resume "$run" --epochs 3 >/dev/null
        done
    done
    grep -q '"dec.deconv2_logvar.weight"' "$WORK/rgb-conv-gaussian-learned/checkpoints/"*.json
    grep -q '"fc4_logvar.weight"' "$WORK/rgb-mlp-gaussian-learned/checkpoints/"*.json
    if grep -q 'logvar.weight"' "$WORK/rgb-mlp-gaussian/checkpoints/"*.json; then return 1; fi
}

kl_controls() {
    local run="$WORK/kl"
    mpi 2 train --data "$SMALL" --run-dir "$run" --epochs 2 --batch-size 64 --hidden-dim 64 --latent-dim 6 \
        --beta 2 --kl-warmup-steps 16 --free-bits 0.5 --log-every 4 >"$run.out" 2>&1
    cat "$run.out"
    expect "$run.out" "β = 2.0 after a 16-step warm-up, free bits 0.5 nats per dimension"
    python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1])]
betas = [(m["step"], m["beta"]) for m in ms if m["type"] == "train"]
assert betas[0] == (4, 0.5) and (8, 1.0) in betas and (16, 2.0) in betas and betas[-1][1] == 2.0, betas
ev = [m for m in ms if m["type"] == "eval"][-1]
assert len(ev["test_kl_per_dim"]) == 6 and abs(sum(ev["test_kl_per_dim"]) - ev["test_kl"]) < 1e-6, ev
print("ok: β ramps", betas[:5], "; KL per dim", [round(v, 3) for v in ev["test_kl_per_dim"]], "; active units", ev["active_units"])
PY
}

held_out_test_set() {
    local data="$WORK/train-only" run="$WORK/holdout" out="$WORK/holdout.out"
    python3 "$HELPERS" make-npy-dataset "$data" 250 0 1 8 8 train-only 1.0 0.0
    if mpi 2 train --data "$data" --run-dir "$run" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "no test images for $data/train-images.npy: give --test-file, .*--test-fraction"
    mpi 2 train --data "$data" --test-fraction 0.2 --run-dir "$run" --epochs 1 --batch-size 20 --hidden-dim 32 \
        --latent-dim 2 >"$out" 2>&1
    cat "$out"
    expect "$out" "200 train \($data/train-images.npy\), 50 test \(held out\) images of 1×8×8"
    helpers check-run "$run" 1 50 2 8 8
    # Explicit files instead of a directory.
    mpi 2 train --train-file "$data/train-images.npy" --train-labels "$data/train-labels.npy" \
        --test-file "$SMALL/t10k-images-idx3-ubyte" --run-dir "$WORK/explicit" --epochs 1 >"$out" 2>&1 && return 1
    expect "$out" "test samples are 1×12×12 but training samples \($data/train-images.npy\) are 1×8×8"
}

bad_data() {
    local out="$WORK/bad.out" data="$WORK/wide"
    # Float data outside [0, 1] with a Bernoulli likelihood.
    python3 "$HELPERS" make-npy-dataset "$data" 40 10 1 8 8 with-test 3.0 -1.0
    if mpi 2 train --data "$data" --run-dir "$WORK/b1" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "--likelihood bernoulli: $data/train-images.npy: the bernoulli likelihood needs values in \[0, 1\]; the values range over \[-[0-9.]*, [0-9.]*\]"
    [ "$(count_lines "$out" "values range over")" = 1 ]
    # Non-finite values (NaN is a missing value; infinity is an error).
    python3 -c "
import numpy as np; a = np.load('$data/test-images.npy'); a[3, 0, 2, 2] = np.inf; np.save('$data/test-images.npy', a)"
    if mpi 2 train --data "$data" --likelihood gaussian --run-dir "$WORK/b2" >"$out" 2>&1; then return 1; fi
    expect "$out" "$data/test-images.npy: value inf at sample 3, element 18 is not finite"
    # Conv needs H, W divisible by 2^stages.
    python3 "$HELPERS" make-npy-dataset "$WORK/odd" 40 10 1 8 8 with-test 1.0 0.0
    python3 -c "
import numpy as np
for s in ('train', 'test'):
    p = '$WORK/odd/%s-images.npy' % s; np.save(p, np.load(p)[:, :, :, :6])"
    if mpi 2 train --data "$WORK/odd" --model conv --run-dir "$WORK/b3" >"$out" 2>&1; then return 1; fi
    expect "$out" "--model conv: the conv VAE needs image height and width divisible by 2.2 = 4 for 2 stride-2 stages; .* has 1×8×6 images .resize the images with --image-size, or use fewer --conv-channels stages."
    # Fortran-order arrays, and a test fraction when there is a test file.
    python3 -c "
import numpy as np; a = np.load('$WORK/odd/train-images.npy'); np.save('$WORK/odd/train-images.npy', np.asfortranarray(a))"
    if mpi 2 train --data "$WORK/odd" --run-dir "$WORK/b4" >"$out" 2>&1; then return 1; fi
    expect "$out" "$WORK/odd/train-images.npy: Fortran-order arrays are not supported"
    if mpi 2 train --data "$SMALL" --test-fraction 0.1 --run-dir "$WORK/b5" >"$out" 2>&1; then return 1; fi
    expect "$out" "--test-fraction: there is a test file"
}

# --- every collective (allreduce, reduce-scatter, allgather, broadcast) checked
# exactly by `vae-mpi check-mpi`, at 1 to 4 ranks (3: blocks of unequal size) --
collectives() {
    local np out
    for np in 1 2 3 4; do
        out="$WORK/check-mpi-np$np.out"
        mpi "$np" check-mpi --sizes 1000,65539 --repeats 3 >"$out" 2>&1
        cat "$out"
        expect "$out" "check-mpi: $np rank"
        [ "$(count_lines "$out" "^  ok ")" = 32 ]
        [ "$(count_lines "$out" "FAIL")" = 0 ]
        [ "$(count_lines "$out" "floats .* µs")" = 4 ]
    done
}

# --- precision, kernel libraries, sharded optimizer, bf16 gradients -----------------
# bf16 runs are deterministic and their replicas identical; the sharded
# optimizer gives the bytes of the unsharded one at np 2 (each gradient element
# is a sum of two, whatever the order); bf16 gradient exchange keeps replicas
# identical, also with unequal slices (np 3) and sharded; every variant learns.
precision_and_sharding() {
    local args=(--data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 64 --latent-dim 4 --lr 3e-3 --log-every 8
        --verify-replicas)
    local name
    for name in "bf16-a --precision bf16" "bf16-b --precision bf16" "fp32 --precision fp32" \
        "sharded --precision fp32 --shard-optimizer" "bf16grad-np3 --gradient-precision bf16" \
        "bf16grad-sharded --precision bf16 --gradient-precision bf16 --shard-optimizer"; do
        set -- $name
        local run="$WORK/prec-$1" np=2
        shift
        [[ $run == *np3 ]] && np=3
        mpi "$np" train "${args[@]}" --run-dir "$run" "$@" >"$run.out" 2>&1 || { cat "$run.out"; return 1; }
        expect "$run.out" "replicas identical on $np ranks"
        helpers check-run "$run" 2 203 "$np" 12 12
    done
    expect "$WORK/prec-bf16-a.out" "kernels +onednn, bf16 inputs"
    expect "$WORK/prec-sharded.out" "sharded over the ranks"
    expect "$WORK/prec-bf16grad-np3.out" "gradients exchanged in bf16"
    cmp "$WORK/prec-bf16-a/checkpoints/step-00000032.safetensors" "$WORK/prec-bf16-b/checkpoints/step-00000032.safetensors"
    echo "bf16: same seed and np, byte-identical checkpoints"
    cmp "$WORK/prec-fp32/checkpoints/step-00000032.safetensors" "$WORK/prec-sharded/checkpoints/step-00000032.safetensors"
    echo "sharded optimizer at np 2: byte-identical to the unsharded one"
    if helpers same-tensors "$WORK/prec-fp32/checkpoints/step-00000032.safetensors" \
        "$WORK/prec-bf16-a/checkpoints/step-00000032.safetensors" >/dev/null; then return 1; fi
    # bf16 checkpoints are fp32 safetensors like any other, and resume exactly.
    python3 "$CLIENTS" safetensors-dtypes "$WORK/prec-bf16-a/checkpoints/step-00000032.safetensors"
    mpi 2 train "${args[@]}" --run-dir "$WORK/prec-bf16-c" --precision bf16 --max-steps 21 >/dev/null
    mpi 2 train --resume "$WORK/prec-bf16-c" >/dev/null
    cmp "$WORK/prec-bf16-a/checkpoints/step-00000032.safetensors" "$WORK/prec-bf16-c/checkpoints/step-00000032.safetensors"
    echo "bf16: stopped at 21 and resumed, byte-identical at 32"
    # The conv model on both kernel libraries.
    for kernels in onednn openblas; do
        mpi 2 train --data "$SMALL" --model conv --conv-channels 8,16 --epochs 1 --batch-size 64 --lr 3e-3 \
            --kernels "$kernels" --run-dir "$WORK/prec-conv-$kernels" --verify-replicas >"$WORK/prec-conv-$kernels.out" 2>&1
        helpers check-run "$WORK/prec-conv-$kernels" 1 203 2 12 12
    done
}

source "$VAE_MPI_ROOT/Tests/MultiRank/image_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/control_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/reliability_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/reproducible_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/likelihood_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/compression_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/imputation_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/count_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/scale_tests.sh"
source "$VAE_MPI_ROOT/Tests/MultiRank/performance_tests.sh"

say "multi-rank tests in $WORK"
helpers make-dataset "$SMALL" 997 203 12 12 || die "could not write the test dataset"
run_test collectives-np1-to-4 collectives
run_test small-np1 small_run 1
run_test small-np2 small_run 2
run_test small-np4 small_run 4
run_test fashion-mnist-np2 fashion_run
run_test deterministic-checkpoints determinism
run_test np2-learns-like-np1 np2_learns_like_np1
run_test user-errors errors
run_test rank-failure-aborts-job rank_failure
run_test replica-divergence-caught replica_divergence
run_test hostfile hostfile_run
run_test resume-exact-mid-epoch resume_exact
run_test resume-other-world-size resume_other_world_size
run_test kill-9-during-checkpoints kill_during_checkpoints
run_test damaged-checkpoints damaged_checkpoint
run_test subcommands subcommands
run_test latent-pictures latent_pictures
run_test conv-vae-np2 conv_run
run_test gaussian-likelihoods-npy gaussian_npy
run_test kl-controls kl_controls
run_test held-out-test-set held_out_test_set
run_test bad-data bad_data
run_test precision-and-sharding precision_and_sharding
run_test image-formats-vs-pillow image_formats
run_test image-crop-and-resize image_resize
run_test image-folder-layouts image_layouts
run_test image-bad-files image_bad_files
run_test image-conv-deep-resume image_conv
run_test image-conditional-vae image_conditional
run_test lr-schedules lr_schedules
run_test accumulation-np2 accumulation_np2
run_test best-checkpoint-and-early-stop best_and_early_stop
run_test curves-picture curves_picture
run_test score-and-anomaly-metrics scoring
run_test run-dir-race-20 run_dir_race
run_test crafted-files crafted_files
run_test failed-resume-untouched failed_resume_untouched
run_test graceful-stop-and-resume graceful_stop
run_test stall-watchdog stall_watchdog
run_test restarts-after-killed-rank restarts
run_test abandoned-run-dir abandoned_run_dir
run_test true-hints true_hints
run_test slurm-script slurm_script
run_test reproducible-mlp-np1-2-4 reproducible_mlp
run_test reproducible-conv-np1-2-4 reproducible_conv
run_test reproducible-free-bits-accumulate-tree reproducible_free_bits_accumulate
run_test reproducible-resume-other-np reproducible_resume
run_test reproducible-errors reproducible_errors
run_test discrete-conv-resume-np2 discrete_conv_resume
run_test integer-levels-np2 integer_levels
run_test tabular-csv-np2 tabular_csv
run_test compression-fashion-any-build compression_fashion
run_test compression-rate compression_rate
run_test compression-kinds compression_kinds
run_test compression-errors compression_errors
run_test imputation-table-np2 imputation_table
run_test importance-weighted-training importance_weighted_training
run_test imputation-errors imputation_errors
run_test inpainting-np2 inpainting
run_test image-folder-masks image_folder_masks
run_test interactions-recommend-np2 interactions_recommend
run_test count-matrix-nb-np2 count_matrix_nb
run_test count-covariate-np2 count_covariate
run_test interactions-validation-np2 interactions_validation
run_test mapped-npy-memory-np4 mapped_npy_memory
run_test hdf5-inputs-np1-2 hdf5_inputs
run_test hdf5-library-crashes hdf5_library_crashes
run_test placement-refusal placement
run_test block-shuffle-resume-np2 block_shuffle_resume
run_test shared-memory-reduction-np2-3 shared_memory_reduction
run_test shared-memory-full-np2 shared_memory_full
run_test gemm-rate-np2 gemm_rate
run_test non-finite-gradient-np2-3 non_finite_gradient

say "multi-rank tests: ${passed} passed, ${#failed[@]} failed${failed:+ (${failed[*]})}"
[ ${#failed[@]} -eq 0 ] || exit 1
[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
