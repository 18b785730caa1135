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

#define BATON_COMM_ABI_VERSION 1

typedef struct baton_comm_table {
    int abi_version; /* BATON_COMM_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Joins the job started by the launcher: sets this process's rank and the world size. */
    int (*init)(int *rank, int *size);
    int (*finalize)(void);
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

#ifdef __cplusplus
}
#endif
#endif
