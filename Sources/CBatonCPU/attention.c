/* Causal multi-head self-attention, one (batch, head) pair per pool task, its matrix products on
 * single-threaded OpenBLAS sgemm with strides that pick the head out of qkv in place.
 * Forward:  S = Q K^T / sqrt(hs), P = softmax(S) row by row over t2 <= t (zero above), out = P V.
 * Backward: dP = dO V^T, dS = P * (dP - rowsum(P * dP)) / sqrt(hs), dQ = dS K, dK = dS^T Q,
 *           dV = P^T dO.  (The upper triangle of P is zero, so dS is zero there too.)
 * In bf16 and tf32 every product's operands are rounded to the precision first (see head_operands).
 * qkv, out and their gradients are activations: bf16 in BF16, read into float32 copies and
 * written from float32 results (see head_operands and store_head). */
#include "kernels.h"
#include "baton_rounding.h"
#include <string.h>
#include <cblas.h>
#include <math.h>

#define ATTENTION_MAX_HS BATON_ATTENTION_MAX_HEAD /* the widest head the GPU's flash kernels take */

typedef struct {
    void *out, *dqkv;
    float *att, *scratch;
    const void *qkv, *dout;
    const float *att_in;
    int B, T, C, NH;
    int dropped; /* the products' operands lose this many low bits (16: bf16, 13: tf32; 0: float32 products) */
    int bf16;    /* the activations are bf16 */
} attention_args;

/* Where (batch, head) bh starts in a [B,T,width] tensor: width 3C for qkv (its q; k and v follow
 * C and 2C later), C for out and dout. */
static int64_t head_start(const attention_args *a, int64_t bh, int width) {
    return (bh / a->NH) * a->T * width + (bh % a->NH) * (a->C / a->NH);
}

/* In bf16 and tf32 the products take operands of that precision, as the GPU's tensor-core kernels
 * do: q, k, v, dO and the probabilities and dS rounded (to nearest even), the sums float32. The
 * head's operands are rounded (or widened from bf16) into its own part of scratch, after the
 * B*NH*T*T floats of dS: [q | k | v | dO], each [T, hs] with rows hs apart; then, for bf16
 * activations, its float32 results before they are stored: [out or dq | dk | dv | unused]. */
static float *rounded_operands(const attention_args *a, int64_t bh) {
    int hs = a->C / a->NH;
    return a->scratch + (int64_t)a->B * a->NH * a->T * a->T + bh * 4 * (int64_t)a->T * hs;
}

static float *head_results(const attention_args *a, int64_t bh) {
    return rounded_operands(a, bh) + 4 * (int64_t)a->B * a->T * a->C;
}

/* rows x cols of src (rows src_stride apart; bf16 or float32) into dst, packed, rounded. */
static void round_rows(float *dst, const void *src, int bf16, int rows, int cols, int64_t src_stride, int dropped) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float x = act_load(src, (int64_t)r * src_stride + c, bf16);
            dst[(int64_t)r * cols + c] = dropped ? round_float(x, dropped) : x;
        }
}

/* A head's float32 result [T, hs] (rows hs apart) into the activation `dst` (rows `stride` apart). */
static void store_head(void *dst, int64_t start, int64_t stride, const float *src, int rows, int cols, int bf16) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            act_store(dst, start + (int64_t)r * stride + c, src[(int64_t)r * cols + c], bf16);
}

/* The head's q, k, v (and dO when given), rounded; *ld becomes the operands' row stride. With
 * float32 products they are used in place, by stride. */
static void head_operands(const attention_args *a, int64_t bh, const float **q, const float **k, const float **v,
                          const float **dout, int *ld, int *ld_dout) {
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C, bf16 = a->bf16;
    int64_t qs = head_start(a, bh, C3), ds = head_start(a, bh, C);
    if (!a->dropped && !bf16) {
        *q = (const float *)a->qkv + qs;
        *k = *q + C;
        *v = *q + 2 * C;
        *ld = C3;
        if (dout) {
            *dout = (const float *)a->dout + ds;
            *ld_dout = C;
        }
        return;
    }
    float *r = rounded_operands(a, bh);
    int64_t size = (int64_t)T * hs;
    round_rows(r, act_at(a->qkv, qs, bf16), bf16, T, hs, C3, a->dropped);
    round_rows(r + size, act_at(a->qkv, qs + C, bf16), bf16, T, hs, C3, a->dropped);
    round_rows(r + 2 * size, act_at(a->qkv, qs + 2 * C, bf16), bf16, T, hs, C3, a->dropped);
    *q = r;
    *k = r + size;
    *v = r + 2 * size;
    *ld = hs;
    if (dout) {
        round_rows(r + 3 * size, act_at(a->dout, ds, bf16), bf16, T, hs, C, a->dropped);
        *dout = r + 3 * size;
        *ld_dout = hs;
    }
}

