// An emulated libnccl.so.2 for the CUDA emulator: the few NCCL calls Comm/nccl makes, done with
// MPI on "device" memory that is host memory. With the emulated CUDA backend it lets CI run GPU
// ranks' gradient path (the NCCL communicator, ncclSend/ncclRecv in groups for the exact tree,
// ncclAllReduce for fast, ncclBroadcast/ncclReduce in groups for ZeRO-1's slices) under mpirun
// on a machine without a GPU. It proves Baton's logic, not NCCL. Built against the real nccl.h
// (from the nvidia-nccl wheel) by scripts/setup/build-cuda-emulator.
#include <mpi.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <vector>

struct ncclComm {
    int rank, size;
    struct Pending {
        bool send;
        bool rooted; // an in-place ncclBroadcast (or ncclReduce, with `send`) from (to) rank `peer`
        const void *send_buffer;
        void *receive_buffer;
        size_t bytes;
        int peer;
    };
    std::vector<Pending> group;
};

static ncclComm *grouping = nullptr; // the communicator of the open group (one at a time)
static int group_depth = 0;

static size_t element_bytes(ncclDataType_t type) { return type == ncclFloat32 ? 4 : 0; }

extern "C" {

__attribute__((visibility("default"))) ncclResult_t ncclGetVersion(int *version) {
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

__attribute__((visibility("default"))) ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id->internal, 0, sizeof id->internal);
    strcpy(id->internal, "baton-emulated-nccl");
    return ncclSuccess;
}

__attribute__((visibility("default"))) ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id,
                                                                     int rank) {
    if (strcmp(id.internal, "baton-emulated-nccl") != 0) return ncclInvalidArgument;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (nranks > 1) {
        int mpi_rank = -1, mpi_size = 0;
        if (!initialized) return ncclSystemError; // ranks talk over MPI here
        MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
        if (mpi_rank != rank || mpi_size != nranks) return ncclInvalidArgument;
    }
    *comm = new ncclComm{rank, nranks, {}};
    return ncclSuccess;
}

__attribute__((visibility("default"))) ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

__attribute__((visibility("default"))) ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }

__attribute__((visibility("default"))) ncclResult_t ncclCommGetAsyncError(ncclComm_t, ncclResult_t *error) {
    *error = ncclSuccess;
    return ncclSuccess;
}

__attribute__((visibility("default"))) const char *ncclGetErrorString(ncclResult_t result) {
    return result == ncclSuccess ? "no error" : "emulated NCCL error";
}

__attribute__((visibility("default"))) ncclResult_t ncclGroupStart() {
    group_depth++;
    return ncclSuccess;
}

// Runs the group's sends and receives: each peer's pair as one MPI_Sendrecv (itself: a copy).
__attribute__((visibility("default"))) ncclResult_t ncclGroupEnd() {
    if (group_depth == 0) return ncclInvalidUsage;
    if (--group_depth > 0 || !grouping) return ncclSuccess;
    ncclComm *comm = grouping;
    grouping = nullptr;
    std::vector<ncclComm::Pending> work;
    work.swap(comm->group);
    // The rooted collectives, in the order they were enqueued (every rank enqueues the same).
    for (const auto &op : work) {
        if (!op.rooted || comm->size == 1) continue;
        int count = (int)(op.bytes / 4), status;
        if (!op.send)
            status = MPI_Bcast(op.receive_buffer, count, MPI_FLOAT, op.peer, MPI_COMM_WORLD);
        else if (op.peer == comm->rank)
            status = MPI_Reduce(MPI_IN_PLACE, op.receive_buffer, count, MPI_FLOAT, MPI_SUM, op.peer, MPI_COMM_WORLD);
        else
            status = MPI_Reduce(op.send_buffer, nullptr, count, MPI_FLOAT, MPI_SUM, op.peer, MPI_COMM_WORLD);
        if (status != MPI_SUCCESS) return ncclRemoteError;
    }
    for (const auto &send : work) {
        if (!send.send || send.rooted) continue;
        const ncclComm::Pending *receive = nullptr;
        for (const auto &other : work)
            if (!other.send && !other.rooted && other.peer == send.peer) receive = &other;
        if (!receive || receive->bytes != send.bytes) return ncclInvalidUsage;
        if (send.peer == comm->rank) {
            memcpy(receive->receive_buffer, send.send_buffer, send.bytes);
        } else if (MPI_Sendrecv(send.send_buffer, (int)send.bytes, MPI_BYTE, send.peer, 31, receive->receive_buffer,
                                (int)send.bytes, MPI_BYTE, send.peer, 31, MPI_COMM_WORLD,
                                MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            return ncclRemoteError;
        }
    }
    return ncclSuccess;
}

static ncclResult_t enqueue(bool send, const void *send_buffer, void *receive_buffer, size_t count, ncclDataType_t type,
                            int peer, ncclComm_t comm, bool rooted = false) {
    if (!comm || !element_bytes(type) || peer < 0 || peer >= comm->size) return ncclInvalidArgument;
    if (group_depth == 0) return ncclInvalidUsage; // Baton always groups its pairs
    if (grouping && grouping != comm) return ncclInvalidUsage;
    grouping = comm;
    comm->group.push_back({send, rooted, send_buffer, receive_buffer, count * element_bytes(type), peer});
    return ncclSuccess;
}

__attribute__((visibility("default"))) ncclResult_t ncclSend(const void *buffer, size_t count, ncclDataType_t type,
                                                             int peer, ncclComm_t comm, cudaStream_t) {
    return enqueue(true, buffer, nullptr, count, type, peer, comm);
}

__attribute__((visibility("default"))) ncclResult_t ncclRecv(void *buffer, size_t count, ncclDataType_t type, int peer,
                                                             ncclComm_t comm, cudaStream_t) {
    return enqueue(false, nullptr, buffer, count, type, peer, comm);
}

__attribute__((visibility("default"))) ncclResult_t ncclAllReduce(const void *send, void *receive, size_t count,
                                                                  ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                                                                  cudaStream_t) {
    if (!comm || type != ncclFloat32 || op != ncclSum) return ncclInvalidArgument;
    if (comm->size == 1) {
        if (send != receive) memcpy(receive, send, count * 4);
        return ncclSuccess;
    }
    const void *source = send == receive ? MPI_IN_PLACE : send;
    return MPI_Allreduce(source, receive, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS
                   ? ncclSuccess
                   : ncclRemoteError;
}

// Broadcast and reduce: in place only, inside a group (as Comm/nccl's all-gather and reduce-scatter of slices).
__attribute__((visibility("default"))) ncclResult_t ncclBroadcast(const void *send, void *receive, size_t count,
                                                                  ncclDataType_t type, int root, ncclComm_t comm,
                                                                  cudaStream_t) {
    if (send != receive) return ncclInvalidUsage;
    return enqueue(false, send, receive, count, type, root, comm, true);
}

__attribute__((visibility("default"))) ncclResult_t ncclReduce(const void *send, void *receive, size_t count,
                                                               ncclDataType_t type, ncclRedOp_t op, int root,
                                                               ncclComm_t comm, cudaStream_t) {
    if (send != receive || op != ncclSum) return ncclInvalidUsage;
    return enqueue(true, send, receive, count, type, root, comm, true);
}

} // extern "C"
