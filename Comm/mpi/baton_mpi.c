/* The MPI communicator: baton_comm.h's table over MPI (OpenMPI from Debian). Built by
 * scripts/build-mpi into libbaton_mpi.so, which `baton` loads when a launcher (mpirun) started it.
 * Messages over 1 GiB are sent in pieces (MPI counts are ints). */
#include "baton_comm.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>

static char error_text[512];

static int check(int status, const char *what) {
    if (status == MPI_SUCCESS) return 0;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(status, message, &length);
    snprintf(error_text, sizeof error_text, "%s: %.*s", what, length, message);
    return 1;
}

static int comm_init(int *rank, int *size) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        if (check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread")) return 1;
    }
    /* Errors come back as codes, so a lost peer is an error message, not an abort. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (check(MPI_Comm_rank(MPI_COMM_WORLD, rank), "MPI_Comm_rank")) return 1;
    return check(MPI_Comm_size(MPI_COMM_WORLD, size), "MPI_Comm_size");
}

static int comm_finalize(void) { return check(MPI_Finalize(), "MPI_Finalize"); }
static int comm_barrier(void) { return check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

#define PIECE ((size_t)1 << 30)

static int comm_broadcast(void *data, size_t bytes, int root) {
    for (size_t done = 0; done < bytes; done += PIECE) {
        size_t n = bytes - done < PIECE ? bytes - done : PIECE;
        if (check(MPI_Bcast((char *)data + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast")) return 1;
    }
    return 0;
}

static int comm_exchange(const void *send, void *receive, size_t bytes, int peer) {
    for (size_t done = 0; done < bytes; done += PIECE) {
        size_t n = bytes - done < PIECE ? bytes - done : PIECE;
        if (check(MPI_Sendrecv((const char *)send + done, (int)n, MPI_BYTE, peer, 7, (char *)receive + done, (int)n, MPI_BYTE, peer, 7,
                               MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Sendrecv")) return 1;
    }
    return 0;
}

static int comm_allgather(const void *send, void *receive, size_t bytes) {
    if (bytes > PIECE) { snprintf(error_text, sizeof error_text, "allgather: %zu bytes is more than one piece", bytes); return 1; }
    return check(MPI_Allgather(send, (int)bytes, MPI_BYTE, receive, (int)bytes, MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
}

static int comm_allreduce_sum(float *data, size_t count) {
    size_t piece = PIECE / sizeof(float);
    for (size_t done = 0; done < count; done += piece) {
        size_t n = count - done < piece ? count - done : piece;
        if (check(MPI_Allreduce(MPI_IN_PLACE, data + done, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce")) return 1;
    }
    return 0;
}

static const char *comm_last_error(void) { return error_text; }

static const baton_comm_table table = {
    .abi_version = BATON_COMM_ABI_VERSION, .name = "mpi", .init = comm_init, .finalize = comm_finalize, .barrier = comm_barrier,
    .broadcast = comm_broadcast, .exchange = comm_exchange, .allgather = comm_allgather, .allreduce_sum = comm_allreduce_sum,
    .last_error = comm_last_error,
};

__attribute__((visibility("default"))) const baton_comm_table *baton_comm_get_table(void) { return &table; }
