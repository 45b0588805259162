#!/usr/bin/env bash
# The main job: sets up (scripts/setup.sh), then trains the default VAE on
# Fashion-MNIST under mpirun with one rank per core.
#
#   scripts/train.sh                       # defaults: 10 epochs, writes runs/<timestamp>
#   NP=4 scripts/train.sh --epochs 20      # ranks from NP; arguments go to `vae-mpi train`
#   HOSTFILE=hostfiles/cluster NP=16 scripts/train.sh
#   RESTARTS=3 scripts/train.sh            # relaunch from the latest checkpoint after a failure
#   THREADS=2 NP=1 scripts/train.sh        # 2 kernel threads per rank, each rank bound to 2 cores
#
# RESTARTS=N (as torchrun's --max-restarts): when the job fails for a reason
# other than a user error (exit status 2, or 64 for bad options) — a rank
# killed or crashed, MPI failing, the stall watchdog (4) — it is relaunched
# from the run's latest checkpoint, or from scratch if it had none, up to N
# times, saying why each time. SIGTERM or SIGINT to this script asks the
# ranks to stop gracefully (SIGUSR1 to mpirun, which forwards it): they
# finish the step, checkpoint, and the script exits with 75. When a node is
# lost, its ranks' peers end (the stall watchdog) but mpirun may wait for
# the lost node's daemon for as long as TCP takes to give up: the script
# kills mpirun VAE_MPI_MPIRUN_GRACE seconds (default 30) after the ranks on
# this node have ended, then restarts as for any failure (supervise.sh).
source "$(dirname "$0")/common.sh"
ensure_packages
ensure_swift
build_release

# THREADS=T: T kernel threads per rank, each rank given T cores (default: 1, a rank per core).
threads=${THREADS:-1}
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer (got $threads)"
np=${NP:-$(( $(cores) / threads > 0 ? $(cores) / threads : 1 ))}
restarts=${RESTARTS:-0}
mapfile -t flags < <(mpirun_flags "$np" "${HOSTFILE:-}" "$threads")
cd "$VAE_MPI_ROOT"

# The run directory, so that a restart can find its checkpoint.
args=("$@")
[ "$threads" -gt 1 ] && args=(--threads "$threads" "${args[@]}")
run_dir=""
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --run-dir|--resume) run_dir=${args[i + 1]:-} ;;
        --run-dir=*|--resume=*) run_dir=${args[i]#*=} ;;
    esac
done
if [ -z "$run_dir" ]; then
    run_dir="runs/$(date -u +%Y%m%d-%H%M%S)"
    args=(--run-dir "$run_dir" "${args[@]}")
fi

# shellcheck source=supervise.sh
source "$(dirname "$0")/supervise.sh"
stopping=0
MPIRUN_PID=""
on_stop() {
    stopping=1
    [ -n "$MPIRUN_PID" ] && kill -USR1 "$MPIRUN_PID" 2>/dev/null
}
trap on_stop TERM INT

attempt=0
command=(train "${args[@]}")
while true; do
    say "mpirun ${flags[*]} -np $np $BINARY ${command[*]}"
    # mpirun, ended if it outlives its ranks (a lost node: see supervise.sh).
    start_mpirun mpirun "${flags[@]}" -np "$np" "$BINARY" "${command[@]}"
    wait_mpirun
    status=$MPIRUN_STATUS
    MPIRUN_PID=""
    case $status in
        0) exit 0 ;;
        2|64) say "the job failed with a user error (status $status): not restarting"; exit "$status" ;;
    esac
    if [ "$stopping" = 1 ]; then
        say "stopped by a signal (status $status); resume with: $0 --resume $run_dir"
        exit 75
    fi
    if [ "$attempt" -ge "$restarts" ]; then
        [ "$restarts" -gt 0 ] && say "the job failed (status $status) after $restarts restart(s): giving up"
        exit "$status"
    fi
    attempt=$((attempt + 1))
    reason="status $status"
    case $status in
        3) reason="a rank failed (status 3)" ;;
        4) reason="the stall watchdog ended a stalled job (status 4)" ;;
        75) reason="a rank was asked to stop (status 75)" ;;
        137|143) reason="a rank was killed (status $status)" ;;
    esac
    if [ -e "$run_dir/checkpoints/latest" ]; then
        say "restart $attempt of $restarts: $reason; resuming from $run_dir/checkpoints/$(cat "$run_dir/checkpoints/latest")"
        command=(train --resume "$run_dir" "${args[@]}")
    else
        say "restart $attempt of $restarts: $reason; $run_dir has no checkpoint yet, starting it over"
        command=(train "${args[@]}")
    fi
done
