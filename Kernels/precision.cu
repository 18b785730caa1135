// Storing float32 values as activations (bf16 in a BF16 context): the twin of
// Sources/CBatonCPU/precision.c, bit for bit (both round by baton_rounding.h).
#include "common.cuh"

template <class Act> __global__ void to_activation_kernel(Act *out, const float *in, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_act(out, i, in[i]);
}

void to_activation(baton_context *ctx, baton_activation *out, const float *in, int64_t n) {
    if (n == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        to_activation_kernel<Act><<<blocks_for(n, 256), 256>>>(static_cast<Act *>(out), in, n);
    });
    check_launch(ctx, "to_activation");
}

float *wide_buffer(baton_context *ctx, long long n, const char *op) {
    if (n > ctx->wide_capacity) {
        cudaFree(ctx->wide);
        ctx->wide = nullptr;
        ctx->wide_capacity = 0;
        if (cudaMalloc(&ctx->wide, n * sizeof(float)) != cudaSuccess) {
            record_cuda_error(ctx, cudaErrorMemoryAllocation, op);
            return nullptr;
        }
        ctx->wide_capacity = n;
    }
    return ctx->wide;
}
