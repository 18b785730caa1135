// common.cuh — shared by every kernel file of the CUDA backend: the op declarations (from the
// one ABI header, so each op has exactly the signature of its CPU twin), error recording, the
// cuBLAS handle, launch helpers.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "baton_backend.h"
#include "baton_rounding.h"

#include <string>
#include <type_traits>

// A pinned host buffer that uploads are staged in (backend_copy_to_device), and the event
// recorded behind the last copy out of it.
struct StagingSlot {
    void *host = nullptr; // cudaMallocHost
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool pending = false; // `done` recorded and not yet waited for
};
constexpr int STAGING_SLOTS = 8;
constexpr size_t STAGING_MAX_BYTES = 4u << 20; // larger uploads are plain cudaMemcpy
constexpr size_t STAGING_GRAIN = 64u << 10;

// One opened GPU: its cuBLAS handle, the scratch the ops share, and the first failure since the
// Swift side last asked (see backend.cu). Every op gets it; nothing lives in globals.
struct baton_context {
    int device_index = 0;
    int compute_major = 0; // the GPU's compute capability (8: Ampere, bf16 tensor cores)
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t cublaslt = nullptr;   // the linear layers' matmuls with epilogues (linear.cu)
    void *cublas_workspace = nullptr;      // CUBLAS_WORKSPACE_BYTES, shared by both handles (one stream)
    double *norm_partials = nullptr;       // global_norm's partial sums
    float *column_partials = nullptr;      // the column sums' partial rows
    int precision = BATON_PRECISION_FP32;  // of the matmuls (set_precision)
    int attention = BATON_ATTENTION_FLASH; // which attention kernels run (baton_context_options)
    struct LtPlans *lt_plans = nullptr;    // cuBLASLt descriptors and algorithms by call shape (linear.cu)
    float *wide = nullptr;                 // float32 results before they are stored as bf16 (wide_buffer)
    long long wide_capacity = 0;           // floats
    StagingSlot staging[STAGING_SLOTS];    // pinned upload buffers, used in turn
    int staging_next = 0;
    baton_status error = BATON_OK;
    std::string message; // "op: error string" of the first failure
    std::string taken;   // storage for the message handed out
    std::string description;
};

extern "C" {
BATON_FOR_EACH_OP(BATON_DECLARE_OP)
// attention.cu: the buffers its two ways need (flash or materialized) on this context.
void backend_attention_sizes(baton_context *ctx, int B, int T, int C, int NH, int KV, int64_t *saved, int64_t *scratch);
}

constexpr size_t CUBLAS_WORKSPACE_BYTES = 32u << 20;

// Activations (baton_activation) are bf16 in a BF16 context, stored as their bits (uint16_t:
// the rounding is baton_rounding.h's, the same bits as the CPU's), and float32 otherwise. Kernels
// that read or write them are templates over the type (Act), and load_act/store_act convert.
inline bool stores_bf16(const baton_context *ctx) { return ctx->precision == BATON_PRECISION_BF16; }
__device__ inline float load_act(const float *p, long long i) { return p[i]; }
__device__ inline float load_act(const uint16_t *p, long long i) {
    return __uint_as_float(baton_float_bits_from_bf16(p[i]));
}
__device__ inline void store_act(float *p, long long i, float x) { p[i] = x; }
__device__ inline void store_act(uint16_t *p, long long i, float x) {
    p[i] = baton_bf16_from_float_bits(__float_as_uint(x));
}
// Vectorised access: W consecutive values p[i..i+W) as floats, W = 1 (a plain load) or 8 (16-byte
// loads: one for 8 bf16, two for 8 floats; p + i must be 16-byte aligned). A kernel templated on
// W runs with 8 where every row and pointer allows it (vector_width) and 1 otherwise.
struct alignas(16) Bytes16 {
    uint32_t words[4];
};
// W values of T and the 16-byte words that carry them, one over the other.
template <int W, class T> union Chunk {
    Bytes16 words[W * sizeof(T) / 16];
    T values[W];
};
template <int W, class T> __device__ inline void load_values(float (&v)[W], const T *p, long long i) {
    if constexpr (W == 1) {
        v[0] = load_act(p, i);
    } else {
        static_assert(W * sizeof(T) % 16 == 0, "whole 16-byte words");
        Chunk<W, T> chunk;
        for (int w = 0; w < (int)(W * sizeof(T) / 16); w++)
            chunk.words[w] = reinterpret_cast<const Bytes16 *>(p + i)[w];
        for (int k = 0; k < W; k++) v[k] = load_act(chunk.values, k);
    }
}
template <int W, class T> __device__ inline void store_values(T *p, long long i, const float (&v)[W]) {
    if constexpr (W == 1) {
        store_act(p, i, v[0]);
    } else {
        Chunk<W, T> chunk;
        for (int k = 0; k < W; k++) store_act(chunk.values, k, v[k]);
        for (int w = 0; w < (int)(W * sizeof(T) / 16); w++) reinterpret_cast<Bytes16 *>(p + i)[w] = chunk.words[w];
    }
}
// A fused residual add's first half, by one warp: row `row` of residual = a + b (lane l writes
// its own chunks of W channels, l, l + 32, ..., which the norm after it reads back); returns the row.
template <int W, class Act>
__device__ inline float *add_residual_row(float *residual, const float *a, const Act *b, int row, int C, int lane) {
    long long offset = (long long)row * C;
    float *r = residual + offset;
    for (int c = lane * W; c < C; c += 32 * W) {
        float x[W], y[W], sum[W];
        load_values(x, a, offset + c);
        load_values(y, b, offset + c);
        for (int k = 0; k < W; k++) sum[k] = x[k] + y[k];
        store_values(r, c, sum);
    }
    return r;
}

