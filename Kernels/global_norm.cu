// Sum of squares in double, two fixed-shape stages (NORM_BLOCKS partial sums, then one block):
// the same bits every run. The twin of Sources/CBatonCPU/global_norm.c.
#include "common.cuh"

__global__ void norm_partials_kernel(double *partials, const float *x, long long n) {
    __shared__ double shared[32];
    double sum = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        sum += (double)x[i] * x[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void norm_total_kernel(float *out, const double *partials, int count) {
    __shared__ double shared[32];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) out[0] = (float)sum;
}

void global_norm_squared(baton_context *ctx, float *out, const float *x, int64_t n) {
    norm_partials_kernel<<<NORM_BLOCKS, 256>>>(ctx->norm_partials, x, n);
    check_launch(ctx, "global_norm_squared");
    norm_total_kernel<<<1, 1024>>>(out, ctx->norm_partials, NORM_BLOCKS);
    check_launch(ctx, "global_norm_squared");
}
