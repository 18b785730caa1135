/* AdamW, with PyTorch's order of operations (torch.optim.AdamW, foreach=False). */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *params; const float *grads; float *m, *v;
    float lr, beta1, beta2, eps, weight_decay, grad_scale, step_size, bias_correction2_sqrt;
} adamw_args;

static void adamw_range(void *p, int64_t begin, int64_t end) {
    adamw_args *a = p;
    for (int64_t i = begin; i < end; i++) {
        float g = a->grads[i] * a->grad_scale;
        float param = a->params[i] * (1.0f - a->lr * a->weight_decay);
        float m = a->beta1 * a->m[i] + (1.0f - a->beta1) * g;
        float v = a->beta2 * a->v[i] + (1.0f - a->beta2) * g * g;
        float denom = sqrtf(v) / a->bias_correction2_sqrt + a->eps;
        a->params[i] = param - a->step_size * (m / denom);
        a->m[i] = m;
        a->v[i] = v;
    }
}

void adamw_update(baton_context *ctx, float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t) {
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2 = 1.0f - powf(beta2, (float)t);
    adamw_args a = {params, grads, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale,
                    lr / bias_correction1, sqrtf(bias_correction2)};
    parallel_for(ctx, n, 8192, adamw_range, &a);
}
