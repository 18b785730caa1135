// AdamW with PyTorch's order of operations: the twin of Sources/CBatonCPU/adamw.c.
#include <cmath>

#include "common.cuh"

// Whether element i decays: a binary search of the sorted ranges (about 50 for GPT-2 124M).
__device__ inline bool decays(long long i, const int64_t *ranges, int count) {
    if (!ranges) return true;
    int low = 0, high = count;  // the first range whose end is past i
    while (low < high) {
        int mid = (low + high) / 2;
        if (ranges[2 * mid + 1] <= i) low = mid + 1; else high = mid;
    }
    return low < count && ranges[2 * low] <= i;
}

// One launch over the whole flat buffer (the CPU's twin walks the same ranges).
__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, long long n, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float grad_scale, float step_size, float bias_correction2_sqrt,
                             const int64_t *ranges, int range_count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (!decays(i, ranges, range_count)) weight_decay = 0.0f;
    float g = grads[i] * grad_scale;
    float param = params[i] * (1.0f - lr * weight_decay);
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    float denom = sqrtf(vi) / bias_correction2_sqrt + eps;
    params[i] = param - step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
}

void adamw_update(baton_context *ctx, float *params, const float *grads, float *m, float *v, int64_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, float grad_scale, int64_t t, const int64_t *decay_ranges, int range_count) {
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2 = 1.0f - powf(beta2, (float)t);
    adamw_kernel<<<blocks_for(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale,
                                              lr / bias_correction1, sqrtf(bias_correction2), decay_ranges, range_count);
    check_launch(ctx, "adamw_update");
}
