#include "include/baton_system.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal = 0;

static void record_stop(int signal_number) {
    if (stop_signal == 0) stop_signal = signal_number;
}

void baton_install_stop_handlers(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = record_stop;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART; /* a write in flight is resumed, not failed with EINTR */
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    /* OpenMPI's mpirun forwards SIGUSR1 to every rank and leaves the job running (SIGTERM ends
     * it a second later): the way to stop a data-parallel job with a checkpoint. */
    sigaction(SIGUSR1, &action, NULL);
}

int baton_stop_signal(void) { return stop_signal; }
