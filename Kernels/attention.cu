// Causal multi-head self-attention, two ways, chosen by the head size:
//  - flash (head size <= 64, every GPT-2): online softmax over key tiles of 32, tiles above the
//    diagonal skipped, q/k/v read in place from qkv by stride, no T x T matrix anywhere: the
//    forward pass keeps only each row's log-sum-exp; the backward pass recomputes the scores tile
//    by tile, dK/dV in one kernel (one block per key tile, looping over query tiles) and dQ in
//    another (one block per query tile), so no sum needs atomics and the bits repeat.
//  - materialized (larger heads): the scores in memory and cuBLAS strided-batched sgemm, the twin
//    of Sources/CBatonCPU/attention.c (q, k and v repacked into [B,NH,T,hs] blocks in scratch).
// attention_sizes tells the model which buffers each needs. qkv, out and their gradients are
// activations: bf16 in bf16 (read by the tensor-core kernels, or widened into the materialized
// path's float32 blocks), float32 otherwise.
#include "common.cuh"
#include "baton_rounding.h"

#include <cuda_bf16.h>
#include <mma.h>

#include <cstdlib>
#include <cstring>

using namespace nvcuda;

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

// qkv [B,T,3C] -> q, k, v [B,NH,T,hs] (float32)
template <class Act>
__global__ void pack_qkv_kernel(float *q, float *k, float *v, const Act *qkv, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long at = unpacked_offset(i, T, C, NH, 3 * C);
    q[i] = load_act(qkv, at);
    k[i] = load_act(qkv, at + C);
    v[i] = load_act(qkv, at + 2 * C);
}

// x [B,T,C] -> packed [B,NH,T,hs] (float32)
template <class Act>
__global__ void pack_kernel(float *packed, const Act *x, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)B * T * C) packed[i] = load_act(x, unpacked_offset(i, T, C, NH, C));
}

// packed [B,NH,T,hs] (float32) -> x [B,T,C]
template <class Act>
__global__ void unpack_kernel(Act *x, const float *packed, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)B * T * C) store_act(x, unpacked_offset(i, T, C, NH, C), packed[i]);
}

// dq, dk, dv [B,NH,T,hs] -> dqkv [B,T,3C]
template <class Act>
__global__ void unpack_dqkv_kernel(Act *dqkv, const float *dq, const float *dk, const float *dv, int B, int T, int C, int NH) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long at = unpacked_offset(i, T, C, NH, 3 * C);
    store_act(dqkv, at, dq[i]);
    store_act(dqkv, at + C, dk[i]);
    store_act(dqkv, at + 2 * C, dv[i]);
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

template <class Act>
static void materialized_forward(baton_context *ctx, Act *out, float *att, const Act *qkv, float *scratch, int B, int T, int C, int NH) {
    Attention a(ctx, scratch, B, T, C, NH);
    pack_qkv_kernel<Act><<<blocks_for(a.n, 256), 256>>>(a.q, a.k, a.v, qkv, B, T, C, NH);
    check_launch(ctx, "attention_forward");
    a.matmul(att, a.q, a.k, T, T, a.hs, 0, 1, a.head, a.head, a.square, a.scale, "attention_forward: Q K^T");
    causal_softmax_kernel<<<blocks_for((long long)a.batches * T, 8), 256>>>(att, a.batches * T, T);
    check_launch(ctx, "attention_forward");
    a.matmul(a.dq, att, a.v, T, a.hs, T, 0, 0, a.square, a.head, a.head, 1.0f, "attention_forward: P V");
    unpack_kernel<Act><<<blocks_for(a.n, 256), 256>>>(out, a.dq, B, T, C, NH);
    check_launch(ctx, "attention_forward");
}

template <class Act>
static void materialized_backward(baton_context *ctx, Act *dqkv, float *scratch, const Act *dout, const Act *qkv, const float *att, int B, int T,
                                  int C, int NH) {
    Attention a(ctx, scratch, B, T, C, NH);
    pack_qkv_kernel<Act><<<blocks_for(a.n, 256), 256>>>(a.q, a.k, a.v, qkv, B, T, C, NH);
    check_launch(ctx, "attention_backward");
    pack_kernel<Act><<<blocks_for(a.n, 256), 256>>>(a.dout, dout, B, T, C, NH);
    check_launch(ctx, "attention_backward");
    a.matmul(a.ds, a.dout, a.v, T, T, a.hs, 0, 1, a.head, a.head, a.square, 1.0f, "attention_backward: dO V^T");
    causal_softmax_backward_kernel<<<blocks_for((long long)a.batches * T, 8), 256>>>(a.ds, att, a.batches * T, T, a.scale);
    check_launch(ctx, "attention_backward");
    a.matmul(a.dq, a.ds, a.k, T, a.hs, T, 0, 0, a.square, a.head, a.head, 1.0f, "attention_backward: dS K");
    a.matmul(a.dk, a.ds, a.q, T, a.hs, T, 1, 0, a.square, a.head, a.head, 1.0f, "attention_backward: dS^T Q");
    a.matmul(a.dv, att, a.dout, T, a.hs, T, 1, 0, a.square, a.head, a.head, 1.0f, "attention_backward: P^T dO");
    unpack_dqkv_kernel<Act><<<blocks_for(a.n, 256), 256>>>(dqkv, a.dq, a.dk, a.dv, B, T, C, NH);
    check_launch(ctx, "attention_backward");
}

// ---- flash ----------------------------------------------------------------------------------

