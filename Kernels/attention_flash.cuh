// attention_flash.cuh — what attention's flash kernels share (attention_flash.cu: float32 on CUDA
// cores; attention_flash_tc.cu: bf16 and tf32 on tensor cores): the tile shape, where a head's rows
// live in qkv, the forward pass's online softmax, the loading of tiles, and the kernels' launchers,
// which attention.cu calls.
#pragma once

#include "common.cuh"

constexpr int FLASH_TILE = BATON_ATTENTION_TILE;       // query rows and key rows per tile: one key per lane
constexpr int FLASH_MAX_HS = BATON_ATTENTION_MAX_HEAD; // head sizes the flash kernels take (shared memory: 48 KiB)
constexpr int FLASH_THREADS = 256;                     // 8 warps, 4 rows of a tile each
constexpr int FLASH_ROWS_PER_WARP = FLASH_TILE / (FLASH_THREADS / 32);
constexpr int FLASH_PAD = FLASH_MAX_HS + 1;     // row stride in shared memory: lane-indexed rows hit distinct banks
constexpr int FLASH_CHUNKS = FLASH_MAX_HS / 32; // channels a lane owns: d = lane, lane + 32

// The shape every flash kernel takes, its divisions done on the host: T rows, C = NH * hs
// channels of queries, NH query heads of hs channels, KV key/value heads, `group` = NH / KV query
// heads a key/value head.
struct FlashShape {
    int T, C, NH, KV, group, hs;
};
inline FlashShape flash_shape(int T, int C, int NH, int KV) { return FlashShape{T, C, NH, KV, NH / KV, C / NH}; }

// Where query head h of batch b finds its rows: qkv is [B,T,W], W = (NH + 2 KV) * hs, each row its
// NH query heads, then KV key heads, then KV value heads; query head h reads key/value head
// kv = h / (NH / KV). Row t of qkv starts at (b*T + t)*W, its q head h*hs further, its k head
// C + kv*hs, its v head C + (KV + kv)*hs; row t of out (and dO) at (b*T + t)*C, the head h*hs
// further. With KV = NH: k and v are C and 2C after q, W = 3C.
struct FlashHead {
    int T, hs, W, C;  // rows, channels of a head, row widths of qkv and of out
    long long first;  // the batch's first row: b*T
    int q, k, v, out; // where the head's channels start in a row of qkv (q, k, v) and of out
    long long stats;  // its first row among the B*NH*T of the log-sum-exps and D: (b*NH + h)*T
    __device__ FlashHead(const FlashShape &s, int b, int h, int kv)
        : T(s.T), hs(s.hs), W(s.C + 2 * s.KV * s.hs), C(s.C), first((long long)b * s.T), q(h * s.hs),
          k(s.C + kv * s.hs), v(s.C + (s.KV + kv) * s.hs), out(h * s.hs), stats(((long long)b * s.NH + h) * s.T) {}
    // A forward or dQ block's query head: h = blockIdx.y, b = blockIdx.z (flash_query_grid).
    __device__ static FlashHead query(const FlashShape &s) {
        int h = blockIdx.y;
        return FlashHead(s, blockIdx.z, h, h / s.group);
    }
    __device__ long long stat_row(int t) const { return stats + t; }
    // Row t of qkv (its q, k and v heads start q, k and v further) and of out.
    __device__ long long qkv_row(int t) const { return (first + t) * W; }
    __device__ long long out_row(int t) const { return (first + t) * C + out; }
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
    template <class Act> __device__ void finish(Act *out, float *lse, const FlashHead &head, int q0) const {
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
            if (lane == 0) lse[head.stat_row(t)] = m[i] + logf(l[i]);
        }
    }
};

// Copies rows first..first+31 (row t starts at base + row(t); float32 or bf16) into tile, each
// value through `convert` (float32 as it is, or rounded to a tensor-core precision), zeros past T
// and past hs.
template <class Element, int Pad, class Source, class Row, class Convert>
__device__ inline void load_rows(Element (*tile)[Pad], const Source *base, Row row, int first, int T, int hs,
                                 Convert convert) {
    for (int i = threadIdx.x; i < FLASH_TILE * FLASH_MAX_HS; i += blockDim.x) {
        int r = i / FLASH_MAX_HS, d = i % FLASH_MAX_HS, t = first + r;
        tile[r][d] = convert((t < T && d < hs) ? load_act(base, row(t) + d) : 0.0f);
    }
}

// The key side of a backward tile: the key/value head's k and v rows k0..k0+31, for either kind
// of tiles.
template <class Tiles, class Source, class Load>
__device__ inline void load_key_side(Tiles &t, const Source *qkv, const FlashHead &head, int k0, Load load) {
    auto qkv_row = [&](int row) { return head.qkv_row(row); };
    load(t.k, qkv + head.k, qkv_row, k0);
    load(t.v, qkv + head.v, qkv_row, k0);
}

// The query side of a backward tile: the query head's q and dO rows q0..q0+31, their
// log-sum-exps and D.
template <class Tiles, class Source, class Load>
__device__ inline void load_query_side(Tiles &t, const Source *qkv, const Source *dout, const float *lse_all,
                                       const float *dsum_all, const FlashHead &head, int q0, Load load) {
    int T = head.T;
    load(
            t.q, qkv + head.q, [&](int row) { return head.qkv_row(row); }, q0);
    load(
            t.g, dout, [&](int row) { return head.out_row(row); }, q0);
    if (threadIdx.x < FLASH_TILE) {
        int row = q0 + threadIdx.x;
        t.lse[threadIdx.x] = row < T ? lse_all[head.stat_row(row)] : 0.0f;
        t.dsum[threadIdx.x] = row < T ? dsum_all[head.stat_row(row)] : 0.0f;
    }
}

// The grids: the forward and dQ kernels take a block per (query tile, query head, batch), the
// dK/dV kernel one per (key tile, key/value head, batch), which visits the group's query heads in
// order.
inline dim3 flash_query_grid(int B, const FlashShape &s) { return dim3(blocks_for(s.T, FLASH_TILE), s.NH, B); }
inline dim3 flash_key_grid(int B, const FlashShape &s) { return dim3(blocks_for(s.T, FLASH_TILE), s.KV, B); }

// The launchers. Forward: out and each row's log-sum-exp (lse) from qkv. Backward: dqkv from dO,
// qkv, lse and dsum (each row's sum of dO * O, flash_row_dot).
// attention_flash.cu, float32:
void flash_forward(int B, float *out, float *lse, const float *qkv, int T, int C, int NH, int KV, float scale);
void flash_backward(baton_context *ctx, int B, float *dqkv, const float *dout, const float *qkv, const float *lse,
                    const float *dsum, int T, int C, int NH, int KV, float scale);
// dsum[row] = sum over d of dO[row, d] * O[row, d], in the context's activations.
void flash_row_dot(baton_context *ctx, float *dsum, const void *dout, const void *out, int B, int T, int C, int NH);
// attention_flash_tc.cu, on tensor cores in the context's precision (bf16 or tf32):
void flash_tc_forward(baton_context *ctx, int B, void *out, float *lse, const void *qkv, int T, int C, int NH, int KV,
                      float scale);
void flash_tc_backward(baton_context *ctx, int B, void *dqkv, const void *dout, const void *qkv, const float *lse,
                       const float *dsum, int T, int C, int NH, int KV, float scale);
