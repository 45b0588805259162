# Performance paths (issue 17) that change how a step runs: they must give the
# same bits as the plain path, resume exactly and leave nothing behind.
# Sourced by run.sh.

# The shared-memory gradient reduction (the default on one host) against MPI's
# allreduce: byte-identical at np 2 (a + b either way); at np 3 (uneven slices)
# an interrupted and resumed run is byte-identical to an uninterrupted one; no
# shared-memory object is left in /dev/shm.
shared_memory_reduction() {
    local d="$WORK/shm" out="$WORK/shm/out"
    mkdir -p "$d"
    local before
    before=$(ls /dev/shm | grep -c '^vae-mpi-' || true)
    local common=(--data "$SMALL" --batch-size 64 --hidden-dim 32 --latent-dim 4 --lr 3e-3 --epochs 2 --log-every 4)
    mpi 2 train "${common[@]}" --run-dir "$d/shared" >"$out" 2>&1
    expect "$out" "reduction +shared memory \(each rank sums and updates 1/2 of the parameters\)"
    VAE_MPI_SHARED_MEMORY=0 mpi 2 train "${common[@]}" --run-dir "$d/mpi" >"$out" 2>&1
    expect "$out" "reduction +MPI \(allreduce; shared memory turned off by VAE_MPI_SHARED_MEMORY=0 on ranks 0, 1\)"
    local last="checkpoints/$(cat "$d/shared/checkpoints/latest").safetensors"
    cmp "$d/shared/$last" "$d/mpi/$last"
    cmp <(grep '"type": "train"' "$d/shared/metrics.jsonl") <(grep '"type": "train"' "$d/mpi/metrics.jsonl")
    echo "ok: np 2 shared memory and MPI allreduce byte-identical"
    mpi 3 train "${common[@]}" --run-dir "$d/full3" --verify-replicas >"$out" 2>&1
    expect "$out" "1/3 of the parameters"
    mpi 3 train "${common[@]}" --max-steps 7 --run-dir "$d/part3" >"$out" 2>&1
    mpi 3 train --resume "$d/part3" >"$out" 2>&1
    last="checkpoints/$(cat "$d/full3/checkpoints/latest").safetensors"
    cmp "$d/full3/$last" "$d/part3/$last"
    echo "ok: np 3 stopped at step 7, resumed: byte-identical; replicas verified"
    local after
    after=$(ls /dev/shm | grep -c '^vae-mpi-' || true)
    [ "$after" = "$before" ] || { echo "left in /dev/shm: $(ls /dev/shm | grep '^vae-mpi-')"; return 1; }
}

# A /dev/shm too small for the segments (a private 100 KB tmpfs in a mount
# namespace): the run says why and trains through MPI's allreduce, giving the
# bytes of a run with shared memory turned off. Skipped where mount namespaces
# are not permitted.
shared_memory_full() {
    local d="$WORK/shm-full" out="$WORK/shm-full/out"
    mkdir -p "$d"
    if ! unshare -m true 2>/dev/null; then
        echo "skipped: mount namespaces are not permitted here"
        return 0
    fi
    local common=(--data "$SMALL" --batch-size 64 --hidden-dim 32 --latent-dim 4 --epochs 1 --log-every 4)
    local flags
    mapfile -t flags < <(mpirun_flags 2)
    timeout -k 10 $((MPI_TIMEOUT + 30)) unshare -m sh -c 'mount -t tmpfs -o size=100k tmpfs /dev/shm && exec "$@"' sh \
        mpirun "${flags[@]}" --timeout "$MPI_TIMEOUT" -np 2 "$BINARY" train "${common[@]}" --run-dir "$d/full" >"$out" 2>&1
    expect "$out" "reduction +MPI \(allreduce; no shared memory: reserving [0-9]+ bytes in /dev/shm: No space left on device\)"
    VAE_MPI_SHARED_MEMORY=0 mpi 2 train "${common[@]}" --run-dir "$d/mpi" >"$out" 2>&1
    local last="checkpoints/$(cat "$d/mpi/checkpoints/latest").safetensors"
    cmp "$d/full/$last" "$d/mpi/$last"
    echo "ok: a full /dev/shm falls back to MPI's allreduce, same bytes"
}

# vae-mpi gemm-rate: one GEMM line per precision with the sum over the ranks,
# positive and equal to the ranks' figures added up; a bad option is refused.
gemm_rate() {
    local out="$WORK/gemm-rate.out"
    mpi 2 gemm-rate --size 256 --seconds 0.2 >"$out" 2>&1
    cat "$out"
    python3 - "$out" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
lines = [json.loads(l[5:]) for l in text.splitlines() if l.startswith("GEMM ")]
assert [l["precision"] for l in lines] == ["fp32", "bf16"], lines
for l in lines:
    assert l["ranks"] == 2 and l["size"] == 256 and l["gflops"] > 1, l
    ranks = [float(x) for x in re.search(l["precision"] + r": [0-9.]+ GFLOP/s \(ranks: ([0-9., ]+)\)", text).group(1).split(", ")]
    assert abs(sum(ranks) - l["gflops"]) < 0.2, (ranks, l)
print("ok:", [(l["precision"], l["gflops"]) for l in lines])
PY
    if "$BINARY" gemm-rate --size 9000 >"$out" 2>&1; then return 1; fi
    expect "$out" "--size must be at most 8192 \(got 9000\)"
}

# A NaN in one rank's gradient (VAE_MPI_NAN_GRADIENT_AT, in the last rank's
# slice) stops every rank at that step, whichever path checks it: through
# shared memory the Adam pass of the slice's owner finds it in the sum, at
# np 2 and at np 3 (where neither the spoiling rank nor rank 0 owns it);
# through MPI the writing rank's flag rides in the allreduce. No checkpoint
# of that step is written.
non_finite_gradient() {
    local d="$WORK/nan-gradient" out np path np_path
    for np_path in 2:shared 3:shared 2:mpi; do
        np=${np_path%:*} path=${np_path#*:}
        out="$d-$np-$path.out"
        rm -rf "$d"
        if VAE_MPI_SHARED_MEMORY=$([ "$path" = mpi ] && echo 0 || echo 1) VAE_MPI_NAN_GRADIENT_AT=1:7 \
            mpi "$np" train --data "$SMALL" --run-dir "$d" --max-steps 20 --checkpoint-every 5 --hidden-dim 16 \
            --batch-size 48 >"$out" 2>&1; then
            echo "np $np, $path: the run went on"; return 1
        fi
        if [ "$path" = mpi ]; then expect "$out" "reduction +MPI"; else expect "$out" "reduction +shared memory"; fi
        expect "$out" "vae-mpi: error: non-finite loss or gradient at step 7; training stopped on every rank"
        [ "$(cat "$d/checkpoints/latest")" = step-00000005 ] || { echo "latest: $(cat "$d/checkpoints/latest")"; return 1; }
        echo "np $np, $path: stopped at step 7, latest checkpoint step 5"
    done
}
