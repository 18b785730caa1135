/* A linear layer's fused ops: the matmul with its bias (and GELU) and the gradient through a
 * linear layer and a GELU. On the CPU they are the separate ops run one after another; the
 * point is their rounding in bf16, once at the end, as cuBLASLt's epilogues round on a GPU. */
#include "kernels.h"

static void round_if_bf16(baton_context *ctx, float *x, int64_t n) {
    if (ctx->precision == BATON_PRECISION_BF16) round_to_precision(ctx, x, n, BATON_PRECISION_BF16);
}

void linear_forward(baton_context *ctx, float *out, float *gelu_out, const float *inp, const float *weight, const float *bias, int N,
                    int IC, int OC) {
    int64_t n = (int64_t)N * OC;
    gemm_in_precision(ctx, out, inp, weight, N, OC, IC, 0, 0, 0.0f);
    bias_forward(ctx, out, bias, N, OC);
    if (gelu_out) {
        gelu_forward(ctx, gelu_out, out, n);
        round_if_bf16(ctx, gelu_out, n);
    }
    round_if_bf16(ctx, out, n);
}

void matmul_gelu_backward(baton_context *ctx, float *dinp, const float *dout, const float *weight, const float *pre_gelu, int N, int IC,
                          int OC) {
    int64_t n = (int64_t)N * IC;
    gemm_in_precision(ctx, dinp, dout, weight, N, IC, OC, 0, 1, 0.0f);
    gelu_backward(ctx, dinp, pre_gelu, dinp, n);
    round_if_bf16(ctx, dinp, n);
}