constexpr int FLASH_TILE = 32;      // query rows and key rows per tile: one key per lane
constexpr int FLASH_MAX_HS = 64;    // head sizes the flash kernels take (shared memory: 48 KiB)
constexpr int FLASH_THREADS = 256;  // 8 warps, 4 rows of a tile each
constexpr int FLASH_ROWS_PER_WARP = FLASH_TILE / (FLASH_THREADS / 32);
constexpr int FLASH_PAD = FLASH_MAX_HS + 1;  // row stride in shared memory: lane-indexed rows hit distinct banks
constexpr int FLASH_CHUNKS = FLASH_MAX_HS / 32;  // channels a lane owns: d = lane, lane + 32

// Where the tile's rows live in qkv: row t of head h of batch b starts at ((b*T + t)*3C + h*hs);
// k and v are C and 2C further.
struct FlashHead {
    int b, h, T, C, NH, hs;
    __device__ FlashHead(int bh, int T_, int C_, int NH_) : b(bh / NH_), h(bh % NH_), T(T_), C(C_), NH(NH_), hs(C_ / NH_) {}
    __device__ long long qkv_row(int t) const { return ((long long)b * T + t) * 3 * C + (long long)h * hs; }
    __device__ long long out_row(int t) const { return ((long long)b * T + t) * C + (long long)h * hs; }
};

// The online softmax of both flash forward kernels, for a warp's FLASH_ROWS_PER_WARP query rows:
// each row's running max m and sum l, and the output channels the lane owns (lane, lane + 32).
struct OnlineSoftmax {
    float m[FLASH_ROWS_PER_WARP], l[FLASH_ROWS_PER_WARP], acc[FLASH_ROWS_PER_WARP][FLASH_CHUNKS];

    __device__ OnlineSoftmax() {
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            m[i] = -INFINITY;
            l[i] = 0.0f;
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) acc[i][j] = 0.0f;
        }
    }

    // Row i's score for this lane's key of a key tile (-inf where masked): e = exp(score - the new
    // max), and `rescale`, what the row's sum and output so far are multiplied by (0 on its first
    // tile, m = -inf). False, with e = 0 and rescale = 1, where the whole tile is above the row's
    // diagonal or the row is past T (the same for every lane of the warp).
    __device__ bool step(int i, float score, float &e, float &rescale) {
        float m_new = fmaxf(m[i], warp_max(score));
        e = 0.0f;
        rescale = 1.0f;
        if (m_new == -INFINITY) return false;
        e = score == -INFINITY ? 0.0f : expf(score - m_new);
        rescale = expf(m[i] - m_new);
        l[i] = l[i] * rescale + warp_sum(e);
        m[i] = m_new;
        return true;
    }

    // out = acc / l for the warp's rows below T (channels below hs), rows q0 + 4w.., and each
    // row's log-sum-exp into lse.
    template <class Act>
    __device__ void finish(Act *out, float *lse, const FlashHead &head, int q0) const {
        int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int t = q0 + warp * FLASH_ROWS_PER_WARP + i;
            if (t >= head.T) continue;
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) {
                int d = lane + 32 * j;
                if (d < head.hs) store_act(out, head.out_row(t) + d, acc[i][j] / l[i]);
            }
            if (lane == 0) lse[(long long)blockIdx.y * head.T + t] = m[i] + logf(l[i]);
        }
    }
};

// Copies rows first..first+31 (row t starts at base + row(t); float32 or bf16) into tile, each
// value through `convert` (float32 as it is, or rounded to a tensor-core precision), zeros past T
// and past hs.
template <class Element, int Pad, class Source, class Row, class Convert>
__device__ inline void load_rows(Element (*tile)[Pad], const Source *base, Row row, int first, int T, int hs, Convert convert) {
    for (int i = threadIdx.x; i < FLASH_TILE * FLASH_MAX_HS; i += blockDim.x) {
        int r = i / FLASH_MAX_HS, d = i % FLASH_MAX_HS, t = first + r;
        tile[r][d] = convert((t < T && d < hs) ? load_act(base, row(t) + d) : 0.0f);
    }
}

template <class Row>
__device__ inline void load_tile(float (*tile)[FLASH_PAD], const float *base, Row row, int first, int T, int hs) {
    load_rows(tile, base, row, first, T, hs, [](float x) { return x; });
}

// dot[i] = sum over d of a[first + i][d] * b[d] for the warp's rows i, d ascending: the lane's
// b[d] is loaded once for all rows (the rows' values are broadcasts), so shared memory serves
// 4 multiply-adds with 5 loads instead of 8.
__device__ inline void rows_dot(float (&dot)[FLASH_ROWS_PER_WARP], float (*a)[FLASH_PAD], int first, const float *b, int hs) {
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) dot[i] = 0.0f;
    for (int d = 0; d < hs; d++) {
        float bd = b[d];
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) dot[i] += a[first + i][d] * bd;
    }
}

