// Grouped-query attention's heads: the twin of Sources/CBatonCPU/repeat_kv.c. One thread per
// element of the expanded row [q | k | v] (forward) or of the grouped row (backward).
#include "common.cuh"

template <class Act>
__global__ void repeat_kv_forward_kernel(Act *out, const Act *inp, long long n, int NH, int KV, int HS) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long C = (long long)NH * HS, row = i / (3 * C), column = i % (3 * C);
    int part = (int)(column / C), h = (int)(column % C / HS), d = (int)(column % HS);
    long long in_row = row * (NH + 2ll * KV) * HS;
    long long source = part == 0 ? column : C + (part - 1ll) * KV * HS + (long long)(h / (NH / KV)) * HS + d;
    store_act(out, i, load_act(inp, in_row + source));
}

void repeat_kv_forward(baton_context *ctx, baton_activation *out, const baton_activation *inp, int N, int NH, int KV,
                       int HS) {
    long long n = 3ll * N * NH * HS;
    if (n == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        repeat_kv_forward_kernel<Act>
                <<<blocks_for(n, 256), 256>>>(static_cast<Act *>(out), static_cast<const Act *>(inp), n, NH, KV, HS);
    });
    check_launch(ctx, "repeat_kv_forward");
}

template <class Act>
__global__ void repeat_kv_backward_kernel(Act *dinp, const Act *dout, long long n, int NH, int KV, int HS) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long C = (long long)NH * HS, width = (NH + 2ll * KV) * HS, row = i / width, column = i % width;
    const Act *d = dout + row * 3 * C;
    if (column < C) {
        store_act(dinp, i, load_act(d, column));
        return;
    }
    long long rest = column - C, part = 1 + rest / ((long long)KV * HS);
    int kv = (int)(rest % ((long long)KV * HS) / HS), offset = (int)(rest % HS), group = NH / KV;
    float sum = 0.0f;
    for (int g = 0; g < group; g++) sum += load_act(d, part * C + (long long)(kv * group + g) * HS + offset);
    store_act(dinp, i, sum);
}

void repeat_kv_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout, int N, int NH, int KV,
                        int HS) {
    long long n = (long long)N * (NH + 2ll * KV) * HS;
    if (n == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        repeat_kv_backward_kernel<Act>
                <<<blocks_for(n, 256), 256>>>(static_cast<Act *>(dinp), static_cast<const Act *>(dout), n, NH, KV, HS);
    });
    check_launch(ctx, "repeat_kv_backward");
}
