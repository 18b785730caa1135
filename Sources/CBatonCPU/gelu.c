/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#include "include/baton_cpu.h"
#include "parallel.h"
#include <math.h>

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

typedef struct { float *out; const float *inp, *dout; } gelu_args;

static void gelu_forward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) {
        float x = a->inp[i];
        a->out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

void gelu_forward(float *out, const float *inp, int64_t n) {
    gelu_args a = {out, inp, NULL};
    parallel_for(n, 4096, gelu_forward_range, &a);
}

static void gelu_backward_range(void *p, int64_t begin, int64_t end) {
    gelu_args *a = p;
    for (int64_t i = begin; i < end; i++) {
        float x = a->inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        a->out[i] = grad * a->dout[i];
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
    gelu_args a = {dinp, inp, dout};
    parallel_for(n, 4096, gelu_backward_range, &a);
}
