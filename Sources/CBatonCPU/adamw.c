/* AdamW, with PyTorch's order of operations (torch.optim.AdamW, foreach=False). */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *params; const float *grads; float *m, *v;
    float lr, beta1, beta2, eps, weight_decay, grad_scale, step_size, bias_correction2_sqrt;
    const int64_t *ranges; int range_count;
} adamw_args;

static void adamw_elements(const adamw_args *a, int64_t begin, int64_t end, float weight_decay) {
    for (int64_t i = begin; i < end; i++) {
        float g = a->grads[i] * a->grad_scale;
        float param = a->params[i] * (1.0f - a->lr * weight_decay);
        float m = a->beta1 * a->m[i] + (1.0f - a->beta1) * g;
        float v = a->beta2 * a->v[i] + (1.0f - a->beta2) * g * g;
        float denom = sqrtf(v) / a->bias_correction2_sqrt + a->eps;
        a->params[i] = param - a->step_size * (m / denom);
        a->m[i] = m;
        a->v[i] = v;
    }
}

/* [begin, end) cut where decay starts and stops: the ranges are sorted, so one walk. */
static void adamw_range(void *p, int64_t begin, int64_t end) {
    adamw_args *a = p;
    if (!a->ranges) {
        adamw_elements(a, begin, end, a->weight_decay);
        return;
    }
    int r = 0;
    while (r < a->range_count && a->ranges[2 * r + 1] <= begin) r++;
    for (int64_t i = begin; i < end;) {
        if (r < a->range_count && a->ranges[2 * r] <= i) {
            int64_t stop = a->ranges[2 * r + 1] < end ? a->ranges[2 * r + 1] : end;
            adamw_elements(a, i, stop, a->weight_decay);
            i = stop;
            r++;
        } else {
            int64_t stop = r < a->range_count && a->ranges[2 * r] < end ? a->ranges[2 * r] : end;
            adamw_elements(a, i, stop, 0.0f);
            i = stop;
        }
    }
}

void adamw_update(baton_context *ctx, float *params, const float *grads, float *m, float *v, int64_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t, const int64_t *decay_ranges,
                  int range_count) {
    float bias_correction1 = 1.0f - powf(beta1, (float)t);
    float bias_correction2 = 1.0f - powf(beta2, (float)t);
    adamw_args a = {params, grads, m, v, lr, beta1, beta2, eps, weight_decay, grad_scale,
                    lr / bias_correction1, sqrtf(bias_correction2), decay_ranges, range_count};
    parallel_for(ctx, n, 8192, adamw_range, &a);
}
