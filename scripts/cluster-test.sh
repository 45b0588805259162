#!/usr/bin/env bash
# Multi-host test of vae-mpi on one machine: Linux network namespaces stand in
# for hosts, so the real multi-host path runs (mpirun's rsh launcher, one
# orted per host, MPI over TCP between hosts, per-host /tmp).
#
#   sudo bash scripts/cluster-test.sh          (needs the release binary built)
#
# Topology (every interface and address lives in namespaces this script
# creates; the root namespace gets none):
#
#   ns vaempi-sw     bridge br0 (the "switch"), one veth port p-<host> per host
#   ns vaempi-head   10.78.0.10  runs mpirun, no ranks
#   ns vaempi-node1  10.78.0.11  ranks 0, 1
#   ns vaempi-node2  10.78.0.12  ranks 2, 3
#
# scripts/netns-rsh is mpirun's "ssh": it enters a host's namespace with its
# own hostname and its own /tmp ($STATE/<host>/tmp), so hosts do not share
# /tmp but share the rest of the filesystem (binary and data, like an NFS
# home). Scenarios: training with --verify-replicas (the run directory lands
# on node1's /tmp only), resuming it (only rank 0 can read the checkpoint),
# and a rank on node2 failing. Everything is torn down on exit, also on
# failure or Ctrl-C, and the machine's network/mount state is compared with
# a snapshot taken before.
#
# Skips (exit 0, "cluster test skipped: ...") only when not root or when
# `ip netns add` is not permitted. Overridable: VAE_MPI_BINARY,
# VAE_MPI_NETNS_PREFIX (vaempi-), VAE_MPI_NETNS_NET (10.78.0),
# VAE_MPI_NETNS_STATE (/run/vae-mpi-netns).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BINARY=${VAE_MPI_BINARY:-$ROOT/.build/release/vae-mpi}
HELPERS=$ROOT/Tests/MultiRank/helpers.py
RSH=$HERE/netns-rsh
PREFIX=${VAE_MPI_NETNS_PREFIX:-vaempi-}
NET=${VAE_MPI_NETNS_NET:-10.78.0}
STATE=${VAE_MPI_NETNS_STATE:-/run/vae-mpi-netns}
export VAE_MPI_NETNS_STATE=$STATE    # read by netns-rsh
HEAD=head
NODES="node1 node2"
HOSTS="$HEAD $NODES"
SW=${PREFIX}sw
MPI_TIMEOUT=120                      # mpirun --timeout
OUTER_TIMEOUT=150                    # timeout -k 10 around mpirun
DATA=$STATE/data                     # shared by all hosts (not under /tmp)

say() { printf '%s\n' "$*"; }
skip() { say "cluster test skipped: $*"; exit 0; }
die() { say "cluster test: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- preconditions --------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
for tool in ip unshare mpirun python3 timeout flock mountpoint; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$BINARY" ] || die "no binary at $BINARY: build it first (swift build -c release)"
[ -x "$RSH" ] || die "$RSH is missing or not executable"
[ -f "$HELPERS" ] || die "$HELPERS not found"
# The state dir must be visible on every host (so not under /tmp), and we rm -rf it.
case "$STATE" in /run/?*) ;; *) die "VAE_MPI_NETNS_STATE must be a directory under /run" ;; esac
case "$PREFIX" in *[!a-z0-9-]*) die "VAE_MPI_NETNS_PREFIX may hold only a-z, 0-9 and -" ;; esac
# One run at a time (a second one would reuse the same namespaces). The lock
# is not passed on to mpirun, so after a kill -9 of this script the next run
# can clean up at once.
exec 9<"$0"
flock -n 9 || die "another cluster-test.sh is running"

# --- teardown -------------------------------------------------------------------
JOB=          # pid of the running `timeout ... mpirun` job, if any
TORN_DOWN=
RUN_NETNS=    # "created": /run/netns did not exist; "mounted": it was not a mount point
ETC_NETNS=    # "created": /etc/netns did not exist

our_namespaces() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case "$ns" in "$SW" | "${PREFIX}probe" | "$PREFIX$HEAD" | "${PREFIX}node1" | "${PREFIX}node2") echo "$ns" ;; esac
    done
}

