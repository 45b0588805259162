# Scale (issue 16): mapped .npy memory per rank, HDF5 input, placement.
# Sourced by run.sh.

# Peak private memory (RssAnon) of each vae-mpi process and the peak sum of
# their proportional set sizes (PSS, a shared page counted once), polled
# while COMMAND runs: "ANON_MB_MAX PSS_SUM_MB".
peak_memory() {
    python3 - "$@" <<'PY'
import os, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=open(os.devnull, "w"), stderr=subprocess.STDOUT)
anon, pss_peak = {}, 0
while p.poll() is None:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not open(f"/proc/{pid}/comm").read().startswith("vae-mpi"): continue
            a = int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("RssAnon")).split()[1])
            s = int(next(l for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:")).split()[1])
        except (OSError, StopIteration): continue
        anon[pid] = max(anon.get(pid, 0), a); total += s
    pss_peak = max(pss_peak, total)
    time.sleep(0.05)
assert p.returncode == 0, p.returncode
print(max(anon.values()) // 1024, pss_peak // 1024)
PY
}

# write_uniform_npy PATH ROWS SEED: a ROWS × 784 float32 .npy of uniform
# values, written through a memory map 20,000 rows at a time.
write_uniform_npy() {
    python3 - "$@" <<'PY'
import sys
import numpy as np
path, rows, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 784))
rng = np.random.default_rng(seed)
for i in range(0, rows, 20000): x[i:i + 20000] = rng.random((min(20000, rows - i), 784), dtype=np.float32)
x.flush()
PY
}

mapped_npy_memory() {
    local d="$WORK/mapped" out="$WORK/mapped/out"
    mkdir -p "$d"
    # 120,000 × 784 float32: 376 MB.
    write_uniform_npy "$d/big.npy" 120000 0
    mpi 4 train --train-file "$d/big.npy" --test-fraction 0.01 --epochs 1 --max-steps 2 --run-dir "$d/r0" >"$out" 2>&1
    expect "$out" "data memory +[0-9.]+ MB private per rank at most \(shard and test set; the file is mapped, its pages shared by the ranks of a node\)"
    read -r anon pss < <(peak_memory mpirun $(mpirun_flags 4) -np 4 "$BINARY" train --train-file "$d/big.npy" \
        --test-fraction 0.01 --epochs 1 --max-steps 40 --run-dir "$d/r1")
    echo "peak RssAnon per rank ${anon} MB, peak sum of PSS ${pss} MB (data 376 MB)"
    # Before mapping: about 750 MB private per rank (the file and its floats) and 3 GB in all.
    [ "$anon" -lt 100 ] || { echo "a rank held ${anon} MB of private memory"; return 1; }
    [ "$pss" -lt $((376 * 3 / 2 + 4 * 60)) ] || { echo "the ranks held ${pss} MB in all"; return 1; }
    # The same run with the file read (not mapped) gives the same bytes.
    VAE_MPI_NO_MMAP=1 mpirun $(mpirun_flags 4) -x VAE_MPI_NO_MMAP -np 4 "$BINARY" train --train-file "$d/big.npy" \
        --test-fraction 0.01 --epochs 1 --max-steps 40 --run-dir "$d/r2" >"$out" 2>&1
    cmp "$d/r1/checkpoints/step-00000040.safetensors" "$d/r2/checkpoints/step-00000040.safetensors"
    rm -f "$d/big.npy"
}

