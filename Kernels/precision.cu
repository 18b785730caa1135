// Rounding to TF32 and bfloat16 for the matmul precisions (baton_precision in baton_backend.h): the
// twin of Sources/CBatonCPU/precision.c, bit for bit: both round by baton_rounding.h.
#include "common.cuh"
#include "baton_rounding.h"

__device__ inline float round_bits(float x, int dropped) { return __uint_as_float(baton_round_float_bits(__float_as_uint(x), dropped)); }

__global__ void round_to_precision_kernel(float *x, long long n, int dropped) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = round_bits(x[i], dropped);
}

void round_to_precision(baton_context *ctx, float *x, long long n, int precision) {
    if (precision == BATON_PRECISION_FP32 || n == 0) return;
    round_to_precision_kernel<<<blocks_for(n, 256), 256>>>(x, n, precision == BATON_PRECISION_BF16 ? 16 : 13);
    check_launch(ctx, "round_to_precision");
}
