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
#include <string.h>
#include <time.h>

static char error_text[512];

static struct {
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
} nccl;

static ncclComm_t comm;
static int my_rank, world_size;
static double timeout;

static int fail(const char *format, const char *what, const char *detail) {
    snprintf(error_text, sizeof error_text, format, what, detail);
    return 1;
}

static int check_nccl(ncclResult_t result, const char *what) {
    if (result == ncclSuccess) return 0;
    return fail("%s: %s", what, nccl.get_error_string ? nccl.get_error_string(result) : "NCCL error");
}

static int check_cuda(cudaError_t result, const char *what) {
    if (result == cudaSuccess) return 0;
    return fail("%s: %s", what, cudaGetErrorString(result));
}

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + now.tv_nsec * 1e-9;
}

static int comm_load(const char *library, char *version, size_t version_bytes) {
    const char *path = library ? library : "libnccl.so.2";
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) return fail("cannot load %s: %s", path, dlerror());
#define BIND(field, symbol)                                                                          \
    if (!(*(void **)&nccl.field = dlsym(handle, #symbol))) return fail("%s has no %s", path, #symbol);
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
#undef BIND
    int code = 0;
    if (check_nccl(nccl.get_version(&code), "ncclGetVersion")) return 1;
    /* NCCL_VERSION_CODE is X*10000 + Y*100 + Z from 2.9 on, X*1000 + Y*100 + Z before. */
    if (code >= 10000) snprintf(version, version_bytes, "%d.%d.%d", code / 10000, code / 100 % 100, code % 100);
    else snprintf(version, version_bytes, "%d.%d.%d", code / 1000, code / 100 % 10, code % 100);
    return 0;
}

static int comm_unique_id(unsigned char id[BATON_DEVICE_COMM_ID_BYTES]) {
    ncclUniqueId unique;
    if (check_nccl(nccl.get_unique_id(&unique), "ncclGetUniqueId")) return 1;
    memcpy(id, unique.internal, BATON_DEVICE_COMM_ID_BYTES);
    return 0;
}

static int comm_init(const unsigned char id[BATON_DEVICE_COMM_ID_BYTES], int rank, int size, int device, double timeout_seconds) {
    ncclUniqueId unique;
    memcpy(unique.internal, id, BATON_DEVICE_COMM_ID_BYTES);
    if (check_cuda(cudaSetDevice(device), "cudaSetDevice")) return 1;
    if (check_nccl(nccl.comm_init_rank(&comm, size, unique, rank), "ncclCommInitRank")) return 1;
    my_rank = rank;
    world_size = size;
    timeout = timeout_seconds;
    return 0;
}

static int comm_finalize(void) {
    if (!comm) return 0;
    ncclComm_t done = comm;
    comm = NULL;
    return check_nccl(nccl.comm_destroy(done), "ncclCommDestroy");
}

/* Waits for what was enqueued on the default stream; `waiting_on` names the peer for the error. */
static int finish(const char *what, const char *waiting_on) {
    double start = seconds_now();
    struct timespec pause = {0, 20000};
    for (;;) {
        cudaError_t state = cudaStreamQuery(0);
        if (state == cudaSuccess) return 0;
        if (state != cudaErrorNotReady) return check_cuda(state, what);
        ncclResult_t async = ncclSuccess;
        if (check_nccl(nccl.comm_get_async_error(comm, &async), "ncclCommGetAsyncError") || check_nccl(async, what)) {
            nccl.comm_abort(comm);
            comm = NULL;
            return 1;
        }
        if (timeout > 0 && seconds_now() - start > timeout) {
            char detail[160];
            snprintf(detail, sizeof detail, "%s did not answer within %.0f s (lost or stuck); NCCL communicator aborted", waiting_on, timeout);
            nccl.comm_abort(comm);
            comm = NULL;
            return fail("%s: %s", what, detail);
        }
        nanosleep(&pause, NULL);
    }
}

static int comm_exchange(const float *send, float *receive, size_t count, int peer) {
    if (!comm) return fail("%s%s", "exchange: the NCCL communicator is not open", "");
    if (check_nccl(nccl.group_start(), "ncclGroupStart")) return 1;
    ncclResult_t sent = nccl.send(send, count, ncclFloat32, peer, comm, 0);
    ncclResult_t received = nccl.recv(receive, count, ncclFloat32, peer, comm, 0);
    ncclResult_t ended = nccl.group_end();
    if (check_nccl(sent, "ncclSend") || check_nccl(received, "ncclRecv") || check_nccl(ended, "ncclGroupEnd")) return 1;
    char peer_name[32];
    snprintf(peer_name, sizeof peer_name, "rank %d", peer);
    return finish("NCCL exchange", peer_name);
}

static int comm_allreduce_sum(float *data, size_t count) {
    if (!comm) return fail("%s%s", "all-reduce: the NCCL communicator is not open", "");
    if (check_nccl(nccl.all_reduce(data, data, count, ncclFloat32, ncclSum, comm, 0), "ncclAllReduce")) return 1;
    return finish("NCCL all-reduce", world_size == 2 ? (my_rank == 0 ? "rank 1" : "rank 0") : "a rank");
}

static const char *comm_last_error(void) { return error_text; }

static const baton_device_comm_table table = {
    .abi_version = BATON_DEVICE_COMM_ABI_VERSION, .name = "nccl", .load = comm_load, .unique_id = comm_unique_id,
    .init = comm_init, .finalize = comm_finalize, .exchange = comm_exchange, .allreduce_sum = comm_allreduce_sum,
    .last_error = comm_last_error,
};

/* extern "C": the CUDA emulator's build compiles this file as C++ (its cuda_runtime.h is C++). */
#ifdef __cplusplus
extern "C"
#endif
__attribute__((visibility("default"))) const baton_device_comm_table *baton_device_comm_get_table(void) { return &table; }
