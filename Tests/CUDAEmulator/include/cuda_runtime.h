// cuda_runtime.h of the CUDA emulator: just enough of the CUDA language and runtime for Kernels/*.cu
// to compile as ordinary C++ and run on the CPU (see Tests/CUDAEmulator/README.md). Every CUDA
// thread of a block runs as a fiber, so __syncthreads and warp shuffles behave as on a GPU, and
// the launch rules a GPU enforces (grid and block limits) are enforced here too.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n)    __attribute__((aligned(n)))
// The emulator runs one block at a time, on the host thread that launched it (Baton issues every
// op from one thread, as on one CUDA stream), so a function-local static is exactly "one per block".
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef dim3 uint3;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorSystemDriverMismatch = 803,
    cudaErrorCompatNotSupportedOnDevice = 804,
} cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
    int multiProcessorCount;
    int warpSize;
    int maxThreadsPerBlock;
};

typedef struct baton_emulator_stream *cudaStream_t;
typedef struct baton_emulator_event *cudaEvent_t;
#define cudaEventDefault       0x00
#define cudaEventDisableTiming 0x02

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device); // the calling thread's current device, as in CUDA
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *properties, int device);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaMalloc(void **pointer, size_t bytes);
cudaError_t cudaFree(void *pointer);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemset(void *pointer, int value, size_t bytes);
// Pinned host memory, and copies that return before they are done on a GPU (here they are done at
// once: the stream never has anything queued). An async copy whose host side is not pinned is
// refused here (on a GPU it quietly waits for the stream, as cudaMemcpy does).
cudaError_t cudaMallocHost(void **pointer, size_t bytes);
cudaError_t cudaFreeHost(void *pointer);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);

template <class T> cudaError_t cudaMalloc(T **pointer, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(pointer), bytes);
}
template <class T> cudaError_t cudaMallocHost(T **pointer, size_t bytes) {
    return cudaMallocHost(reinterpret_cast<void **>(pointer), bytes);
}

// Device-side math the kernels use that C++ lacks.
inline unsigned __float_as_uint(float x) {
    unsigned u;
    std::memcpy(&u, &x, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float x;
    std::memcpy(&x, &u, 4);
    return x;
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }

namespace baton_emulator {

// The CUDA thread now running (a fiber) and its block.
struct ThreadState {
    dim3 thread_index;
};
extern ThreadState *current_thread;
extern dim3 block_index, block_dim, grid_dim;

void sync_block(); // __syncthreads
// The warp-wide exchange behind every shuffle: each lane of `mask` offers `mine`, and gets the
// value lane `source` offered (its own when source is outside the warp).
uint64_t exchange_in_warp(unsigned mask, uint64_t mine, int source);
unsigned lane_id();
// Called (by the build's rewrite) after each __shared__ array's declaration: the first thread of
// each block to get there fills it with huge values, as shared memory holds garbage on a GPU, so a
// read before a write (a missing __syncthreads) shows instead of seeing the last block's values.
void poison_shared(void *array, size_t bytes);

// Runs body once per thread of every block; records a configuration error instead if the launch
// breaks a rule a GPU enforces.
void run_grid(const char *kernel, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()> &body);

// Every pointer argument of a launch that points into a device allocation must be the current
// device's: a kernel launched on one GPU that is handed another GPU's memory faults there (or,
// with peer access, crosses the bus). Records an illegal address and returns false otherwise.
bool on_current_device(const char *kernel, const void *pointer);
template <class T> bool argument_on_current_device(const char *, const T &) { return true; }
template <class T> bool argument_on_current_device(const char *kernel, T *pointer) {
    return on_current_device(kernel, pointer);
}

template <class Kernel> struct Launch {
    Kernel *kernel;
    const char *name;
    dim3 grid, block;
    size_t shared_bytes;
    template <class... Arguments> void operator()(Arguments... arguments) const {
        Kernel *k = kernel;
        if (!(argument_on_current_device(name, arguments) && ...)) return;
        run_grid(name, grid, block, shared_bytes, [=]() { k(arguments...); });
    }
};

template <class Kernel>
Launch<Kernel> launch(Kernel *kernel, const char *name, dim3 grid, dim3 block, size_t shared_bytes = 0,
                      cudaStream_t = nullptr) {
    return Launch<Kernel>{kernel, name, grid, block, shared_bytes};
}

} // namespace baton_emulator

#define threadIdx (baton_emulator::current_thread->thread_index)
#define blockIdx  (baton_emulator::block_index)
#define blockDim  (baton_emulator::block_dim)
#define gridDim   (baton_emulator::grid_dim)
constexpr int warpSize = 32;

inline void __syncthreads() { baton_emulator::sync_block(); }

namespace baton_emulator {
template <class T> T shuffle(unsigned mask, T value, int source) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = exchange_in_warp(mask, bits, source);
    T result;
    std::memcpy(&result, &bits, sizeof(T));
    return result;
}
} // namespace baton_emulator

// A warp-wide barrier: a shuffle is one (every lane of the mask waits for the others).
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)baton_emulator::shuffle(mask, 0, (int)baton_emulator::lane_id());
}

template <class T> T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
    return baton_emulator::shuffle(mask, value, (int)(baton_emulator::lane_id() ^ (unsigned)lane_mask));
}
template <class T> T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
    return baton_emulator::shuffle(mask, value, (int)(baton_emulator::lane_id() + delta));
}
template <class T> T __shfl_sync(unsigned mask, T value, int source_lane) {
    return baton_emulator::shuffle(mask, value, source_lane & 31);
}