// One block per (query tile, b*NH + h). Warp w owns query rows 4w..4w+3 of the tile; for a key
// tile, lane c scores key c, the warp's max and sum update the row's running max m and sum l,
// and the lane's output channels (lane, lane + 32) are rescaled and accumulated.
__global__ void flash_forward_kernel(float *out, float *lse, const float *qkv, int T, int C, int NH, float scale) {
    __shared__ float q[FLASH_TILE][FLASH_PAD];
    __shared__ float k[FLASH_TILE][FLASH_PAD];
    __shared__ float v[FLASH_TILE][FLASH_PAD];
    __shared__ float p[FLASH_TILE][FLASH_TILE + 1];
    FlashHead head(blockIdx.y, T, C, NH);
    int hs = head.hs, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_tile(q, qkv, [&](int t) { return head.qkv_row(t); }, q0, T, hs);
    OnlineSoftmax rows;
    int last = min(q0 + FLASH_TILE, T);  // keys at or after `last` are above every row's diagonal
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads();  // the previous tile's k and v are no longer read
        load_tile(k, qkv + C, [&](int t) { return head.qkv_row(t); }, k0, T, hs);
        load_tile(v, qkv + 2 * C, [&](int t) { return head.qkv_row(t); }, k0, T, hs);
        __syncthreads();
        float dots[FLASH_ROWS_PER_WARP];
        rows_dot(dots, q, warp * FLASH_ROWS_PER_WARP, k[lane], hs);
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i, t = q0 + r, key = k0 + lane;
            float score = (t < T && key <= t) ? dots[i] * scale : -INFINITY, e, correction;
            if (!rows.step(i, score, e, correction)) continue;  // no key of this tile for this row
            p[r][lane] = e;
            __syncwarp();
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) {
                int d = lane + 32 * j;
                float sum = 0.0f;
                #pragma unroll 8
                for (int c = 0; c < FLASH_TILE; c++) sum += p[r][c] * v[c][d];
                rows.acc[i][j] = rows.acc[i][j] * correction + sum;
            }
            __syncwarp();  // p's row is rewritten by the next tile
        }
    }
    rows.finish(out, lse, head, q0);
}

// D[row] = sum over d of dO[row, d] * O[row, d], for the softmax's backward. One warp per row.
template <class Act>
__global__ void flash_row_dot_kernel(float *dsum, const Act *dout, const Act *out, int B, int T, int C, int NH) {
    long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (row >= (long long)B * NH * T) return;
    int bh = (int)(row / T), t = (int)(row % T), hs = C / NH;
    long long at = ((long long)(bh / NH) * T + t) * C + (long long)(bh % NH) * hs;
    float sum = 0.0f;
    for (int d = lane; d < hs; d += 32) sum += load_act(dout, at + d) * load_act(out, at + d);
    sum = warp_sum(sum);
    if (lane == 0) dsum[row] = sum;
}

// The shared memory of both float32 backward kernels (42 KB).
struct FlashFloatBackwardTiles {
    float q[FLASH_TILE][FLASH_PAD], k[FLASH_TILE][FLASH_PAD], v[FLASH_TILE][FLASH_PAD], g[FLASH_TILE][FLASH_PAD];  // g: dO
    float p[FLASH_TILE][FLASH_TILE + 1], ds[FLASH_TILE][FLASH_TILE + 1];
    float lse[FLASH_TILE], dsum[FLASH_TILE];
};

// For one (query tile, key tile): P = exp(S - lse) and dS = P (dP - D), where S = scale q k and
// dP = dO v; entry (row r of the warp's 4, key = lane) into p and ds.
__device__ inline void flash_scores(FlashFloatBackwardTiles &t, int q0, int k0, int T, int hs, float scale) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float scores[FLASH_ROWS_PER_WARP], dprobs[FLASH_ROWS_PER_WARP];
    rows_dot(scores, t.q, warp * FLASH_ROWS_PER_WARP, t.k[lane], hs);
    rows_dot(dprobs, t.g, warp * FLASH_ROWS_PER_WARP, t.v[lane], hs);
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int r = warp * FLASH_ROWS_PER_WARP + i, row = q0 + r, key = k0 + lane;
        float prob = 0.0f, grad = 0.0f;
        if (row < T && key <= row) {
            prob = expf(scores[i] * scale - t.lse[r]);
            grad = prob * (dprobs[i] - t.dsum[r]);
        }
        t.p[r][lane] = prob;
        t.ds[r][lane] = grad;
    }
}

// The key side of a backward tile: k and v rows k0..k0+31, for either kind of tiles.
template <class Tiles, class Source, class Load>
__device__ inline void load_key_side(Tiles &t, const Source *qkv, const FlashHead &head, int k0, Load load) {
    auto qkv_row = [&](int row) { return head.qkv_row(row); };
    load(t.k, qkv + head.C, qkv_row, k0);
    load(t.v, qkv + 2 * head.C, qkv_row, k0);
}

// The query side of a backward tile: q and dO rows q0..q0+31, their log-sum-exps and D.
template <class Tiles, class Source, class Load>
__device__ inline void load_query_side(Tiles &t, const Source *qkv, const Source *dout, const float *lse_all, const float *dsum_all,
                                       const FlashHead &head, int q0, Load load) {
    int T = head.T;
    load(t.q, qkv, [&](int row) { return head.qkv_row(row); }, q0);
    load(t.g, dout, [&](int row) { return head.out_row(row); }, q0);
    if (threadIdx.x < FLASH_TILE) {
        int row = q0 + threadIdx.x;
        t.lse[threadIdx.x] = row < T ? lse_all[(long long)blockIdx.y * T + row] : 0.0f;
        t.dsum[threadIdx.x] = row < T ? dsum_all[(long long)blockIdx.y * T + row] : 0.0f;
    }
}

// Loads float32 rows into the float32 kernels' tiles.
struct FloatRows {
    const FlashHead &head;
    template <class Row>
    __device__ void operator()(float (*tile)[FLASH_PAD], const float *base, Row row, int first) const {
        load_tile(tile, base, row, first, head.T, head.hs);
    }
};

