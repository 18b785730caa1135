/* Fused softmax + cross-entropy. Sums run in double so large vocabularies stay accurate. */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *losses, *dlogits; const float *logits; const int32_t *targets; int V, Vp; float dloss;
} crossentropy_args;

static void crossentropy_rows(void *p, int64_t begin, int64_t end) {
    crossentropy_args *a = p;
    int V = a->V, Vp = a->Vp;
    for (int64_t n = begin; n < end; n++) {
        const float *x = a->logits + n * Vp;
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) if (x[i] > maxval) maxval = x[i];
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += exp((double)x[i] - maxval);
        double log_sum = log(sum);
        int target = a->targets[n];
        a->losses[n] = (float)(log_sum - ((double)x[target] - maxval));
        if (a->dlogits) {
            float *d = a->dlogits + n * Vp; /* may alias x: each x[i] is read before d[i] is written */
            for (int i = 0; i < V; i++) {
                float prob = (float)exp((double)x[i] - maxval - log_sum);
                d[i] = (prob - (i == target ? 1.0f : 0.0f)) * a->dloss;
            }
            for (int i = V; i < Vp; i++) d[i] = 0.0f; /* the padded columns are masked */
        }
    }
}

void softmax_crossentropy(baton_context *ctx, float *losses, float *dlogits, const float *logits, const int32_t *targets,
                          int N, int V, int Vp, float dloss) {
    crossentropy_args a = {losses, dlogits, logits, targets, V, Vp, dloss};
    parallel_for(ctx, N, 1, crossentropy_rows, &a);
}