hdf5_inputs() {
    local d="$WORK/h5" out="$WORK/h5/out"
    mkdir -p "$d"
    python3 - "$d" <<'PY'
import sys
import h5py
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(4)
x = (rng.random((240, 1, 8, 8)) < 0.3).astype(np.float32)
labels = rng.integers(0, 3, 240)
np.save(f"{d}/x.npy", x)
np.save(f"{d}/x-u8.npy", (x * 255).astype(np.uint8))
np.save(f"{d}/y.npy", labels)
np.save(f"{d}/x-levels.npy", (x[:, 0] * 3).astype(np.int16))
counts = rng.poisson(2.0, (240, 12)).astype(np.int32)
np.save(f"{d}/counts.npy", counts)
with h5py.File(f"{d}/data.h5", "w") as f:
    f["images"] = x                                                                       # contiguous float32 (N, C, H, W)
    f.create_dataset("sets/u8", data=(x * 255).astype(np.uint8), chunks=(16, 1, 8, 8), compression="gzip")
    f["sets/f64_hw"] = x[:, 0].astype(np.float64)                                         # (N, H, W) float64
    f["sets/flat"] = x.reshape(240, 64)                                                   # (N, D)
    f.create_dataset("sets/levels", data=(x[:, 0] * 3).astype(np.int16), chunks=(32, 8, 8))
    f.create_dataset("sets/counts", data=counts, chunks=(16, 12), compression="gzip")     # int32 counts
    f["labels"] = labels
    f["names"] = np.array([b"a", b"b"])
with h5py.File(f"{d}/bad.h5", "w") as f:
    f["short"] = np.zeros((3,), np.float32)
open(f"{d}/fake.h5", "wb").write(b"not an HDF5 file\n" * 10)
PY
    local common=(--test-fraction 0.1 --epochs 2 --batch-size 32 --hidden-dim 32 --latent-dim 2)
    mpi 2 train --train-file "$d/x.npy" --train-labels "$d/y.npy" --conditional "${common[@]}" --run-dir "$d/npy" >"$out" 2>&1
    local final="checkpoints/step-00000014.safetensors"
    for spec in "data.h5:/images" "data.h5:/sets/u8" "data.h5:/sets/f64_hw" "data.h5:/sets/flat"; do
        for np in 1 2; do
            local run="$d/run-$np-${spec//[:\/.]/_}"
            mpi $np train --train-file "$d/$spec" --train-labels "$d/data.h5:/labels" --conditional "${common[@]}" \
                --run-dir "$run" >"$out" 2>&1 || { cat "$out"; return 1; }
            expect "$out" "data .*\($d/$spec\).*HDF5"
            # Contiguous datasets are mapped in place; chunked, compressed and float64 ones from the cache.
            expect "$out" "the file is mapped"
            # np 1 and np 2 differ (other batches); np 2 must equal the .npy run's bytes.
            if [ $np = 2 ] && [ "$spec" != "data.h5:/sets/f64_hw" ] && [ "$spec" != "data.h5:/sets/flat" ]; then
                cmp "$d/npy/$final" "$run/$final"
            fi
        done
    done
    expect "$out" "vectors of 64 values|images of 1×8×8"
    # The file is mapped when contiguous: no private copy of the training set.
    mpi 2 train --train-file "$d/data.h5:/images" "${common[@]}" --run-dir "$d/mapped" >"$out" 2>&1
    expect "$out" "the file is mapped"
    # Integer levels, as for .npy.
    mpi 2 train --train-file "$d/data.h5:/sets/levels" --levels 4 --likelihood discretized-logistic "${common[@]}" \
        --run-dir "$d/levels" >"$out" 2>&1
    expect "$out" "the file is mapped"
    mpi 2 train --train-file "$d/x-levels.npy" --levels 4 --likelihood discretized-logistic "${common[@]}" \
        --run-dir "$d/levels-npy" >"$out" 2>&1
    cmp "$d/levels/$final" "$d/levels-npy/$final"
    # Integer datasets go through the cache too, converted (levels as bytes, counts as floats) and mapped.
    ls "$VAE_MPI_CACHE" | grep -q "^data.h5-_sets_levels\.[0-9a-f]*\.json$"
    local nb=(--likelihood negative-binomial --test-fraction 0.1 --epochs 2 --batch-size 32 --hidden-dim 16 --latent-dim 2)
    mpi 2 train --train-file "$d/data.h5:/sets/counts" "${nb[@]}" --run-dir "$d/counts" >"$out" 2>&1
    expect "$out" "int32 counts"
    expect "$out" "the file is mapped"
    mpi 2 train --train-file "$d/counts.npy" "${nb[@]}" --run-dir "$d/counts-npy" >"$out" 2>&1
    VAE_MPI_CACHE=off mpi 2 train --train-file "$d/data.h5:/sets/counts" "${nb[@]}" --run-dir "$d/counts-read" >"$out" 2>&1
    local last
    last=$(cd "$d/counts/checkpoints" && ls step-*.safetensors | tail -1)
    cmp "$d/counts/checkpoints/$last" "$d/counts-npy/checkpoints/$last"
    cmp "$d/counts/checkpoints/$last" "$d/counts-read/checkpoints/$last"
    # A level out of range is an error naming the value's index; no copy is left in the cache.
    local copies
    copies=$(ls "$VAE_MPI_CACHE" | grep -vc '\.lock$')
    if mpi 2 train --train-file "$d/data.h5:/sets/levels" --levels 3 --likelihood discretized-logistic "${common[@]}" \
        --run-dir "$d/levels3" >"$out" 2>&1; then return 1; fi
    expect "$out" "data.h5:/sets/levels: value 3 at index [0-9]+ is outside the 3 levels"
    [ "$(ls "$VAE_MPI_CACHE" | grep -vc '\.lock$')" = "$copies" ]
    [ ! -e "$d/levels3" ]
    echo "ok: HDF5 runs byte-identical to the .npy runs"
    ls "$VAE_MPI_CACHE" | grep -q "^data.h5-_sets_u8\.[0-9a-f]*\.json$"
    # Without the cache, a chunked dataset is read whole, with the same bytes.
    VAE_MPI_CACHE=off mpi 2 train --train-file "$d/data.h5:/sets/u8" --train-labels "$d/data.h5:/labels" --conditional \
        "${common[@]}" --run-dir "$d/u8-read" >"$out" 2>&1
    expect "$out" "MB private per rank at most \(shard and test set\)$"
    cmp "$d/npy/$final" "$d/u8-read/$final"
    # Errors name the file and the dataset; nothing is written.
    local cases=(
        "data.h5|is an HDF5 file: name the dataset too, as .*data.h5:/images"
        "data.h5:/nope|data.h5: has no /nope"
        "data.h5:/sets|/sets is a group, not a dataset"
        "data.h5:/sets/nope/x|data.h5: has no /sets/nope"
        "data.h5:/names|/names holds strings: samples are integers or floats"
        "data.h5:/sets/levels|data.h5:/sets/levels: integer samples \(int16\) need their number of levels"
        "bad.h5:/short|bad.h5:/short: bad dimensions: samples need 2 \(N×D\), 3 \(N×H×W\) or 4 \(N×C×H×W\) dimensions, found \[3\]"
        "fake.h5:/x|fake.h5: is not an HDF5 file"
        "missing.h5:/x|missing.h5: no such file"
    )
    local i=0 c
    for c in "${cases[@]}"; do
        i=$((i + 1))
        if mpi 2 train --train-file "$d/${c%%|*}" "${common[@]}" --run-dir "$d/bad$i" >"$out" 2>&1; then return 1; fi
        expect "$out" "${c#*|}"
        [ ! -e "$d/bad$i" ]
    done
    if mpi 2 train --train-file "$d/x.npy" --train-labels "$d/data.h5:/images" "${common[@]}" --run-dir "$d/badl" >"$out" 2>&1; then return 1; fi
    expect "$out" "labels must be integers, found floats"
}

