/* AdamW over a flat buffer, element by element as baton_adamw.h says, split over the pool. */
#include "kernels.h"
#include "baton_adamw.h"

typedef struct {
    float *params;
    const float *grads;
    float *m, *v;
    baton_adamw step;
    float weight_decay;
    const int64_t *ranges;
    int range_count;
} adamw_args;

static void adamw_elements(const adamw_args *a, int64_t begin, int64_t end, float weight_decay) {
    for (int64_t i = begin; i < end; i++)
        baton_adamw_element(a->step, weight_decay, &a->params[i], &a->m[i], &a->v[i], a->grads[i]);
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
                  float beta1, float beta2, float eps, float weight_decay, float grad_scale, int64_t t,
                  const int64_t *decay_ranges, int range_count) {
    adamw_args a = {
            params,       grads,        m,          v, baton_adamw_at_step(lr, beta1, beta2, eps, grad_scale, t),
            weight_decay, decay_ranges, range_count};
    parallel_for(ctx, n, 8192, adamw_range, &a);
}