// One block per (key tile, b*NH + h): dK and dV of its 32 keys, summed over the query tiles at
// or below the diagonal in query order. Warp w owns keys 4w..4w+3, lane the channels lane, lane+32.
__global__ void flash_backward_dkdv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse_all, const float *dsum_all,
                                           int T, int C, int NH, float scale) {
    __shared__ FlashFloatBackwardTiles shared[1];  // an array of one: the emulator poisons shared arrays
    FlashFloatBackwardTiles &tiles = shared[0];
    auto &q = tiles.q, &g = tiles.g;
    auto &p = tiles.p, &ds = tiles.ds;
    FlashHead head(blockIdx.y, T, C, NH);
    FloatRows load{head};
    int hs = head.hs, k0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_key_side(tiles, qkv, head, k0, load);
    float dk[FLASH_ROWS_PER_WARP][FLASH_CHUNKS] = {}, dv[FLASH_ROWS_PER_WARP][FLASH_CHUNKS] = {};
    for (int q0 = k0; q0 < T; q0 += FLASH_TILE) {  // query tiles below k0 see none of these keys
        __syncthreads();
        load_query_side(tiles, qkv, dout, lse_all, dsum_all, head, q0, load);
        __syncthreads();
        flash_scores(tiles, q0, k0, T, hs, scale);
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int c = warp * FLASH_ROWS_PER_WARP + i;
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) {
                int d = lane + 32 * j;
                float sum_k = 0.0f, sum_v = 0.0f;
                #pragma unroll 8
                for (int r = 0; r < FLASH_TILE; r++) {
                    sum_k += ds[r][c] * q[r][d];
                    sum_v += p[r][c] * g[r][d];
                }
                dk[i][j] += sum_k;
                dv[i][j] += sum_v;
            }
        }
    }
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int key = k0 + warp * FLASH_ROWS_PER_WARP + i;
        if (key >= T) continue;
        #pragma unroll
        for (int j = 0; j < FLASH_CHUNKS; j++) {
            int d = lane + 32 * j;
            if (d >= hs) continue;
            dqkv[head.qkv_row(key) + C + d] = dk[i][j] * scale;
            dqkv[head.qkv_row(key) + 2 * C + d] = dv[i][j];
        }
    }
}

// One block per (query tile, b*NH + h): dQ of its 32 rows, summed over the key tiles up to the
// diagonal in key order. Warp w owns rows 4w..4w+3, lane the channels lane, lane+32.
__global__ void flash_backward_dq_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse_all, const float *dsum_all,
                                         int T, int C, int NH, float scale) {
    __shared__ FlashFloatBackwardTiles shared[1];
    FlashFloatBackwardTiles &tiles = shared[0];
    auto &k = tiles.k;
    auto &ds = tiles.ds;
    FlashHead head(blockIdx.y, T, C, NH);
    FloatRows load{head};
    int hs = head.hs, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_query_side(tiles, qkv, dout, lse_all, dsum_all, head, q0, load);
    float dq[FLASH_ROWS_PER_WARP][FLASH_CHUNKS] = {};
    int last = min(q0 + FLASH_TILE, T);
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads();
        load_key_side(tiles, qkv, head, k0, load);
        __syncthreads();
        flash_scores(tiles, q0, k0, T, hs, scale);
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i;
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) {
                int d = lane + 32 * j;
                float sum = 0.0f;
                #pragma unroll 8
                for (int c = 0; c < FLASH_TILE; c++) sum += ds[r][c] * k[c][d];
                dq[i][j] += sum;
            }
        }
    }
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int t = q0 + warp * FLASH_ROWS_PER_WARP + i;
        if (t >= T) continue;
        #pragma unroll
        for (int j = 0; j < FLASH_CHUNKS; j++) {
            int d = lane + 32 * j;
            if (d < hs) dqkv[head.qkv_row(t) + d] = dq[i][j] * scale;
        }
    }
}

// ---- flash on tensor cores (bf16, tf32) -----------------------------------------------------
//
// In bf16 and tf32 mode (sm_80 and newer) the same three kernels do their tile products on tensor
// cores with float32 sums (wmma: 16 x 16 x 16 in bf16, 16 x 16 x 8 in tf32): q, k, v and dO are
// rounded to the precision as they are loaded, and so are the probabilities and dS before they
// multiply; the softmax, its statistics (running max, sum, log-sum-exp) and every accumulation
// stay float32. Each product tile goes through shared memory, so nothing depends on how a
// fragment is spread over the warp. The CPU's twin (attention.c) rounds the same operands at the
// same points and follows the forward pass's online softmax tile by tile.

