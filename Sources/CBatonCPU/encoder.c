/* Token + position embedding. */
#include "kernels.h"

typedef struct {
    float *out; const int32_t *tokens; const float *wte, *wpe; int T, C;
} encoder_args;

static void encoder_forward_rows(void *p, int64_t begin, int64_t end) {
    encoder_args *a = p;
    for (int64_t row = begin; row < end; row++) {
        int t = (int)(row % a->T);
        float *out = a->out + row * a->C;
        const float *tok = a->wte + (int64_t)a->tokens[row] * a->C, *pos = a->wpe + (int64_t)t * a->C;
        for (int c = 0; c < a->C; c++) out[c] = tok[c] + pos[c];
    }
}

void encoder_forward(baton_context *ctx, float *out, const int32_t *tokens, const float *wte, const float *wpe,
                     int B, int T, int C) {
    encoder_args a = {out, tokens, wte, wpe, T, C};
    parallel_for(ctx, (int64_t)B * T, 16, encoder_forward_rows, &a);
}

typedef struct {
    float *dwte, *dwpe; const float *dout; const int32_t *tokens; int B, T, C;
} encoder_backward_args;

/* Split over channels: each thread owns a slice of every embedding row and adds the positions
 * in order, so the sums are deterministic and never race. */
static void encoder_backward_channels(void *p, int64_t c0, int64_t c1) {
    encoder_backward_args *a = p;
    for (int64_t row = 0; row < (int64_t)a->B * a->T; row++) {
        int t = (int)(row % a->T);
        const float *d = a->dout + row * a->C;
        float *dtok = a->dwte + (int64_t)a->tokens[row] * a->C, *dpos = a->dwpe + (int64_t)t * a->C;
        for (int64_t c = c0; c < c1; c++) { dtok[c] += d[c]; dpos[c] += d[c]; }
    }
}

void encoder_backward(baton_context *ctx, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                      int B, int T, int C) {
    encoder_backward_args a = {dwte, dwpe, dout, tokens, B, T, C};
    parallel_for(ctx, C, 16, encoder_backward_channels, &a);
}
