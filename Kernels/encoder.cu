// Token + position embedding (no position table for rotary models): the twin of Sources/CBatonCPU/encoder.c.
#include "common.cuh"

__global__ void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                                       int T, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long row = i / C;
    int c = (int)(i % C), t = (int)(row % T);
    float token = wte[(long long)tokens[row] * C + c];
    out[i] = wpe ? token + wpe[(long long)t * C + c] : token;
}

void encoder_forward(baton_context *ctx, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                     int T, int C) {
    long long n = (long long)B * T * C;
    encoder_forward_kernel<<<blocks_for(n, 256), 256>>>(out, tokens, wte, wpe, B, T, C);
    check_launch(ctx, "encoder_forward");
}

// dwte[token, c] += dout[row, c], one thread per (token, channel) that adds the token's rows (its
// group of the buckets) in row order: the CPU's sums bit for bit, no atomics, and each thread
// reads only its token's rows. Groups run along grid.x (up to 2^31 - 1; a vocabulary can pass 65535).
__global__ void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *tokens,
                                            const int32_t *bucket_rows, const int32_t *bucket_starts, int C) {
    int group = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int first = bucket_starts[group], end = bucket_starts[group + 1];
    float *dtok = dwte + (long long)tokens[bucket_rows[first]] * C + c;
    float sum = *dtok;
    for (int i = first; i < end; i++) sum += dout[(long long)bucket_rows[i] * C + c];
    *dtok = sum;
}

// dwpe[t,c] += sum over b of dout[b,t,c]: dout viewed as B rows of T*C columns.

void encoder_backward(baton_context *ctx, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                      const int32_t *bucket_rows, const int32_t *bucket_starts, int buckets, int B, int T, int C) {
    if (buckets > 0) {
        encoder_backward_wte_kernel<<<dim3(buckets, blocks_for(C, 128)), 128>>>(dwte, dout, tokens, bucket_rows,
                                                                                bucket_starts, C);
        check_launch(ctx, "encoder_backward");
    }
    if (dwpe) column_sum(ctx, dwpe, dout, B, T * C, "encoder_backward");
}
