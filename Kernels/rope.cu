// Rotary position embedding in place (transformers' rotate-half): the twin of
// Sources/CBatonCPU/rope.c. One thread per rotated pair (row, head, i < HS/2).
#include "common.cuh"

template <class Act>
__global__ void rope_kernel(Act *x, const float *freqs, long long pairs, int T, int width, int heads, int HS,
                            float sign) {
    long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= pairs) return;
    int half = HS / 2, i = (int)(p % half);
    long long head_row = p / half, row = head_row / heads;
    int h = (int)(head_row % heads);
    const float *f = freqs + (row % T) * 2 * half;
    float cosine = f[2 * i], sine = sign * f[2 * i + 1];
    long long base = row * width + (long long)h * HS;
    float x1 = load_act(x, base + i), x2 = load_act(x, base + i + half);
    store_act(x, base + i, x1 * cosine - x2 * sine);
    store_act(x, base + i + half, x2 * cosine + x1 * sine);
}

static void rope(baton_context *ctx, void *x, const float *freqs, int B, int T, int width, int heads, int HS,
                 float sign, const char *op) {
    long long pairs = (long long)B * T * heads * (HS / 2);
    if (pairs == 0) return;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        rope_kernel<Act>
                <<<blocks_for(pairs, 256), 256>>>(static_cast<Act *>(x), freqs, pairs, T, width, heads, HS, sign);
    });
    check_launch(ctx, op);
}

void rope_forward(baton_context *ctx, baton_activation *x, const float *freqs, int B, int T, int width, int heads,
                  int HS) {
    rope(ctx, x, freqs, B, T, width, heads, HS, 1.0f, "rope_forward");
}

void rope_backward(baton_context *ctx, baton_activation *dx, const float *freqs, int B, int T, int width, int heads,
                   int HS) {
    rope(ctx, dx, freqs, B, T, width, heads, HS, -1.0f, "rope_backward");
}
