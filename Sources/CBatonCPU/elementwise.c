/* Elementwise ops: add and fill. */
#include "kernels.h"

typedef struct {
    float *out;
    const float *a, *b;
    float value;
} elementwise_args;

static void add_range(void *p, int64_t begin, int64_t end) {
    elementwise_args *e = p;
    for (int64_t i = begin; i < end; i++) e->out[i] = e->a[i] + e->b[i];
}

void add(baton_context *ctx, float *out, const float *a, const float *b, int64_t n) {
    elementwise_args e = {out, a, b, 0.0f};
    parallel_for(ctx, n, 8192, add_range, &e);
}

static void fill_range(void *p, int64_t begin, int64_t end) {
    elementwise_args *e = p;
    for (int64_t i = begin; i < end; i++) e->out[i] = e->value;
}

void fill(baton_context *ctx, float *x, float value, int64_t n) {
    elementwise_args e = {x, NULL, NULL, value};
    parallel_for(ctx, n, 16384, fill_range, &e);
}