// One tensor-core precision: how operands sit in shared memory, wmma's element type and depth,
// and the rounding of an operand (to nearest even, as the CPU's twin rounds).
struct Bf16Products {
    typedef uint16_t Storage;  // the activations: bf16 bits
    typedef __nv_bfloat16 Element;
    typedef __nv_bfloat16 FragmentElement;
    static constexpr int K = 16;                    // wmma's depth
    static constexpr int PAD = FLASH_MAX_HS + 8;    // operand row stride: 144 bytes
    static constexpr int PPAD = FLASH_TILE + 8;     // probability row stride: 80 bytes
    __device__ static Element operand(float x) { return __float2bfloat16(x); }
    template <class Fragment>
    __device__ static void after_load(Fragment &) {}
};
struct Tf32Products {
    typedef float Storage;  // the activations: float32
    typedef float Element;
    typedef wmma::precision::tf32 FragmentElement;
    static constexpr int K = 8;
    static constexpr int PAD = FLASH_MAX_HS + 4;    // 272 bytes
    static constexpr int PPAD = FLASH_TILE + 4;     // 144 bytes
    __device__ static Element operand(float x) { return __uint_as_float(baton_round_float_bits(__float_as_uint(x), 13)); }
    // wmma asks tf32 fragments to be converted after loading; the values are TF32 already, so this
    // changes nothing (whatever rounding the conversion uses).
    template <class Fragment>
    __device__ static void after_load(Fragment &f) {
        for (int i = 0; i < f.num_elements; i++) f.x[i] = wmma::__float_to_tf32(f.x[i]);
    }
};
// Row strides of the float32 tiles: scores (144 bytes) and products (272 bytes). Every stride is
// a multiple of 16 bytes and 16 rows of every tile a multiple of 32, as wmma's pointers need.
constexpr int TC_SPAD = FLASH_TILE + 4;
constexpr int TC_OPAD = FLASH_MAX_HS + 4;

template <class P>
using TileSum = wmma::fragment<wmma::accumulator, 16, 16, P::K, float>;
template <class P>
using RowsA = wmma::fragment<wmma::matrix_a, 16, 16, P::K, typename P::FragmentElement, wmma::row_major>;
template <class P>
using ColumnsA = wmma::fragment<wmma::matrix_a, 16, 16, P::K, typename P::FragmentElement, wmma::col_major>;
template <class P>
using RowsB = wmma::fragment<wmma::matrix_b, 16, 16, P::K, typename P::FragmentElement, wmma::row_major>;
template <class P>
using ColumnsB = wmma::fragment<wmma::matrix_b, 16, 16, P::K, typename P::FragmentElement, wmma::col_major>;

template <class P, class Fragment>
__device__ inline void load_operand(Fragment &f, const typename P::Element *at, int ld) {
    wmma::load_matrix_sync(f, at, ld);
    P::after_load(f);
}

// Rows first..first+31 rounded to the precision, zeros past T and past hs (a head of 12 channels
// is one step of depth with zeros).
template <class P, class Row>
__device__ inline void load_operand_tile(typename P::Element (*tile)[P::PAD], const typename P::Storage *base, Row row, int first, int T,
                                         int hs) {
    load_rows(tile, base, row, first, T, hs, [](float x) { return P::operand(x); });
}

// out[r0.., c0..] (16 x 16, float32) = a[r0.., 0..depth) b[c0.., 0..depth)^T for two [32 rows][channels]
// operand tiles: the scores q k^T (and dO v^T). depth: hs rounded up to 16.
template <class P>
__device__ inline void tile_times_transposed(float (*out)[TC_SPAD], typename P::Element (*a)[P::PAD], typename P::Element (*b)[P::PAD],
                                             int r0, int c0, int depth) {
    TileSum<P> sum;
    wmma::fill_fragment(sum, 0.0f);
    for (int kk = 0; kk < depth; kk += P::K) {
        RowsA<P> x;
        ColumnsB<P> y;  // b^T: element (d, key) is b[key][d]
        load_operand<P>(x, &a[r0][kk], P::PAD);
        load_operand<P>(y, &b[c0][kk], P::PAD);
        wmma::mma_sync(sum, x, y, sum);
    }
    wmma::store_matrix_sync(&out[r0][c0], sum, TC_SPAD, wmma::mem_row_major);
}

// The probabilities' operand tile, in the scores' memory (`scores` is free by then: each kernel
// reads every score into registers and passes a barrier before writing these).
template <class P>
__device__ inline typename P::Element (*probability_view(float (*scores)[TC_SPAD]))[P::PPAD] {
    static_assert(sizeof(typename P::Element) * FLASH_TILE * P::PPAD <= sizeof(float) * FLASH_TILE * TC_SPAD, "fits in the scores");
    return reinterpret_cast<typename P::Element (*)[P::PPAD]>(&scores[0][0]);
}

// Writes a 32 x 64 float32 tile from shared memory to rows of the activation `base` (rows past T
// and channels past hs skipped), times `scale`.
template <class Act, class Row>
__device__ inline void store_tile(Act *base, Row row, float (*tile)[TC_OPAD], int first, int T, int hs, float scale) {
    for (int i = threadIdx.x; i < FLASH_TILE * FLASH_MAX_HS; i += blockDim.x) {
        int r = i / FLASH_MAX_HS, d = i % FLASH_MAX_HS, t = first + r;
        if (t < T && d < hs) store_act(base, row(t) + d, tile[r][d] * scale);
    }
}

// The forward kernel's shared memory: 27.3 KB in bf16, 39.6 KB in tf32. Every member's size is a
// multiple of 32 bytes, so each starts 256-bit aligned.
template <class P>
struct __align__(32) FlashForwardTiles {
    typename P::Element q[FLASH_TILE][P::PAD], k[FLASH_TILE][P::PAD], v[FLASH_TILE][P::PAD];
    float s[FLASH_TILE][TC_SPAD];    // the tile's scores, then its rounded exp(score - running max)
    float pv[FLASH_TILE][TC_OPAD];   // the tile's p v
    float correction[FLASH_TILE];    // each row's rescaling for this tile
};

