/* Rounding to TF32 and bfloat16 for the matmul precisions (see baton_precision in
 * baton_backend.h), and storing float32 values as activations (bfloat16 in BF16): the CPU twin of
 * Kernels/precision.cu; both round by baton_rounding.h. */
#include "kernels.h"
#include "baton_rounding.h"
#include <stdlib.h>
#include <string.h>

float baton_round_bf16(float x) { return round_float(x, 16); }
float baton_round_tf32(float x) { return round_float(x, 13); }

typedef struct {
    float *out;
    const float *in;
    int dropped;
} round_args;

static void round_range(void *p, int64_t begin, int64_t end) {
    round_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = round_float(a->in[i], a->dropped);
}

void round_copy_to_precision(baton_context *ctx, float *out, const float *in, int64_t n, int precision) {
    if (precision == BATON_PRECISION_FP32) {
        if (out != in) memcpy(out, in, (size_t)n * 4);
        return;
    }
    round_args a = {out, in, precision == BATON_PRECISION_BF16 ? 16 : 13};
    parallel_for(ctx, n, 1 << 16, round_range, &a);
}

/* *buffer grown to at least n floats (its old contents not kept); NULL when memory is out. */
static float *at_least(float **buffer, int64_t *capacity, int64_t n) {
    if (n > *capacity) {
        float *grown = realloc(*buffer, (size_t)n * 4);
        if (!grown) return NULL;
        *buffer = grown;
        *capacity = n;
    }
    return *buffer;
}

float *rounding_buffer(baton_context *ctx, int64_t n) { return at_least(&ctx->rounded, &ctx->rounded_capacity, n); }

float *wide_buffer(baton_context *ctx, int64_t n) { return at_least(&ctx->wide, &ctx->wide_capacity, n); }

typedef struct {
    void *out;
    const float *in;
    int bf16;
} store_args;

static void store_range(void *p, int64_t begin, int64_t end) {
    store_args *a = p;
    for (int64_t i = begin; i < end; i++) act_store(a->out, i, a->in[i], a->bf16);
}

void store_activations(baton_context *ctx, void *out, const float *in, int64_t n) {
    if (!stores_bf16(ctx)) {
        if (out != in) memcpy(out, in, (size_t)n * 4);
        return;
    }
    store_args a = {out, in, 1};
    parallel_for(ctx, n, 1 << 16, store_range, &a);
}

void to_activation(baton_context *ctx, baton_activation *out, const float *in, int64_t n) {
    store_activations(ctx, out, in, n);
}
