/* LayerNorm over the channel dimension, eps 1e-5 (as GPT-2). Its input (the residual stream) and
 * statistics are float32; its output, and the output's gradient, are activations. */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *residual;
    void *out;
    float *mean, *rstd;
    const float *inp;
    const void *b;
    const float *weight, *bias;
    int C, bf16;
} layernorm_args;

/* One row: out = (x - mean) * rstd * weight + bias, and its statistics. */
static void normalize_row(const layernorm_args *a, int64_t n, const float *x) {
    int C = a->C;
    float sum = 0.0f;
    for (int c = 0; c < C; c++) sum += x[c];
    float m = sum / C;
    float var = 0.0f;
    for (int c = 0; c < C; c++) {
        float d = x[c] - m;
        var += d * d;
    }
    float s = 1.0f / sqrtf(var / C + 1e-5f);
    void *o = act_at(a->out, n * C, a->bf16);
    for (int c = 0; c < C; c++) act_store(o, c, (x[c] - m) * s * a->weight[c] + a->bias[c], a->bf16);
    a->mean[n] = m;
    a->rstd[n] = s;
}

static void layernorm_forward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_args *a = p;
    for (int64_t n = begin; n < end; n++) normalize_row(a, n, a->inp + n * a->C);
}

void layernorm_forward(baton_context *ctx, baton_activation *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C) {
    layernorm_args a = {NULL, out, mean, rstd, inp, NULL, weight, bias, C, stores_bf16(ctx)};
    parallel_for(ctx, N, 4, layernorm_forward_rows, &a);
}

/* residual = inp + b, then the row normalised as above (read back while still in cache). */
static void residual_layernorm_forward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        float *r = a->residual + n * C;
        const float *x = a->inp + n * C;
        for (int c = 0; c < C; c++) r[c] = x[c] + act_load(a->b, n * C + c, a->bf16);
        normalize_row(a, n, r);
    }
}

void residual_layernorm_forward(baton_context *ctx, float *residual, baton_activation *out, float *mean, float *rstd,
                                const float *a, const baton_activation *b, const float *weight, const float *bias,
                                int N, int C) {
    layernorm_args args = {residual, out, mean, rstd, a, b, weight, bias, C, stores_bf16(ctx)};
    parallel_for(ctx, N, 4, residual_layernorm_forward_rows, &args);
}

typedef struct {
    float *dinp;
    void *dinp_activation;
    float *dweight, *dbias;
    const void *dout;
    const float *inp, *weight, *mean, *rstd;
    int N, C, bf16;
} layernorm_backward_args;

/* dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dout * weight. Per row. */
static void layernorm_backward_rows(void *p, int64_t begin, int64_t end) {
    layernorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        const float *x = a->inp + n * C;
        const void *d = act_at(a->dout, n * C, a->bf16);
        float m = a->mean[n], s = a->rstd[n];
        float g_mean = 0.0f, gx_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float g = act_load(d, c, a->bf16) * a->weight[c];
            g_mean += g;
            gx_mean += g * (x[c] - m) * s;
        }
        g_mean /= C;
        gx_mean /= C;
        float *di = a->dinp + n * C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s;
            di[c] += s * (act_load(d, c, a->bf16) * a->weight[c] - g_mean - xhat * gx_mean);
        }
        if (a->dinp_activation)
            for (int c = 0; c < C; c++) act_store(a->dinp_activation, n * C + c, di[c], a->bf16);
    }
}

/* dweight and dbias sum over rows: split over channels, rows in order. */
static void layernorm_backward_params(void *p, int64_t c0, int64_t c1) {
    layernorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = 0; n < a->N; n++) {
        const float *x = a->inp + n * C;
        const void *d = act_at(a->dout, n * C, a->bf16);
        float m = a->mean[n], s = a->rstd[n];
        for (int64_t c = c0; c < c1; c++) {
            float dc = act_load(d, c, a->bf16);
            a->dbias[c] += dc;
            a->dweight[c] += dc * (x[c] - m) * s;
        }
    }
}

void layernorm_backward(baton_context *ctx, float *dinp, baton_activation *dinp_activation, float *dweight,
                        float *dbias, const baton_activation *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd, int N, int C) {
    layernorm_backward_args a = {dinp, dinp_activation, dweight, dbias, dout, inp, weight, mean, rstd, N,
                                 C,    stores_bf16(ctx)};
    parallel_for(ctx, N, 4, layernorm_backward_rows, &a);
    parallel_for(ctx, C, 16, layernorm_backward_params, &a);
}
