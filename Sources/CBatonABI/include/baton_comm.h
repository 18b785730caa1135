/*
 * baton_comm.h — the contract between Baton and a communicator for data-parallel training: a
 * versioned table that a library built against MPI exports (Comm/mpi, `baton_comm_get_table`),
 * loaded at run time like the CUDA backend, so `baton` runs where there is no MPI. Every function
 * returns 0 on success; on failure last_error says why. A communicator's state lives in the handle
 * init returns, which every other call takes (nothing in the library's globals).
 */
#ifndef BATON_COMM_H
#define BATON_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_COMM_ABI_VERSION 4

/* A communicator's own state (its rank, world size, timeout, last error); the library defines it. */
typedef struct baton_comm baton_comm;

typedef struct baton_comm_table {
    int abi_version; /* BATON_COMM_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Joins the job started by the launcher: a new handle in *comm, this process's rank and the
     * world size. On failure *comm is NULL and `message` (message_size bytes) says why. */
    int (*init)(baton_comm **comm, int *rank, int *size, char *message, size_t message_size);
    /* Leaves the job and frees the handle. */
    int (*finalize)(baton_comm *comm);
    /* From now on a collective that waits longer than this on a rank fails, naming the rank it
     * waited on, instead of hanging (0: wait forever, the default). */
    int (*set_timeout)(baton_comm *comm, double seconds);
    int (*barrier)(baton_comm *comm);
    /* root's `bytes` at `data` to every rank. */
    int (*broadcast)(baton_comm *comm, void *data, size_t bytes, int root);
    /* Sends `bytes` to `peer` and receives as many from it (the two sides call it together). */
    int (*exchange)(baton_comm *comm, const void *send, void *receive, size_t bytes, int peer);
    /* Every rank's `bytes`, in rank order, into `receive` (world size x bytes). */
    int (*allgather)(baton_comm *comm, const void *send, void *receive, size_t bytes);
    /* The library's own in-place sum of floats over ranks: fast, its order the library's. */
    int (*allreduce_sum)(baton_comm *comm, float *data, size_t count);
    const char *(*last_error)(baton_comm *comm);
    /* ZeRO-1's slices of a flat buffer of `count` floats: rank r's slice is [r x slice, (r + 1) x slice),
     * cut at `count` (the last rank's may be shorter, or empty). */
    /* In place: every rank gives its slice of `data` and receives every other rank's. */
    int (*allgather_slices)(baton_comm *comm, float *data, size_t count, size_t slice);
    /* The library's sum over ranks of `data`, each rank keeping its own slice's (in place, at the
     * slice's offset); the rest of `data` is left undefined. Fast, its order the library's. */
    int (*reduce_scatter_sum)(baton_comm *comm, float *data, size_t count, size_t slice);
} baton_comm_table;

typedef const baton_comm_table *baton_comm_get_table_fn(void);

/*
 * The device communicator: collectives on GPU memory between the GPU ranks of a job (Comm/nccl,
 * `baton_device_comm_get_table`, over NCCL). The MPI communicator above still launches the job and
 * carries the device communicator's unique id from rank 0 to the others. Every operation runs on
 * the CUDA backend's stream (the default stream) and has finished when it returns; one that does
 * not finish within the timeout aborts the communicator and names the rank it waited on.
 */
#define BATON_DEVICE_COMM_ABI_VERSION 3
#define BATON_DEVICE_COMM_ID_BYTES    128

/* A device communicator's own state (the collective library's functions, its communicator, rank,
 * timeout, last error); the library defines it. */
typedef struct baton_device_comm baton_device_comm;

typedef struct baton_device_comm_table {
    int abi_version; /* BATON_DEVICE_COMM_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Loads the collective library itself (NCCL) into a new handle in *comm: from `library` when
     * not NULL, else the system's search path. Says which version it found in `version` (e.g.
     * "2.27.7"). On failure *comm is NULL and `message` (message_size bytes) says why. */
    int (*load)(const char *library, baton_device_comm **comm, char *version, size_t version_bytes, char *message,
                size_t message_size);
    /* A new id for a job; rank 0 makes it, the MPI communicator hands it to the others. */
    int (*unique_id)(baton_device_comm *comm, unsigned char id[BATON_DEVICE_COMM_ID_BYTES]);
    /* Joins the job `id` as `rank` of `size`, on GPU `device`; waits at most timeout_seconds
     * (0: no limit) for each collective from then on. */
    int (*init)(baton_device_comm *comm, const unsigned char id[BATON_DEVICE_COMM_ID_BYTES], int rank, int size,
                int device, double timeout_seconds);
    /* Leaves the job (when it joined one) and frees the handle. */
    int (*finalize)(baton_device_comm *comm);
    /* Sends `count` floats of GPU memory to `peer` and receives as many from it (both call it). */
    int (*exchange)(baton_device_comm *comm, const float *send, float *receive, size_t count, int peer);
    /* The library's in-place sum of GPU floats over the ranks: fast, its order the library's. */
    int (*allreduce_sum)(baton_device_comm *comm, float *data, size_t count);
    const char *(*last_error)(baton_device_comm *comm);
    /* The host table's allgather_slices and reduce_scatter_sum on GPU memory (ZeRO-1). */
    int (*allgather_slices)(baton_device_comm *comm, float *data, size_t count, size_t slice);
    int (*reduce_scatter_sum)(baton_device_comm *comm, float *data, size_t count, size_t slice);
} baton_device_comm_table;

typedef const baton_device_comm_table *baton_device_comm_get_table_fn(void);

#ifdef __cplusplus
}
#endif
#endif
