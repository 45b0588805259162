# --reproducible, sourced by run.sh: the same bytes at np 1, 2 and 4
# (oversubscribed), for the MLP and conv models, with free bits and
# accumulation, with both exact reductions (tree by default, fixed point); resuming at another np mid-epoch;
# an np outside the set refused; `vae-mpi compare` naming a difference.

# reproducible_matrix NAME ARGS...: runs at np 1, 2 and 4, then `vae-mpi compare` 1 with 2 and with 4.
reproducible_matrix() {
    local name=$1 np
    shift
    for np in 1 2 4; do
        mpi $np train --data "$SMALL" --epochs 2 --batch-size 64 --log-every 1 --reproducible "$@" \
            --run-dir "$WORK/$name-np$np" >"$WORK/$name-np$np.out" 2>&1 ||
            { tail -5 "$WORK/$name-np$np.out"; return 1; }
    done
    grep "^  batch" "$WORK/$name-np4.out"
    for np in 2 4; do
        "$BINARY" compare "$WORK/$name-np1" "$WORK/$name-np$np" >"$WORK/$name-cmp$np.out" ||
            { cat "$WORK/$name-cmp$np.out"; return 1; }
    done
    cat "$WORK/$name-cmp4.out"
    # Every step logged (--log-every 1) and both epochs' evaluations: 32 train lines, 2 eval lines.
    expect "$WORK/$name-cmp4.out" "metrics: 34 entries, bitwise equal"
    expect "$WORK/$name-cmp4.out" "checkpoints: 2 steps in both \(16, 32\)"
}

reproducible_mlp() {
    reproducible_matrix rep-mlp --hidden-dim 32 --latent-dim 4 --verify-replicas
    expect "$WORK/rep-mlp-np4.out" "replicas identical on 4 ranks"
    # The default mode at np 2 is another run (batches per rank): compare says where it differs.
    mpi 2 train --data "$SMALL" --epochs 2 --batch-size 64 --log-every 1 --hidden-dim 32 --latent-dim 4 \
        --run-dir "$WORK/rep-default" >/dev/null 2>&1
    if "$BINARY" compare "$WORK/rep-mlp-np1" "$WORK/rep-default" >"$WORK/rep-default.cmp"; then return 1; fi
    cat "$WORK/rep-default.cmp"
    expect "$WORK/rep-default.cmp" "checkpoints: step 16: tensor [a-z0-9_.]+ differs in [0-9]+ of [0-9]+ elements; the first is \["
    expect "$WORK/rep-default.cmp" "metrics: line 1 \(train, step 1\): [a-z_]+ is .* against "
    expect "$WORK/rep-default.cmp" "differ$"
}

reproducible_conv() { reproducible_matrix rep-conv --model conv --conv-channels 4,8 --latent-dim 3; }

reproducible_free_bits_accumulate() {
    reproducible_matrix rep-fb --hidden-dim 32 --latent-dim 4 --free-bits 0.2 --accumulate 2
    reproducible_matrix rep-fixed --hidden-dim 32 --latent-dim 4 --exact-reduction fixed-point --free-bits 0.1
}

# Stopped at np 2 at step 5 (mid-epoch) and resumed at np 1 and at np 4:
# the bytes of the uninterrupted np 1 run.
reproducible_resume() {
    local common=(--data "$SMALL" --epochs 2 --batch-size 64 --hidden-dim 32 --latent-dim 4 --reproducible)
    mpi 1 train "${common[@]}" --run-dir "$WORK/rep-ref" >/dev/null 2>&1
    local np
    for np in 1 4; do
        mpi 2 train "${common[@]}" --max-steps 5 --run-dir "$WORK/rep-resume$np" >/dev/null 2>&1
        mpi $np train --resume "$WORK/rep-resume$np" >"$WORK/rep-resume$np.out" 2>&1
        expect "$WORK/rep-resume$np.out" "step 5, epoch 1 \(5 of 16 steps done\); it was written by 2 ranks, this run has $np: with --reproducible it continues exactly where it stopped"
        "$BINARY" compare "$WORK/rep-ref" "$WORK/rep-resume$np" >"$WORK/rep-resume$np.cmp" || true
        cat "$WORK/rep-resume$np.cmp"
        # The checkpoints both hold are bitwise equal (the resumed run also kept step 5).
        expect "$WORK/rep-resume$np.cmp" "checkpoints: 2 steps in both \(16, 32\), .*bitwise equal"
        cmp "$WORK/rep-ref/checkpoints/step-00000032.safetensors" "$WORK/rep-resume$np/checkpoints/step-00000032.safetensors"
        echo "stopped at np 2, step 5; resumed at np $np: byte-identical at step 32"
    done
}

# An np outside the set, and options that do not combine, are refused before anything is written.
reproducible_errors() {
    local out="$WORK/rep-err.out"
    if mpi 3 train --data "$SMALL" --reproducible --run-dir "$WORK/rep-np3" >"$out" 2>&1; then return 1; fi
    cat "$out" | grep error
    expect "$out" "^vae-mpi: error: --reproducible cannot run on 3 ranks: the 8 micro-shards of each batch \(--micro-shards\) must split evenly over the ranks, a power of two of them \(--exact-reduction tree\); use np 1, 2, 4, 8, or another --micro-shards"
    [ "$(count_lines "$out" "error")" = 1 ]
    [ ! -e "$WORK/rep-np3" ]
    # With 6 micro-shards (fixed point), np 3 is in the set.
    mpi 3 train --data "$SMALL" --reproducible --exact-reduction fixed-point --micro-shards 6 --epochs 1 --batch-size 60 --hidden-dim 16 \
        --run-dir "$WORK/rep-np3-6" >"$out" 2>&1
    expect "$out" "reproducible at np 1, 2, 3, 6 \(fixed-point sums\)"
    if mpi 2 train --data "$SMALL" --reproducible --exact-reduction tree --micro-shards 6 --run-dir "$WORK/rep-no" >"$out" 2>&1; then return 1; fi
    expect "$out" "--micro-shards must be a power of two for the tree reduction \(got 6\)"
    if mpi 2 train --data "$SMALL" --reproducible --shard-optimizer --run-dir "$WORK/rep-no" >"$out" 2>&1; then return 1; fi
    expect "$out" "--shard-optimizer cannot be combined with the reproducible mode"
    if mpi 2 train --data "$SMALL" --micro-shards 4 --run-dir "$WORK/rep-no" >"$out" 2>&1; then return 1; fi
    expect "$out" "--micro-shards:? applies with --reproducible"
    if mpi 1 train --resume "$WORK/rep-np3-6" --no-reproducible >"$out" 2>&1; then return 1; fi
    expect "$out" "--reproducible:? cannot change when resuming"
    [ ! -e "$WORK/rep-no" ]
}
