/* Sum of squares in fixed 64K-element chunks (double), chunks added in order: the same bits
 * whatever the thread count. */
#include "kernels.h"
#include <stdlib.h>

#define NORM_CHUNK 65536

typedef struct {
    const float *x;
    int64_t n;
    double *partials;
} norm_args;

static void norm_chunks(void *p, int64_t begin, int64_t end) {
    norm_args *a = p;
    for (int64_t chunk = begin; chunk < end; chunk++) {
        int64_t i0 = chunk * NORM_CHUNK, i1 = i0 + NORM_CHUNK < a->n ? i0 + NORM_CHUNK : a->n;
        double sum = 0.0;
        for (int64_t i = i0; i < i1; i++) sum += (double)a->x[i] * a->x[i];
        a->partials[chunk] = sum;
    }
}

void global_norm_squared(baton_context *ctx, float *out, const float *x, int64_t n) {
    int64_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double stack_partials[64];
    double *partials = chunks <= 64 ? stack_partials : malloc(sizeof(double) * (size_t)chunks);
    norm_args a = {x, n, partials};
    parallel_for(ctx, chunks, 1, norm_chunks, &a);
    double total = 0.0;
    for (int64_t c = 0; c < chunks; c++) total += partials[c];
    if (partials != stack_partials) free(partials);
    out[0] = (float)total;
}