template <class P>
__global__ void flash_forward_tc_kernel(typename P::Storage *out, float *lse, const typename P::Storage *qkv, int T, int C, int NH, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // tensor cores in bf16 and tf32 need sm_80; the host never launches this below it
#else
    __shared__ FlashForwardTiles<P> shared[1];  // an array of one: the emulator poisons shared arrays
    FlashForwardTiles<P> &tiles = shared[0];
    auto p = probability_view<P>(tiles.s);
    FlashHead head(blockIdx.y, T, C, NH);
    int hs = head.hs, depth = (hs + 15) / 16 * 16, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    auto qkv_row = [&](int t) { return head.qkv_row(t); };
    load_operand_tile<P>(tiles.q, qkv, qkv_row, q0, T, hs);
    OnlineSoftmax rows;
    int last = min(q0 + FLASH_TILE, T);
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads();  // the previous tile's k, v, p and pv are no longer read
        load_operand_tile<P>(tiles.k, qkv + C, qkv_row, k0, T, hs);
        load_operand_tile<P>(tiles.v, qkv + 2 * C, qkv_row, k0, T, hs);
        __syncthreads();
        if (warp < 4) tile_times_transposed<P>(tiles.s, tiles.q, tiles.k, (warp / 2) * 16, (warp % 2) * 16, depth);  // 2 x 2 tiles of q k^T
        __syncthreads();
        // The online softmax, in float32: warp w owns rows 4w..4w+3, lane the key.
        float e[FLASH_ROWS_PER_WARP];
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i, t = q0 + r, key = k0 + lane;
            float score = (t < T && key <= t) ? tiles.s[r][lane] * scale : -INFINITY, rescale;
            rows.step(i, score, e[i], rescale);  // a row without keys in this tile: e = 0, rescale = 1
            if (lane == 0) tiles.correction[r] = rescale;
        }
        __syncthreads();  // every score read: the probabilities take their memory
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) p[warp * FLASH_ROWS_PER_WARP + i][lane] = P::operand(e[i]);
        __syncthreads();
        {  // pv = p v: 2 x 4 tiles of 16 rows x 16 channels, one a warp, 32 keys deep
            int r0 = (warp / 4) * 16, c0 = (warp % 4) * 16;
            TileSum<P> sum;
            wmma::fill_fragment(sum, 0.0f);
            for (int kk = 0; kk < FLASH_TILE; kk += P::K) {
                RowsA<P> x;
                RowsB<P> y;
                load_operand<P>(x, &p[r0][kk], P::PPAD);
                load_operand<P>(y, &tiles.v[kk][c0], P::PAD);
                wmma::mma_sync(sum, x, y, sum);
            }
            wmma::store_matrix_sync(&tiles.pv[r0][c0], sum, TC_OPAD, wmma::mem_row_major);
        }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i;
            #pragma unroll
            for (int j = 0; j < FLASH_CHUNKS; j++) rows.acc[i][j] = rows.acc[i][j] * tiles.correction[r] + tiles.pv[r][lane + 32 * j];
        }
    }
    rows.finish(out, lse, head, q0);
#endif
}

// The shared memory of both backward kernels: 27.9 KB in bf16, 44.3 KB in tf32 (under the 48 KB a
// block gets without opting in to more, because P and dS take the scores' and dP's memory and the
// results take q's and k's once the loop is done).
template <class P>
struct __align__(32) FlashBackwardTiles {
    typename P::Element q[FLASH_TILE][P::PAD], k[FLASH_TILE][P::PAD], v[FLASH_TILE][P::PAD], g[FLASH_TILE][P::PAD];  // g: dO
    float s[FLASH_TILE][TC_SPAD], dp[FLASH_TILE][TC_SPAD];  // scores and dP, then P and dS (probability_view)
    float lse[FLASH_TILE], dsum[FLASH_TILE];
    // A 32 x 64 float32 result tile in q's and k's memory, for after the loop.
    __device__ float (*result())[TC_OPAD] {
        static_assert(sizeof(float) * FLASH_TILE * TC_OPAD <= 2 * sizeof(q), "fits in q and k");
        return reinterpret_cast<float (*)[TC_OPAD]>(&q[0][0]);
    }
};

// For one (query tile, key tile), q, dO, k, v loaded: the scores (warps 0-3) and dP = dO v^T
// (warps 4-7) on tensor cores, then P = exp(S - lse) and dS = P (dP - D) in float32, rounded into
// the probability views of s and dp (row: query, column: key).
template <class P>
__device__ inline void tc_scores(FlashBackwardTiles<P> &t, int q0, int k0, int T, int depth, float scale) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quarter = warp % 4;
    if (warp < 4) tile_times_transposed<P>(t.s, t.q, t.k, (quarter / 2) * 16, (quarter % 2) * 16, depth);
    else tile_times_transposed<P>(t.dp, t.g, t.v, (quarter / 2) * 16, (quarter % 2) * 16, depth);
    __syncthreads();
    float prob[FLASH_ROWS_PER_WARP], grad[FLASH_ROWS_PER_WARP];
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int r = warp * FLASH_ROWS_PER_WARP + i, row = q0 + r, key = k0 + lane;
        prob[i] = grad[i] = 0.0f;
        if (row < T && key <= row) {
            prob[i] = expf(t.s[r][lane] * scale - t.lse[r]);
            grad[i] = prob[i] * (t.dp[r][lane] - t.dsum[r]);
        }
    }
    __syncthreads();  // every score and dP read: P and dS take their memory
    auto p = probability_view<P>(t.s), ds = probability_view<P>(t.dp);
    #pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int r = warp * FLASH_ROWS_PER_WARP + i;
        p[r][lane] = P::operand(prob[i]);
        ds[r][lane] = P::operand(grad[i]);
    }
}

