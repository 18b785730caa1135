/* RMSNorm over the channel dimension (the Llama family): the twin of Kernels/rmsnorm.cu. Its input
 * (the residual stream) and rstd are float32; its output, and the output's gradient, are activations. */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *residual;
    void *out;
    float *rstd;
    const float *inp;
    const void *b;
    const float *weight;
    int C, bf16;
    float eps;
} rmsnorm_args;

/* One row: out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps). */
static void rms_normalize_row(const rmsnorm_args *a, int64_t n, const float *x) {
    int C = a->C;
    float squares = 0.0f;
    for (int c = 0; c < C; c++) squares += x[c] * x[c];
    float s = 1.0f / sqrtf(squares / C + a->eps);
    void *o = act_at(a->out, n * C, a->bf16);
    for (int c = 0; c < C; c++) act_store(o, c, x[c] * s * a->weight[c], a->bf16);
    a->rstd[n] = s;
}

static void rmsnorm_forward_rows(void *p, int64_t begin, int64_t end) {
    rmsnorm_args *a = p;
    for (int64_t n = begin; n < end; n++) rms_normalize_row(a, n, a->inp + n * a->C);
}

void rmsnorm_forward(baton_context *ctx, baton_activation *out, float *rstd, const float *inp, const float *weight,
                     int N, int C, float eps) {
    rmsnorm_args a = {NULL, out, rstd, inp, NULL, weight, C, stores_bf16(ctx), eps};
    parallel_for(ctx, N, 4, rmsnorm_forward_rows, &a);
}

/* residual = inp + b, then the row normalised as above (read back while still in cache). */
static void residual_rmsnorm_forward_rows(void *p, int64_t begin, int64_t end) {
    rmsnorm_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        float *r = a->residual + n * C;
        const float *x = a->inp + n * C;
        for (int c = 0; c < C; c++) r[c] = x[c] + act_load(a->b, n * C + c, a->bf16);
        rms_normalize_row(a, n, r);
    }
}

void residual_rmsnorm_forward(baton_context *ctx, float *residual, baton_activation *out, float *rstd, const float *a,
                              const baton_activation *b, const float *weight, int N, int C, float eps) {
    rmsnorm_args args = {residual, out, rstd, a, b, weight, C, stores_bf16(ctx), eps};
    parallel_for(ctx, N, 4, residual_rmsnorm_forward_rows, &args);
}

typedef struct {
    float *dinp;
    void *dinp_activation;
    float *dweight;
    const void *dout;
    const float *inp, *weight, *rstd;
    int N, C, bf16;
} rmsnorm_backward_args;

/* dinp += rstd * (g - xhat * mean(g * xhat)), with g = dout * weight. Per row. */
static void rmsnorm_backward_rows(void *p, int64_t begin, int64_t end) {
    rmsnorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = begin; n < end; n++) {
        const float *x = a->inp + n * C;
        const void *d = act_at(a->dout, n * C, a->bf16);
        float s = a->rstd[n], gx_mean = 0.0f;
        for (int c = 0; c < C; c++) gx_mean += act_load(d, c, a->bf16) * a->weight[c] * x[c] * s;
        gx_mean /= C;
        float *di = a->dinp + n * C;
        for (int c = 0; c < C; c++) di[c] += s * (act_load(d, c, a->bf16) * a->weight[c] - x[c] * s * gx_mean);
        if (a->dinp_activation)
            for (int c = 0; c < C; c++) act_store(a->dinp_activation, n * C + c, di[c], a->bf16);
    }
}

/* dweight sums over rows: split over channels, rows in order. */
static void rmsnorm_backward_weight(void *p, int64_t c0, int64_t c1) {
    rmsnorm_backward_args *a = p;
    int C = a->C;
    for (int64_t n = 0; n < a->N; n++) {
        const float *x = a->inp + n * C;
        const void *d = act_at(a->dout, n * C, a->bf16);
        float s = a->rstd[n];
        for (int64_t c = c0; c < c1; c++) a->dweight[c] += act_load(d, c, a->bf16) * x[c] * s;
    }
}

void rmsnorm_backward(baton_context *ctx, float *dinp, baton_activation *dinp_activation, float *dweight,
                      const baton_activation *dout, const float *inp, const float *weight, const float *rstd, int N,
                      int C) {
    rmsnorm_backward_args a = {dinp, dinp_activation, dweight, dout, inp, weight, rstd, N, C, stores_bf16(ctx)};
    parallel_for(ctx, N, 4, rmsnorm_backward_rows, &a);
    parallel_for(ctx, C, 16, rmsnorm_backward_weight, &a);
}