constexpr int VECTOR_WIDTH = 8;
// Whether rows of `count` elements at these pointers take VECTOR_WIDTH-wide accesses: every row
// a whole number of 8-element chunks and every pointer 16-byte aligned.
template <class... Pointers> inline bool vector_width_fits(long long count, Pointers... pointers) {
    bool aligned = ((reinterpret_cast<uintptr_t>(pointers) % 16 == 0) && ...);
    return count % VECTOR_WIDTH == 0 && aligned;
}
// Calls launch(width) with std::integral_constant<int, 8> or <int, 1>.
template <class Launch> inline void with_vector_width(bool vectorised, Launch launch) {
    if (vectorised)
        launch(std::integral_constant<int, VECTOR_WIDTH>());
    else
        launch(std::integral_constant<int, 1>());
}

// Calls launch(Act()) with the context's activation type: launch is a generic lambda whose
// parameter's type (float or uint16_t) names the type to cast the op's activations to.
template <class Launch> inline void with_activations(baton_context *ctx, Launch launch) {
    if (stores_bf16(ctx))
        launch(uint16_t());
    else
        launch(float());
}

// matmul.cu: c = op(a) @ op(b) + beta * c (row-major), a and b activations in the context's
// precision; c an activation (rounded as stored) when c_is_activation, float32 otherwise.
void gemm_in_precision(baton_context *ctx, void *c, bool c_is_activation, const void *a, const void *b, int M, int N,
                       int K, int trans_a, int trans_b, float beta, const char *op);
// precision.cu: the context's buffer for float32 results that are then stored as bf16 (at least n
// floats; grown with cudaMalloc, so only the first calls at a size wait); NULL, the failure
// recorded, when memory is out.
float *wide_buffer(baton_context *ctx, long long n, const char *op);
// linear.cu: frees the cuBLASLt plans (before the handle goes).
void destroy_lt_plans(baton_context *ctx);

// Records the first failure ("op: message") in the context; the Swift side collects it after each op.
void record_cuda_error(baton_context *ctx, cudaError_t status, const char *op);
void record_cublas_error(baton_context *ctx, cublasStatus_t status, const char *op);
// Checks the launch that just happened.
inline void check_launch(baton_context *ctx, const char *op) { record_cuda_error(ctx, cudaGetLastError(), op); }

constexpr int NORM_BLOCKS = 1024;
constexpr long long COLUMN_PARTIALS = 16ll << 20; // floats

// How many row chunks a deterministic column reduction (column_sum, LayerNorm's parameter
// gradients) splits its rows into: enough chunks x columns threads to fill a large GPU (~256K
// threads: an H100's 132 SMs hold 270K), chunks of at least 16 rows, within the partials' room
// (`floats_per_chunk` a chunk) and grid.y's 65535. A function of the shape alone, never of the
// card, so the order of the sums, and the bits, are the same on every GPU.
inline int column_chunks(int rows, int columns, long long floats_per_chunk) {
    long long wanted = (256ll * 1024 + columns - 1) / columns;
    if (wanted < 64) wanted = 64;
    long long by_rows = (rows + 15ll) / 16, by_room = COLUMN_PARTIALS / floats_per_chunk;
    long long chunks = wanted < by_rows ? wanted : by_rows;
    if (chunks > by_room) chunks = by_room;
    if (chunks > 65535) chunks = 65535;
    return chunks < 1 ? 1 : (int)chunks;
}

// Row-major C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C on cuBLAS, for `batches` matrices
// `stride_*` floats apart (one plain sgemm when batches is 1). See matmul.cu for the transposition.
void row_major_sgemm(baton_context *ctx, float *c, const float *a, const float *b, int M, int N, int K, int trans_a,
                     int trans_b, float alpha, float beta, long long stride_a, long long stride_b, long long stride_c,
                     int batches, const char *op);

// out[c] += sum over rows n of in[n*columns + c], deterministic and without atomics:
// column_chunks() fixed row ranges summed in parallel, then the chunk sums added in order.
void column_sum(baton_context *ctx, float *out, const float *in, int rows, int columns, const char *op);

inline int blocks_for(long long n, int threads) { return (int)((n + threads - 1) / threads); }

// Warp-level and block-wide reductions in a fixed butterfly order (deterministic). Sum and Max
// are the combining operations; every thread gets the result.
struct Sum {
    template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class T, class Combine> __device__ inline T warp_reduce(T v, Combine combine) {
    for (int offset = 16; offset > 0; offset /= 2) v = combine(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}
__device__ inline float warp_sum(float v) { return warp_reduce(v, Sum()); }
__device__ inline float warp_max(float v) { return warp_reduce(v, Max()); }

// blockDim a multiple of 32, at most 1024; `shared` holds 32 values; `identity` fills the slots
// of warps that do not exist.
template <class T, class Combine> __device__ inline T block_reduce(T v, T *shared, T identity, Combine combine) {
    v = warp_reduce(v, combine);
    if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
    __syncthreads();
    T r = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : identity;
    if (threadIdx.x < 32) r = warp_reduce(r, combine);
    if (threadIdx.x == 0) shared[0] = r;
    __syncthreads();
    r = shared[0];
    __syncthreads(); // before `shared` can be used again
    return r;
}
__device__ inline double block_sum(double v, double *shared) { return block_reduce(v, shared, 0.0, Sum()); }
__device__ inline float block_max(float v, float *shared) { return block_reduce(v, shared, -INFINITY, Max()); }