// Loads activation rows into a tensor-core kernel's operand tiles, rounded to precision P.
template <class P>
struct OperandRows {
    const FlashHead &head;
    template <class Row>
    __device__ void operator()(typename P::Element (*tile)[P::PAD], const typename P::Storage *base, Row row, int first) const {
        load_operand_tile<P>(tile, base, row, first, head.T, head.hs);
    }
};

// dK and dV of one key tile, summed over the query tiles in order, in fragments that stay in the
// warps across the loop: warp w owns the 16 x 16 tile (w / 4, w % 4) of both [32 keys][64 channels].
template <class P>
__global__ void flash_backward_dkdv_tc_kernel(typename P::Storage *dqkv, const typename P::Storage *dout, const typename P::Storage *qkv,
                                              const float *lse_all, const float *dsum_all, int T, int C, int NH, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    __shared__ FlashBackwardTiles<P> shared[1];  // an array of one: the emulator poisons shared arrays
    FlashBackwardTiles<P> &tiles = shared[0];
    auto p = probability_view<P>(tiles.s), ds = probability_view<P>(tiles.dp);
    FlashHead head(blockIdx.y, T, C, NH);
    int hs = head.hs, depth = (hs + 15) / 16 * 16, k0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32;
    int r0 = (warp / 4) * 16, c0 = (warp % 4) * 16;  // this warp's tile: keys r0.., channels c0..
    OperandRows<P> load{head};
    load_key_side(tiles, qkv, head, k0, load);
    TileSum<P> dk, dv;
    wmma::fill_fragment(dk, 0.0f);
    wmma::fill_fragment(dv, 0.0f);
    for (int q0 = k0; q0 < T; q0 += FLASH_TILE) {  // query tiles below k0 see none of these keys
        __syncthreads();
        load_query_side(tiles, qkv, dout, lse_all, dsum_all, head, q0, load);
        __syncthreads();
        tc_scores(tiles, q0, k0, T, depth, scale);
        __syncthreads();
        for (int kk = 0; kk < FLASH_TILE; kk += P::K) {  // over the tile's 32 queries
            ColumnsA<P> pt, dst;  // P^T and dS^T: element (key, query) is p[query][key]
            RowsB<P> dout_rows, q_rows;
            load_operand<P>(pt, &p[kk][r0], P::PPAD);
            load_operand<P>(dout_rows, &tiles.g[kk][c0], P::PAD);
            wmma::mma_sync(dv, pt, dout_rows, dv);
            load_operand<P>(dst, &ds[kk][r0], P::PPAD);
            load_operand<P>(q_rows, &tiles.q[kk][c0], P::PAD);
            wmma::mma_sync(dk, dst, q_rows, dk);
        }
    }
    auto result = tiles.result();
    auto qkv_row = [&](int t) { return head.qkv_row(t); };
    __syncthreads();
    wmma::store_matrix_sync(&result[r0][c0], dk, TC_OPAD, wmma::mem_row_major);
    __syncthreads();
    store_tile(dqkv + C, qkv_row, result, k0, T, hs, scale);
    __syncthreads();
    wmma::store_matrix_sync(&result[r0][c0], dv, TC_OPAD, wmma::mem_row_major);
    __syncthreads();
    store_tile(dqkv + 2 * C, qkv_row, result, k0, T, hs, 1.0f);
#endif
}

// dQ of one query tile, summed over the key tiles up to the diagonal in order: warp w owns the
// 16 x 16 tile (w / 4, w % 4) of [32 rows][64 channels].
template <class P>
__global__ void flash_backward_dq_tc_kernel(typename P::Storage *dqkv, const typename P::Storage *dout, const typename P::Storage *qkv,
                                            const float *lse_all, const float *dsum_all, int T, int C, int NH, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    __shared__ FlashBackwardTiles<P> shared[1];
    FlashBackwardTiles<P> &tiles = shared[0];
    auto ds = probability_view<P>(tiles.dp);
    FlashHead head(blockIdx.y, T, C, NH);
    int hs = head.hs, depth = (hs + 15) / 16 * 16, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32;
    int r0 = (warp / 4) * 16, c0 = (warp % 4) * 16;  // this warp's tile: rows r0.., channels c0..
    OperandRows<P> load{head};
    load_query_side(tiles, qkv, dout, lse_all, dsum_all, head, q0, load);
    TileSum<P> dq;
    wmma::fill_fragment(dq, 0.0f);
    int last = min(q0 + FLASH_TILE, T);
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads();
        load_key_side(tiles, qkv, head, k0, load);
        __syncthreads();
        tc_scores(tiles, q0, k0, T, depth, scale);
        __syncthreads();
        for (int kk = 0; kk < FLASH_TILE; kk += P::K) {  // over the tile's 32 keys
            RowsA<P> ds_rows;
            RowsB<P> k_rows;
            load_operand<P>(ds_rows, &ds[r0][kk], P::PPAD);
            load_operand<P>(k_rows, &tiles.k[kk][c0], P::PAD);
            wmma::mma_sync(dq, ds_rows, k_rows, dq);
        }
    }
    auto result = tiles.result();
    __syncthreads();
    wmma::store_matrix_sync(&result[r0][c0], dq, TC_OPAD, wmma::mem_row_major);
    __syncthreads();
    store_tile(dqkv, [&](int t) { return head.qkv_row(t); }, result, q0, T, hs, scale);
#endif
}

