/* Matrix multiply on OpenBLAS, and the bias that goes with a linear layer. */
#include "include/baton_cpu.h"
#include "parallel.h"
#include <cblas.h>

void matmul(float *c, const float *a, const float *b, int M, int N, int K, int trans_a,
            int trans_b, float beta) {
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, 1.0f, a, lda, b, ldb, beta, c, N);
}

typedef struct { float *out; const float *bias; int N, OC; } bias_args;

static void bias_forward_rows(void *p, int64_t begin, int64_t end) {
    bias_args *a = p;
    for (int64_t n = begin; n < end; n++) {
        float *o = a->out + n * a->OC;
        for (int c = 0; c < a->OC; c++) o[c] += a->bias[c];
    }
}

void bias_forward(float *out, const float *bias, int N, int OC) {
    bias_args a = {out, bias, N, OC};
    parallel_for(N, 16, bias_forward_rows, &a);
}

typedef struct { float *dbias; const float *dout; int N, OC; } bias_backward_args;

static void bias_backward_channels(void *p, int64_t c0, int64_t c1) {
    bias_backward_args *a = p;
    for (int64_t n = 0; n < a->N; n++) {
        const float *d = a->dout + n * a->OC;
        for (int64_t c = c0; c < c1; c++) a->dbias[c] += d[c];
    }
}

void bias_backward(float *dbias, const float *dout, int N, int OC) {
    bias_backward_args a = {dbias, dout, N, OC};
    parallel_for(OC, 16, bias_backward_channels, &a);
}
