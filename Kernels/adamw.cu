// AdamW with PyTorch's order of operations (baton_adamw.h): the twin of Sources/CBatonCPU/adamw.c.
#include "common.cuh"
#include "baton_adamw.h"

// Whether element i decays: a binary search of the sorted ranges (about 50 for GPT-2 124M).
__device__ inline bool decays(long long i, const int64_t *ranges, int count) {
    if (!ranges) return true;
    int low = 0, high = count; // the first range whose end is past i
    while (low < high) {
        int mid = (low + high) / 2;
        if (ranges[2 * mid + 1] <= i)
            low = mid + 1;
        else
            high = mid;
    }
    return low < count && ranges[2 * low] <= i;
}

// One launch over the whole flat buffer (the CPU's twin walks the same ranges); the arithmetic is
// baton_adamw.h's.
__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, long long n, baton_adamw step,
                             float weight_decay, const int64_t *ranges, int range_count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    baton_adamw_element(step, decays(i, ranges, range_count) ? weight_decay : 0.0f, &params[i], &m[i], &v[i], grads[i]);
}

void adamw_update(baton_context *ctx, float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t,
                  const int64_t *decay_ranges, int range_count) {
    baton_adamw step = baton_adamw_at_step(lr, beta1, beta2, eps, grad_scale, t);
    adamw_kernel<<<blocks_for(n, 256), 256>>>(params, grads, m, v, n, step, weight_decay, decay_ranges, range_count);
    check_launch(ctx, "adamw_update");
}
