/* SwiGLU, silu(gate) * up: the twin of Kernels/swiglu.cu (formulas in baton_swiglu.h). */
#include "baton_swiglu.h"
#include "kernels.h"

typedef struct {
    void *out;
    const void *dout, *inp;
    int H, bf16;
} swiglu_args;

static void swiglu_forward_rows(void *p, int64_t begin, int64_t end) {
    swiglu_args *a = p;
    for (int64_t n = begin; n < end; n++)
        for (int i = 0; i < a->H; i++) {
            int64_t gate = n * 2 * a->H + i;
            float y = baton_swiglu(act_load(a->inp, gate, a->bf16), act_load(a->inp, gate + a->H, a->bf16));
            act_store(a->out, n * a->H + i, y, a->bf16);
        }
}

void swiglu_forward(baton_context *ctx, baton_activation *out, const baton_activation *inp, int N, int H) {
    swiglu_args a = {out, NULL, inp, H, stores_bf16(ctx)};
    parallel_for(ctx, N, 16, swiglu_forward_rows, &a);
}

static void swiglu_backward_rows(void *p, int64_t begin, int64_t end) {
    swiglu_args *a = p;
    for (int64_t n = begin; n < end; n++)
        for (int i = 0; i < a->H; i++) {
            int64_t gate = n * 2 * a->H + i;
            float dgate, dup;
            baton_swiglu_backward(act_load(a->inp, gate, a->bf16), act_load(a->inp, gate + a->H, a->bf16),
                                  act_load(a->dout, n * a->H + i, a->bf16), &dgate, &dup);
            act_store(a->out, gate, dgate, a->bf16);
            act_store(a->out, gate + a->H, dup, a->bf16);
        }
}

void swiglu_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                     const baton_activation *inp, int N, int H) {
    swiglu_args a = {dinp, dout, inp, H, stores_bf16(ctx)};
    parallel_for(ctx, N, 16, swiglu_backward_rows, &a);
}
