/* GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
 * Since 0.5 (1 + tanh(u)) = sigmoid(2u), this is x * sigmoid(2u): one expf instead of tanhf
 * (glibc's tanhf is several times slower), and no cancellation for large negative x.
 * Backward: d/dx = s + 2 x s (1 - s) u', s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
#include "kernels.h"
#include <math.h>

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

typedef struct { float *out; const float *inp, *dout; } gelu_args;

static void gelu_forward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) {
        float x = a->inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        a->out[i] = x / (1.0f + expf(-2.0f * u));
    }
}

void gelu_forward(baton_context *ctx, float *out, const float *inp, int64_t n) {
    gelu_args a = {out, inp, NULL};
    parallel_for(ctx, n, 4096, gelu_forward_range, &a);
}

static void gelu_backward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) {
        float x = a->inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float s = 1.0f / (1.0f + expf(-2.0f * u));
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        a->out[i] = (s + 2.0f * x * s * (1.0f - s) * du) * a->dout[i];
    }
}

void gelu_backward(baton_context *ctx, float *dinp, const float *inp, const float *dout, int64_t n) {
    gelu_args a = {dinp, inp, dout};
    parallel_for(ctx, n, 4096, gelu_backward_range, &a);
}
