/* A linear layer's fused ops: the matmul with its bias (and GELU) and the gradient through a
 * linear layer and a GELU. On the CPU in fp32 they are the matmul, then the bias, the GELU or
 * its gradient as passes of their own; the point is their rounding in bf16, once at the end, as
 * cuBLASLt's epilogues round on a GPU: the float32 sum (plus the bias, through the GELU) stored as a
 * bf16 activation. */
#include "baton_gelu.h"
#include "kernels.h"
#include <stdlib.h>

/* fp32: the bias, GELU and GELU's gradient as separate passes over float32 outputs. */
typedef struct {
    float *out;
    const float *inp, *dout, *bias;
    int OC;
} float_epilogue_args;

/* out[n,:] += bias */
static void bias_rows(void *p, int64_t begin, int64_t end) {
    float_epilogue_args *a = p;
    for (int64_t n = begin; n < end; n++) {
        float *o = a->out + n * a->OC;
        for (int c = 0; c < a->OC; c++) o[c] += a->bias[c];
    }
}

/* out = GELU(inp) */
static void gelu_range(void *p, int64_t begin, int64_t end) {
    float_epilogue_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = baton_gelu(a->inp[i]);
}

/* out = GELU'(inp) * dout; out may alias dout (each element is read before it is written). */
static void gelu_gradient_range(void *p, int64_t begin, int64_t end) {
    float_epilogue_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = baton_gelu_backward(a->inp[i], a->dout[i]);
}

typedef struct {
    void *out, *gelu_out;
    const float *wide;
    const void *bias, *pre_gelu;
    int64_t columns;
} bf16_epilogue_args;

/* out = sum + bias and gelu_out = GELU(sum + bias), stored as bf16. */
static void bias_gelu_rows(void *p, int64_t begin, int64_t end) {
    bf16_epilogue_args *a = p;
    for (int64_t n = begin; n < end; n++)
        for (int64_t c = 0; c < a->columns; c++) {
            int64_t i = n * a->columns + c;
            float pre = a->wide[i] + (a->bias ? act_load(a->bias, c, 1) : 0.0f);
            act_store(a->out, i, pre, 1);
            if (a->gelu_out) act_store(a->gelu_out, i, baton_gelu(pre), 1);
        }
}

void linear_forward(baton_context *ctx, baton_activation *out, baton_activation *gelu_out, const baton_activation *inp,
                    const baton_activation *weight, const baton_activation *bias, int N, int IC, int OC, int trans_w) {
    int64_t n = (int64_t)N * OC;
    if (!stores_bf16(ctx)) {
        gemm_in_precision(ctx, out, inp, weight, N, OC, IC, 0, trans_w, 0.0f);
        float_epilogue_args bias_args = {out, NULL, NULL, bias, OC};
        if (bias) parallel_for(ctx, N, 16, bias_rows, &bias_args);
        if (gelu_out) {
            float_epilogue_args gelu_args = {gelu_out, out, NULL, NULL, OC};
            parallel_for(ctx, n, 4096, gelu_range, &gelu_args);
        }
        return;
    }
    float *wide = wide_buffer(ctx, n);
    if (!wide) abort(); /* out of host memory */
    gemm_in_precision(ctx, wide, inp, weight, N, OC, IC, 0, trans_w, 0.0f);
    bf16_epilogue_args a = {out, gelu_out, wide, bias, NULL, OC};
    parallel_for(ctx, N, 16, bias_gelu_rows, &a);
}

/* dinp = GELU'(pre_gelu) * sum, stored as bf16. */
static void gelu_gradient_rows(void *p, int64_t begin, int64_t end) {
    bf16_epilogue_args *a = p;
    for (int64_t i = begin * a->columns; i < end * a->columns; i++)
        act_store(a->out, i, baton_gelu_backward(act_load(a->pre_gelu, i, 1), a->wide[i]), 1);
}

void matmul_gelu_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                          const baton_activation *weight, const baton_activation *pre_gelu, int N, int IC, int OC) {
    if (!stores_bf16(ctx)) {
        gemm_in_precision(ctx, dinp, dout, weight, N, IC, OC, 0, 1, 0.0f);
        float_epilogue_args a = {dinp, pre_gelu, dinp, NULL, IC};
        parallel_for(ctx, N * (int64_t)IC, 4096, gelu_gradient_range, &a);
        return;
    }
    float *wide = wide_buffer(ctx, (int64_t)N * IC);
    if (!wide) abort();
    gemm_in_precision(ctx, wide, dout, weight, N, IC, OC, 0, 1, 0.0f);
    bf16_epilogue_args a = {dinp, NULL, wide, NULL, pre_gelu, IC};
    parallel_for(ctx, N, 16, gelu_gradient_rows, &a);
}
