#!/usr/bin/env bash
# Throughput of the two models on Fashion-MNIST at global batch 128, at np 1
# and 2 (and 4 when the machine has 4 cores), in each precision, with the
# per-step breakdown from `vae-mpi train --profile` (forward+backward split
# into kernels, layout work and elementwise work; the reduction; Adam;
# other). With PyTorch installed, PyTorch's configurations run in the same
# rounds (`torch_vae.py --threads <cores>`: eager, --compile, --compile --bf16
# for the MLP; eager and --bf16 for the conv model). Every round runs each
# configuration once, in turn, so that the machine's drift (±20 % from minute
# to minute here) hits all of them alike; the table shows medians.
#
# The machine's limit is measured in the same rounds: `vae-mpi gemm-rate`
# (a 2048³ matrix product with oneDNN on every core at once, fp32 and bf16).
# Each model's GEMM-only bound is that rate, for the cores the run used,
# over its kernels' work per sample (from --profile); the table prints
# samples/s as a share of it, and step time over kernel time.
#
#   scripts/bench.sh                                   # both models, fp32 and bf16, 3 rounds
#   MODELS=mlp PRECISION=bf16 REPEATS=5 scripts/bench.sh
#   RANKS="1 2" STEPS=1000 TORCH=0 scripts/bench.sh    # TORCH=0: without PyTorch
#   EXTRA="--shard-optimizer" MODELS=mlp scripts/bench.sh
#   LIKELIHOODS="bernoulli discretized-logistic beta-binomial" MODELS=conv TORCH=0 scripts/bench.sh   # their cost
#   TORCH_VAE=/path/to/torch_vae.py scripts/bench.sh   # default: ../shared/bench/torch_vae.py
#   MODELS=multvae scripts/bench.sh                    # Mult-VAE (issue 20), below
#
# MODELS=multvae: the Mult-VAE recipe of the README (I → 600 → 200, tanh,
# L2-normalised input with dropout 0.5, multinomial likelihood, batch 500)
# on a planted MovieLens-like log (scripts/dev/make_planted_interactions.py:
# 5,000 users, 3,000 items, 500 held out; needs numpy), against the PyTorch
# port of the authors' model (scripts/dev/torch_multvae.py: eager,
# --compile, --bf16, --compile --bf16) in the same rounds; samples are users.
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

read -r -a models <<<"${MODELS:-mlp conv}"
read -r -a precisions <<<"${PRECISION:-fp32 bf16}"
read -r -a likelihoods <<<"${LIKELIHOODS:-bernoulli}"
repeats=${REPEATS:-3}
if [ -n "${RANKS:-}" ]; then
    read -r -a ranks <<<"$RANKS"
else
    ranks=(1 2)
    [ "$(cores)" -ge 4 ] && ranks+=(4)
fi
torch_vae=${TORCH_VAE:-$VAE_MPI_ROOT/../shared/bench/torch_vae.py}
use_torch=
if [ "${TORCH:-1}" != 0 ] && { [ -f "$torch_vae" ] || [ "${models[*]}" = multvae ]; } && python3 -c "import torch" 2>/dev/null; then
    use_torch=1
elif [ "${TORCH:-1}" != 0 ]; then
    say "PyTorch comparison skipped: $( [ -f "$torch_vae" ] && echo "torch is not installed" || echo "no $torch_vae")"
fi
work=$(mktemp -d /tmp/vae-mpi-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

steps_for() { case $1 in conv) echo "${STEPS:-100}" ;; multvae) echo "${STEPS:-60}" ;; *) echo "${STEPS:-400}" ;; esac; }
torch_configs() {
    case $1 in
        conv) printf '%s\n' "eager" "--bf16" ;;
        multvae) printf '%s\n' "eager" "--compile" "--bf16" "--compile --bf16" ;;
        *) printf '%s\n' "eager" "--compile" "--compile --bf16" ;;
    esac
}
# The likelihoods a model runs with: LIKELIHOODS for the image models; Mult-VAE's own.
likelihoods_for() { if [ "$1" = multvae ]; then echo multinomial; else echo "${likelihoods[*]}"; fi; }
# vae-mpi's options for a model and likelihood.
model_args() {
    if [ "$1" = multvae ]; then
        echo "--interactions $work/ratings.csv --user-column userId --item-column movieId --rating-column rating" \
            "--min-rating 4 --heldout-users 500 --likelihood multinomial --input-normalization l2 --input-dropout 0.5" \
            "--hidden-dims 600 --activation tanh --latent-dim 200 --beta 0.2 --kl-warmup-steps 40000 --batch-size 500"
    else
        echo "--model $1 --likelihood $2"
    fi
}
if [[ " ${models[*]} " == *" multvae "* ]]; then
    python3 "$VAE_MPI_ROOT/scripts/dev/make_planted_interactions.py" "$work/ratings.csv" >/dev/null \
        || die "MODELS=multvae needs numpy for scripts/dev/make_planted_interactions.py"
