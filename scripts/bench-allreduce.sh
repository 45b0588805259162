#!/usr/bin/env bash
# The reduction's cost model, for clusters: times the allreduce (and the
# sharded optimizer's reduce-scatter + allgather) against message size and
# rank count with `vae-mpi check-mpi` — 1 to 4 ranks on this machine's shared
# memory, and 2 and 4 ranks over TCP between the multi-host test's network
# namespaces — fits T(n) = a + b·n per configuration, and from the fitted and
# the assumed network terms projects the default model's step time and
# scaling efficiency at 8, 16 and 64 nodes. A benchmark that prints figures,
# never a timed test.
#
#   scripts/bench-allreduce.sh                 # needs root for the namespaces (else shared memory only)
#   STEP_MS=2.9 SAMPLE_MS=0.0 scripts/bench-allreduce.sh   # compute model for the projection
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

work=$(mktemp -d /tmp/vae-mpi-allreduce.XXXXXX)
trap 'rm -rf "$work"' EXIT
sizes=${SIZES:-1,1000,10000,100000,652824,2000000}
for np in 1 2 3 4; do
    mapfile -t flags < <(mpirun_flags "$np")
    timeout -k 10 600 mpirun "${flags[@]}" --timeout 580 -np "$np" "$BINARY" check-mpi --sizes "$sizes" --repeats 30 \
        | sed "s/^/shm np$np: /" >>"$work/timings.txt" || die "check-mpi failed at np $np"
done
if [ "$(id -u)" = 0 ]; then
    VAE_MPI_CLUSTER_BENCH="$work/tcp.txt" VAE_MPI_CLUSTER_SIZES="$sizes" bash "$VAE_MPI_ROOT/scripts/cluster-test.sh" \
        >"$work/cluster.log" 2>&1 || say "the TCP measurement failed (see $work/cluster.log)"
    [ -f "$work/tcp.txt" ] && cat "$work/tcp.txt" >>"$work/timings.txt"
fi

python3 - "$work/timings.txt" "$(cores)" "${STEP_MS:-2.89}" "${SAMPLE_MS:-0.0258}" <<'PY'
import math, re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) np(\d+):\s+(allreduce|reduce-scatter \+ allgather)\s+(\d+) floats\s+([\d.]+) µs", line)
    if m:
        rows.setdefault((m[1], int(m[2]), m[3]), {})[int(m[4])] = float(m[5]) * 1e-6
cores, step64, per_sample = int(sys.argv[2]), float(sys.argv[3]) * 1e-3, float(sys.argv[4]) * 1e-3
P = 652_824  # the default model's parameters

print("Measured: median time per call (slowest rank) in µs; latency = T(1 float); the link speed from the")
print("slope between the two largest sizes, as a ring moves 2(p−1)/p of the buffer through each rank's link.")
sizes = sorted({n for v in rows.values() for n in v})
print(f"{'':>5} {'ranks':>5} {'operation':>27} " + " ".join(f"{n:>9}" for n in sizes) + f" {'latency':>8} {'link GB/s':>9}")
measured = {}
for (transport, p, op), t in sorted(rows.items()):
    line = f"{transport:>5} {p:>5} {op:>27} " + " ".join(f"{t.get(n, float('nan')) * 1e6:9.1f}" for n in sizes)
    big = sorted(t)[-2:]
    if p > 1 and len(big) == 2 and t[big[1]] > t[big[0]]:
        link = 2 * (p - 1) / p * 4 * (big[1] - big[0]) / (t[big[1]] - t[big[0]]) / 1e9
        measured[(transport, p, op)] = (t[sizes[0]], link)
        line += f" {t[sizes[0]] * 1e6:8.1f} {link:9.2f}"
    print(line)
print(f"(shm: this machine's shared memory, {cores} cores{', np 3 and 4 oversubscribed' if cores < 4 else ''}; "
      "tcp: veth pairs between network namespaces on this machine)")

# Projection: ring allreduce between nodes, T = 2⌈log2 p⌉·α + 2(p−1)/p · bytes / link, with
# 2 ranks per node (this machine's), ranks ordered by node (one ring edge per NIC and direction).
networks = {"10 GbE (TCP)": (30e-6, 1.1e9), "100 Gb/s (RDMA)": (3e-6, 11e9)}
if ("tcp", 2, "allreduce") in measured:
    a, link = measured[("tcp", 2, "allreduce")]
    networks["this machine's veth TCP"] = (a / 2, link * 1e9)
def compute(b):  # per-rank step time without the reduction, from the profile at 64 samples per rank
    return step64 + (b - 64) * per_sample
print()
print(f"Projected default model (MLP, {P} parameters, {4 * P / 1e6:.2f} MB fp32 gradient), 2 ranks per node,")
print(f"compute per rank {step64 * 1e3:.2f} ms at 64 samples + {per_sample * 1e3:.4f} ms per sample (bf16, measured here):")
print(f"{'network':>24} {'nodes':>5} {'scaling':>7} {'batch/rank':>10} {'compute ms':>10} {'reduce ms':>9} {'step ms':>8} {'efficiency':>10} {'samples/s':>10}  bf16 gradients: reduce ms, efficiency")
for name, (alpha, link) in networks.items():
    for nodes in (8, 16, 64):
        p = 2 * nodes
        for scaling, b in (("weak", 64), ("strong", 128 / p)):
            def reduce(bytes_):
                return 2 * math.ceil(math.log2(p)) * alpha + 2 * (p - 1) / p * bytes_ / link
            c, r, r16 = compute(b), reduce(4 * P), reduce(2 * P)
            print(f"{name:>24} {nodes:>5} {scaling:>7} {b:>10.1f} {c * 1e3:10.2f} {r * 1e3:9.2f} {(c + r) * 1e3:8.2f} "
                  f"{c / (c + r):10.0%} {b * p / (c + r):10.0f}  {r16 * 1e3:8.2f} {c / (c + r16):6.0%}")
print("(efficiency = compute / (compute + reduction): no overlap, which does not pay on this machine;")
print(" assumed networks: α per message and link speed as stated; latency term 2⌈log2 p⌉α, Rabenseifner/ring)")
PY
