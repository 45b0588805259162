# Reliability tests, sourced by run.sh: one run per directory, crafted files,
# failed resumes that touch nothing, graceful stops, the stall watchdog,
# restarts, abandoned run directories, true hints, the SLURM script.

fingerprint() {  # every file's path and SHA-256, and the directories, under $1
    (cd "$1" && find . -print | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

# Two runs racing for one run directory, 20 times: exactly one runs; the
# other refuses at once, naming the holder (or, if the first already
# finished, the run it left); the winner's directory is its own.
run_dir_race() {
    local i dir a b sa sb wins=0
    for i in $(seq 20); do
        dir="$WORK/race-$i"
        mpi $((1 + i % 2)) train --data "$SMALL" --run-dir "$dir" --max-steps 12 --batch-size 64 --hidden-dim 16 \
            --log-every 4 >"$dir.a" 2>&1 &
        a=$!
        mpi $((1 + (i + 1) % 2)) train --data "$SMALL" --run-dir "$dir" --max-steps 12 --batch-size 64 --hidden-dim 16 \
            --log-every 4 >"$dir.b" 2>&1 &
        b=$!
        wait $a && sa=0 || sa=$?
        wait $b && sb=0 || sb=$?
        if [ $sa -eq 0 ] && [ $sb -ne 0 ]; then loser="$dir.b"; elif [ $sb -eq 0 ] && [ $sa -ne 0 ]; then loser="$dir.a"
        else echo "race $i: statuses $sa and $sb (exactly one run must succeed)"; cat "$dir.a" "$dir.b"; return 1; fi
        grep -qE "is in use by another run \(pid [0-9]+ on host .* since .*\)|already holds a run" "$loser" ||
            { echo "race $i: the loser's message:"; cat "$loser"; return 1; }
        [ "$(ls "$dir" | grep -c '^events.out.tfevents')" = 1 ] || { ls "$dir"; return 1; }
        [ ! -e "$dir/.vae-mpi.lock" ] || { echo "the lock file was left behind"; return 1; }
        python3 - "$dir" <<'PY'
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
steps = [m["step"] for m in ms if m["type"] == "train"]
assert steps == [4, 8, 12], steps
PY
        grep -q "is in use by another run" "$loser" && wins=$((wins + 1))
    done
    echo "20 races: one run each time; $wins refused by the lock while the other ran"
    # A lock file left by a dead process is taken over, with a message.
    mkdir -p "$WORK/race-stale"
    echo "pid 999999 on host gone since 2026-01-01T00:00:00Z (np 2)" >"$WORK/race-stale/.vae-mpi.lock"
    mpi 2 train --data "$SMALL" --run-dir "$WORK/race-stale" --max-steps 4 --hidden-dim 16 >"$WORK/race-stale.out" 2>&1
    expect "$WORK/race-stale.out" "took over the lock left by pid 999999 on host gone .*, which is no longer running"
}

# The crafted files that used to trap: each is now one clear error naming the file.
crafted_files() {
    local d="$WORK/crafted" out="$WORK/crafted.out" f
    for f in shape-product-overflow byte-count-overflow unicode-dtype; do
        rm -rf "$d" && mkdir -p "$d"
        cp "$VAE_MPI_ROOT/Fuzz/crashers/npy/$f.npy" "$d/train-images.npy"
        cp "$VAE_MPI_ROOT/Fuzz/crashers/npy/$f.npy" "$d/test-images.npy"
        if mpi 2 train --data "$d" --run-dir "$WORK/crafted-run" >"$out" 2>&1; then return 1; fi
        cat "$out"
        expect "$out" "vae-mpi: error( \(rank 0\))?: $d/train-images.npy: "
        [ ! -e "$WORK/crafted-run" ]
    done
    expect "$out" "dtype '<U10' is not supported"
    # A safetensors header with a shape like [2^62, 4], and sidecars that break the command line's rules.
    local run="$WORK/crafted-ck"
    mpi 2 train --data "$SMALL" --run-dir "$run" --max-steps 6 --hidden-dim 16 >/dev/null 2>&1
    local stem="$run/checkpoints/$(cat "$run/checkpoints/latest")"
    cp "$VAE_MPI_ROOT/Fuzz/crashers/safetensors/shape-overflow.safetensors" "$stem.safetensors.bad"
    mv "$stem.safetensors" "$stem.safetensors.good" && mv "$stem.safetensors.bad" "$stem.safetensors"
    for command in inspect resume; do
        if [ $command = inspect ]; then "$BINARY" inspect --checkpoint "$run" >"$out" 2>&1 && return 1
        else mpi 2 train --resume "$run" >"$out" 2>&1 && return 1; fi
        expect "$out" "$stem.safetensors: corrupt or truncated file: tensor w: data_offsets \[0, 16\] do not hold shape"
    done
    mv "$stem.safetensors.good" "$stem.safetensors"
    python3 - "$stem.json" <<'PY'
import re, sys, zlib
p = sys.argv[1]; t = open(p).read()
t = t.replace('"log_every" : 50,', '"log_every" : 0,')
z = re.sub(r'("sidecar_checksum" : ")crc32:[0-9a-f]{8}', r'\g<1>crc32:00000000', t)
open(p, "w").write(z.replace('crc32:00000000', 'crc32:%08x' % zlib.crc32(z.encode()), 1))
PY
    if mpi 2 train --resume "$run" >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "$stem.json: its configuration is invalid: log_every must be at least 1"
    if "$BINARY" inspect --checkpoint "$run" >"$out" 2>&1; then return 1; fi
    expect "$out" "log_every must be at least 1"
}

# A resume that fails leaves the run byte for byte as it was; inspect refuses
# a sidecar whose architecture the tensors do not fit.
failed_resume_untouched() {
    local run="$WORK/untouched" out="$WORK/untouched.out" before after
    mpi 2 train --data "$SMALL" --run-dir "$run" --epochs 1 --hidden-dim 40 >/dev/null 2>&1
    local stem="$run/checkpoints/$(cat "$run/checkpoints/latest")"
    # Edited by hand (the checksum no longer matches), then edited with a matching checksum.
    sed -i 's/"hidden_size" : 40/"hidden_size" : 30/' "$stem.json"
    before=$(fingerprint "$run")
    if mpi 2 train --resume "$run" --epochs 2 >"$out" 2>&1; then return 1; fi
    cat "$out"
    expect "$out" "the sidecar fails its own checksum"
    after=$(fingerprint "$run")
    [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); return 1; }
    python3 - "$stem.json" <<'PY'
import re, sys, zlib
p = sys.argv[1]; t = open(p).read()
z = re.sub(r'("sidecar_checksum" : ")crc32:[0-9a-f]{8}', r'\g<1>crc32:00000000', t)
open(p, "w").write(z.replace('crc32:00000000', 'crc32:%08x' % zlib.crc32(z.encode()), 1))
PY
    before=$(fingerprint "$run")
    for np in 1 2; do
        if mpi $np train --resume "$run" --epochs 2 >"$out" 2>&1; then return 1; fi
        cat "$out"
        expect "$out" "holds [0-9]+ parameters, but the architecture its sidecar describes \(mlp 144-30-20\) has [0-9]+"
        after=$(fingerprint "$run")
        [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); return 1; }
    done
    if "$BINARY" inspect --checkpoint "$run" >"$out" 2>&1; then return 1; fi
    expect "$out" "holds [0-9]+ parameters, but the architecture"
    echo "failed resumes at np 1 and 2 left the run byte-identical ($(echo "$before" | wc -l) entries)"
}

