// Fused softmax + cross-entropy, one block per row, sums in double (as on the CPU): the twin of
// Sources/CBatonCPU/crossentropy.c. The logits and their gradient are activations (Act).
#include "common.cuh"

template <class Act>
__global__ void softmax_crossentropy_kernel(float *losses, Act *dlogits, const Act *logits, const int32_t *targets, int V, int Vp,
                                            float dloss) {
    __shared__ float shared_max[32];
    __shared__ double shared_sum[32];
    long long row = blockIdx.x;
    const Act *x = logits + row * Vp;
    float local_max = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) local_max = fmaxf(local_max, load_act(x, i));
    float maxval = block_max(local_max, shared_max);
    int target = targets[row];
    float target_logit = load_act(x, target);  // read before any thread may overwrite it (dlogits may alias)
    double local_sum = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) local_sum += exp((double)load_act(x, i) - maxval);
    double log_sum = log(block_sum(local_sum, shared_sum));
    if (threadIdx.x == 0) losses[row] = (float)(log_sum - ((double)target_logit - maxval));
    if (dlogits) {
        // Every read of x above is finished (block_sum synchronises), so d may alias x.
        Act *d = dlogits + row * Vp;
        for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
            float prob = i < V ? (float)exp((double)load_act(x, i) - maxval - log_sum) : 0.0f;  // padded columns: masked
            store_act(d, i, i < V ? (prob - (i == target ? 1.0f : 0.0f)) * dloss : 0.0f);
        }
    }
}

void softmax_crossentropy(baton_context *ctx, float *losses, baton_activation *dlogits, const baton_activation *logits, const int32_t *targets,
                          int N, int V, int Vp, float dloss) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        softmax_crossentropy_kernel<Act><<<N, 512>>>(losses, static_cast<Act *>(dlogits), static_cast<const Act *>(logits), targets, V, Vp, dloss);
    });
    check_launch(ctx, "softmax_crossentropy");
}
