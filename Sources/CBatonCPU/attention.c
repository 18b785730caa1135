/* Causal self-attention with grouped key/value heads, its matrix products on single-threaded
 * OpenBLAS sgemm with strides that pick the heads out of qkv in place: query head h (of NH) reads
 * key/value head h / G, G = NH / KV (KV = NH: multi-head attention).
 * Forward, one (batch, query head) pair per pool task:
 *           S = Q K^T / sqrt(hs), P = softmax(S) row by row over t2 <= t (zero above), out = P V.
 * Backward, one (batch, key/value head) pair per pool task, visiting the group's G query heads in
 *           order: dP = dO V^T, dS = P * (dP - rowsum(P * dP)) / sqrt(hs), dQ = dS K, and the
 *           head's dK = dS^T Q and dV = P^T dO, summed over the group in head order in float32
 *           (stored once, rounded once in bf16). No two tasks write one element, so the bits do
 *           not depend on the threads. (The upper triangle of P is zero, so dS is zero there too.)
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
    int B, T, C, NH, KV;
    int hs, G, W; /* head size, query heads per key/value head, qkv's row width (NH + 2 KV) * hs */
    int dropped;  /* the products' operands lose this many low bits (16: bf16, 13: tf32; 0: float32 products) */
    int bf16;     /* the activations are bf16 */
} attention_args;

static void set_shape(attention_args *a, int B, int T, int C, int NH, int KV) {
    a->B = B;
    a->T = T;
    a->C = C;
    a->NH = NH;
    a->KV = KV;
    a->hs = C / NH;
    a->G = NH / KV;
    a->W = C + 2 * KV * a->hs;
}

/* Where the rows of (batch, query head) bh start: its q in qkv [B,T,W], its key/value head's k
 * and v there (after the NH query heads, then after the KV key heads), its out and dout in
 * [B,T,C]. With KV = NH, k and v are C and 2C after q. */
static int64_t q_start(const attention_args *a, int64_t bh) {
    return (bh / a->NH) * a->T * a->W + (bh % a->NH) * a->hs;
}
static int64_t k_start(const attention_args *a, int64_t bh) {
    return (bh / a->NH) * a->T * a->W + a->C + (bh % a->NH) / a->G * a->hs;
}
static int64_t v_start(const attention_args *a, int64_t bh) { return k_start(a, bh) + (int64_t)a->KV * a->hs; }
static int64_t out_start(const attention_args *a, int64_t bh) {
    return (bh / a->NH) * a->T * a->C + (bh % a->NH) * a->hs;
}

/* In bf16 and tf32 the products take operands of that precision, as the GPU's tensor-core kernels
 * do: q, k, v, dO and the probabilities and dS rounded (to nearest even), the sums float32. The
 * query head's operands (its key/value head's k and v among them) are rounded (or widened from
 * bf16) into its own part of scratch, after the B*NH*T*T floats of dS: [q | k | v | dO], each
 * [T, hs] with rows hs apart; then its float32 results: [out or dq | dk | dv | unused], for bf16
 * activations before they are stored, and in the backward pass, for every query head of a group
 * but its first, its dk and dv before they are added to the group's sums. */
