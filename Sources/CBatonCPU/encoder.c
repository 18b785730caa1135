/* Token + position embedding (the position table NULL: rotary models have none). */
#include "kernels.h"

typedef struct {
    float *out;
    const int32_t *tokens;
    const float *wte, *wpe;
    int T, C;
} encoder_args;

static void encoder_forward_rows(void *p, int64_t begin, int64_t end) {
    encoder_args *a = p;
    for (int64_t row = begin; row < end; row++) {
        int t = (int)(row % a->T);
        float *out = a->out + row * a->C;
        const float *tok = a->wte + (int64_t)a->tokens[row] * a->C;
        if (!a->wpe) {
            memcpy(out, tok, sizeof(float) * a->C);
            continue;
        }
        const float *pos = a->wpe + (int64_t)t * a->C;
        for (int c = 0; c < a->C; c++) out[c] = tok[c] + pos[c];
    }
}

void encoder_forward(baton_context *ctx, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                     int T, int C) {
    encoder_args a = {out, tokens, wte, wpe, T, C};
    parallel_for(ctx, (int64_t)B * T, 16, encoder_forward_rows, &a);
}

typedef struct {
    float *dwte, *dwpe;
    const float *dout;
    const int32_t *tokens, *bucket_rows, *bucket_starts;
    int B, T, C;
} encoder_backward_args;

/* One token's rows in row order (a group of the buckets): the token's row of dwte is written by
 * one thread, and each channel's sum is in row order, as the CUDA kernel adds it. */
static void encoder_backward_buckets(void *p, int64_t g0, int64_t g1) {
    encoder_backward_args *a = p;
    for (int64_t g = g0; g < g1; g++) {
        int32_t first = a->bucket_starts[g], end = a->bucket_starts[g + 1];
        float *dtok = a->dwte + (int64_t)a->tokens[a->bucket_rows[first]] * a->C;
        for (int32_t i = first; i < end; i++) {
            const float *d = a->dout + (int64_t)a->bucket_rows[i] * a->C;
            for (int c = 0; c < a->C; c++) dtok[c] += d[c];
        }
    }
}

/* dwpe[t] adds dout[b, t] over b in order: split over positions. */
static void encoder_backward_positions(void *p, int64_t t0, int64_t t1) {
    encoder_backward_args *a = p;
    for (int64_t t = t0; t < t1; t++) {
        float *dpos = a->dwpe + t * a->C;
        for (int b = 0; b < a->B; b++) {
            const float *d = a->dout + ((int64_t)b * a->T + t) * a->C;
            for (int c = 0; c < a->C; c++) dpos[c] += d[c];
        }
    }
}

void encoder_backward(baton_context *ctx, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                      const int32_t *bucket_rows, const int32_t *bucket_starts, int buckets, int B, int T, int C) {
    encoder_backward_args a = {dwte, dwpe, dout, tokens, bucket_rows, bucket_starts, B, T, C};
    parallel_for(ctx, buckets, 8, encoder_backward_buckets, &a);
    if (dwpe) parallel_for(ctx, T, 8, encoder_backward_positions, &a);
}
