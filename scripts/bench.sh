#!/usr/bin/env bash
# Throughput of the default model (MLP VAE 784-400-20, batch 128, Fashion-MNIST)
# at np 1 and 2 (and 4 when the machine has 4 cores), with the per-step
# breakdown from `vae-mpi train --profile`. Runs alternate between world
# sizes and repeat; the table shows medians (timings on shared machines are
# noisy; compare figures from the same invocation).
#
#   scripts/bench.sh                 # 400 steps per run, 3 repeats
#   STEPS=1000 REPEATS=5 scripts/bench.sh
#   RANKS="1 2 4" scripts/bench.sh   # choose world sizes
#   EXTRA="--hidden-dim 1024" scripts/bench.sh
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

steps=${STEPS:-400}
repeats=${REPEATS:-3}
if [ -n "${RANKS:-}" ]; then
    read -r -a ranks <<<"$RANKS"
else
    ranks=(1 2)
    [ "$(cores)" -ge 4 ] && ranks+=(4)
fi
work=$(mktemp -d /tmp/vae-mpi-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

say "vae-mpi benchmark: $steps steps per run, $repeats repeats, ranks ${ranks[*]}, $(cores) cores"
for ((r = 1; r <= repeats; r++)); do
    for np in "${ranks[@]}"; do
        mapfile -t flags < <(mpirun_flags "$np")
        timeout -k 10 900 mpirun "${flags[@]}" --timeout 880 -np "$np" "$BINARY" train --max-steps "$steps" \
            --log-every "$steps" --profile --run-dir "$work/run-$np-$r" ${EXTRA:-} >"$work/out-$np-$r" 2>&1 ||
            die "run failed: $(tail -5 "$work/out-$np-$r")"
        grep '^PROFILE ' "$work/out-$np-$r" | sed 's/^PROFILE //' >>"$work/profiles.jsonl"
        rm -rf "$work/run-$np-$r"
    done
done

python3 - "$work/profiles.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["ranks"], []).append(r)
keys = ["forward_backward_ms", "gemm_ms", "allreduce_ms", "optimizer_ms", "other_ms", "step_ms", "samples_per_s"]
med = {np: {k: statistics.median(r[k] for r in rs) for k in keys} for np, rs in by.items()}
print(f"{'ranks':>5} {'samples/s':>10} {'speedup':>8} {'step ms':>8} {'fwd+bwd':>8} {'(GEMM)':>8} "
      f"{'allreduce':>9} {'optimizer':>9} {'other':>7} {'step/GEMM':>9}   runs (samples/s)")
base = med.get(1, {}).get("samples_per_s")
for np in sorted(med):
    m = med[np]
    speed = f"{m['samples_per_s'] / base:.2f}x" if base else "-"
    runs = " ".join(f"{r['samples_per_s']:.0f}" for r in by[np])
    print(f"{np:>5} {m['samples_per_s']:>10.0f} {speed:>8} {m['step_ms']:>8.3f} {m['forward_backward_ms']:>8.3f} "
          f"{m['gemm_ms']:>8.3f} {m['allreduce_ms']:>9.3f} {m['optimizer_ms']:>9.3f} {m['other_ms']:>7.3f} "
          f"{m['step_ms'] / m['gemm_ms']:>9.2f}   {runs}")
print("(medians; ms per step per rank; other = batch assembly, noise, gradient packing; "
      "speedup = samples/s over np=1)")
PY