static float *rounded_operands(const attention_args *a, int64_t bh) {
    return a->scratch + (int64_t)a->B * a->NH * a->T * a->T + bh * 4 * (int64_t)a->T * a->hs;
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

/* The query head's q, its key/value head's k and v (and dO when given), rounded; *ld becomes the
 * operands' row stride. With float32 products they are used in place, by stride. */
static void head_operands(const attention_args *a, int64_t bh, const float **q, const float **k, const float **v,
                          const float **dout, int *ld, int *ld_dout) {
    int T = a->T, C = a->C, hs = a->hs, W = a->W, bf16 = a->bf16;
    int64_t ds = out_start(a, bh);
    if (!a->dropped && !bf16) {
        *q = (const float *)a->qkv + q_start(a, bh);
        *k = (const float *)a->qkv + k_start(a, bh);
        *v = (const float *)a->qkv + v_start(a, bh);
        *ld = W;
        if (dout) {
            *dout = (const float *)a->dout + ds;
            *ld_dout = C;
        }
        return;
    }
    float *r = rounded_operands(a, bh);
    int64_t size = (int64_t)T * hs;
    round_rows(r, act_at(a->qkv, q_start(a, bh), bf16), bf16, T, hs, W, a->dropped);
    round_rows(r + size, act_at(a->qkv, k_start(a, bh), bf16), bf16, T, hs, W, a->dropped);
    round_rows(r + 2 * size, act_at(a->qkv, v_start(a, bh), bf16), bf16, T, hs, W, a->dropped);
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
    int T = a->T, C = a->C, hs = a->hs;
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
            store_head(a->out, out_start(a, bh), C, out, T, hs, 1);
        } else {
            float *out = (float *)a->out + out_start(a, bh);
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
    int T = a->T, C = a->C, hs = a->hs;
    float scale = 1.0f / sqrtf((float)hs);
    float acc[ATTENTION_MAX_HS], tile_product[ATTENTION_MAX_HS], e[ATTENTION_TILE];
    for (int64_t bh = begin; bh < end; bh++) {
        const float *q, *k, *v;
        int ld;
        head_operands(a, bh, &q, &k, &v, NULL, &ld, NULL);
        float *att = a->att + bh * T * T;
        int64_t out_at = out_start(a, bh);
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
            for (int d = 0; d < hs; d++) act_store(a->out, out_at + (int64_t)t * C + d, acc[d] / l, a->bf16);
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
 * and tf32 (q, k, v, dO per query head: 4 x [B,T,C]), then the float32 results (4 x [B,T,C]). A
 * query head's part holds its key/value head's rounded k and v and, in the backward pass, its dk
 * and dv before they join the group's sums, so the size does not depend on KV. */
void cpu_attention_sizes(baton_context *ctx, int B, int T, int C, int NH, int KV, int64_t *saved, int64_t *scratch) {
    (void)ctx;
    (void)KV;
    *saved = (int64_t)B * NH * T * T;
    *scratch = (int64_t)B * NH * T * T + 8 * (int64_t)B * T * C;
}

void attention_forward(baton_context *ctx, baton_activation *out, float *att, const baton_activation *qkv,
                       float *scratch, int B, int T, int C, int NH, int KV) {
    attention_args a = {.out = out, .att = att, .scratch = scratch, .qkv = qkv};
    set_shape(&a, B, T, C, NH, KV);
    a.dropped = product_rounding(ctx, C, NH);
    a.bf16 = stores_bf16(ctx);
    parallel_for(ctx, (int64_t)B * NH, 1, a.dropped ? attention_forward_heads_rounded : attention_forward_heads, &a);
}

/* dst[r][c] += src[r][c] for a [T, hs] block: a group's dk or dv sum (rows ld_dst apart) gains
 * one more query head's (rows hs apart). */
static void add_head(float *dst, int ld_dst, const float *src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(int64_t)r * ld_dst + c] += src[(int64_t)r * cols + c];
}

/* Query head bh's gradients: dq into dq (rows ldq apart), its dk and dv into dk and dv (rows ldkv
 * apart; the group's sums for its first head, its own part of scratch for the others). */
static void head_backward(const attention_args *a, int64_t bh, float *dq, int ldq, float *dk, float *dv, int ldkv) {
    int T = a->T, C = a->C, hs = a->hs;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q, *k, *v, *dout;
    int ld, ld_dout;
    head_operands(a, bh, &q, &k, &v, &dout, &ld, &ld_dout);
    const float *prob = a->att_in + bh * T * T;
    float *ds = a->scratch + bh * T * T;
    if (a->dropped) { /* dV from the rounded probabilities, before ds holds dS */
        round_rows(ds, prob, 0, T, T, T, a->dropped);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, dout, ld_dout, 0.0f, dv, ldkv);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout, ld_dout, v, ld, 0.0f, ds, T); /* dP */
    if (a->dropped) {
        /* As the GPU: D = rowsum(dO * O) in float32, dS = P (dP - D) rounded, the scale applied
         * to the products' sums. */
        int64_t at = out_start(a, bh);
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
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, ds_scale, ds, T, q, ld, 0.0f, dk, ldkv);
    if (!a->dropped)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, prob, T, dout, ld_dout, 0.0f, dv, ldkv);
}

/* One (batch, key/value head) per task: its G query heads in order. Float32 gradients go straight
 * into dqkv (dq of each head, and the first head's dk and dv, which the later heads' are added
 * to); bf16 ones into the heads' results in scratch first, dq stored after each head and the
 * group's dk and dv sums once, after its last. */
static void attention_backward_groups(void *p, int64_t begin, int64_t end) {
    attention_args *a = p;
    int T = a->T, hs = a->hs, W = a->W, G = a->G;
    int64_t size = (int64_t)T * hs;
    for (int64_t bkv = begin; bkv < end; bkv++) {
        int64_t first = bkv / a->KV * a->NH + bkv % a->KV * G; /* the group's first query head (b*NH + h) */
        float *dk_sum = a->bf16 ? head_results(a, first) + size : (float *)a->dqkv + k_start(a, first);
        float *dv_sum = a->bf16 ? head_results(a, first) + 2 * size : (float *)a->dqkv + v_start(a, first);
        int ld_sum = a->bf16 ? hs : W;
        for (int g = 0; g < G; g++) {
            int64_t bh = first + g;
            float *dq = a->bf16 ? head_results(a, bh) : (float *)a->dqkv + q_start(a, bh);
            int ldq = a->bf16 ? hs : W;
            if (g == 0) {
                head_backward(a, bh, dq, ldq, dk_sum, dv_sum, ld_sum);
            } else {
                float *dk = head_results(a, bh) + size, *dv = dk + size;
                head_backward(a, bh, dq, ldq, dk, dv, hs);
                add_head(dk_sum, ld_sum, dk, T, hs);
                add_head(dv_sum, ld_sum, dv, T, hs);
            }
            if (a->bf16) store_head(a->dqkv, q_start(a, bh), W, dq, T, hs, 1);
        }
        if (a->bf16) {
            store_head(a->dqkv, k_start(a, first), W, dk_sum, T, hs, 1);
            store_head(a->dqkv, v_start(a, first), W, dv_sum, T, hs, 1);
        }
    }
}

void attention_backward(baton_context *ctx, baton_activation *dqkv, float *scratch, const baton_activation *dout,
                        const baton_activation *qkv, const baton_activation *out, const float *att, int B, int T, int C,
                        int NH, int KV) {
    attention_args a = {.out = (void *)out, .dqkv = dqkv, .scratch = scratch, .qkv = qkv, .dout = dout, .att_in = att};
    set_shape(&a, B, T, C, NH, KV);
    a.dropped = product_rounding(ctx, C, NH);
    a.bf16 = stores_bf16(ctx);
    parallel_for(ctx, (int64_t)B * KV, 1, attention_backward_groups, &a);
}
