/* Fused softmax + cross-entropy. Sums run in double so large vocabularies stay accurate. The
 * logits and their gradient are activations (bf16 in BF16); the losses float32. A negative target
 * is a masked position (supervised fine-tuning trains on the assistant's tokens only): loss 0,
 * gradient row 0. */
#include "kernels.h"
#include <math.h>

typedef struct {
    float *losses;
    void *dlogits;
    const void *logits;
    const int32_t *targets;
    int V, Vp, bf16;
    float dloss;
} crossentropy_args;

static void crossentropy_rows(void *p, int64_t begin, int64_t end) {
    crossentropy_args *a = p;
    int V = a->V, Vp = a->Vp;
    for (int64_t n = begin; n < end; n++) {
        const void *x = act_at(a->logits, n * Vp, a->bf16);
        int bf16 = a->bf16;
        int target = a->targets[n];
        if (target < 0) { /* an ignored (masked) position: no loss, no gradient */
            a->losses[n] = 0.0f;
            if (a->dlogits) {
                void *d = act_at(a->dlogits, n * Vp, bf16);
                for (int i = 0; i < Vp; i++) act_store(d, i, 0.0f, bf16);
            }
            continue;
        }
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++)
            if (act_load(x, i, bf16) > maxval) maxval = act_load(x, i, bf16);
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += exp((double)act_load(x, i, bf16) - maxval);
        double log_sum = log(sum);
        a->losses[n] = (float)(log_sum - ((double)act_load(x, target, bf16) - maxval));
        if (a->dlogits) {
            void *d = act_at(a->dlogits, n * Vp, bf16); /* may alias x: each x[i] is read before d[i] is written */
            for (int i = 0; i < V; i++) {
                float prob = (float)exp((double)act_load(x, i, bf16) - maxval - log_sum);
                act_store(d, i, (prob - (i == target ? 1.0f : 0.0f)) * a->dloss, bf16);
            }
            for (int i = V; i < Vp; i++) act_store(d, i, 0.0f, bf16); /* the padded columns are masked */
        }
    }
}

void softmax_crossentropy(baton_context *ctx, float *losses, baton_activation *dlogits, const baton_activation *logits,
                          const int32_t *targets, int N, int V, int Vp, float dloss) {
    crossentropy_args a = {losses, dlogits, logits, targets, V, Vp, stores_bf16(ctx), dloss};
    parallel_for(ctx, N, 1, crossentropy_rows, &a);
}
