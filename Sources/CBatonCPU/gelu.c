/* GELU, tanh approximation (the formula: baton_gelu.h, shared with the CUDA kernels). */
#include "kernels.h"
#include "baton_gelu.h"

typedef struct { float *out; const float *inp, *dout; } gelu_args;

static void gelu_forward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = baton_gelu(a->inp[i]);
}

void gelu_forward(baton_context *ctx, float *out, const float *inp, int64_t n) {
    gelu_args a = {out, inp, NULL};
    parallel_for(ctx, n, 4096, gelu_forward_range, &a);
}

/* dinp may alias dout (each element is read before it is written). */
static void gelu_backward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) a->out[i] = baton_gelu_backward(a->inp[i], a->dout[i]);
}

void gelu_backward(baton_context *ctx, float *dinp, const float *inp, const float *dout, int64_t n) {
    gelu_args a = {dinp, inp, dout};
    parallel_for(ctx, n, 4096, gelu_backward_range, &a);
}
