/* Causal multi-head self-attention, one (batch, head) pair per task.
 * Forward:  S = Q K^T / sqrt(hs) (lower triangle only), P = softmax(S) per row, out = P V.
 * Backward: dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = dS K / sqrt(hs),
 *           dK = dS^T Q / sqrt(hs), dV = P^T dO.
 * Dot products run as axpys over a transposed copy of K (or V) so the inner loops vectorize
 * while each sum keeps a fixed order. */
#include "include/baton_cpu.h"
#include "parallel.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *out, *att, *dqkv, *scratch; const float *qkv, *dout, *att_in; int B, T, C, NH;
} attention_args;

/* dst[i*T + t] = src[t*stride + i] for i < hs, t < T */
static void transpose_head(float *dst, const float *src, int T, int hs, int stride) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < hs; i++) dst[(int64_t)i * T + t] = src[(int64_t)t * stride + i];
}

/* row[0..count) = sum over i of x[i] * cols[i*T + 0..count) */
static void dot_rows(float *row, const float *x, const float *cols, int count, int hs, int T) {
    memset(row, 0, sizeof(float) * count);
    for (int i = 0; i < hs; i++) {
        float xi = x[i];
        const float *col = cols + (int64_t)i * T;
        for (int t2 = 0; t2 < count; t2++) row[t2] += xi * col[t2];
    }
}

static void attention_forward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, NH = a->NH, hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float *kt = malloc(sizeof(float) * (size_t)hs * T);
    for (int64_t bh = begin; bh < end; bh++) {
        int b = (int)(bh / NH), h = (int)(bh % NH);
        const float *base = a->qkv + (int64_t)b * T * C3 + h * hs;
        transpose_head(kt, base + C, T, hs, C3);
        for (int t = 0; t < T; t++) {
            const float *q = base + (int64_t)t * C3;
            float *row = a->att + (bh * T + t) * T;
            dot_rows(row, q, kt, t + 1, hs, T);
            float maxval = -INFINITY;
            for (int t2 = 0; t2 <= t; t2++) {
                row[t2] *= scale;
                if (row[t2] > maxval) maxval = row[t2];
            }
            float sum = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                row[t2] = expf(row[t2] - maxval);
                sum += row[t2];
            }
            float inv = 1.0f / sum;
            for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
            for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
            float *o = a->out + ((int64_t)b * T + t) * C + h * hs;
            memset(o, 0, sizeof(float) * hs);
            for (int t2 = 0; t2 <= t; t2++) {
                const float *v = base + (int64_t)t2 * C3 + 2 * C;
                float pw = row[t2];
                for (int i = 0; i < hs; i++) o[i] += pw * v[i];
            }
        }
    }
    free(kt);
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    attention_args a = {out, att, NULL, NULL, qkv, NULL, NULL, B, T, C, NH};
    parallel_for((int64_t)B * NH, 1, attention_forward_heads, &a);
}

static void attention_backward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, NH = a->NH, hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    float *vt = malloc(sizeof(float) * (size_t)hs * T);
    for (int64_t bh = begin; bh < end; bh++) {
        int b = (int)(bh / NH), h = (int)(bh % NH);
        const float *base = a->qkv + (int64_t)b * T * C3 + h * hs;
        float *dbase = a->dqkv + (int64_t)b * T * C3 + h * hs;
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 3; part++) memset(dbase + (int64_t)t * C3 + part * C, 0, sizeof(float) * hs);
        transpose_head(vt, base + 2 * C, T, hs, C3);
        for (int t = 0; t < T; t++) {
            const float *prob = a->att_in + (bh * T + t) * T;
            const float *d_o = a->dout + ((int64_t)b * T + t) * C + h * hs;
            float *ds = a->scratch + (bh * T + t) * T;
            dot_rows(ds, d_o, vt, t + 1, hs, T); /* ds holds dP for now */
            for (int t2 = 0; t2 <= t; t2++) {   /* dV += P^T dO */
                float *dv = dbase + (int64_t)t2 * C3 + 2 * C;
                float pw = prob[t2];
                for (int i = 0; i < hs; i++) dv[i] += pw * d_o[i];
            }
            float dot = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) dot += prob[t2] * ds[t2];
            for (int t2 = 0; t2 <= t; t2++) ds[t2] = prob[t2] * (ds[t2] - dot) * scale;
            const float *q = base + (int64_t)t * C3;
            float *dq = dbase + (int64_t)t * C3;
            for (int t2 = 0; t2 <= t; t2++) {
                const float *k = base + (int64_t)t2 * C3 + C;
                float *dk = dbase + (int64_t)t2 * C3 + C;
                float g = ds[t2];
                for (int i = 0; i < hs; i++) {
                    dq[i] += g * k[i];
                    dk[i] += g * q[i];
                }
            }
        }
    }
    free(vt);
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH) {
    attention_args a = {NULL, NULL, dqkv, scratch, qkv, dout, att, B, T, C, NH};
    parallel_for((int64_t)B * NH, 1, attention_backward_heads, &a);
}
