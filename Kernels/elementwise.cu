// Elementwise ops: add and fill. The twin of Sources/CBatonCPU/elementwise.c.
#include "common.cuh"

__global__ void add_kernel(float *out, const float *a, const float *b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

void add(baton_context *ctx, float *out, const float *a, const float *b, int64_t n) {
    add_kernel<<<blocks_for(n, 256), 256>>>(out, a, b, n);
    check_launch(ctx, "add");
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
