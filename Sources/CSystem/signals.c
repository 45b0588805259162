#include "system_control.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal = 0;
static int announce_stop = 0;

static void on_stop_signal(int number) {
    if (stop_signal != 0) {
        static const char now[] = "vae-mpi: second signal: exiting now\n";
        if (announce_stop) (void)!write(2, now, sizeof now - 1);
        _exit(128 + number);
    }
    stop_signal = number;
    if (announce_stop) {
        static const char term[] = "vae-mpi: SIGTERM: stopping after this step to checkpoint (a second signal exits at once)\n";
        static const char intr[] = "vae-mpi: SIGINT: stopping after this step to checkpoint (a second signal exits at once)\n";
        static const char usr1[] = "vae-mpi: SIGUSR1: stopping after this step to checkpoint (a second signal exits at once)\n";
        if (number == SIGTERM) (void)!write(2, term, sizeof term - 1);
        else if (number == SIGUSR1) (void)!write(2, usr1, sizeof usr1 - 1);
        else (void)!write(2, intr, sizeof intr - 1);
    }
}

void vm_install_stop_handlers(int announce) {
    announce_stop = announce;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, 0);
    sigaction(SIGINT, &action, 0);
    // mpirun forwards SIGUSR1 to every rank without ending the job (it ends
    // it, a second after forwarding, on SIGTERM and SIGINT): the graceful way in.
    sigaction(SIGUSR1, &action, 0);
}

int vm_stop_signal(void) { return stop_signal; }

void vm_request_stop(int signal_number) { stop_signal = signal_number; }
