/* LayerNorm over the channel dimension, eps 1e-5 (as GPT-2). */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *residual, *out, *mean, *rstd; const float *inp, *b, *weight, *bias; int C;
} layernorm_args;

/* One row: out = (x - mean) * rstd * weight + bias, and its statistics. */
static void normalize_row(const layernorm_args *a, int64_t n, const float *x) {
    int C = a->C;
    float sum = 0.0f;
    for (int c = 0; c < C; c++) sum += x[c];
    float m = sum / C;
    float var = 0.0f;
    for (int c = 0; c < C; c++) { float d = x[c] - m; var += d * d; }
    float s = 1.0f / sqrtf(var / C + 1e-5f);
    float *o = a->out + n * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * a->weight[c] + a->bias[c];
    a->mean[n] = m;
    a->rstd[n] = s;
}

static void layernorm_forward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_args *a = p;
    for (int64_t n = begin; n < end; n++) normalize_row(a, n, a->inp + n * a->C);
}

void layernorm_forward(baton_context *ctx, float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C) {
    layernorm_args a = {NULL, out, mean, rstd, inp, NULL, weight, bias, C};
    parallel_for(ctx, N, 4, layernorm_forward_rows, &a);
}

/* residual = inp + b, then the row normalised as above (read back while still in cache). */
static void residual_layernorm_forward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        float *r = a->residual + n * C;
        const float *x = a->inp + n * C, *y = a->b + n * C;
        for (int c = 0; c < C; c++) r[c] = x[c] + y[c];
        normalize_row(a, n, r);
    }
}

void residual_layernorm_forward(baton_context *ctx, float *residual, float *out, float *mean, float *rstd, const float *a,
                                const float *b, const float *weight, const float *bias, int N, int C) {
    layernorm_args args = {residual, out, mean, rstd, a, b, weight, bias, C};
    parallel_for(ctx, N, 4, residual_layernorm_forward_rows, &args);
}

typedef struct {
    float *dinp, *dweight, *dbias; const float *dout, *inp, *weight, *mean, *rstd; int N, C;
} layernorm_backward_args;

/* dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dout * weight. Per row. */
static void layernorm_backward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        const float *x = a->inp + n * C, *d = a->dout + n * C;
        float m = a->mean[n], s = a->rstd[n];
        float g_mean = 0.0f, gx_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float g = d[c] * a->weight[c];
            g_mean += g;
            gx_mean += g * (x[c] - m) * s;
        }
        g_mean /= C;
        gx_mean /= C;
        float *di = a->dinp + n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s;
            di[c] += s * (d[c] * a->weight[c] - g_mean - xhat * gx_mean);
        }
    }
}

/* dweight and dbias sum over rows: split over channels, rows in order. */
static void layernorm_backward_params(void *p, int64_t c0, int64_t c1) {
    layernorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = 0; n < a->N; n++) {
        const float *x = a->inp + n * C, *d = a->dout + n * C;
        float m = a->mean[n], s = a->rstd[n];
        for (int64_t c = c0; c < c1; c++) {
            a->dbias[c] += d[c];
            a->dweight[c] += d[c] * (x[c] - m) * s;
        }
    }
}

void layernorm_backward(baton_context *ctx, float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int N, int C) {
    layernorm_backward_args a = {dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C};
    parallel_for(ctx, N, 4, layernorm_backward_rows, &a);
    parallel_for(ctx, C, 16, layernorm_backward_params, &a);
}
