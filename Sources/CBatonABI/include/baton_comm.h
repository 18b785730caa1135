/*
 * baton_comm.h — the contract between Baton and a communicator for data-parallel training: a
 * versioned table that a library built against MPI exports (Comm/mpi, `baton_comm_get_table`),
 * loaded at run time like the CUDA backend, so `baton` runs where there is no MPI. Every function
 * returns 0 on success; on failure last_error says why.
 */
#ifndef BATON_COMM_H
#define BATON_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_COMM_ABI_VERSION 2

typedef struct baton_comm_table {
    int abi_version; /* BATON_COMM_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Joins the job started by the launcher: sets this process's rank and the world size. */
    int (*init)(int *rank, int *size);
    int (*finalize)(void);
    /* From now on a collective that waits longer than this on a rank fails, naming the rank it
     * waited on, instead of hanging (0: wait forever, the default). */
    int (*set_timeout)(double seconds);
    int (*barrier)(void);
    /* root's `bytes` at `data` to every rank. */
    int (*broadcast)(void *data, size_t bytes, int root);
    /* Sends `bytes` to `peer` and receives as many from it (the two sides call it together). */
    int (*exchange)(const void *send, void *receive, size_t bytes, int peer);
    /* Every rank's `bytes`, in rank order, into `receive` (world size x bytes). */
    int (*allgather)(const void *send, void *receive, size_t bytes);
    /* The library's own in-place sum of floats over ranks: fast, its order the library's. */
    int (*allreduce_sum)(float *data, size_t count);
    const char *(*last_error)(void);
} baton_comm_table;

typedef const baton_comm_table *baton_comm_get_table_fn(void);

/*
 * The device communicator: collectives on GPU memory between the GPU ranks of a job (Comm/nccl,
 * `baton_device_comm_get_table`, over NCCL). The MPI communicator above still launches the job and
 * carries the device communicator's unique id from rank 0 to the others. Every operation runs on
 * the CUDA backend's stream (the default stream) and has finished when it returns; one that does
 * not finish within the timeout aborts the communicator and names the rank it waited on.
 */
#define BATON_DEVICE_COMM_ABI_VERSION 1
#define BATON_DEVICE_COMM_ID_BYTES 128

typedef struct baton_device_comm_table {
    int abi_version; /* BATON_DEVICE_COMM_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Loads the collective library itself (NCCL): from `library` when not NULL, else the system's
     * search path. Says which version it found in `version` (e.g. "2.27.7"). */
    int (*load)(const char *library, char *version, size_t version_bytes);
    /* A new id for a job; rank 0 makes it, the MPI communicator hands it to the others. */
    int (*unique_id)(unsigned char id[BATON_DEVICE_COMM_ID_BYTES]);
    /* Joins the job `id` as `rank` of `size`, on GPU `device`; waits at most timeout_seconds
     * (0: no limit) for each collective from then on. */
    int (*init)(const unsigned char id[BATON_DEVICE_COMM_ID_BYTES], int rank, int size, int device, double timeout_seconds);
    int (*finalize)(void);
    /* Sends `count` floats of GPU memory to `peer` and receives as many from it (both call it). */
    int (*exchange)(const float *send, float *receive, size_t count, int peer);
    /* The library's in-place sum of GPU floats over the ranks: fast, its order the library's. */
    int (*allreduce_sum)(float *data, size_t count);
    const char *(*last_error)(void);
} baton_device_comm_table;

typedef const baton_device_comm_table *baton_device_comm_get_table_fn(void);

#ifdef __cplusplus
}
#endif
#endif
