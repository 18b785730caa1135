// GELU (tanh approximation; the formula: baton_gelu.h): the twin of Sources/CBatonCPU/gelu.c.
#include "common.cuh"
#include "baton_gelu.h"

__global__ void gelu_forward_kernel(float *out, const float *inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = baton_gelu(inp[i]);
}

void gelu_forward(baton_context *ctx, float *out, const float *inp, int64_t n) {
    gelu_forward_kernel<<<blocks_for(n, 256), 256>>>(out, inp, n);
    check_launch(ctx, "gelu_forward");
}

// dinp may alias dout.
__global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dinp[i] = baton_gelu_backward(inp[i], dout[i]);
}

void gelu_backward(baton_context *ctx, float *dinp, const float *inp, const float *dout, int64_t n) {
    gelu_backward_kernel<<<blocks_for(n, 256), 256>>>(dinp, inp, dout, n);
    check_launch(ctx, "gelu_backward");
}