teardown() {
    [ -z "$TORN_DOWN" ] || return 0
    TORN_DOWN=1
    set +e
    local ns pids i mode=
    if [ -n "$JOB" ]; then
        # An interrupted job: timeout passes SIGTERM to mpirun, which ends its
        # orteds and ranks in order (so they are reaped, not orphaned).
        kill -TERM "$JOB" 2>/dev/null
        for i in $(seq 30); do
            pids=
            for ns in $(our_namespaces); do pids+=$(ip netns pids "$ns" 2>/dev/null); done
            [ -z "$pids" ] && break
            sleep 0.1
        done
    fi
    # Kill (by pid) whatever still runs in our namespaces: mpirun, orted, ranks.
    for ns in $(our_namespaces); do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    done
    [ -n "$JOB" ] && wait "$JOB" 2>/dev/null
    JOB=
    for ns in $(our_namespaces); do
        for i in $(seq 20); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
        ip netns del "$ns" || say "cluster test: warning: could not delete namespace $ns" >&2
    done
    for h in $HOSTS; do rm -rf "/etc/netns/$PREFIX$h"; done
    # What this run (or, for leftovers, the killed one) found before it
    # started: the variables, else the copies in the state dir.
    [ -f "$STATE/etc-netns" ] && ETC_NETNS=$(cat "$STATE/etc-netns")
    [ -f "$STATE/run-netns" ] && RUN_NETNS=$(cat "$STATE/run-netns")
    [ "$ETC_NETNS" = created ] && rmdir /etc/netns 2>/dev/null
    mode=$RUN_NETNS
    rm -rf "$STATE"
    # `ip netns add` made /run/netns a (shared) bind mount of itself, creating
    # it if needed: undo what we caused, if nobody else's namespace is there.
    if [ -n "$mode" ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
        for i in 1 2 3; do mountpoint -q /run/netns || break; umount /run/netns; done
        [ "$mode" = created ] && rmdir /run/netns
    fi
    set -e
    return 0
}

# Leftovers of a run that was killed with -9: remove them first.
if [ -d "$STATE" ] || [ -n "$(our_namespaces)" ]; then
    say "cluster test: removing leftovers of an earlier run ($STATE, $(our_namespaces | tr '\n' ' '))"
    teardown
    TORN_DOWN=
fi

snapshot() {
    ip -br link; ip -br addr; ip route; ip netns list
    ls -A /run/netns /etc/netns 2>&1
    ls -d "$STATE" 2>&1
    awk '{print $5}' /proc/self/mountinfo | sort
    md5sum /etc/hosts /etc/nsswitch.conf /etc/resolv.conf 2>&1
}
BEFORE=$(snapshot)

trap 'teardown' EXIT
trap 'say "cluster test: interrupted, tearing down"; exit 130' INT TERM HUP

# --- topology -------------------------------------------------------------------
T0=$(now)
if [ ! -d /run/netns ]; then RUN_NETNS=created
elif ! mountpoint -q /run/netns; then RUN_NETNS=mounted; fi
[ -d /etc/netns ] || ETC_NETNS=created

# Capability probe: the one other reason to skip.
if ! err=$(ip netns add "${PREFIX}probe" 2>&1); then
    skip "'ip netns add' is not permitted here ($(echo $err))"
fi
ip netns del "${PREFIX}probe"
mkdir -p "$STATE"
# Every host has its own /tmp, and the checkout may live under /tmp (CI
# clones): the hosts run copies of the binary and the agent from the state
# directory, which all of them see.
mkdir -p "$STATE/bin"
cp "$BINARY" "$STATE/bin/vae-mpi"
cp "$RSH" "$STATE/bin/netns-rsh"
BINARY=$STATE/bin/vae-mpi
RSH=$STATE/bin/netns-rsh
# For the cleanup of a run killed with -9.
echo "$RUN_NETNS" > "$STATE/run-netns"
echo "$ETC_NETNS" > "$STATE/etc-netns"

octet() { case "$1" in "$HEAD") echo 10 ;; node*) echo $((10 + ${1#node})) ;; esac; }

: > "$STATE/hosts.map"                # "name address namespace", read by netns-rsh
printf '127.0.0.1\tlocalhost\n' > "$STATE/etc-hosts"
for h in $HOSTS; do
    printf '%s.%s\t%s\n' "$NET" "$(octet "$h")" "$h" >> "$STATE/etc-hosts"
    printf '%s %s.%s %s\n' "$h" "$NET" "$(octet "$h")" "$PREFIX$h" >> "$STATE/hosts.map"
done

ip netns add "$SW"
ip -n "$SW" link add br0 type bridge stp_state 0
ip -n "$SW" link set br0 up
for h in $HOSTS; do
    ns=$PREFIX$h
    ip netns add "$ns"
    ip link add "p-$h" netns "$SW" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "p-$h" master br0 up
    # No IPv6 chatter: the switch-port byte counters then measure (almost) only MPI.
    ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$NET.$(octet "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    # `ip netns exec` binds /etc/netns/<ns>/* over /etc: names resolve from our hosts file only.
    mkdir -p "/etc/netns/$ns"
    cp "$STATE/etc-hosts" "/etc/netns/$ns/hosts"
    sed 's/^hosts:.*/hosts: files/' /etc/nsswitch.conf > "/etc/netns/$ns/nsswitch.conf"
    echo "# vae-mpi cluster test: no DNS inside test namespaces" > "/etc/netns/$ns/resolv.conf"
    mkdir -p "$STATE/$h/tmp"
    chmod 1777 "$STATE/$h/tmp"         # the host's private /tmp
done

# Bounded wait for L3 reachability: a connect() to a closed port on a reachable
# host is refused at once; an unreachable one would time out.
for h in $NODES; do
    ok=
    for _ in $(seq 10); do
        out=$(ip netns exec "$PREFIX$HEAD" timeout 1 bash -c "exec 3<>/dev/tcp/$NET.$(octet "$h")/9" 2>&1 || true)
        case "$out" in *"Connection refused"*) ok=1; break ;; esac
        sleep 0.3
    done
    [ -n "$ok" ] || die "no connectivity head -> $h ($NET.$(octet "$h")): $out"
done
for n in $NODES; do echo "$n slots=2"; done > "$STATE/hostfile"
say "cluster test: hosts up in $(since "$T0") s: $(awk '{printf "%s=%s ", $1, $2}' "$STATE/hosts.map")(namespaces ${PREFIX}*, state $STATE)"

python3 "$HELPERS" make-dataset "$DATA" 600 100 12 12
say "cluster test: dataset $DATA: $(ls "$DATA" | tr '\n' ' ')"

# --- running vae-mpi ----------------------------------------------------------------
MPIRUN_OPTS=(--allow-run-as-root --hostfile "$STATE/hostfile"
    --mca plm_rsh_agent "$RSH"
    --mca pml ob1 --mca btl tcp,self --mca mpi_yield_when_idle 1
    --mca btl_tcp_if_include "$NET.0/24" --mca oob_tcp_if_include "$NET.0/24"
    --map-by slot --bind-to none --report-bindings
    --timeout "$MPI_TIMEOUT")

# "sent received" bytes of host $1's switch port (rx = from the host).
port_bytes() {
    ip netns exec "$SW" cat "/sys/class/net/p-$1/statistics/rx_bytes" "/sys/class/net/p-$1/statistics/tx_bytes" | tr '\n' ' '
}

# run_mpi NAME [mpirun options...] -- VAE-MPI ARGS...: runs mpirun on the head
# host; output in $STATE/NAME.out, exit code in RC, seconds in ELAPSED, bytes
# per host in SENT[h] / RECEIVED[h], total bytes through the switch in CROSSED.
declare -A SENT RECEIVED B0
quote() {  # words as /bin/sh reads them back, quoting only where needed
    local a out=()
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=("$a"); else out+=("$(printf '%q' "$a")"); fi
    done
    echo "${out[*]}"
}
run_mpi() {
    local name=$1 extra=() h env=
    shift
    while [ "$1" != -- ]; do extra+=("$1"); shift; done
    shift
    OUT=$STATE/$name.out
    [ -n "${VAE_MPI_FAIL_AT:-}" ] && env="VAE_MPI_FAIL_AT=$VAE_MPI_FAIL_AT "
    local mpirun_cmd
    mpirun_cmd="mpirun $(quote "${MPIRUN_OPTS[@]}" "${extra[@]}" "$BINARY" "$@")"
    say ""
    say "=== $name"
    say "[head]\$ $env$mpirun_cmd"
    for h in $HOSTS; do B0[$h]=$(port_bytes "$h"); done
    : > "$STATE/rsh.log"
    local t0; t0=$(now)
    timeout -k 10 "$OUTER_TIMEOUT" "$RSH" --keep-env "$HEAD" "cd $(printf '%q' "$STATE") && exec $mpirun_cmd" \
        < /dev/null > "$OUT" 2>&1 9<&- &
    JOB=$!
    RC=0
    wait "$JOB" || RC=$?
    JOB=
    ELAPSED=$(since "$t0")
    CROSSED=0
    for h in $HOSTS; do
        # shellcheck disable=SC2086
        set -- ${B0[$h]} $(port_bytes "$h")
        SENT[$h]=$(($3 - $1)); RECEIVED[$h]=$(($4 - $2))
        CROSSED=$((CROSSED + SENT[$h]))
    done
    sed 's/^/    | /' "$OUT"
    say "    mpirun exit code $RC after $ELAPSED s"
    say "    netns-rsh logins: $(sed -n 's/.* host=\([^ ]*\) .*/\1/p' "$STATE/rsh.log" | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')"
    say "    MPI traffic: $CROSSED bytes crossed the switch ($(for h in $HOSTS; do
        printf '%s sent %d, received %d; ' "$h" "${SENT[$h]}" "${RECEIVED[$h]}"; done | sed 's/; $//'))"
}

PASSED=0
FAILED=0
FAILURES=()
check() {  # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then
        PASSED=$((PASSED + 1)); say "  ok    $what"
    else
        FAILED=$((FAILED + 1)); FAILURES+=("$what"); say "  FAIL  $what"
    fi
}
has() { grep -qF -- "$1" "$OUT"; }
# --report-bindings: "[node1:PID] MCW rank 0 is not bound ..." per rank: ranks 0, 1
# on node1 and 2, 3 on node2.
two_per_node() {
    local r host
    for r in 0 1 2 3; do
        host=$(sed -n "s/^\[\([^:]*\):[0-9]*\] MCW rank $r .*/\1/p" "$OUT")
        [ "$host" = "$([ $r -lt 2 ] && echo node1 || echo node2)" ] || { say "    rank $r on '$host'"; return 1; }
    done
}
node1_run=$STATE/node1/tmp/run
run_on_node1_only() {
    [ -f "$node1_run/checkpoints/latest" ] && [ -f "$node1_run/metrics.jsonl" ] && [ -f "$node1_run/config.json" ] &&
        [ ! -e "$STATE/node2/tmp/run" ] && [ ! -e "$STATE/$HEAD/tmp/run" ]
}
node_traffic() {  # node_traffic HOST MIN_BYTES: both directions of HOST's cable
    [ "${SENT[$1]}" -ge "$2" ] && [ "${RECEIVED[$1]}" -ge "$2" ]
}
# The model has ~10k parameters (40 kB); every step allreduces them.
MIN_NODE_BYTES=200000

TRAIN=(train --data "$DATA" --run-dir /tmp/run --epochs 2 --batch-size 64 --hidden-dim 32 --latent-dim 4
    --verify-replicas --log-every 5)

# VAE_MPI_CLUSTER_BENCH=FILE: instead of the tests, time the collectives over
# TCP between the hosts (`vae-mpi check-mpi`: 2 ranks on 2 hosts, then 4 on 2)
# into FILE, for scripts/bench-allreduce.sh.
run_bench() {
    local sizes=${VAE_MPI_CLUSTER_SIZES:-1,1000,10000,100000,652824,2000000} np map
    : > "$VAE_MPI_CLUSTER_BENCH"
    for np in 2 4; do
        map=(--map-by node)
        [ "$np" = 4 ] && map=(--map-by slot)
        run_mpi "bench-np$np" -np "$np" "${map[@]}" -- check-mpi --sizes "$sizes" --repeats 20
        sed "s/^/tcp np$np: /" "$OUT" >> "$VAE_MPI_CLUSTER_BENCH"
        check "bench np $np: mpirun exit code 0" test "$RC" = 0
    done
}

lost_node() {
    local cmd down
    OUT=$STATE/lost-node.out
    cmd="source $(printf '%q' "$HERE/supervise.sh") && start_mpirun mpirun $(quote "${MPIRUN_OPTS[@]}" -np 4 "$BINARY" \
        train --data "$DATA" --run-dir /tmp/run-lost --epochs 1000 --batch-size 64 --hidden-dim 32 --latent-dim 4 \
        --log-every 5 --collective-timeout 10) && wait_mpirun; echo \"supervised mpirun: status \$MPIRUN_STATUS\"; exit \$MPIRUN_STATUS"
    say ""
    say "=== lost-node"
    say "[head]\$ VAE_MPI_EXIT_DIR=$STATE VAE_MPI_MPIRUN_GRACE=5 bash -c '$cmd'"
    VAE_MPI_EXIT_DIR=$STATE VAE_MPI_MPIRUN_GRACE=5 timeout -k 10 "$OUTER_TIMEOUT" "$RSH" --keep-env "$HEAD" \
        "cd $(printf '%q' "$STATE") && exec bash -c $(printf '%q' "$cmd")" < /dev/null > "$OUT" 2>&1 9<&- &
    JOB=$!
    for _ in $(seq 300); do grep -q "step 20/" "$OUT" && break; sleep 0.1; done
    ip -n "$SW" link set "p-node2" down
    down=$(now)
    RC=0
    wait "$JOB" || RC=$?
    JOB=
    ELAPSED=$(since "$down")
    ip -n "$SW" link set "p-node2" up
    sed 's/^/    | /' "$OUT"
    say "    ended with status $RC, $ELAPSED s after node2's link went down"
    check "lost node: training had started before the link went down" has "step 20/"
    check "lost node: a rank's stall watchdog reported the stall" grep -qE "stalled: rank [0-9] on node[12] has waited 1[0-9] s in" "$OUT"
    check "lost node: the supervisor ended mpirun" has "mpirun has not returned 5 s after its ranks began to exit"
    check "lost node: status 4, the stall watchdog's ($RC)" test "$RC" = 4
    check "lost node: ended within 40 s of the link going down ($ELAPSED s; watchdog 10 s, grace 5 s)" \
        awk -v e="$ELAPSED" 'BEGIN { exit !(e < 40) }'
    check "lost node: no process left on any host" no_leftovers
    check "lost node: no exit records left" bash -c "! compgen -G '$STATE/.exit-records.*' >/dev/null"

    # The lost run resumes, link back up, to step $stop, and gives the bytes of a run no one disturbed.
    local stop=60 latest
    latest=$(cat "$STATE/node1/tmp/run-lost/checkpoints/latest" 2>/dev/null || echo none)
    run_mpi lost-node-resume -np 4 -- train --resume /tmp/run-lost --max-steps $stop
    check "lost node: the resume from $latest (4 ranks, 2 nodes) exit code 0" test "$RC" = 0
    run_mpi lost-node-undisturbed -np 4 -- train --data "$DATA" --run-dir /tmp/run-calm --epochs 1000 --batch-size 64 \
        --hidden-dim 32 --latent-dim 4 --log-every 5 --collective-timeout 10 --max-steps $stop
    check "lost node: the undisturbed run exit code 0" test "$RC" = 0
    OUT=$STATE/lost-node-compare.out
    "$BINARY" compare "$STATE/node1/tmp/run-lost" "$STATE/node1/tmp/run-calm" > "$OUT" 2>&1
    sed 's/^/    | /' "$OUT"
    check "lost node: resumed to step $stop, bitwise equal to the undisturbed run (vae-mpi compare)" \
        has "are bitwise equal"
}

run_tests() {
    # 1. Training across two hosts.
    run_mpi train -np 4 -- "${TRAIN[@]}"
    check "train: mpirun exit code 0" test "$RC" = 0
    check "train: 4 ranks mapped 2 per node (ranks 0, 1 on node1; 2, 3 on node2)" two_per_node
    check "train: \"replicas identical on 4 ranks\"" has "replicas identical on 4 ranks"
    check "train: the reduction goes through MPI (ranks on several nodes), not shared memory" \
        has "MPI (allreduce; ranks on several nodes)"
    check "train: run dir in node1's private /tmp only (checkpoints/latest, metrics.jsonl, config.json; none on node2/head)" \
        run_on_node1_only
    check "train: MPI traffic crossed node2's cable (>= $MIN_NODE_BYTES B each way)" node_traffic node2 "$MIN_NODE_BYTES"
    latest_before=$(cat "$node1_run/checkpoints/latest" 2>/dev/null || echo none)

    # 2. Resuming: only rank 0 (node1) can read /tmp/run; it broadcasts the checkpoint.
    run_mpi resume -np 4 -- train --resume /tmp/run --epochs 3
    latest_after=$(cat "$node1_run/checkpoints/latest" 2>/dev/null || echo none)
    check "resume: mpirun exit code 0" test "$RC" = 0
    check "resume: 4 ranks mapped 2 per node" two_per_node
    check "resume: \"resuming from\"" has "resuming from"
    newer_checkpoint_on_node1_only() {
        [ "$latest_after" != "$latest_before" ] && [ "$latest_after" != none ] && [ ! -e "$STATE/node2/tmp/run" ]
    }
    check "resume: a newer checkpoint on node1 ($latest_before -> $latest_after), still nothing on node2" \
        newer_checkpoint_on_node1_only

    # 3. A rank on node2 fails: mpirun must end the whole job promptly.
    export VAE_MPI_FAIL_AT=3:4
    run_mpi failure -np 4 -x VAE_MPI_FAIL_AT -- train --data "$DATA" --run-dir /tmp/run-fail --epochs 2 --batch-size 64 \
        --hidden-dim 32 --latent-dim 4 --log-every 5
    unset VAE_MPI_FAIL_AT
    check "failure: mpirun exit code non-zero ($RC)" test "$RC" != 0
    check "failure: ended within 30 s ($ELAPSED s)" awk -v e="$ELAPSED" 'BEGIN { exit !(e < 30) }'
    check "failure: \"vae-mpi: error (rank 3): injected failure at step 4\"" \
        has "vae-mpi: error (rank 3): injected failure at step 4"
    no_leftovers() {
        local h i
        for i in $(seq 50); do
            leftover=
            for h in $HOSTS; do leftover+=$(ip netns pids "$PREFIX$h" 2>/dev/null | tr '\n' ' '); done
            [ -z "$leftover" ] && return 0
            sleep 0.1
        done
        say "    still running in the host namespaces: $leftover"
        return 1
    }
    check "failure: no process left on any host" no_leftovers

    # 5. node2 lost mid-run (its cable unplugged, as a dead switch port or a powered-off node): every
    #    rank's stall watchdog ends it (--collective-timeout 10), and mpirun, which would wait for
    #    node2's daemon until the link came back, is ended by the supervisor train.sh runs it under
    #    (scripts/supervise.sh), VAE_MPI_MPIRUN_GRACE seconds after the ranks' exit records appear;
    #    resumed with the link back, it gives the bytes of an undisturbed run.
    lost_node

    # 4. --reproducible: 4 ranks on two hosts over TCP give the bytes of one process on this machine.
    local repro=(train --data "$DATA" --epochs 2 --batch-size 64 --hidden-dim 32 --latent-dim 4 --log-every 1
        --reproducible --free-bits 0.1)
    run_mpi reproducible -np 4 -- "${repro[@]}" --run-dir /tmp/run-repro
    check "reproducible: mpirun exit code 0" test "$RC" = 0
    rm -rf "$STATE/repro-np1"
    "$BINARY" "${repro[@]}" --run-dir "$STATE/repro-np1" > "$STATE/repro-np1.out" 2>&1
    check "reproducible: one process, exit code 0" test $? = 0
    OUT=$STATE/repro-compare.out
    "$BINARY" compare "$node1_run-repro" "$STATE/repro-np1" > "$OUT" 2>&1
    sed 's/^/    | /' "$OUT"
    check "reproducible: 4 ranks on 2 hosts and 1 process are bitwise equal (vae-mpi compare)" has "are bitwise equal"
}

if [ -n "${VAE_MPI_CLUSTER_BENCH:-}" ]; then run_bench; else run_tests; fi

# --- teardown and machine state ---------------------------------------------------
teardown
AFTER=$(snapshot)
if [ "$BEFORE" = "$AFTER" ]; then
    check "teardown: machine state identical to before (links, addresses, routes, namespaces, mounts, /etc)" true
else
    diff <(echo "$BEFORE") <(echo "$AFTER") | sed 's/^/    /' || true
    check "teardown: machine state identical to before (diff above)" false
fi

say ""
say "cluster test: $PASSED passed, $FAILED failed ($(since "$T0") s)"
for f in ${FAILURES[@]+"${FAILURES[@]}"}; do say "  failed: $f"; done
[ "$FAILED" = 0 ] || exit 1
