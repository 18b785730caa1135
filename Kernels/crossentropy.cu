// Fused softmax + cross-entropy, one block per row, sums in double (as on the CPU): the twin of
// Sources/CBatonCPU/crossentropy.c. The logits and their gradient are activations (Act). A negative
// target is a masked position: loss 0 and a zero gradient row.
#include "common.cuh"

// Thread t reads and writes chunks of W columns, t, t + blockDim, ... (W = 8: 16-byte accesses,
// the padded row a whole number of chunks; W = 1: column by column); columns from V on are masked.
template <int W, class Act>
__global__ void softmax_crossentropy_kernel(float *losses, Act *dlogits, const Act *logits, const int32_t *targets,
                                            int V, int Vp, float dloss) {
    __shared__ float shared_max[32];
    __shared__ double shared_sum[32];
    long long row = blockIdx.x;
    const Act *x = logits + row * Vp;
    int target = targets[row];
    if (target < 0) { // a masked position (ignored target): loss 0, gradient row 0; the whole block returns
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (dlogits) {
            Act *d = dlogits + row * Vp;
            for (int i = threadIdx.x * W; i < Vp; i += blockDim.x * W) {
                float g[W];
                for (int k = 0; k < W; k++) g[k] = 0.0f;
                store_values(d, i, g);
            }
        }
        return;
    }
    int end = W == 1 ? V : Vp; // chunks cover the padded columns too (masked), so each is whole
    float local_max = -INFINITY;
    for (int i = threadIdx.x * W; i < end; i += blockDim.x * W) {
        float v[W];
        load_values(v, x, i);
        for (int k = 0; k < W; k++)
            if (i + k < V) local_max = fmaxf(local_max, v[k]);
    }
    float maxval = block_max(local_max, shared_max);
    float target_logit = load_act(x, target); // read before any thread may overwrite it (dlogits may alias)
    double local_sum = 0.0;
    for (int i = threadIdx.x * W; i < end; i += blockDim.x * W) {
        float v[W];
        load_values(v, x, i);
        for (int k = 0; k < W; k++)
            if (i + k < V) local_sum += exp((double)v[k] - maxval);
    }
    double log_sum = log(block_sum(local_sum, shared_sum));
    if (threadIdx.x == 0) losses[row] = (float)(log_sum - ((double)target_logit - maxval));
    if (dlogits) {
        // Every read of x above is finished (block_sum synchronises), so d may alias x: a thread
        // reads each of its chunks before it writes that chunk.
        Act *d = dlogits + row * Vp;
        for (int i = threadIdx.x * W; i < Vp; i += blockDim.x * W) {
            float v[W], g[W];
            load_values(v, x, i);
            for (int k = 0; k < W; k++) {
                int column = i + k;
                float prob = column < V ? (float)exp((double)v[k] - maxval - log_sum) : 0.0f; // padded columns: masked
                g[k] = column < V ? (prob - (column == target ? 1.0f : 0.0f)) * dloss : 0.0f;
            }
            store_values(d, i, g);
        }
    }
}

void softmax_crossentropy(baton_context *ctx, float *losses, baton_activation *dlogits, const baton_activation *logits,
                          const int32_t *targets, int N, int V, int Vp, float dloss) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        with_vector_width(vector_width_fits(Vp, logits) && (!dlogits || vector_width_fits(Vp, dlogits)),
                          [&](auto width) {
                              constexpr int W = decltype(width)::value;
                              softmax_crossentropy_kernel<W, Act><<<N, 512>>>(losses, static_cast<Act *>(dlogits),
                                                                              static_cast<const Act *>(logits), targets,
                                                                              V, Vp, dloss);
                          });
    });
    check_launch(ctx, "softmax_crossentropy");
}
