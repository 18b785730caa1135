// AdamW with PyTorch's order of operations: the twin of Sources/CBatonCPU/adamw.c.
#include <cmath>

#include "common.cuh"

__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, long long n, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float grad_scale, float step_size, float bias_correction2_sqrt) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
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
                  float weight_decay, float grad_scale, int64_t t) {
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2 = 1.0f - powf(beta2, (float)t);
    adamw_kernel<<<blocks_for(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale,
                                              lr / bias_correction1, sqrtf(bias_correction2));
    check_launch(ctx, "adamw_update");
}
