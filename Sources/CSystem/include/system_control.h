#ifndef VAE_MPI_SYSTEM_CONTROL_H
#define VAE_MPI_SYSTEM_CONTROL_H

/// Graceful stops: the first SIGTERM, SIGINT or SIGUSR1 sets a flag that training
/// checks at every step (and, if `announce`, writes one line to stderr);
/// a second one ends the process at once with status 128 + signal.
void vm_install_stop_handlers(int announce);

/// The signal that asked to stop (SIGTERM, SIGINT), or 0.
int vm_stop_signal(void);

/// Raises the flag as a signal would (for tests and fault injection).
void vm_request_stop(int signal_number);

#endif
