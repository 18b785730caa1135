/* The MPI communicator: baton_comm.h's table over MPI (OpenMPI from Debian). Built by
 * scripts/setup/build-mpi into libbaton_mpi.so, which `baton` loads when a launcher (mpirun) started it.
 * Messages over 1 GiB are sent in pieces (MPI counts are ints).
 *
 * Every collective is nonblocking and polled against a deadline, so a rank that is lost or stuck
 * becomes, after the timeout, an error naming it instead of a job that hangs. The small
 * collectives (allgather, barrier) go through rank 0 by point-to-point messages, so that rank 0
 * knows which ranks did not arrive; the others give rank 0 a few seconds more before they blame
 * it, so the error that names the real culprit comes first. */
#include "baton_comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One communicator: everything a call needs, in the handle comm_init returns. */
struct baton_comm {
    char error_text[512];
    int my_rank, world_size;
    double timeout; /* seconds; 0: no limit */
};

/* Non-root ranks wait this much longer than rank 0 before blaming it. */
#define GRACE_SECONDS 5.0
#define TAG_GATHER    11
#define TAG_RESULT    12
#define TAG_EXCHANGE  7
#define PIECE         ((size_t)1 << 30)

/* Writes the failure's text into `text` (size bytes). */
static int failed_with(int status, const char *what, char *text, size_t size) {
    if (status == MPI_SUCCESS) return 0;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(status, message, &length);
    snprintf(text, size, "%s: %.*s", what, length, message);
    return 1;
}
#define check(status, what) failed_with(status, what, comm->error_text, sizeof comm->error_text)

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

/* Waits for `count` requests. On timeout, cancels nothing (the job is ending) and names the
 * ranks of the requests still open: peers[i] is the rank request i waits on, or -1 when unknown. */