# SIGUSR1 to mpirun, SIGTERM to every rank (as SLURM sends it), SIGINT to a
# single process: each stops after the step, checkpoints and exits 75; the
# resume is bitwise equal to the uninterrupted run.
graceful_stop() {
    local a="$WORK/stop-a" out
    local common=(--data "$SMALL" --epochs 40 --batch-size 32 --hidden-dim 128 --latent-dim 4 --log-every 5)
    mpi 2 train "${common[@]}" --run-dir "$a" >/dev/null 2>&1
    local final="checkpoints/$(cat "$a/checkpoints/latest").safetensors"
    local i run pid status how
    for i in 1 2 3; do
        run="$WORK/stop-$i"
        out="$run.out"
        mpi 2 train "${common[@]}" --run-dir "$run" >"$out" 2>&1 &
        pid=$!
        for _ in $(seq 200); do grep -q "^epoch 1" "$out" 2>/dev/null && break; sleep 0.05; done
        sleep "$(python3 -c "import random; print(round(random.uniform(0, 1.5), 2))")"
        if [ $i = 1 ]; then how="SIGUSR1 to mpirun"; pkill -USR1 -f "^mpirun .*--run-dir $run( |$)" || true
        else how="SIGTERM to every rank"; pkill -TERM -f "^$BINARY train .*--run-dir $run( |$)" || true; fi
        wait $pid && status=0 || status=$?
        cat "$out" | grep -v "^epoch [0-9]*/" | tail -4
        if [ $status = 0 ]; then echo "$how arrived after the end; run finished"; cmp "$a/$final" "$run/$final"; continue; fi
        [ $status = 75 ] || { echo "$how: status $status, expected 75"; return 1; }
        expect "$out" "interrupted at step [0-9]+; checkpoint written to $run/checkpoints; resume with:"
        expect "$out" "train --resume $run"
        mpi 2 train --resume "$run" >"$run.resume.out" 2>&1
        cmp "$a/$final" "$run/$final"
        echo "$how at step $(grep -oE 'interrupted at step [0-9]+' "$out" | grep -oE '[0-9]+$'): resumed, byte-identical at the end"
    done
    # One process (no mpirun), SIGINT as from Ctrl-C; then a second signal exits at once.
    run="$WORK/stop-single"
    timeout 120 "$BINARY" train "${common[@]}" --run-dir "$a-np1" >/dev/null 2>&1
    VAE_MPI_SIGNAL_AT=0:7 timeout 120 "$BINARY" train "${common[@]}" --run-dir "$run" >"$run.out" 2>&1 && status=0 || status=$?
    [ $status = 75 ] || { cat "$run.out"; return 1; }
    expect "$run.out" "interrupted at step 7"
    timeout 120 "$BINARY" train --resume "$run" >/dev/null 2>&1
    cmp "$a-np1/$final" "$run/$final"
    echo "one process, a stop request at step 7: resumed, byte-identical at the end"
    run="$WORK/stop-twice"
    timeout 60 "$BINARY" train --data "$SMALL" --epochs 200 --hidden-dim 64 --run-dir "$run" >"$run.out" 2>&1 &
    pid=$!
    for _ in $(seq 200); do grep -q "^epoch 1" "$run.out" 2>/dev/null && break; sleep 0.05; done
    kill -INT $pid; kill -INT $pid
    wait $pid && status=0 || status=$?
    [ $status = 130 ] || [ $status = 75 ] || { echo "two SIGINTs: status $status"; cat "$run.out"; return 1; }
    echo "two SIGINTs: status $status"
}

