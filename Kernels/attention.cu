// Causal multi-head self-attention on cuBLAS strided-batched sgemm: the twin of
// Sources/CBatonCPU/attention.c (same math; see there). q, k and v are first repacked from
// qkv [B,T,3,NH,hs] into [B,NH,T,hs] blocks in the scratch buffer, one (b, h) per batch entry.
#include "common.cuh"

// Scratch layout (floats): dS [B*NH*T*T] | q | k | v | dO | dq | dk | dv, each [B*NH*T*hs].
struct Scratch {
    float *ds, *q, *k, *v, *dout, *dq, *dk, *dv;
    Scratch(float *base, int B, int T, int C, int NH) {
        long long block = (long long)B * T * C;
        ds = base;
        q = ds + (long long)B * NH * T * T;
        k = q + block; v = k + block; dout = v + block; dq = dout + block; dk = dq + block; dv = dk + block;
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

// Row-major batched C[M,N] = op(A)[M,K] op(B)[K,N] (see matmul.cu for the transposition trick).
static void batched_matmul(float *c, const float *a, const float *b, int M, int N, int K, int trans_a, int trans_b,
                           long long stride_a, long long stride_b, long long stride_c, int batches, float alpha, const char *op) {
    const float zero = 0.0f;
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    record_cublas_error(cublasSgemmStridedBatched(cublas_handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                  N, M, K, &alpha, b, ldb, stride_b, a, lda, stride_a, &zero, c, N, stride_c, batches),
                        op);
}

void attention_forward(float *out, float *att, const float *qkv, float *scratch, int B, int T, int C, int NH) {
    int hs = C / NH, batches = B * NH;
    long long n = (long long)B * T * C, head = (long long)T * hs, square = (long long)T * T;
    Scratch s(scratch, B, T, C, NH);
    float scale = 1.0f / sqrtf((float)hs);
    pack_qkv_kernel<<<blocks_for(n, 256), 256>>>(s.q, s.k, s.v, qkv, B, T, C, NH);
    check_launch("attention_forward");
    batched_matmul(att, s.q, s.k, T, T, hs, 0, 1, head, head, square, batches, scale, "attention_forward: Q K^T");
    causal_softmax_kernel<<<blocks_for((long long)batches * T, 8), 256>>>(att, batches * T, T);
    check_launch("attention_forward");
    batched_matmul(s.dq, att, s.v, T, hs, T, 0, 0, square, head, head, batches, 1.0f, "attention_forward: P V");
    repack_kernel<<<blocks_for(n, 256), 256>>>(s.dq, out, B, T, C, NH, 0);
    check_launch("attention_forward");
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B, int T, int C, int NH) {
    int hs = C / NH, batches = B * NH;
    long long n = (long long)B * T * C, head = (long long)T * hs, square = (long long)T * T;
    Scratch s(scratch, B, T, C, NH);
    float scale = 1.0f / sqrtf((float)hs);
    pack_qkv_kernel<<<blocks_for(n, 256), 256>>>(s.q, s.k, s.v, qkv, B, T, C, NH);
    check_launch("attention_backward");
    repack_kernel<<<blocks_for(n, 256), 256>>>(s.dout, const_cast<float *>(dout), B, T, C, NH, 1);
    check_launch("attention_backward");
    batched_matmul(s.ds, s.dout, s.v, T, T, hs, 0, 1, head, head, square, batches, 1.0f, "attention_backward: dO V^T");
    causal_softmax_backward_kernel<<<blocks_for((long long)batches * T, 8), 256>>>(s.ds, att, batches * T, T, scale);
    check_launch("attention_backward");
    batched_matmul(s.dq, s.ds, s.k, T, hs, T, 0, 0, square, head, head, batches, 1.0f, "attention_backward: dS K");
    batched_matmul(s.dk, s.ds, s.q, T, hs, T, 1, 0, square, head, head, batches, 1.0f, "attention_backward: dS^T Q");
    batched_matmul(s.dv, att, s.dout, T, hs, T, 1, 0, square, head, head, batches, 1.0f, "attention_backward: P^T dO");
    unpack_dqkv_kernel<<<blocks_for(n, 256), 256>>>(dqkv, s.dq, s.dk, s.dv, B, T, C, NH);
    check_launch("attention_backward");
}