static int wait_all(baton_comm *comm, int count, MPI_Request *requests, const int *peers, double limit,
                    const char *what) {
    double start = seconds_now();
    long polls = 0;
    for (;;) {
        int done = 0;
        if (check(MPI_Testall(count, requests, &done, MPI_STATUSES_IGNORE), what)) return 1;
        if (done) return 0;
        if (++polls % 1024) continue;
        double waited = seconds_now() - start;
        if (limit > 0 && waited > limit) break;
        /* A long wait is a peer still computing: poll gently after the first second. */
        if (waited > 1.0) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    char names[256] = "";
    size_t used = 0;
    for (int i = 0; i < count && used < sizeof names - 16; i++) {
        int finished = 0;
        MPI_Test(&requests[i], &finished, MPI_STATUS_IGNORE);
        if (finished || requests[i] == MPI_REQUEST_NULL) continue;
        if (peers[i] < 0) {
            used += snprintf(names + used, sizeof names - used, "%sa rank", used ? ", " : "");
            break;
        }
        used += snprintf(names + used, sizeof names - used, "%srank %d", used ? ", " : "", peers[i]);
    }
    snprintf(comm->error_text, sizeof comm->error_text, "%s: %s did not answer within %.0f s (lost or stuck)", what,
             used ? names : "a rank", limit);
    return 1;
}

static int comm_init(baton_comm **handle, int *rank, int *size, char *message, size_t message_size) {
    *handle = NULL;
    baton_comm *comm = calloc(1, sizeof *comm);
    if (!comm) {
        snprintf(message, message_size, "out of memory");
        return 1;
    }
    int initialized = 0;
    MPI_Initialized(&initialized);
    int failed = 0;
    if (!initialized) {
        int provided = 0;
        failed = check(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    /* Errors come back as codes, so a lost peer is an error message, not an abort. */
    if (!failed) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    failed = failed || check(MPI_Comm_rank(MPI_COMM_WORLD, &comm->my_rank), "MPI_Comm_rank") ||
             check(MPI_Comm_size(MPI_COMM_WORLD, &comm->world_size), "MPI_Comm_size");
    if (failed) {
        snprintf(message, message_size, "%s", comm->error_text);
        free(comm);
        return 1;
    }
    *rank = comm->my_rank;
    *size = comm->world_size;
    *handle = comm;
    return 0;
}

static int comm_finalize(baton_comm *comm) {
    int failed = check(MPI_Finalize(), "MPI_Finalize");
    free(comm);
    return failed;
}

static int comm_set_timeout(baton_comm *comm, double seconds) {
    comm->timeout = seconds > 0 ? seconds : 0;
    return 0;
}

static int comm_broadcast(baton_comm *comm, void *data, size_t bytes, int root) {
    int peer = root;
    double limit = comm->timeout > 0 && comm->my_rank != root ? comm->timeout + GRACE_SECONDS : comm->timeout;
    for (size_t done = 0; done < bytes; done += PIECE) {
        size_t n = bytes - done < PIECE ? bytes - done : PIECE;
        MPI_Request request;
        if (check(MPI_Ibcast((char *)data + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &request), "MPI_Ibcast"))
            return 1;
        if (wait_all(comm, 1, &request, comm->my_rank == root ? (int[]){-1} : &peer, limit, "broadcast")) return 1;
    }
    return 0;
}

static int comm_exchange(baton_comm *comm, const void *send, void *receive, size_t bytes, int peer) {
    for (size_t done = 0; done < bytes; done += PIECE) {
        size_t n = bytes - done < PIECE ? bytes - done : PIECE;
        MPI_Request requests[2];
        if (check(MPI_Irecv((char *)receive + done, (int)n, MPI_BYTE, peer, TAG_EXCHANGE, MPI_COMM_WORLD, &requests[0]),
                  "MPI_Irecv") ||
            check(MPI_Isend((const char *)send + done, (int)n, MPI_BYTE, peer, TAG_EXCHANGE, MPI_COMM_WORLD,
                            &requests[1]),
                  "MPI_Isend"))
            return 1;
        if (wait_all(comm, 2, requests, (int[]){peer, peer}, comm->timeout, "exchange")) return 1;
    }
    return 0;
}

/* Every rank's `bytes` to rank 0, which sends the whole back: rank 0 waits on each rank by name. */
static int comm_allgather(baton_comm *comm, const void *send, void *receive, size_t bytes) {
    if (bytes * comm->world_size > PIECE) {
        snprintf(comm->error_text, sizeof comm->error_text, "allgather: %zu bytes a rank is more than one piece",
                 bytes);
        return 1;
    }
    size_t total = bytes * comm->world_size;
    if (comm->my_rank != 0) {
        MPI_Request requests[2];
        if (check(MPI_Irecv(receive, (int)total, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD, &requests[0]), "MPI_Irecv") ||
            check(MPI_Isend(send, (int)bytes, MPI_BYTE, 0, TAG_GATHER, MPI_COMM_WORLD, &requests[1]), "MPI_Isend"))
            return 1;
        return wait_all(comm, 2, requests, (int[]){0, 0}, comm->timeout > 0 ? comm->timeout + GRACE_SECONDS : 0,
                        "allgather");
    }
    memcpy(receive, send, bytes);
    int others = comm->world_size - 1;
    MPI_Request *requests = calloc((size_t)others * 2 + 1, sizeof *requests);
    int *peers = calloc((size_t)others * 2 + 1, sizeof *peers);
    int failed = !requests || !peers;
    if (failed) snprintf(comm->error_text, sizeof comm->error_text, "allgather: out of memory");
    for (int r = 1; r <= others && !failed; r++) {
        peers[r - 1] = r;
        failed = check(MPI_Irecv((char *)receive + bytes * r, (int)bytes, MPI_BYTE, r, TAG_GATHER, MPI_COMM_WORLD,
                                 &requests[r - 1]),
                       "MPI_Irecv");
    }
    if (!failed) failed = wait_all(comm, others, requests, peers, comm->timeout, "allgather");
    for (int r = 1; r <= others && !failed; r++) {
        peers[r - 1] = r;
        failed = check(MPI_Isend(receive, (int)total, MPI_BYTE, r, TAG_RESULT, MPI_COMM_WORLD, &requests[r - 1]),
                       "MPI_Isend");
    }
    if (!failed) failed = wait_all(comm, others, requests, peers, comm->timeout, "allgather");
    free(requests);
    free(peers);
    return failed;
}

static int comm_barrier(baton_comm *comm) {
    char nothing = 0;
    char *gathered = malloc((size_t)comm->world_size);
    if (!gathered) {
        snprintf(comm->error_text, sizeof comm->error_text, "barrier: out of memory");
        return 1;
    }
    int failed = comm_allgather(comm, &nothing, gathered, 1);
    free(gathered);
    return failed;
}

/* Blocking, unlike the rest: OpenMPI 4.1's nonblocking all-reduce (libnbc) ran at a third to a
 * fifth of MPI_Allreduce's speed here (docs/parallel.md). The timeout still holds in training:
 * the loss gather just before it names any rank that does not arrive. */
static int comm_allreduce_sum(baton_comm *comm, float *data, size_t count) {
    size_t piece = PIECE / sizeof(float);
    for (size_t done = 0; done < count; done += piece) {
        size_t n = count - done < piece ? count - done : piece;
        if (check(MPI_Allreduce(MPI_IN_PLACE, data + done, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce"))
            return 1;
    }
    return 0;
}

/* Each rank's slice of a flat buffer (baton_comm.h): counts[r] floats at displacements[r], as
 * MPI's ints. Fails, saying so, for a slice beyond an int's count (8 GiB of floats). */
static int slice_layout(baton_comm *comm, size_t count, size_t slice, int *counts, int *displacements,
                        const char *what) {
    if (slice > (size_t)0x7fffffff) {
        snprintf(comm->error_text, sizeof comm->error_text, "%s: slices of %zu floats are more than MPI counts", what,
                 slice);
        return 1;
    }
    for (int r = 0; r < comm->world_size; r++) {
        size_t start = (size_t)r * slice < count ? (size_t)r * slice : count;
        size_t end = start + slice < count ? start + slice : count;
        if (start > (size_t)0x7fffffff) {
            snprintf(comm->error_text, sizeof comm->error_text, "%s: %zu floats are more than MPI offsets", what,
                     count);
            return 1;
        }
        counts[r] = (int)(end - start);
        displacements[r] = (int)start;
    }
    return 0;
}

/* The two ZeRO-1 collectives below are blocking, as the all-reduce is (same reason); in
 * training each follows the loss gather, which names any rank that does not arrive. */
static int comm_allgather_slices(baton_comm *comm, float *data, size_t count, size_t slice) {
    int *counts = calloc((size_t)comm->world_size * 2, sizeof *counts);
    if (!counts) {
        snprintf(comm->error_text, sizeof comm->error_text, "allgather_slices: out of memory");
        return 1;
    }
    int *displacements = counts + comm->world_size;
    int failed = slice_layout(comm, count, slice, counts, displacements, "allgather_slices") ||
                 check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts, displacements, MPI_FLOAT,
                                      MPI_COMM_WORLD),
                       "MPI_Allgatherv");
    free(counts);
    return failed;
}

/* MPI_Reduce_scatter in place leaves this rank's sum at the buffer's start: moved to its slice. */
static int comm_reduce_scatter_sum(baton_comm *comm, float *data, size_t count, size_t slice) {
    int *counts = calloc((size_t)comm->world_size * 2, sizeof *counts);
    if (!counts) {
        snprintf(comm->error_text, sizeof comm->error_text, "reduce_scatter_sum: out of memory");
        return 1;
    }
    int *displacements = counts + comm->world_size;
    int failed = slice_layout(comm, count, slice, counts, displacements, "reduce_scatter_sum") ||
                 check(MPI_Reduce_scatter(MPI_IN_PLACE, data, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                       "MPI_Reduce_scatter");
    if (!failed && displacements[comm->my_rank] > 0)
        memmove(data + displacements[comm->my_rank], data, (size_t)counts[comm->my_rank] * sizeof *data);
    free(counts);
    return failed;
}

static const char *comm_last_error(baton_comm *comm) { return comm->error_text; }

static const baton_comm_table table = {
        .abi_version = BATON_COMM_ABI_VERSION,
        .name = "mpi",
        .init = comm_init,
        .finalize = comm_finalize,
        .set_timeout = comm_set_timeout,
        .barrier = comm_barrier,
        .broadcast = comm_broadcast,
        .exchange = comm_exchange,
        .allgather = comm_allgather,
        .allreduce_sum = comm_allreduce_sum,
        .last_error = comm_last_error,
        .allgather_slices = comm_allgather_slices,
        .reduce_scatter_sum = comm_reduce_scatter_sum,
};

__attribute__((visibility("default"))) const baton_comm_table *baton_comm_get_table(void) { return &table; }