fi

say "benchmark: models ${models[*]}, precisions ${precisions[*]}, ranks ${ranks[*]}, $repeats rounds, $(cores) cores${use_torch:+, with PyTorch}"
for ((r = 1; r <= repeats; r++)); do
    mapfile -t flags < <(mpirun_flags "$(cores)")
    timeout -k 10 300 mpirun "${flags[@]}" --timeout 280 -np "$(cores)" "$BINARY" gemm-rate --seconds 1 \
        --precision "$(IFS=,; echo "${precisions[*]}")" >"$work/gemm-$r" 2>&1 || die "gemm-rate failed: $(tail -5 "$work/gemm-$r")"
    grep '^GEMM ' "$work/gemm-$r" | sed 's/^GEMM //' >>"$work/gemm.jsonl"
    for model in "${models[@]}"; do
        steps=$(steps_for "$model")
        for likelihood in $(likelihoods_for "$model"); do
        for precision in "${precisions[@]}"; do
            for np in "${ranks[@]}"; do
                mapfile -t flags < <(mpirun_flags "$np")
                out="$work/out-$model-$likelihood-$precision-$np-$r"
                read -r -a args <<<"$(model_args "$model" "$likelihood")"
                timeout -k 10 1800 mpirun "${flags[@]}" --timeout 1780 -np "$np" "$BINARY" train "${args[@]}" \
                    --precision "$precision" --max-steps "$steps" --log-every "$steps" --profile \
                    --run-dir "$work/run" ${EXTRA:-} >"$out" 2>&1 || die "run failed: $(tail -5 "$out")"
                grep '^PROFILE ' "$out" | sed "s/^PROFILE {/{\"model\": \"$model\", \"likelihood\": \"$likelihood\", \"precision\": \"$precision\", /" \
                    >>"$work/profiles.jsonl"
                rm -rf "$work/run"
            done
        done
        done
        if [ -n "$use_torch" ]; then
            while read -r config; do
                args=()
                [ "$config" != eager ] && read -r -a args <<<"$config"
                out="$work/torch-$model-${config// /}-$r"
                if [ "$model" = multvae ]; then
                    timeout -k 10 1800 python3 "$VAE_MPI_ROOT/scripts/dev/torch_multvae.py" --interactions "$work/ratings.csv" \
                        --heldout-users 500 --threads "$(cores)" --epochs 6 "${args[@]}" >"$out" 2>&1 \
                        || die "PyTorch run failed: $(tail -5 "$out")"
                else
                    timeout -k 10 1800 python3 "$torch_vae" --model "$model" --threads "$(cores)" --max-steps "$steps" \
                        "${args[@]}" >"$out" 2>&1 || die "PyTorch run failed: $(tail -5 "$out")"
                fi
                grep '^RESULT ' "$out" | sed "s/^RESULT {/{\"config\": \"$config\", /" >>"$work/torch.jsonl"
            done < <(torch_configs "$model")
        fi
    done
done

python3 - "$work/profiles.jsonl" "$work/torch.jsonl" "$work/gemm.jsonl" "$(cores)" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
torch = [json.loads(l) for l in open(sys.argv[2])] if os.path.exists(sys.argv[2]) else []
gemm_runs = [json.loads(l) for l in open(sys.argv[3])]
cores = int(sys.argv[4])
gemm = {p: statistics.median(g["gflops"] for g in gemm_runs if g["precision"] == p)
        for p in dict.fromkeys(g["precision"] for g in gemm_runs)}
print("machine limit (vae-mpi gemm-rate, 2048³ oneDNN matmul on " + f"{cores} cores, medians of {len(gemm_runs) // max(len(gemm), 1)} rounds): "
      + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in gemm.items()))
print()
keys = ["forward_backward_ms", "gemm_ms", "layout_ms", "elementwise_ms", "allreduce_ms", "optimizer_ms",
        "other_ms", "step_ms", "samples_per_s", "gemm_mflop_per_sample"]
several = len({r["likelihood"] for r in rows}) > 1
label = lambda r: r["model"] + (" " + r["likelihood"] if several else "")
print(f"{'model':>{30 if several else 7}} {'prec':>4} {'ranks':>5} {'samples/s':>10} {'speedup':>8} {'step ms':>8} {'fwd+bwd':>8} {'kernels':>7} "
      f"{'layout':>7} {'eltwise':>7} {'reduce':>7} {'adam':>6} {'other':>6} {'step/krn':>8} {'bound':>8} {'share':>6}   runs (samples/s)")