static void attention_forward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, hs = C / a->NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q, *k, *v;
        int ld;
        head_operands(a, bh, &q, &k, &v, NULL, &ld, NULL);
        float *att = a->att + bh * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, ld, k, ld, 0.0f, att, T);
        for (int t = 0; t < T; t++) {
            float *row = att + (int64_t)t * T;
            float maxval = -INFINITY;
            for (int t2 = 0; t2 <= t; t2++)
                if (row[t2] > maxval) maxval = row[t2];
            float sum = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                row[t2] = expf(row[t2] - maxval);
                sum += row[t2];
            }
            float inv = 1.0f / sum;
            for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
            for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
        }
        if (a->bf16) { /* bf16 activations with float32 products (heads wider than 64) */
            float *out = head_results(a, bh);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, att, T, v, ld, 0.0f, out, hs);
            store_head(a->out, head_start(a, bh, C), C, out, T, hs, 1);
        } else {
            float *out = (float *)a->out + head_start(a, bh, C);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, att, T, v, ld, 0.0f, out, C);
        }
    }
}

/* bf16 and tf32: the tensor-core flash kernel's arithmetic, row by row. Keys in tiles of 32 with a running
 * max m and sum l; each tile's exp(score - m) rounded to the precision before it multiplies v, the
 * output rescaled as m moves and divided by l at the end. The probabilities kept for the
 * backward pass are exp(score - log-sum-exp), as the GPU's backward pass recomputes them. */
#define ATTENTION_TILE BATON_ATTENTION_TILE
static void attention_forward_heads_rounded(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, hs = C / a->NH;
    float scale = 1.0f / sqrtf((float)hs);
    float acc[ATTENTION_MAX_HS], tile_product[ATTENTION_MAX_HS], e[ATTENTION_TILE];
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q, *k, *v;
        int ld;
        head_operands(a, bh, &q, &k, &v, NULL, &ld, NULL);
        float *att = a->att + bh * T * T;
        int64_t out_start = head_start(a, bh, C);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, ld, k, ld, 0.0f, att, T);
        for (int t = 0; t < T; t++) {
            float *row = att + (int64_t)t * T;
            float m = -INFINITY, l = 0.0f;
            for (int d = 0; d < hs; d++) acc[d] = 0.0f;
            for (int k0 = 0; k0 <= t; k0 += ATTENTION_TILE) {
                int keys = t + 1 - k0 < ATTENTION_TILE ? t + 1 - k0 : ATTENTION_TILE;
                float m_new = m;
                for (int j = 0; j < keys; j++)
                    if (row[k0 + j] > m_new) m_new = row[k0 + j];
                float sum = 0.0f, rescale = expf(m - m_new);
                for (int j = 0; j < keys; j++) {
                    e[j] = expf(row[k0 + j] - m_new);
                    sum += e[j];
                    e[j] = round_float(e[j], a->dropped);
                }
                l = l * rescale + sum;
                m = m_new;
                for (int d = 0; d < hs; d++) tile_product[d] = 0.0f;
                for (int j = 0; j < keys; j++)
                    for (int d = 0; d < hs; d++) tile_product[d] += e[j] * v[(int64_t)(k0 + j) * ld + d];
                for (int d = 0; d < hs; d++) acc[d] = acc[d] * rescale + tile_product[d];
            }
            for (int d = 0; d < hs; d++) act_store(a->out, out_start + (int64_t)t * C + d, acc[d] / l, a->bf16);
            float lse = m + logf(l);
            for (int t2 = 0; t2 <= t; t2++) row[t2] = expf(row[t2] - lse);
            for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
        }
    }
}

/* Rounded products where the GPU's tensor-core flash kernels run: in bf16 and tf32, heads of up
 * to 64 channels (wider heads keep float32 scores on a GPU too). The bits an operand loses. */
static int product_rounding(const baton_context *ctx, int C, int NH) {
    if (C / NH > ATTENTION_MAX_HS) return 0;
    return ctx->precision == BATON_PRECISION_BF16 ? 16 : ctx->precision == BATON_PRECISION_TF32 ? 13 : 0;
}

