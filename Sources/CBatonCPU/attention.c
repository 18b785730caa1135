/* Causal multi-head self-attention, one (batch, head) pair per pool task, its matrix products on
 * single-threaded OpenBLAS sgemm with strides that pick the head out of qkv in place.
 * Forward:  S = Q K^T / sqrt(hs), P = softmax(S) row by row over t2 <= t (zero above), out = P V.
 * Backward: dP = dO V^T, dS = P * (dP - rowsum(P * dP)) / sqrt(hs), dQ = dS K, dK = dS^T Q,
 *           dV = P^T dO.  (The upper triangle of P is zero, so dS is zero there too.) */
#include "kernels.h"
#include <cblas.h>
#include <math.h>

typedef struct {
    float *out, *att, *dqkv, *scratch; const float *qkv, *dout, *att_in; int B, T, C, NH;
} attention_args;

/* Where (batch, head) bh starts in a [B,T,width] tensor: width 3C for qkv (its q; k and v follow
 * C and 2C later), C for out and dout. */
static int64_t head_start(const attention_args *a, int64_t bh, int width) {
    return (bh / a->NH) * a->T * width + (bh % a->NH) * (a->C / a->NH);
}

static void attention_forward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q = a->qkv + head_start(a, bh, C3), *k = q + C, *v = q + 2 * C;
        float *att = a->att + bh * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, 0.0f, att, T);
        for (int t = 0; t < T; t++) {
            float *row = att + (int64_t)t * T;
            float maxval = -INFINITY;
            for (int t2 = 0; t2 <= t; t2++) if (row[t2] > maxval) maxval = row[t2];
            float sum = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                row[t2] = expf(row[t2] - maxval);
                sum += row[t2];
            }
            float inv = 1.0f / sum;
            for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
            for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
        }
        float *out = a->out + head_start(a, bh, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, att, T, v, C3, 0.0f, out, C);
    }
}

/* saved: the probabilities [B,NH,T,T]; scratch: dS, as large. */
void cpu_attention_sizes(int B, int T, int C, int NH, int64_t *saved, int64_t *scratch) {
    (void)C;
    *saved = (int64_t)B * NH * T * T;
    *scratch = (int64_t)B * NH * T * T;
}

void attention_forward(baton_context *ctx, float *out, float *att, const float *qkv, float *scratch, int B, int T, int C, int NH) {
    (void)scratch; /* the CPU works on qkv in place */
    attention_args a = {out, att, NULL, NULL, qkv, NULL, NULL, B, T, C, NH};
    parallel_for(ctx, (int64_t)B * NH, 1, attention_forward_heads, &a);
}

static void attention_backward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q = a->qkv + head_start(a, bh, C3), *k = q + C, *v = q + 2 * C;
        float *dq = a->dqkv + head_start(a, bh, C3), *dk = dq + C, *dv = dq + 2 * C;
        const float *prob = a->att_in + bh * T * T;
        const float *dout = a->dout + head_start(a, bh, C);
        float *ds = a->scratch + bh * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout, C, v, C3, 0.0f, ds, T);  /* dP */
        for (int t = 0; t < T; t++) {
            const float *prow = prob + (int64_t)t * T;
            float *row = ds + (int64_t)t * T;
            float dot = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) dot += prow[t2] * row[t2];
            for (int t2 = 0; t2 <= t; t2++) row[t2] = prow[t2] * (row[t2] - dot) * scale;
            for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, k, C3, 0.0f, dq, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3, 0.0f, dk, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, prob, T, dout, C, 0.0f, dv, C3);
    }
}

void attention_backward(baton_context *ctx, float *dqkv, float *scratch, const float *dout, const float *qkv, const float *out,
                        const float *att, int B, int T, int C, int NH) {
    (void)out; /* the probabilities are kept */
    attention_args a = {NULL, NULL, dqkv, scratch, qkv, dout, att, B, T, C, NH};
    parallel_for(ctx, (int64_t)B * NH, 1, attention_backward_heads, &a);
}
