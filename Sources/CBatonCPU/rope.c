/* Rotary position embedding in place (transformers' rotate-half): the twin of Kernels/rope.cu. */
#include "kernels.h"

typedef struct {
    void *x;
    const float *freqs;
    int T, width, heads, HS, bf16;
    float sign; /* 1: rotate by the position's angle; -1: back (the gradient) */
} rope_args;

static void rope_rows(void *p, int64_t begin, int64_t end) {
    rope_args *a = p;
    int half = a->HS / 2;
    for (int64_t row = begin; row < end; row++) {
        const float *f = a->freqs + (row % a->T) * 2 * half;
        for (int h = 0; h < a->heads; h++) {
            int64_t base = row * a->width + (int64_t)h * a->HS;
            for (int i = 0; i < half; i++) {
                float cosine = f[2 * i], sine = a->sign * f[2 * i + 1];
                float x1 = act_load(a->x, base + i, a->bf16), x2 = act_load(a->x, base + i + half, a->bf16);
                act_store(a->x, base + i, x1 * cosine - x2 * sine, a->bf16);
                act_store(a->x, base + i + half, x2 * cosine + x1 * sine, a->bf16);
            }
        }
    }
}

static void rope(baton_context *ctx, void *x, const float *freqs, int B, int T, int width, int heads, int HS,
                 float sign) {
    rope_args a = {x, freqs, T, width, heads, HS, stores_bf16(ctx), sign};
    parallel_for(ctx, (int64_t)B * T, 16, rope_rows, &a);
}

void rope_forward(baton_context *ctx, baton_activation *x, const float *freqs, int B, int T, int width, int heads,
                  int HS) {
    rope(ctx, x, freqs, B, T, width, heads, HS, 1.0f);
}

void rope_backward(baton_context *ctx, baton_activation *dx, const float *freqs, int B, int T, int width, int heads,
                   int HS) {
    rope(ctx, dx, freqs, B, T, width, heads, HS, -1.0f);
}
