/* Grouped-query attention's heads: each key/value head repeated for its group of query heads, and
 * the gradients summed back. The twin of Kernels/repeat_kv.cu. */
#include "kernels.h"

typedef struct {
    void *out;
    const void *inp;
    int NH, KV, HS, bf16;
} repeat_kv_args;

/* out row: [q heads | k of head h / G for each h | v likewise], G = NH / KV. */
static void repeat_kv_forward_rows(void *p, int64_t begin, int64_t end) {
    repeat_kv_args *a = p;
    int64_t C = (int64_t)a->NH * a->HS, in_width = (int64_t)(a->NH + 2 * a->KV) * a->HS, group = a->NH / a->KV;
    for (int64_t n = begin; n < end; n++) {
        int64_t in = n * in_width, out = n * 3 * C;
        for (int64_t c = 0; c < C; c++) act_store(a->out, out + c, act_load(a->inp, in + c, a->bf16), a->bf16);
        for (int part = 1; part <= 2; part++) { /* keys, then values */
            int64_t source = in + C + (part - 1) * (int64_t)a->KV * a->HS;
            for (int h = 0; h < a->NH; h++)
                for (int d = 0; d < a->HS; d++)
                    act_store(a->out, out + part * C + (int64_t)h * a->HS + d,
                              act_load(a->inp, source + (h / group) * a->HS + d, a->bf16), a->bf16);
        }
    }
}

void repeat_kv_forward(baton_context *ctx, baton_activation *out, const baton_activation *inp, int N, int NH, int KV,
                       int HS) {
    repeat_kv_args a = {out, inp, NH, KV, HS, stores_bf16(ctx)};
    parallel_for(ctx, N, 16, repeat_kv_forward_rows, &a);
}

/* dinp row: [dq | each key head's group summed in head order | the same for values]. */
static void repeat_kv_backward_rows(void *p, int64_t begin, int64_t end) {
    repeat_kv_args *a = p;
    int64_t C = (int64_t)a->NH * a->HS, out_width = (int64_t)(a->NH + 2 * a->KV) * a->HS, group = a->NH / a->KV;
    for (int64_t n = begin; n < end; n++) {
        int64_t in = n * 3 * C, out = n * out_width;
        for (int64_t c = 0; c < C; c++) act_store(a->out, out + c, act_load(a->inp, in + c, a->bf16), a->bf16);
        for (int part = 1; part <= 2; part++)
            for (int kv = 0; kv < a->KV; kv++)
                for (int d = 0; d < a->HS; d++) {
                    float sum = 0.0f;
                    for (int64_t g = 0; g < group; g++)
                        sum += act_load(a->inp, in + part * C + (kv * group + g) * a->HS + d, a->bf16);
                    act_store(a->out, out + C + ((int64_t)(part - 1) * a->KV + kv) * a->HS + d, sum, a->bf16);
                }
    }
}

void repeat_kv_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout, int N, int NH, int KV,
                        int HS) {
    repeat_kv_args a = {dinp, dout, NH, KV, HS, stores_bf16(ctx)};
    parallel_for(ctx, N, 16, repeat_kv_backward_rows, &a);
}
