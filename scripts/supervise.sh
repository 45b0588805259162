# shellcheck shell=bash
# Sourced by scripts/train.sh and scripts/cluster-test.sh: runs mpirun so
# that a job whose ranks have ended also ends when mpirun does not return.
#
# When a node becomes unreachable, every rank notices (the stall watchdog,
# --collective-timeout) and exits, but mpirun waits for that node's daemon
# until TCP gives up, which can take many minutes; signalling mpirun then
# can crash it (a segfault in PMIx_Finalize). So each rank records its exit
# status as it exits (VAE_MPI_EXIT_RECORD=PREFIX: the file PREFIX.RANK, in a
# folder under VAE_MPI_EXIT_DIR, default ./runs, which must be on a file
# system every node sees, as the binary is), and when a rank has recorded
# its exit and mpirun is still there
# VAE_MPI_MPIRUN_GRACE seconds later (default 30), mpirun is killed
# (SIGKILL, with what it started on this node: its process group), and the
# job's status is the first non-zero status recorded. A daemon left on the
# lost node ends when it finds mpirun gone.
#
#   start_mpirun mpirun ARGS...   # in the background; sets MPIRUN_PID
#   wait_mpirun                   # sets MPIRUN_STATUS, and MPIRUN_KILLED=1 if it had to kill mpirun

start_mpirun() {
    local dir=${VAE_MPI_EXIT_DIR:-runs}
    mkdir -p "$dir" && EXIT_RECORDS=$(cd "$dir" && mktemp -d "$PWD/.exit-records.XXXXXX") || return 1
    export VAE_MPI_EXIT_RECORD=$EXIT_RECORDS/rank
    # Its own process group (setsid), so that ending it also ends what it started here (its launch agents).
    setsid "$1" -x VAE_MPI_EXIT_RECORD "${@:2}" &
    MPIRUN_PID=$!
}

wait_mpirun() {
    local grace=${VAE_MPI_MPIRUN_GRACE:-30} ended="" record status
    MPIRUN_KILLED=0
    while kill -0 "$MPIRUN_PID" 2>/dev/null; do
        if [ -z "$ended" ] && compgen -G "$EXIT_RECORDS/rank.*" >/dev/null; then ended=$SECONDS; fi
        if [ -n "$ended" ] && [ $((SECONDS - ended)) -ge "$grace" ]; then
            printf '%s\n' "mpirun has not returned ${grace} s after its ranks began to exit (a node it cannot reach?): killing it" >&2
            # The shell's own "Killed" notice of the job is not news here: its stderr is muted until the job is reaped.
            exec {SUPERVISE_STDERR}>&2 2>/dev/null
            kill -KILL -- "-$MPIRUN_PID" || kill -KILL "$MPIRUN_PID"
            MPIRUN_KILLED=1
        fi
        sleep 1
    done
    # `wait` returns early when a trapped signal arrives: wait again until the job itself is gone.
    while true; do
        wait "$MPIRUN_PID" && MPIRUN_STATUS=0 || MPIRUN_STATUS=$?
        kill -0 "$MPIRUN_PID" 2>/dev/null || break
    done
    if [ "$MPIRUN_KILLED" = 1 ]; then exec 2>&"$SUPERVISE_STDERR" {SUPERVISE_STDERR}>&-; fi
    if [ "$MPIRUN_KILLED" = 1 ]; then
        MPIRUN_STATUS=0
        for record in "$EXIT_RECORDS"/rank.*; do
            status=$(head -c 8 "$record" 2>/dev/null | tr -dc 0-9)
            if [ -n "$status" ] && [ "$status" != 0 ]; then MPIRUN_STATUS=$status; break; fi
        done
    fi
    rm -rf "$EXIT_RECORDS"
}
