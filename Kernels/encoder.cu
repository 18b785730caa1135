// Token + position embedding: the twin of Sources/CBatonCPU/encoder.c.
#include "common.cuh"

__global__ void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long row = i / C;
    int c = (int)(i % C), t = (int)(row % T);
    out[i] = wte[(long long)tokens[row] * C + c] + wpe[(long long)t * C + c];
}

void encoder_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T, int C) {
    long long n = (long long)B * T * C;
    encoder_forward_kernel<<<blocks_for(n, 256), 256>>>(out, tokens, wte, wpe, B, T, C);
    check_launch("encoder_forward");
}

// One thread per channel, positions in order: deterministic sums, no atomics (as on the CPU).
__global__ void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *tokens, int BT, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int row = 0; row < BT; row++) dwte[(long long)tokens[row] * C + c] += dout[(long long)row * C + c];
}

// dwpe[t,c] += sum over b of dout[b,t,c]: dout viewed as B rows of T*C columns.

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T, int C) {
    encoder_backward_wte_kernel<<<blocks_for(C, 128), 128>>>(dwte, dout, tokens, B * T, C);
    check_launch("encoder_backward");
    column_sum(dwpe, dout, B, T * C, "encoder_backward");
}
