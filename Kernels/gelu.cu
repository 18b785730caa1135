// GELU (tanh approximation) as x * sigmoid(2u): the twin of Sources/CBatonCPU/gelu.c.
#include "common.cuh"

#define GELU_SCALE 0.7978845608028654f

__global__ void gelu_forward_kernel(float *out, const float *inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    out[i] = x / (1.0f + expf(-2.0f * u));
}

void gelu_forward(baton_context *ctx, float *out, const float *inp, int64_t n) {
    gelu_forward_kernel<<<blocks_for(n, 256), 256>>>(out, inp, n);
    check_launch(ctx, "gelu_forward");
}

__global__ void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = inp[i];
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    float s = 1.0f / (1.0f + expf(-2.0f * u));
    float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
}

void gelu_backward(baton_context *ctx, float *dinp, const float *inp, const float *dout, int64_t n) {
    gelu_backward_kernel<<<blocks_for(n, 256), 256>>>(dinp, inp, dout, n);
    check_launch(ctx, "gelu_backward");
}