placement() {
    local out="$WORK/placement.out" run="$WORK/placement"
    [ "$(cores)" -ge 2 ] || { echo "skipped: one core"; return 0; }
    # mpirun binds a rank to one core at np ≤ 2: two threads there are refused, with the fix.
    if timeout 120 mpirun $(mpirun_flags 1) -np 1 "$BINARY" train --data "$SMALL" --threads 2 --epochs 1 \
        --run-dir "$run" >"$out" 2>&1; then return 1; fi
    expect "$out" "--threads 2: rank 0 may run only on core [0-9]+ .*Launch with .mpirun --map-by slot:PE=2 --bind-to core."
    [ ! -e "$run" ]
    timeout 120 mpirun $(mpirun_flags 1) -np 1 "$BINARY" train --data "$SMALL" --threads 2 --allow-shared-cores \
        --epochs 1 --run-dir "$run" >"$out" 2>&1
    expect "$out" "2 kernel threads each; rank 0 on core [0-9]+$"
    timeout 120 mpirun $(mpirun_flags 1 "" 2) -np 1 "$BINARY" train --data "$SMALL" --threads 2 --epochs 1 \
        --run-dir "$run-2" >"$out" 2>&1
    expect "$out" "rank 0 on cores 0-1"
}

# Block shuffling for data streamed from disk: a run stopped mid-epoch and
# resumed equals the uninterrupted run. (Training under a memory limit is
# measured in the README, not here: how fast it runs depends on the disk.)
block_shuffle_resume() {
    local d="$WORK/blocks" out="$WORK/blocks/out"
    mkdir -p "$d"
    write_uniform_npy "$d/data.npy" 60000 1
    local common=(--train-file "$d/data.npy" --test-fraction 0.01 --shuffle-block 256 --hidden-dim 64 --latent-dim 4
                  --batch-size 200 --epochs 2)
    mpi 2 train "${common[@]}" --run-dir "$d/full" >"$out" 2>&1
    expect "$out" "shuffled in blocks of 256 samples, windows of 16 blocks"
    local last="checkpoints/$(cat "$d/full/checkpoints/latest").safetensors"
    mpi 2 train "${common[@]}" --max-steps 250 --run-dir "$d/part" >"$out" 2>&1
    mpi 2 train --resume "$d/part" >"$out" 2>&1
    cmp "$d/full/$last" "$d/part/$last"
    echo "ok: stopped at step 250 of 594 (mid-epoch), resumed: byte-identical"
    if mpi 2 train --resume "$d/part" --shuffle-block 512 --epochs 3 >"$out" 2>&1; then return 1; fi
    expect "$out" "--shuffle-block: cannot change when resuming"
    rm -f "$d/data.npy"
}

