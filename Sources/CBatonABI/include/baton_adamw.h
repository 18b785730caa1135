/*
 * baton_adamw.h — AdamW's arithmetic, one source for the CPU backend (adamw.c) and the CUDA kernel
 * (adamw.cu), so both give the same bits for the same inputs. PyTorch's order of operations
 * (torch.optim.AdamW, foreach=False): with g = grad * grad_scale,
 *   param *= 1 - lr * weight_decay
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   param -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 */
#ifndef BATON_ADAMW_H
#define BATON_ADAMW_H

#include <math.h>
#include <stdint.h>

#include "baton_host_device.h"

/* One step's settings, with its bias corrections worked out once (baton_adamw_at_step). */
typedef struct baton_adamw {
    float lr, beta1, beta2, eps, grad_scale;
    float step_size;             /* lr / (1 - beta1^t) */
    float bias_correction2_sqrt; /* sqrt(1 - beta2^t) */
} baton_adamw;

/* The settings of step t (1-based). */
static inline baton_adamw baton_adamw_at_step(float lr, float beta1, float beta2, float eps, float grad_scale,
                                              int64_t t) {
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2 = 1.0f - powf(beta2, (float)t);
    baton_adamw a = {lr, beta1, beta2, eps, grad_scale, lr / bias_correction1, sqrtf(bias_correction2)};
    return a;
}

/* One element: *param, *m and *v updated from its gradient, with weight_decay (0 where the
 * element does not decay). */
static inline BATON_HOST_DEVICE void baton_adamw_element(baton_adamw a, float weight_decay, float *param, float *m,
                                                         float *v, float grad) {
    float g = grad * a.grad_scale;
    float p = *param * (1.0f - a.lr * weight_decay);
    float mi = a.beta1 * *m + (1.0f - a.beta1) * g;
    float vi = a.beta2 * *v + (1.0f - a.beta2) * g * g;
    float denom = sqrtf(vi) / a.bias_correction2_sqrt + a.eps;
    *param = p - a.step_size * (mi / denom);
    *m = mi;
    *v = vi;
}

#endif