# The stall watchdog: a rank asleep in one phase makes the others print
# where they wait, and the job ends with status 4, well before mpirun's timeout.
stall_watchdog() {
    local out="$WORK/stall.out" phase step status start
    # 997 samples in batches of 332: four steps, and the checkpoint at the epoch's end (step 4).
    for phase in forward:3 checkpoint:4; do
        step=${phase#*:} phase=${phase%:*} start=$SECONDS
        VAE_MPI_STALL_AT=1:$step:$phase timeout 120 mpirun $(mpirun_flags 2) -x VAE_MPI_STALL_AT -np 2 "$BINARY" train \
            --data "$SMALL" --epochs 1 --batch-size 332 --hidden-dim 16 --collective-timeout 3 \
            --run-dir "$WORK/stall-$phase" >"$out" 2>&1 && status=0 || status=$?
        cat "$out" | grep -v "^epoch [0-9]*/" | tail -3
        [ $status = 4 ] || { echo "$phase: status $status, expected 4"; return 1; }
        expect "$out" "vae-mpi: error \(rank 0\): stalled: rank 0 on .* has waited [0-9]+ s in MPI_[A-Za-z]+ during the [a-z]+ phase at step $step \(--collective-timeout 3 s\)"
        [ $((SECONDS - start)) -lt 40 ] || { echo "took $((SECONDS - start)) s"; return 1; }
        echo "$phase stall: the job ended with status 4 after $((SECONDS - start)) s"
    done
}

# RESTARTS=N: a rank killed mid-run, train.sh relaunches from the latest
# checkpoint and finishes with the uninterrupted run's parameters.
restarts() {
    local run="$WORK/restart" ref="$WORK/restart-ref" pid status
    local common=(--data "$SMALL" --epochs 6 --batch-size 32 --hidden-dim 64 --latent-dim 4)
    mpi 2 train "${common[@]}" --run-dir "$ref" >/dev/null 2>&1
    RESTARTS=2 NP=2 timeout 300 bash "$VAE_MPI_ROOT/scripts/train.sh" "${common[@]}" --run-dir "$run" >"$run.out" 2>&1 &
    pid=$!
    for _ in $(seq 600); do [ -e "$run/checkpoints/latest" ] && break; sleep 0.05; done
    pkill -9 -f "^$BINARY train .*--run-dir $run( |$)" -n
    wait $pid && status=0 || status=$?
    cat "$run.out" | grep -vE "^epoch [0-9]*/|^ " | tail -8
    [ $status = 0 ] || { echo "train.sh: status $status"; return 1; }
    expect "$run.out" "restart 1 of 2: .*; resuming from $run/checkpoints/step-"
    local final="checkpoints/$(cat "$ref/checkpoints/latest").safetensors"
    cmp "$ref/$final" "$run/$final"
    echo "killed rank: restarted from the latest checkpoint, byte-identical at the end"
    # A user error is not restarted.
    RESTARTS=3 NP=2 timeout 120 bash "$VAE_MPI_ROOT/scripts/train.sh" --data "$WORK/nowhere" --run-dir "$WORK/restart-no" \
        >"$run.err" 2>&1 && return 1
    expect "$run.err" "the job failed with a user error \(status 2\): not restarting"
    [ "$(count_lines "$run.err" "no such file")" = 1 ]
}

# A run killed before its first checkpoint: the directory is neither stuck
# nor silently mixed: --resume says why it cannot, a new run reuses it.
abandoned_run_dir() {
    local run="$WORK/abandoned" out="$WORK/abandoned.out" pid
    # Rank 0 sleeps in step 2 (so no machine is fast enough to reach the first checkpoint); then kill -9.
    VAE_MPI_STALL_AT=0:2:data timeout 120 mpirun $(mpirun_flags 2) -x VAE_MPI_STALL_AT -np 2 "$BINARY" train \
        --run-dir "$run" --epochs 1 --hidden-dim 64 >"$out" 2>&1 &
    pid=$!
    for _ in $(seq 600); do [ -e "$run/config.json" ] && break; sleep 0.05; done
    sleep 0.3
    pkill -9 -f "^$BINARY train .*--run-dir $run( |$)"
    wait $pid || true
    [ -e "$run/config.json" ] && [ ! -e "$run/checkpoints/latest" ] || { ls -R "$run"; return 1; }
    if mpi 2 train --resume "$run" >"$out" 2>&1; then return 1; fi
    expect "$out" "the run in $run stopped before its first checkpoint, so there is nothing to resume"
    mpi 2 train --data "$SMALL" --run-dir "$run" --epochs 1 --hidden-dim 16 >"$out" 2>&1
    expect "$out" "$run held a run that stopped before its first checkpoint: starting it over there"
    helpers check-run "$run" 1 203 2 12 12
    [ "$(ls "$run" | grep -c '^events.out.tfevents')" = 1 ]
}

# Hints that are true: unscaled data makes the encoder's variance overflow.
true_hints() {
    local d="$WORK/raw255" out="$WORK/raw255.out"
    python3 -c "
import numpy as np, os
os.makedirs('$d', exist_ok=True); r = np.random.default_rng(0)
np.save('$d/train-images.npy', (r.random((200, 1, 8, 8)) * 255).astype(np.float32))
np.save('$d/test-images.npy', (r.random((50, 1, 8, 8)) * 255).astype(np.float32))"
    for lr in 1e-3 1e-6; do
        if mpi 2 train --data "$d" --likelihood gaussian-learned --lr $lr --run-dir "$WORK/raw255-$lr" >"$out" 2>&1; then return 1; fi
        cat "$out" | grep error
        expect "$out" "non-finite loss or gradient at step 1; .*The training images range over \[0.0[0-9]*, 254.[0-9]*\]: inputs that large overflow the encoder's variance"
        if grep -q "lower --lr" "$out"; then echo "the --lr hint is false here"; return 1; fi
    done
}

# The SLURM recipe: its syntax, and the start and resume lines it runs (with mpirun, outside SLURM).
slurm_script() {
    local sbatch="$VAE_MPI_ROOT/scripts/slurm/train.sbatch" run="$WORK/slurm-run"
    bash -n "$sbatch"
    grep -q "^#SBATCH --signal=B:TERM@120" "$sbatch"
    grep -q "^#SBATCH --requeue" "$sbatch"
    local env=(LAUNCH=mpirun NP=2 RUN_DIR="$run" VAE_MPI="$BINARY" MPIRUN_FLAGS="$(mpirun_flags 2 | tr '\n' ' ')")
    env "${env[@]}" timeout 120 bash "$sbatch" --data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 16 --max-steps 5 \
        >"$run.1" 2>&1
    cat "$run.1" | head -3
    expect "$run.1" "train --run-dir $run --data"
    # mpirun ran supervised (scripts/supervise.sh): its exit records, beside the run directory, are gone.
    if compgen -G "$(dirname "$run")/.exit-records.*" >/dev/null; then echo "exit records left"; return 1; fi
    env "${env[@]}" timeout 120 bash "$sbatch" --epochs 2 >"$run.2" 2>&1
    cat "$run.2" | grep -vE "^epoch [0-9]*/" | tail -3
    expect "$run.2" "train --resume $run --epochs 2"
    expect "$run.2" "resuming from $run/checkpoints/step-00000005.safetensors: step 5"
    # Stopped at step 5 and resumed there: the same parameters as one uninterrupted run.
    mpi 2 train --data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 16 --run-dir "$WORK/slurm-ref" >/dev/null 2>&1
    local final="checkpoints/$(cat "$WORK/slurm-ref/checkpoints/latest").safetensors"
    cmp "$WORK/slurm-ref/$final" "$run/$final"
    echo "stopped at step 5, resumed: byte-identical to the uninterrupted run"
}
