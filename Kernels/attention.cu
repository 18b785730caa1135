// Causal multi-head self-attention, two ways, chosen by the head size and the context's
// attention option (--attention); this file picks, and holds the second way:
//  - flash (head size <= 64, every GPT-2; attention_flash.cu in float32, attention_flash_tc.cu on
//    tensor cores): online softmax over key tiles of 32, tiles above the diagonal skipped, q/k/v
//    read in place from qkv by stride, no T x T matrix anywhere: the forward pass keeps only each
//    row's log-sum-exp; the backward pass recomputes the scores tile by tile, dK/dV in one kernel
//    (one block per key tile, looping over query tiles) and dQ in another (one block per query
//    tile), so no sum needs atomics and the bits repeat.
//  - materialized (larger heads, or --attention materialized): the scores in memory and cuBLAS
//    strided-batched sgemm, the twin of Sources/CBatonCPU/attention.c (q repacked into [B,NH,T,hs]
//    blocks in scratch, k and v into [B,KV,T,hs]).
// Query head h reads key/value head h / (NH / KV) in place (KV = NH: multi-head attention); the
// gradients of a key/value head sum over its NH / KV query heads, in a fixed order (no atomics).
// attention_sizes tells the model which buffers each needs. qkv, out and their gradients are
// activations: bf16 in bf16 (read by the tensor-core kernels, or widened into the materialized
// path's float32 blocks), float32 otherwise.
#include "attention_flash.cuh"

// The sizes both ops work with, and the scratch layout (floats, BATON_ATTENTION_SCRATCH):
// dS [B*NH*T*T] | q [B*NH*T*hs] | k, v [B*KV*T*hs] | dO, dq [B*NH*T*hs] | dk, dv [B*KV*T*hs].
// Packed [B,NH,T,hs], the G = NH/KV query heads of a key/value head are G*T consecutive rows, as
// are their scores and probabilities in [B,NH,T,T]: so each product is one strided-batched sgemm
// over the B*KV (batch, key/value head) pairs, the group's query heads stacked as rows (Q K^T,
// P V, dO V^T and dS K are [G*T] rows deep; dK = dS^T Q and dV = P^T dO sum over G*T rows, the
// group's query heads and their rows in one product, in cuBLAS's fixed order).
struct Attention {
    baton_context *ctx;
    int B, T, C, NH, KV, hs, G, batches;
    long long n, nkv, head, square; // elements of [B,T,C]; of [B,T,KV*hs]; of one head's [T,hs]; of one [T,T]
    float scale;
    float *ds, *q, *k, *v, *dout, *dq, *dk, *dv;
    Attention(baton_context *ctx_, float *scratch, int B_, int T_, int C_, int NH_, int KV_)
        : ctx(ctx_), B(B_), T(T_), C(C_), NH(NH_), KV(KV_) {
        hs = C / NH;
        G = NH / KV;
        batches = B * KV;
        n = (long long)B * T * C;
        nkv = (long long)B * T * KV * hs;
        head = (long long)T * hs;
        square = (long long)T * T;
        scale = 1.0f / sqrtf((float)hs);
        ds = scratch;
        q = ds + (long long)B * NH * square;
        k = q + n;
        v = k + nkv;
        dout = v + nkv;
        dq = dout + n;
        dk = dq + n;
        dv = dk + nkv;
    }
    // C = alpha op(A) op(B) per (b, key/value head), on the strided batch; op names the step for errors.
    void matmul(float *c, const float *a, const float *b, int M, int N, int K, int trans_a, int trans_b,
                long long stride_a, long long stride_b, long long stride_c, float alpha, const char *op) const {
        row_major_sgemm(ctx, c, a, b, M, N, K, trans_a, trans_b, alpha, 0.0f, stride_a, stride_b, stride_c, batches,
                        op);
    }
    // The width of qkv's rows and where its key and value heads start in a row.
    long long width() const { return C + 2LL * KV * hs; }
    long long values() const { return C + (long long)KV * hs; }
};

// Element i of a packed [B,heads,T,hs] block, as the offset of the same element in a [B,T,width]
// row-major tensor whose head h starts at channel first + h*hs.
__device__ inline long long unpacked_offset(long long i, int T, int heads, int hs, long long width, long long first) {
    int d = (int)(i % hs);
    long long rest = i / hs;
    int t = (int)(rest % T);
    rest /= T;
    int h = (int)(rest % heads);
    long long b = rest / heads;
    return (b * T + t) * width + first + (long long)h * hs + d;
}

