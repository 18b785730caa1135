/* The NCCL communicator: baton_comm.h's device table over NCCL, for GPU ranks (one GPU each).
 * Built by CMakeLists.txt into libbaton_nccl.so beside libbaton_cuda.so when nccl.h is found.
 * NCCL itself (libnccl.so.2: the CUDA install's, or the nvidia-nccl-cu12/cu13 wheel PyTorch
 * brings) is loaded at run time with dlopen, so this library builds with the header alone and
 * `baton` still runs where there is no NCCL. Each pointer below has the type of the function in
 * the nccl.h it was compiled against, so a changed signature is a compile error, not a crash.
 *
 * Every operation is enqueued on the default stream — the CUDA backend's — and then polled
 * until it has finished: a peer that never arrives becomes, after the timeout, an aborted
 * communicator and an error naming the rank waited on, instead of a GPU spinning forever. */
#include "baton_comm.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* NCCL's functions, bound by comm_load. */
struct nccl_functions {
    __typeof__(ncclGetVersion) *get_version;
    __typeof__(ncclGetUniqueId) *get_unique_id;
    __typeof__(ncclCommInitRank) *comm_init_rank;
    __typeof__(ncclCommDestroy) *comm_destroy;
    __typeof__(ncclCommAbort) *comm_abort;
    __typeof__(ncclCommGetAsyncError) *comm_get_async_error;
    __typeof__(ncclGetErrorString) *get_error_string;
    __typeof__(ncclGroupStart) *group_start;
    __typeof__(ncclGroupEnd) *group_end;
    __typeof__(ncclSend) *send;
    __typeof__(ncclRecv) *recv;
    __typeof__(ncclAllReduce) *all_reduce;
    __typeof__(ncclBroadcast) *broadcast;
    __typeof__(ncclReduce) *reduce;
};

/* One device communicator: everything a call needs, in the handle comm_load returns. */
struct baton_device_comm {
    struct nccl_functions nccl;
    ncclComm_t comm; /* NULL until init, and after an abort */
    int my_rank, world_size;
    double timeout;
    char error_text[512];
};

static int fail(baton_device_comm *c, const char *format, const char *what, const char *detail) {
    snprintf(c->error_text, sizeof c->error_text, format, what, detail);
    return 1;
}

static int check_nccl(baton_device_comm *c, ncclResult_t result, const char *what) {
    if (result == ncclSuccess) return 0;
    return fail(c, "%s: %s", what, c->nccl.get_error_string ? c->nccl.get_error_string(result) : "NCCL error");
}

static int check_cuda(baton_device_comm *c, cudaError_t result, const char *what) {
    if (result == cudaSuccess) return 0;
    return fail(c, "%s: %s", what, cudaGetErrorString(result));
}

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

/* Binds NCCL's functions into c; on failure c's error says why. */
static int bind_nccl(baton_device_comm *c, const char *library, char *version, size_t version_bytes) {
    const char *path = library ? library : "libnccl.so.2";
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) return fail(c, "cannot load %s: %s", path, dlerror());
    struct nccl_functions *nccl = &c->nccl;