best_torch = {}
for model in dict.fromkeys(label(r) for r in rows):
    for precision in dict.fromkeys(r["precision"] for r in rows):
        by = {}
        for r in rows:
            if label(r) == model and r["precision"] == precision:
                by.setdefault(r["ranks"], []).append(r)
        med = {np: {k: statistics.median(r[k] for r in rs) for k in keys} for np, rs in by.items()}
        base = med.get(1, {}).get("samples_per_s")
        for np in sorted(med):
            m = med[np]
            speed = f"{m['samples_per_s'] / base:.2f}x" if base else "-"
            runs = " ".join(f"{r['samples_per_s']:.0f}" for r in by[np])
            # The GEMM-only bound: the machine's rate for the cores this run used, over the kernel work per sample.
            bound = gemm[precision] * 1e9 * min(np, cores) / cores / (m["gemm_mflop_per_sample"] * 1e6) \
                if precision in gemm and m["gemm_mflop_per_sample"] > 0 else None
            print(f"{model:>{30 if several else 7}} {precision:>4} {np:>5} {m['samples_per_s']:>10.0f} {speed:>8} {m['step_ms']:>8.3f} "
                  f"{m['forward_backward_ms']:>8.3f} {m['gemm_ms']:>7.3f} {m['layout_ms']:>7.3f} {m['elementwise_ms']:>7.3f} "
                  f"{m['allreduce_ms']:>7.3f} {m['optimizer_ms']:>6.3f} {m['other_ms']:>6.3f} {m['step_ms'] / m['gemm_ms']:>8.2f} "
                  + (f"{bound:>8.0f} {m['samples_per_s'] / bound:>6.1%}" if bound else f"{'-':>8} {'-':>6}") + f"   {runs}")
print("(medians; ms per step and rank; kernels = GEMM and convolution kernels; layout = reorders, bf16 rounding,\n"
      " im2col; eltwise = the rest of forward+backward; reduce = the step's collectives, waiting for slower ranks\n"
      " included; other = batch, noise, gradient completion; speedup = samples/s over np=1 of that model and precision;\n"
      " step/krn = step time over kernel time; bound = the GEMM-only bound in samples/s (the machine's rate on the\n"
      " run's cores over the kernels' MFLOP per sample); share = samples/s as a share of it)")
for model in dict.fromkeys(r["model"] for r in rows):
    work = statistics.median(r["gemm_mflop_per_sample"] for r in rows if r["model"] == model)
    print(f"  {model}: {work:.2f} MFLOP of kernel work per sample (forward and backward)")
if torch:
    print()
    print(f"{'model':>7} {'PyTorch configuration':>24} {'threads':>7} {'samples/s':>10}   runs")
    for model in dict.fromkeys(t["model"] for t in torch):
        for config in dict.fromkeys(t["config"] for t in torch if t["model"] == model):
            runs = [t["epochs"][0]["samples_per_s"] for t in torch if t["model"] == model and t["config"] == config]
            m = statistics.median(runs)
            kind = "bf16" if "bf16" in config else "fp32"
            best_torch[(model, kind)] = max(best_torch.get((model, kind), 0), m)
            best_torch[(model, "any")] = max(best_torch.get((model, "any"), 0), m)
            print(f"{model:>7} {config:>24} {torch[0]['threads']:>7} {m:>10.0f}   " + " ".join(f"{v:.0f}" for v in runs))
    print()
    print("vae-mpi against PyTorch's best configuration of the same model (medians of the same rounds):")
    for model in dict.fromkeys(r["model"] for r in rows):
        for precision in dict.fromkeys(r["precision"] for r in rows):
            # Against the model's usual likelihood (PyTorch's scripts have only that one).
            usual = "multinomial" if model == "multvae" else "bernoulli"
            for np in sorted({r["ranks"] for r in rows if r["model"] == model and r["precision"] == precision
                              and r["likelihood"] == usual}):
                ours = statistics.median(r["samples_per_s"] for r in rows
                                         if r["model"] == model and r["precision"] == precision and r["ranks"] == np
                                         and r["likelihood"] == usual)
                against = [("best fp32", best_torch.get((model, "fp32"))), ("best overall", best_torch.get((model, "any")))]
                print(f"  {model} {precision} np={np}: {ours:.0f} samples/s = "
                      + ", ".join(f"{ours / v:.2f}x PyTorch's {name}" for name, v in against if v))
PY
