// common.cuh — shared by every kernel file of the CUDA backend: the op declarations (from the
// one ABI header, so each op has exactly the signature of its CPU twin), error recording, the
// cuBLAS handle, launch helpers.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "baton_backend.h"

extern "C" {
BATON_FOR_EACH_OP(BATON_DECLARE_OP)
}

// Records the first failure ("op: message"); the Swift side collects it after each op.
void record_cuda_error(cudaError_t status, const char *op);
void record_cublas_error(cublasStatus_t status, const char *op);
// Checks the launch that just happened.
inline void check_launch(const char *op) { record_cuda_error(cudaGetLastError(), op); }

cublasHandle_t cublas_handle();
// Device scratch owned by the library, allocated once at init (global_norm's partial sums, the
// column sums' partial rows).
double *norm_partials();
constexpr int NORM_BLOCKS = 1024;
float *column_partials();
constexpr long long COLUMN_PARTIALS = 16ll << 20;  // floats
constexpr int COLUMN_CHUNKS = 64;

// out[c] += sum over rows n of in[n*columns + c], deterministic and without atomics:
// COLUMN_CHUNKS fixed row ranges summed in parallel, then the chunk sums added in order.
void column_sum(float *out, const float *in, int rows, int columns, const char *op);

inline int blocks_for(long long n, int threads) { return (int)((n + threads - 1) / threads); }

// Warp-level sum and max, in a fixed butterfly order (deterministic).
__device__ inline float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}
__device__ inline double warp_sum(double v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffff, v, offset);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

// Block-wide sum and max (blockDim a multiple of 32, at most 1024), every thread gets the result.
// `shared` holds 32 values.
__device__ inline double block_sum(double v, double *shared) {
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
    __syncthreads();
    double r = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : 0.0;
    if (threadIdx.x < 32) r = warp_sum(r);
    if (threadIdx.x == 0) shared[0] = r;
    __syncthreads();
    r = shared[0];
    __syncthreads();
    return r;
}

__device__ inline float block_max(float v, float *shared) {
    v = warp_max(v);
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
    __syncthreads();
    float r = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : -INFINITY;
    if (threadIdx.x < 32) r = warp_max(r);
    if (threadIdx.x == 0) shared[0] = r;
    __syncthreads();
    r = shared[0];
    __syncthreads();
    return r;
}
