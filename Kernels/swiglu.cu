// SwiGLU, silu(gate) * up: the twin of Sources/CBatonCPU/swiglu.c (formulas in baton_swiglu.h).
// One thread per output element.
#include "baton_swiglu.h"
#include "common.cuh"

template <class Act> __global__ void swiglu_forward_kernel(Act *out, const Act *inp, long long n, int H) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long gate = (i / H) * 2 * H + i % H;
    store_act(out, i, baton_swiglu(load_act(inp, gate), load_act(inp, gate + H)));
}

void swiglu_forward(baton_context *ctx, baton_activation *out, const baton_activation *inp, int N, int H) {
    long long n = (long long)N * H;
    if (n == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        swiglu_forward_kernel<Act>
                <<<blocks_for(n, 256), 256>>>(static_cast<Act *>(out), static_cast<const Act *>(inp), n, H);
    });
    check_launch(ctx, "swiglu_forward");
}

template <class Act>
__global__ void swiglu_backward_kernel(Act *dinp, const Act *dout, const Act *inp, long long n, int H) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long gate = (i / H) * 2 * H + i % H;
    float dgate, dup;
    baton_swiglu_backward(load_act(inp, gate), load_act(inp, gate + H), load_act(dout, i), &dgate, &dup);
    store_act(dinp, gate, dgate);
    store_act(dinp, gate + H, dup);
}

void swiglu_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                     const baton_activation *inp, int N, int H) {
    long long n = (long long)N * H;
    if (n == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        swiglu_backward_kernel<Act><<<blocks_for(n, 256), 256>>>(
                static_cast<Act *>(dinp), static_cast<const Act *>(dout), static_cast<const Act *>(inp), n, H);
    });
    check_launch(ctx, "swiglu_backward");
}
