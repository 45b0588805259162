#!/usr/bin/env bash
# Throughput of the two models on Fashion-MNIST at batch 128, at np 1 and 2
# (and 4 when the machine has 4 cores), with the per-step breakdown from
# `vae-mpi train --profile`: forward+backward split into GEMM, im2col/col2im
# and elementwise work, allreduce, optimizer, other. Runs alternate between
# world sizes and repeat; the table shows medians (timings on shared machines
# are noisy; compare figures from the same invocation).
#
#   scripts/bench.sh                       # mlp (400 steps) and conv (100 steps), 3 repeats
#   MODELS=mlp STEPS=1000 REPEATS=5 scripts/bench.sh
#   RANKS="1 2 4" scripts/bench.sh
#   EXTRA="--hidden-dim 1024" MODELS=mlp scripts/bench.sh
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

read -r -a models <<<"${MODELS:-mlp conv}"
repeats=${REPEATS:-3}
if [ -n "${RANKS:-}" ]; then
    read -r -a ranks <<<"$RANKS"
else
    ranks=(1 2)
    [ "$(cores)" -ge 4 ] && ranks+=(4)
fi
work=$(mktemp -d /tmp/vae-mpi-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

for model in "${models[@]}"; do
    if [ "$model" = conv ]; then steps=${STEPS:-100}; else steps=${STEPS:-400}; fi
    say "vae-mpi benchmark: model $model, $steps steps per run, $repeats repeats, ranks ${ranks[*]}, $(cores) cores"
    for ((r = 1; r <= repeats; r++)); do
        for np in "${ranks[@]}"; do
            mapfile -t flags < <(mpirun_flags "$np")
            out="$work/out-$model-$np-$r"
            timeout -k 10 1800 mpirun "${flags[@]}" --timeout 1780 -np "$np" "$BINARY" train --model "$model" \
                --max-steps "$steps" --log-every "$steps" --profile --run-dir "$work/run" ${EXTRA:-} >"$out" 2>&1 ||
                die "run failed: $(tail -5 "$out")"
            grep '^PROFILE ' "$out" | sed "s/^PROFILE {/{\"model\": \"$model\", /" >>"$work/profiles.jsonl"
            rm -rf "$work/run"
        done
    done
done

python3 - "$work/profiles.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["forward_backward_ms", "gemm_ms", "im2col_ms", "elementwise_ms", "allreduce_ms", "optimizer_ms",
        "other_ms", "step_ms", "samples_per_s"]
print(f"{'model':>5} {'ranks':>5} {'samples/s':>10} {'speedup':>8} {'step ms':>8} {'fwd+bwd':>8} {'GEMM':>7} "
      f"{'im2col':>7} {'eltwise':>7} {'allred':>7} {'adam':>6} {'other':>6} {'step/GEMM':>9}   runs (samples/s)")
for model in dict.fromkeys(r["model"] for r in rows):
    by = {}
    for r in rows:
        if r["model"] == model:
            by.setdefault(r["ranks"], []).append(r)
    med = {np: {k: statistics.median(r[k] for r in rs) for k in keys} for np, rs in by.items()}
    base = med.get(1, {}).get("samples_per_s")
    for np in sorted(med):
        m = med[np]
        speed = f"{m['samples_per_s'] / base:.2f}x" if base else "-"
        runs = " ".join(f"{r['samples_per_s']:.0f}" for r in by[np])
        print(f"{model:>5} {np:>5} {m['samples_per_s']:>10.0f} {speed:>8} {m['step_ms']:>8.3f} "
              f"{m['forward_backward_ms']:>8.3f} {m['gemm_ms']:>7.3f} {m['im2col_ms']:>7.3f} {m['elementwise_ms']:>7.3f} "
              f"{m['allreduce_ms']:>7.3f} {m['optimizer_ms']:>6.3f} {m['other_ms']:>6.3f} {m['step_ms'] / m['gemm_ms']:>9.2f}   {runs}")
print("(medians; ms per step and rank; eltwise = forward+backward minus GEMM and im2col/col2im;\n"
      " other = batch assembly, noise, gradient packing; speedup = samples/s over np=1 of that model)")
PY
