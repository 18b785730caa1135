// common.cuh — shared by every kernel file of the CUDA backend: the op declarations (from the
// one ABI header, so each op has exactly the signature of its CPU twin), error recording, the
// cuBLAS handle, launch helpers.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "baton_backend.h"

extern "C" {
baton_encoder_forward_fn encoder_forward;
baton_encoder_backward_fn encoder_backward;
baton_layernorm_forward_fn layernorm_forward;
baton_layernorm_backward_fn layernorm_backward;
baton_matmul_fn matmul;
baton_bias_forward_fn bias_forward;
baton_bias_backward_fn bias_backward;
baton_attention_forward_fn attention_forward;
baton_attention_backward_fn attention_backward;
baton_gelu_forward_fn gelu_forward;
baton_gelu_backward_fn gelu_backward;
baton_residual_forward_fn residual_forward;
baton_softmax_crossentropy_fn softmax_crossentropy;
baton_adamw_update_fn adamw_update;
baton_global_norm_squared_fn global_norm_squared;
baton_fill_fn fill;
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