// heads of x [B,T,width] starting at channel `first` -> packed [B,heads,T,hs] (float32)
template <class Act>
__global__ void pack_kernel(float *packed, const Act *x, int B, int T, int heads, int hs, long long width,
                            long long first) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)B * T * heads * hs) packed[i] = load_act(x, unpacked_offset(i, T, heads, hs, width, first));
}

// packed [B,heads,T,hs] (float32) -> the heads of x [B,T,width] starting at channel `first`
template <class Act>
__global__ void unpack_kernel(Act *x, const float *packed, int B, int T, int heads, int hs, long long width,
                              long long first) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)B * T * heads * hs) store_act(x, unpacked_offset(i, T, heads, hs, width, first), packed[i]);
}

template <class Act>
static void pack(const Attention &a, float *packed, const Act *x, int heads, long long width, long long first) {
    long long count = (long long)a.B * a.T * heads * a.hs;
    pack_kernel<Act><<<blocks_for(count, 256), 256>>>(packed, x, a.B, a.T, heads, a.hs, width, first);
}
template <class Act>
static void unpack(const Attention &a, Act *x, const float *packed, int heads, long long width, long long first) {
    long long count = (long long)a.B * a.T * heads * a.hs;
    unpack_kernel<Act><<<blocks_for(count, 256), 256>>>(x, packed, a.B, a.T, heads, a.hs, width, first);
}

