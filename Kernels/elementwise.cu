// Elementwise ops: the residual add and fill. The twin of Sources/CBatonCPU/residual.c.
#include "common.cuh"

__global__ void residual_forward_kernel(float *out, const float *a, const float *b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

void residual_forward(baton_context *ctx, float *out, const float *a, const float *b, int64_t n) {
    residual_forward_kernel<<<blocks_for(n, 256), 256>>>(out, a, b, n);
    check_launch(ctx, "residual_forward");
}

__global__ void fill_kernel(float *x, float value, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = value;
}

void fill(baton_context *ctx, float *x, float value, int64_t n) {
    if (n <= 0) return;
    fill_kernel<<<blocks_for(n, 256), 256>>>(x, value, n);
    check_launch(ctx, "fill");
}