#define BIND(field, symbol)                                                                                            \
    if (!(*(void **)&nccl->field = dlsym(handle, #symbol))) return fail(c, "%s has no %s", path, #symbol);
    BIND(get_version, ncclGetVersion)
    BIND(get_unique_id, ncclGetUniqueId)
    BIND(comm_init_rank, ncclCommInitRank)
    BIND(comm_destroy, ncclCommDestroy)
    BIND(comm_abort, ncclCommAbort)
    BIND(comm_get_async_error, ncclCommGetAsyncError)
    BIND(get_error_string, ncclGetErrorString)
    BIND(group_start, ncclGroupStart)
    BIND(group_end, ncclGroupEnd)
    BIND(send, ncclSend)
    BIND(recv, ncclRecv)
    BIND(all_reduce, ncclAllReduce)
    BIND(broadcast, ncclBroadcast)
    BIND(reduce, ncclReduce)
#undef BIND
    int code = 0;
    if (check_nccl(c, nccl->get_version(&code), "ncclGetVersion")) return 1;
    /* NCCL_VERSION_CODE is X*10000 + Y*100 + Z from 2.9 on, X*1000 + Y*100 + Z before. */
    if (code >= 10000)
        snprintf(version, version_bytes, "%d.%d.%d", code / 10000, code / 100 % 100, code % 100);
    else
        snprintf(version, version_bytes, "%d.%d.%d", code / 1000, code / 100 % 10, code % 100);
    return 0;
}

static int comm_load(const char *library, baton_device_comm **handle, char *version, size_t version_bytes,
                     char *message, size_t message_size) {
    *handle = NULL;
    baton_device_comm *c = (baton_device_comm *)calloc(1, sizeof *c);
    if (!c) {
        snprintf(message, message_size, "out of memory");
        return 1;
    }
    if (bind_nccl(c, library, version, version_bytes)) {
        snprintf(message, message_size, "%s", c->error_text);
        free(c);
        return 1;
    }
    *handle = c;
    return 0;
}

static int comm_unique_id(baton_device_comm *c, unsigned char id[BATON_DEVICE_COMM_ID_BYTES]) {
    ncclUniqueId unique;
    if (check_nccl(c, c->nccl.get_unique_id(&unique), "ncclGetUniqueId")) return 1;
    memcpy(id, unique.internal, BATON_DEVICE_COMM_ID_BYTES);
    return 0;
}

static int comm_init(baton_device_comm *c, const unsigned char id[BATON_DEVICE_COMM_ID_BYTES], int rank, int size,
                     int device, double timeout_seconds) {
    ncclUniqueId unique;
    memcpy(unique.internal, id, BATON_DEVICE_COMM_ID_BYTES);
    if (check_cuda(c, cudaSetDevice(device), "cudaSetDevice")) return 1;
    if (check_nccl(c, c->nccl.comm_init_rank(&c->comm, size, unique, rank), "ncclCommInitRank")) return 1;
    c->my_rank = rank;
    c->world_size = size;
    c->timeout = timeout_seconds;
    return 0;
}

static int comm_finalize(baton_device_comm *c) {
    int failed = c->comm && check_nccl(c, c->nccl.comm_destroy(c->comm), "ncclCommDestroy");
    free(c);
    return failed;
}

/* Waits for what was enqueued on the default stream; `waiting_on` names the peer for the error. */
static int finish(baton_device_comm *c, const char *what, const char *waiting_on) {
    double start = seconds_now();
    struct timespec pause = {0, 20000};
    for (;;) {
        cudaError_t state = cudaStreamQuery(0);
        if (state == cudaSuccess) return 0;
        if (state != cudaErrorNotReady) return check_cuda(c, state, what);
        ncclResult_t async = ncclSuccess;
        if (check_nccl(c, c->nccl.comm_get_async_error(c->comm, &async), "ncclCommGetAsyncError") ||
            check_nccl(c, async, what)) {
            c->nccl.comm_abort(c->comm);
            c->comm = NULL;
            return 1;
        }
        if (c->timeout > 0 && seconds_now() - start > c->timeout) {
            char detail[160];
            snprintf(detail, sizeof detail,
                     "%s did not answer within %.0f s (lost or stuck); NCCL communicator aborted", waiting_on,
                     c->timeout);
            c->nccl.comm_abort(c->comm);
            c->comm = NULL;
            return fail(c, "%s: %s", what, detail);
        }
        nanosleep(&pause, NULL);
    }
}

static int comm_exchange(baton_device_comm *c, const float *send, float *receive, size_t count, int peer) {
    if (!c->comm) return fail(c, "%s%s", "exchange: the NCCL communicator is not open", "");
    if (check_nccl(c, c->nccl.group_start(), "ncclGroupStart")) return 1;
    ncclResult_t sent = c->nccl.send(send, count, ncclFloat32, peer, c->comm, 0);
    ncclResult_t received = c->nccl.recv(receive, count, ncclFloat32, peer, c->comm, 0);
    ncclResult_t ended = c->nccl.group_end();
    if (check_nccl(c, sent, "ncclSend") || check_nccl(c, received, "ncclRecv") || check_nccl(c, ended, "ncclGroupEnd"))
        return 1;
    char peer_name[32];
    snprintf(peer_name, sizeof peer_name, "rank %d", peer);
    return finish(c, "NCCL exchange", peer_name);
}

static int comm_allreduce_sum(baton_device_comm *c, float *data, size_t count) {
    if (!c->comm) return fail(c, "%s%s", "all-reduce: the NCCL communicator is not open", "");
    if (check_nccl(c, c->nccl.all_reduce(data, data, count, ncclFloat32, ncclSum, c->comm, 0), "ncclAllReduce"))
        return 1;
    return finish(c, "NCCL all-reduce", c->world_size == 2 ? (c->my_rank == 0 ? "rank 1" : "rank 0") : "a rank");
}

/* Rank r's slice of `count` floats (baton_comm.h): [*start, *start + return value). */
static size_t slice_of(int r, size_t count, size_t slice, size_t *start) {
    *start = (size_t)r * slice < count ? (size_t)r * slice : count;
    return *start + slice < count ? slice : count - *start;
}

/* ncclAllGather and ncclReduceScatter need equal slices; the last rank's may be shorter, so each
 * slice is its own ncclBroadcast (or ncclReduce) from (to) its rank, all in one group: NCCL's
 * documented way to an all-gatherv. */
static int slices_collective(baton_device_comm *c, float *data, size_t count, size_t slice, int reduce,
                             const char *what) {
    if (!c->comm) return fail(c, "%s: %s", what, "the NCCL communicator is not open");
    if (check_nccl(c, c->nccl.group_start(), "ncclGroupStart")) return 1;
    ncclResult_t first_error = ncclSuccess;
    for (int r = 0; r < c->world_size; r++) {
        size_t start = 0, n = slice_of(r, count, slice, &start);
        ncclResult_t result =
                reduce ? c->nccl.reduce(data + start, data + start, n, ncclFloat32, ncclSum, r, c->comm, 0)
                       : c->nccl.broadcast(data + start, data + start, n, ncclFloat32, r, c->comm, 0);
        if (first_error == ncclSuccess) first_error = result;
    }
    ncclResult_t ended = c->nccl.group_end();
    if (check_nccl(c, first_error, reduce ? "ncclReduce" : "ncclBroadcast") || check_nccl(c, ended, "ncclGroupEnd"))
        return 1;
    return finish(c, what, c->world_size == 2 ? (c->my_rank == 0 ? "rank 1" : "rank 0") : "a rank");
}

static int comm_allgather_slices(baton_device_comm *c, float *data, size_t count, size_t slice) {
    return slices_collective(c, data, count, slice, 0, "NCCL all-gather of slices");
}

static int comm_reduce_scatter_sum(baton_device_comm *c, float *data, size_t count, size_t slice) {
    return slices_collective(c, data, count, slice, 1, "NCCL reduce-scatter");
}

static const char *comm_last_error(baton_device_comm *c) { return c->error_text; }

static const baton_device_comm_table table = {
        .abi_version = BATON_DEVICE_COMM_ABI_VERSION,
        .name = "nccl",
        .load = comm_load,
        .unique_id = comm_unique_id,
        .init = comm_init,
        .finalize = comm_finalize,
        .exchange = comm_exchange,
        .allreduce_sum = comm_allreduce_sum,
        .last_error = comm_last_error,
        .allgather_slices = comm_allgather_slices,
        .reduce_scatter_sum = comm_reduce_scatter_sum,
};

/* extern "C": the CUDA emulator's build compiles this file as C++ (its cuda_runtime.h is C++). */
#ifdef __cplusplus
extern "C"
#endif
        __attribute__((visibility("default"))) const baton_device_comm_table *
        baton_device_comm_get_table(void) {
    return &table;
}
