// Token + position embedding: the twin of Sources/CBatonCPU/encoder.c.
#include "common.cuh"

__global__ void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long row = i / C;
    int c = (int)(i % C), t = (int)(row % T);
    out[i] = wte[(long long)tokens[row] * C + c] + wpe[(long long)t * C + c];
}

void encoder_forward(baton_context *ctx, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    long long n = (long long)B * T * C;
    encoder_forward_kernel<<<blocks_for(n, 256), 256>>>(out, tokens, wte, wpe, B, T, C);
    check_launch(ctx, "encoder_forward");
}

// dwte[token, c] += dout[row, c] over the rows in order, as on the CPU (deterministic, no atomics).
// Thread (c, s) owns channel c of the vocabulary rows whose id is s mod WTE_SLICES: every thread
// scans all the tokens (a broadcast within the warp, which shares s) but adds only its own rows, so
// C * WTE_SLICES threads share the work instead of C, and each (token, c) still sums in row order.
constexpr int WTE_SLICES = 64;

__global__ void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *tokens, int BT, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, slice = blockIdx.y;
    if (c >= C) return;
    for (int row = 0; row < BT; row++) {
        int token = tokens[row];
        if (token % WTE_SLICES == slice) dwte[(long long)token * C + c] += dout[(long long)row * C + c];
    }
}

// dwpe[t,c] += sum over b of dout[b,t,c]: dout viewed as B rows of T*C columns.

void encoder_backward(baton_context *ctx, float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    encoder_backward_wte_kernel<<<dim3(blocks_for(C, 128), WTE_SLICES), 128>>>(dwte, dout, tokens, B * T, C);
    check_launch(ctx, "encoder_backward");
    column_sum(ctx, dwpe, dout, B, T * C, "encoder_backward");
}