# HDF5 files that crash libhdf5 1.10 itself (found by the fuzzer, kept in
# Fuzz/library-crashes/hdf5): vae-mpi ends with an error naming the file
# (status 2), not a segmentation fault, and writes nothing; at np 2 too.
hdf5_library_crashes() {
    local f out="$WORK/h5crash.out" status n=0
    for f in "$VAE_MPI_ROOT"/Fuzz/library-crashes/hdf5/crash-*; do
        cp "$f" "$WORK/crash.h5"
        rm -rf "$WORK/h5crash-run"
        status=0
        timeout 60 "$BINARY" train --train-file "$WORK/crash.h5:/images" --max-steps 1 --run-dir "$WORK/h5crash-run" \
            >"$out" 2>&1 || status=$?
        [ "$status" = 2 ] || { echo "$(basename "$f"): status $status"; cat "$out"; return 1; }
        expect "$out" "vae-mpi: error: $WORK/crash.h5: libhdf5 crashed reading it \(SIGSEGV inside the library\): the file is damaged"
        [ ! -e "$WORK/h5crash-run" ] || { echo "a run directory was made"; return 1; }
        n=$((n + 1))
    done
    [ "$n" -ge 1 ] || { echo "no library crashes to replay"; return 1; }
    if mpi 2 train --train-file "$WORK/crash.h5:/images" --max-steps 1 --run-dir "$WORK/h5crash-run" >"$out" 2>&1; then
        return 1
    fi
    expect "$out" "vae-mpi: error \(rank [01]\): $WORK/crash.h5: libhdf5 crashed reading it"
    echo "$n damaged files: an error each, status 2, nothing written; np 2 as well"
}