/* saved: the probabilities [B,NH,T,T]; scratch: dS, as large, then the rounded operands of bf16
 * and tf32 (q, k, v, dO: 4 x [B,T,C]), then bf16 activations' float32 results (4 x [B,T,C]). */
void cpu_attention_sizes(baton_context *ctx, int B, int T, int C, int NH, int64_t *saved, int64_t *scratch) {
    (void)ctx;
    *saved = (int64_t)B * NH * T * T;
    *scratch = (int64_t)B * NH * T * T + 8 * (int64_t)B * T * C;
}

void attention_forward(baton_context *ctx, baton_activation *out, float *att, const baton_activation *qkv,
                       float *scratch, int B, int T, int C, int NH) {
    attention_args a = {
            out, NULL, att, scratch, qkv, NULL, NULL, B, T, C, NH, product_rounding(ctx, C, NH), stores_bf16(ctx)};
    parallel_for(ctx, (int64_t)B * NH, 1, a.dropped ? attention_forward_heads_rounded : attention_forward_heads, &a);
}

static void attention_backward_heads(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, C = a->C, hs = C / a->NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q, *k, *v, *dout;
        int ld, ld_dout;
        head_operands(a, bh, &q, &k, &v, &dout, &ld, &ld_dout);
        /* float32 gradients go straight into dqkv; bf16 ones into head_results first */
        float *dq = a->bf16 ? head_results(a, bh) : (float *)a->dqkv + head_start(a, bh, C3);
        int ldq = a->bf16 ? hs : C3;
        float *dk = a->bf16 ? dq + (int64_t)T * hs : dq + C, *dv = a->bf16 ? dq + 2 * (int64_t)T * hs : dq + 2 * C;
        const float *prob = a->att_in + bh * T * T;
        float *ds = a->scratch + bh * T * T;
        if (a->dropped) { /* dV from the rounded probabilities, before ds holds dS */
            round_rows(ds, prob, 0, T, T, T, a->dropped);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, dout, ld_dout, 0.0f, dv, ldq);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout, ld_dout, v, ld, 0.0f, ds,
                    T); /* dP */
        if (a->dropped) {
            /* As the GPU: D = rowsum(dO * O) in float32, dS = P (dP - D) rounded, the scale applied
             * to the products' sums. */
            int64_t at = head_start(a, bh, C);
            for (int t = 0; t < T; t++) {
                const float *prow = prob + (int64_t)t * T;
                float *row = ds + (int64_t)t * T, dot = 0.0f;
                for (int d = 0; d < hs; d++)
                    dot += act_load(a->dout, at + (int64_t)t * C + d, a->bf16) *
                           act_load(a->out, at + (int64_t)t * C + d, a->bf16);
                for (int t2 = 0; t2 <= t; t2++) row[t2] = round_float(prow[t2] * (row[t2] - dot), a->dropped);
                for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
            }
        } else {
            for (int t = 0; t < T; t++) {
                const float *prow = prob + (int64_t)t * T;
                float *row = ds + (int64_t)t * T;
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) dot += prow[t2] * row[t2];
                for (int t2 = 0; t2 <= t; t2++) row[t2] = prow[t2] * (row[t2] - dot) * scale;
                for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
            }
        }
        float ds_scale = a->dropped ? scale : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, ds_scale, ds, T, k, ld, 0.0f, dq, ldq);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, ds_scale, ds, T, q, ld, 0.0f, dk, ldq);
        if (!a->dropped)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, prob, T, dout, ld_dout, 0.0f, dv, ldq);
        if (a->bf16) {
            int64_t start = head_start(a, bh, C3);
            store_head(a->dqkv, start, C3, dq, T, hs, 1);
            store_head(a->dqkv, start + C, C3, dk, T, hs, 1);
            store_head(a->dqkv, start + 2 * C, C3, dv, T, hs, 1);
        }
    }
}

void attention_backward(baton_context *ctx, baton_activation *dqkv, float *scratch, const baton_activation *dout,
                        const baton_activation *qkv, const baton_activation *out, const float *att, int B, int T, int C,
                        int NH) {
    attention_args a = {(void *)out,     dqkv, NULL, scratch, qkv, dout, att, B, T, C, NH, product_rounding(ctx, C, NH),
                        stores_bf16(ctx)};
    parallel_for(ctx, (int64_t)B * NH, 1, attention_backward_heads, &a);
}