// The three kernels in one precision, on its activations (P::Storage).
template <class P>
static void flash_tc_forward(dim3 grid, void *out, float *lse, const void *qkv, int T, int C, int NH, float scale) {
    typedef typename P::Storage Act;
    flash_forward_tc_kernel<P><<<grid, FLASH_THREADS>>>(static_cast<Act *>(out), lse, static_cast<const Act *>(qkv), T, C, NH, scale);
}
template <class P>
static void flash_tc_backward(baton_context *ctx, dim3 grid, void *dqkv, const void *dout, const void *qkv, const float *lse,
                              const float *dsum, int T, int C, int NH, float scale) {
    typedef typename P::Storage Act;
    Act *dx = static_cast<Act *>(dqkv);
    const Act *g = static_cast<const Act *>(dout), *x = static_cast<const Act *>(qkv);
    flash_backward_dkdv_tc_kernel<P><<<grid, FLASH_THREADS>>>(dx, g, x, lse, dsum, T, C, NH, scale);
    check_launch(ctx, "attention_backward");
    flash_backward_dq_tc_kernel<P><<<grid, FLASH_THREADS>>>(dx, g, x, lse, dsum, T, C, NH, scale);
}

// BATON_ATTENTION=materialized keeps the scores even where flash attention applies: for
// scripts/gpu-check to measure both ways on the same GPU (read once; the sizes and the ops agree).
static bool flash_allowed() {
    static const bool allowed = [] {
        const char *mode = getenv("BATON_ATTENTION");
        return !(mode && strcmp(mode, "materialized") == 0);
    }();
    return allowed;
}

static bool uses_flash(int C, int NH) { return C / NH <= FLASH_MAX_HS && flash_allowed(); }

// Flash attention's products on tensor cores: in bf16 and tf32 mode, on sm_80 and newer (bf16 is
// refused below sm_80: set_precision).
static bool uses_tensor_cores(baton_context *ctx) { return ctx->precision != BATON_PRECISION_FP32 && ctx->compute_major >= 8; }

void backend_attention_sizes(int B, int T, int C, int NH, int64_t *saved, int64_t *scratch) {
    if (uses_flash(C, NH)) {
        *saved = (int64_t)B * NH * T;    // each row's log-sum-exp
        *scratch = (int64_t)B * NH * T;  // each row's sum of dO * O
    } else {
        *saved = (int64_t)B * NH * T * T;
        *scratch = BATON_ATTENTION_SCRATCH(B, T, C, NH);
    }
}

void attention_forward(baton_context *ctx, baton_activation *out, float *saved, const baton_activation *qkv, float *scratch, int B, int T, int C,
                       int NH) {
    if (!uses_flash(C, NH)) {
        with_activations(ctx, [&](auto type) {
            using Act = decltype(type);
            materialized_forward(ctx, static_cast<Act *>(out), saved, static_cast<const Act *>(qkv), scratch, B, T, C, NH);
        });
        return;
    }
    dim3 grid(blocks_for(T, FLASH_TILE), B * NH);
    float scale = 1.0f / sqrtf((float)(C / NH));
    if (!uses_tensor_cores(ctx))
        flash_forward_kernel<<<grid, FLASH_THREADS>>>(static_cast<float *>(out), saved, static_cast<const float *>(qkv), T, C, NH, scale);
    else if (ctx->precision == BATON_PRECISION_BF16) flash_tc_forward<Bf16Products>(grid, out, saved, qkv, T, C, NH, scale);
    else flash_tc_forward<Tf32Products>(grid, out, saved, qkv, T, C, NH, scale);
    check_launch(ctx, "attention_forward");
}

void attention_backward(baton_context *ctx, baton_activation *dqkv, float *scratch, const baton_activation *dout, const baton_activation *qkv,
                        const baton_activation *out, const float *saved, int B, int T, int C, int NH) {
    if (!uses_flash(C, NH)) {
        with_activations(ctx, [&](auto type) {
            using Act = decltype(type);
            materialized_backward(ctx, static_cast<Act *>(dqkv), scratch, static_cast<const Act *>(dout), static_cast<const Act *>(qkv), saved,
                                  B, T, C, NH);
        });
        return;
    }
    float scale = 1.0f / sqrtf((float)(C / NH));
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        flash_row_dot_kernel<Act><<<blocks_for((long long)B * NH * T, 8), 256>>>(scratch, static_cast<const Act *>(dout),
                                                                                  static_cast<const Act *>(out), B, T, C, NH);
    });
    check_launch(ctx, "attention_backward");
    dim3 grid(blocks_for(T, FLASH_TILE), B * NH);
    if (uses_tensor_cores(ctx)) {
        if (ctx->precision == BATON_PRECISION_BF16) flash_tc_backward<Bf16Products>(ctx, grid, dqkv, dout, qkv, saved, scratch, T, C, NH, scale);
        else flash_tc_backward<Tf32Products>(ctx, grid, dqkv, dout, qkv, saved, scratch, T, C, NH, scale);
    } else {
        float *dx = static_cast<float *>(dqkv);
        const float *g = static_cast<const float *>(dout), *x = static_cast<const float *>(qkv);
        flash_backward_dkdv_kernel<<<grid, FLASH_THREADS>>>(dx, g, x, saved, scratch, T, C, NH, scale);
        check_launch(ctx, "attention_backward");
        flash_backward_dq_kernel<<<grid, FLASH_THREADS>>>(dx, g, x, saved, scratch, T, C, NH, scale);
    }
    check_launch(ctx, "attention_backward");
}
