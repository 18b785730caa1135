// Causal multi-head self-attention on cuBLAS strided-batched sgemm: the twin of
// Sources/CBatonCPU/attention.c (same math; see there). q, k and v are first repacked from
// qkv [B,T,3,NH,hs] into [B,NH,T,hs] blocks in the scratch buffer, one (b, h) per batch entry.
#include "common.cuh"

// The sizes both ops work with, and the scratch layout (floats):
// dS [B*NH*T*T] | q | k | v | dO | dq | dk | dv, each [B*NH*T*hs].
struct Attention {
    baton_context *ctx;
    int B, T, C, NH, hs, batches;
    long long n, head, square;  // elements of [B,T,C]; of one head's [T,hs]; of one [T,T]
    float scale;
    float *ds, *q, *k, *v, *dout, *dq, *dk, *dv;
    Attention(baton_context *ctx_, float *scratch, int B_, int T_, int C_, int NH_) : ctx(ctx_), B(B_), T(T_), C(C_), NH(NH_) {
        hs = C / NH;
        batches = B * NH;
        n = (long long)B * T * C;
        head = (long long)T * hs;
        square = (long long)T * T;
        scale = 1.0f / sqrtf((float)hs);
        ds = scratch;
        q = ds + batches * square;
        k = q + n; v = k + n; dout = v + n; dq = dout + n; dk = dq + n; dv = dk + n;
    }
    // C = alpha op(A) op(B) per (b, h), on the strided batch; op names the step for errors.
    void matmul(float *c, const float *a, const float *b, int M, int N, int K, int trans_a, int trans_b, long long stride_a,
                long long stride_b, long long stride_c, float alpha, const char *op) const {
        row_major_sgemm(ctx, c, a, b, M, N, K, trans_a, trans_b, alpha, 0.0f, stride_a, stride_b, stride_c, batches, op);
    }
};

// Element i of a packed [B,NH,T,hs] block, as the offset of the same element in a [B,T,width]
// row-major tensor whose head h starts at channel h*hs (width C for x, 3C for qkv).
__device__ inline long long unpacked_offset(long long i, int T, int C, int NH, int width) {
    int hs = C / NH;
    int d = (int)(i % hs);
    long long rest = i / hs;
    int t = (int)(rest % T);
    rest /= T;
    int h = (int)(rest % NH);
    long long b = rest / NH;
    return (b * T + t) * width + h * hs + d;
}

// qkv [B,T,3C] -> q, k, v [B,NH,T,hs]
__global__ void pack_qkv_kernel(float *q, float *k, float *v, const float *qkv, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    const float *src = qkv + unpacked_offset(i, T, C, NH, 3 * C);
    q[i] = src[0];
    k[i] = src[C];
    v[i] = src[2 * C];
}

// x [B,T,C] <-> packed [B,NH,T,hs]; to_packed chooses the direction.
__global__ void repack_kernel(float *packed, float *x, int B, int T, int C, int NH, int to_packed) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long j = unpacked_offset(i, T, C, NH, C);
    if (to_packed) packed[i] = x[j]; else x[j] = packed[i];
}

// dq, dk, dv [B,NH,T,hs] -> dqkv [B,T,3C]
__global__ void unpack_dqkv_kernel(float *dqkv, const float *dq, const float *dk, const float *dv, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    float *dst = dqkv + unpacked_offset(i, T, C, NH, 3 * C);
    dst[0] = dq[i];
    dst[C] = dk[i];
    dst[2 * C] = dv[i];
}

// Row (bh, t) of the already-scaled scores: softmax over t2 <= t, zero above. One warp per row.
__global__ void causal_softmax_kernel(float *att, int rows, int T) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = row % T;
    float *x = att + (long long)row * T;
    float maxval = -INFINITY;
    for (int t2 = lane; t2 <= t; t2 += 32) maxval = fmaxf(maxval, x[t2]);
    maxval = warp_max(maxval);
    float sum = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) { float e = expf(x[t2] - maxval); x[t2] = e; sum += e; }
    float inv = 1.0f / warp_sum(sum);
    for (int t2 = lane; t2 < T; t2 += 32) x[t2] = t2 <= t ? x[t2] * inv : 0.0f;
}

// dS = P * (dP - rowsum(P * dP)) * scale, in place over dP. One warp per row.
__global__ void causal_softmax_backward_kernel(float *ds, const float *att, int rows, int T, float scale) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    int t = row % T;
    const float *p = att + (long long)row * T;
    float *d = ds + (long long)row * T;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) dot += p[t2] * d[t2];
    dot = warp_sum(dot);
    for (int t2 = lane; t2 < T; t2 += 32) d[t2] = t2 <= t ? p[t2] * (d[t2] - dot) * scale : 0.0f;
}

void attention_forward(baton_context *ctx, float *out, float *att, const float *qkv, float *scratch, int B, int T, int C, int NH) {
    Attention a(ctx, scratch, B, T, C, NH);
    pack_qkv_kernel<<<blocks_for(a.n, 256), 256>>>(a.q, a.k, a.v, qkv, B, T, C, NH);
    check_launch(ctx, "attention_forward");
    a.matmul(att, a.q, a.k, T, T, a.hs, 0, 1, a.head, a.head, a.square, a.scale, "attention_forward: Q K^T");
    causal_softmax_kernel<<<blocks_for((long long)a.batches * T, 8), 256>>>(att, a.batches * T, T);
    check_launch(ctx, "attention_forward");
    a.matmul(a.dq, att, a.v, T, a.hs, T, 0, 0, a.square, a.head, a.head, 1.0f, "attention_forward: P V");
    repack_kernel<<<blocks_for(a.n, 256), 256>>>(a.dq, out, B, T, C, NH, 0);
    check_launch(ctx, "attention_forward");
}

void attention_backward(baton_context *ctx, float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B, int T, int C, int NH) {
    Attention a(ctx, scratch, B, T, C, NH);
    pack_qkv_kernel<<<blocks_for(a.n, 256), 256>>>(a.q, a.k, a.v, qkv, B, T, C, NH);
    check_launch(ctx, "attention_backward");
    repack_kernel<<<blocks_for(a.n, 256), 256>>>(a.dout, const_cast<float *>(dout), B, T, C, NH, 1);
    check_launch(ctx, "attention_backward");
    a.matmul(a.ds, a.dout, a.v, T, T, a.hs, 0, 1, a.head, a.head, a.square, 1.0f, "attention_backward: dO V^T");
    causal_softmax_backward_kernel<<<blocks_for((long long)a.batches * T, 8), 256>>>(a.ds, att, a.batches * T, T, a.scale);
    check_launch(ctx, "attention_backward");
    a.matmul(a.dq, a.ds, a.k, T, a.hs, T, 0, 0, a.square, a.head, a.head, 1.0f, "attention_backward: dS K");
    a.matmul(a.dk, a.ds, a.q, T, a.hs, T, 1, 0, a.square, a.head, a.head, 1.0f, "attention_backward: dS^T Q");
    a.matmul(a.dv, att, a.dout, T, a.hs, T, 1, 0, a.square, a.head, a.head, 1.0f, "attention_backward: P^T dO");
    unpack_dqkv_kernel<<<blocks_for(a.n, 256), 256>>>(dqkv, a.dq, a.dk, a.dv, B, T, C, NH);
    check_launch(ctx, "attention_backward");
}
