/* Matrix multiply on OpenBLAS, and the bias that goes with a linear layer.
 * OpenBLAS runs single-threaded (see backend.c). The output is cut into blocks of rows (or
 * columns), each an independent sgemm call, and the pool hands the blocks to its threads. The
 * blocks follow from the shape alone (a power of two of them, as many as keep a block at least
 * 512 rows long, at least 2 and at most 64: each sgemm call repacks the whole other operand, so
 * shorter blocks cost measurably; 256-row blocks made 4096-row matmuls about 10% slower), and
 * every element is one sgemm micro-kernel's dot product over K in one fixed order, so the bits
 * do not depend on the thread count. */
#include "kernels.h"
#include <cblas.h>
#include <stdlib.h>

static int64_t matmul_block_size(int64_t count) {
    int64_t blocks = 2;
    while (blocks < 64 && count / (blocks * 2) >= 512) blocks *= 2;
    int64_t size = (count + blocks - 1) / blocks;
    return size < 16 ? 16 : size;
}

typedef struct {
    float *c;
    const float *a, *b;
    int M, N, K, trans_a, trans_b, split_rows;
    float beta;
    int64_t block_size;
} matmul_args;

static void matmul_blocks(void *p, int64_t begin, int64_t end) {
    matmul_args *x = p;
    int lda = x->trans_a ? x->M : x->K, ldb = x->trans_b ? x->K : x->N;
    for (int64_t block = begin; block < end; block += x->block_size) {
        int64_t size = end - block < x->block_size ? end - block : x->block_size;
        const float *a = x->a, *b = x->b;
        float *c = x->c;
        int rows = x->M, cols = x->N;
        if (x->split_rows) {
            a += x->trans_a ? block : block * x->K;
            c += block * x->N;
            rows = (int)size;
        } else {
            b += x->trans_b ? block * x->K : block;
            c += block;
            cols = (int)size;
        }
        cblas_sgemm(CblasRowMajor, x->trans_a ? CblasTrans : CblasNoTrans, x->trans_b ? CblasTrans : CblasNoTrans, rows,
                    cols, x->K, 1.0f, a, lda, b, ldb, x->beta, c, x->N);
    }
}

typedef struct {
    float *out;
    const uint16_t *in;
} widen_args;

static void widen_range(void *p, int64_t begin, int64_t end) {
    widen_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = act_load(a->in, i, 1);
}

/* The matmul's inputs as float32 for sgemm: as they are in fp32; rounded copies in tf32; widened
 * copies of the bf16 activations in bf16 (exact). So sgemm sums products of rounded inputs in
 * float32, as tensor cores sum them. */
static const float *sgemm_operand(baton_context *ctx, float *copy, const void *x, int64_t n) {
    if (ctx->precision == BATON_PRECISION_FP32) return x;
    if (stores_bf16(ctx)) {
        widen_args a = {copy, x};
        parallel_for(ctx, n, 1 << 16, widen_range, &a);
    } else {
        round_copy_to_precision(ctx, copy, x, n, ctx->precision);
    }
    return copy;
}

/* The output is float32, not rounded here: see matmul and linear.c. */
void gemm_in_precision(baton_context *ctx, float *c, const void *a, const void *b, int M, int N, int K, int trans_a,
                       int trans_b, float beta) {
    int64_t na = (int64_t)M * K, nb = (int64_t)K * N;
    float *copies = ctx->precision == BATON_PRECISION_FP32 ? NULL : rounding_buffer(ctx, na + nb);
    if (ctx->precision != BATON_PRECISION_FP32 && !copies)
        abort(); /* out of host memory: nothing sensible is left to do */
    const float *fa = sgemm_operand(ctx, copies, a, na), *fb = sgemm_operand(ctx, copies ? copies + na : NULL, b, nb);
    int64_t count = M >= N ? M : N;
    matmul_args x = {c, fa, fb, M, N, K, trans_a, trans_b, M >= N, beta, matmul_block_size(count)};
    parallel_for(ctx, count, x.block_size, matmul_blocks, &x);
}

/* A fresh output (beta 0) is an activation: in bf16, summed in float32 and stored rounded. */
void matmul(baton_context *ctx, void *c, const baton_activation *a, const baton_activation *b, int M, int N, int K,
            int trans_a, int trans_b, float beta) {
    if (stores_bf16(ctx) && beta == 0.0f) {
        float *wide = wide_buffer(ctx, (int64_t)M * N);
        if (!wide) abort();
        gemm_in_precision(ctx, wide, a, b, M, N, K, trans_a, trans_b, 0.0f);
        store_activations(ctx, c, wide, (int64_t)M * N);
        return;
    }
    gemm_in_precision(ctx, c, a, b, M, N, K, trans_a, trans_b, beta);
}

typedef struct {
    float *dbias;
    const void *dout;
    int N, OC, bf16;
} bias_backward_args;

static void bias_backward_channels(void *p, int64_t c0, int64_t c1) {
    bias_backward_args *a = p;
    for (int64_t n = 0; n < a->N; n++)
        for (int64_t c = c0; c < c1; c++) a->dbias[c] += act_load(a->dout, n * a->OC + c, a->bf16);
}

void bias_backward(baton_context *ctx, float *dbias, const baton_activation *dout, int N, int OC) {
    bias_backward_args a = {dbias, dout, N, OC, stores_bf16(ctx)};
    parallel_for(ctx, OC, 16, bias_backward_channels, &a);
}