// qkv [B,T,(NH+2KV)*hs] -> q [B,NH,T,hs], k and v [B,KV,T,hs] (float32)
template <class Act> static void pack_qkv(const Attention &a, const Act *qkv, const char *op) {
    pack(a, a.q, qkv, a.NH, a.width(), 0);
    check_launch(a.ctx, op);
    pack(a, a.k, qkv, a.KV, a.width(), a.C);
    check_launch(a.ctx, op);
    pack(a, a.v, qkv, a.KV, a.width(), a.values());
    check_launch(a.ctx, op);
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
    for (int t2 = lane; t2 <= t; t2 += 32) {
        float e = expf(x[t2] - maxval);
        x[t2] = e;
        sum += e;
    }
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

template <class Act>
static void materialized_forward(baton_context *ctx, Act *out, float *att, const Act *qkv, float *scratch, int B, int T,
                                 int C, int NH, int KV) {
    Attention a(ctx, scratch, B, T, C, NH, KV);
    int rows = a.G * T; // a group's query rows
    long long group_head = a.G * a.head, group_square = a.G * a.square;
    pack_qkv(a, qkv, "attention_forward");
    a.matmul(att, a.q, a.k, rows, T, a.hs, 0, 1, group_head, a.head, group_square, a.scale, "attention_forward: Q K^T");
    causal_softmax_kernel<<<blocks_for((long long)B * NH * T, 8), 256>>>(att, B * NH * T, T);
    check_launch(ctx, "attention_forward");
    a.matmul(a.dq, att, a.v, rows, a.hs, T, 0, 0, group_square, a.head, group_head, 1.0f, "attention_forward: P V");
    unpack(a, out, a.dq, NH, C, 0);
    check_launch(ctx, "attention_forward");
}

template <class Act>
static void materialized_backward(baton_context *ctx, Act *dqkv, float *scratch, const Act *dout, const Act *qkv,
                                  const float *att, int B, int T, int C, int NH, int KV) {
    Attention a(ctx, scratch, B, T, C, NH, KV);
    int rows = a.G * T;
    long long group_head = a.G * a.head, group_square = a.G * a.square;
    pack_qkv(a, qkv, "attention_backward");
    pack(a, a.dout, dout, NH, C, 0);
    check_launch(ctx, "attention_backward");
    a.matmul(a.ds, a.dout, a.v, rows, T, a.hs, 0, 1, group_head, a.head, group_square, 1.0f,
             "attention_backward: dO V^T");
    causal_softmax_backward_kernel<<<blocks_for((long long)B * NH * T, 8), 256>>>(a.ds, att, B * NH * T, T, a.scale);
    check_launch(ctx, "attention_backward");
    a.matmul(a.dq, a.ds, a.k, rows, a.hs, T, 0, 0, group_square, a.head, group_head, 1.0f, "attention_backward: dS K");
    a.matmul(a.dk, a.ds, a.q, T, a.hs, rows, 1, 0, group_square, group_head, a.head, 1.0f,
             "attention_backward: dS^T Q");
    a.matmul(a.dv, att, a.dout, T, a.hs, rows, 1, 0, group_square, group_head, a.head, 1.0f,
             "attention_backward: P^T dO");
    unpack(a, dqkv, a.dq, NH, a.width(), 0);
    check_launch(ctx, "attention_backward");
    unpack(a, dqkv, a.dk, KV, a.width(), C);
    check_launch(ctx, "attention_backward");
    unpack(a, dqkv, a.dv, KV, a.width(), a.values());
    check_launch(ctx, "attention_backward");
}

// Flash attention where the head fits its tiles and the context asks for it (its default:
// --attention materialized keeps the scores, for a comparison on the same GPU). The sizes and the
// ops ask the same question, so they agree.
static bool uses_flash(baton_context *ctx, int C, int NH) {
    return C / NH <= FLASH_MAX_HS && ctx->attention != BATON_ATTENTION_MATERIALIZED;
}

// Flash attention's products on tensor cores: in bf16 and tf32 mode, on sm_80 and newer (bf16 is
// refused below sm_80: set_precision).
static bool uses_tensor_cores(baton_context *ctx) {
    return ctx->precision != BATON_PRECISION_FP32 && ctx->compute_major >= 8;
}

void backend_attention_sizes(baton_context *ctx, int B, int T, int C, int NH, int KV, int64_t *saved,
                             int64_t *scratch) {
    if (uses_flash(ctx, C, NH)) {
        *saved = (int64_t)B * NH * T;   // each row's log-sum-exp
        *scratch = (int64_t)B * NH * T; // each row's sum of dO * O
    } else {
        *saved = (int64_t)B * NH * T * T;
        *scratch = BATON_ATTENTION_SCRATCH(B, T, C, NH, KV);
    }
}

void attention_forward(baton_context *ctx, baton_activation *out, float *saved, const baton_activation *qkv,
                       float *scratch, int B, int T, int C, int NH, int KV) {
    if (!uses_flash(ctx, C, NH)) {
        with_activations(ctx, [&](auto type) {
            using Act = decltype(type);
            materialized_forward(ctx, static_cast<Act *>(out), saved, static_cast<const Act *>(qkv), scratch, B, T, C,
                                 NH, KV);
        });
        return;
    }
    float scale = 1.0f / sqrtf((float)(C / NH));
    if (uses_tensor_cores(ctx))
        flash_tc_forward(ctx, B, out, saved, qkv, T, C, NH, KV, scale);
    else
        flash_forward(B, static_cast<float *>(out), saved, static_cast<const float *>(qkv), T, C, NH, KV, scale);
    check_launch(ctx, "attention_forward");
}

void attention_backward(baton_context *ctx, baton_activation *dqkv, float *scratch, const baton_activation *dout,
                        const baton_activation *qkv, const baton_activation *out, const float *saved, int B, int T,
                        int C, int NH, int KV) {
    if (!uses_flash(ctx, C, NH)) {
        with_activations(ctx, [&](auto type) {
            using Act = decltype(type);
            materialized_backward(ctx, static_cast<Act *>(dqkv), scratch, static_cast<const Act *>(dout),
                                  static_cast<const Act *>(qkv), saved, B, T, C, NH, KV);
        });
        return;
    }
    float scale = 1.0f / sqrtf((float)(C / NH));
    flash_row_dot(ctx, scratch, dout, out, B, T, C, NH);
    check_launch(ctx, "attention_backward");
    if (uses_tensor_cores(ctx))
        flash_tc_backward(ctx, B, dqkv, dout, qkv, saved, scratch, T, C, NH, KV, scale);
    else
        flash_backward(ctx, B, static_cast<float *>(dqkv), static_cast<const float *>(dout),
                       static_cast<const float *>(qkv), saved, scratch, T, C, NH, KV, scale);
    check_launch(ctx, "attention_backward");
}
