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

// Where the tile's rows live in qkv: row t of head h of batch b starts at ((b*T + t)*3C + h*hs);
// k and v are C and 2C further.
struct FlashHead {
    int b, h, T, C, NH, hs;
    __device__ FlashHead(int bh, int T_, int C_, int NH_)
        : b(bh / NH_), h(bh % NH_), T(T_), C(C_), NH(NH_), hs(C_ / NH_) {}
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
            if (lane == 0) lse[(long long)blockIdx.y * head.T + t] = m[i] + logf(l[i]);
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

// The key side of a backward tile: k and v rows k0..k0+31, for either kind of tiles.
template <class Tiles, class Source, class Load>
__device__ inline void load_key_side(Tiles &t, const Source *qkv, const FlashHead &head, int k0, Load load) {
    auto qkv_row = [&](int row) { return head.qkv_row(row); };
    load(t.k, qkv + head.C, qkv_row, k0);
    load(t.v, qkv + 2 * head.C, qkv_row, k0);
}

// The query side of a backward tile: q and dO rows q0..q0+31, their log-sum-exps and D.
template <class Tiles, class Source, class Load>
__device__ inline void load_query_side(Tiles &t, const Source *qkv, const Source *dout, const float *lse_all,
                                       const float *dsum_all, const FlashHead &head, int q0, Load load) {
    int T = head.T;
    load(
            t.q, qkv, [&](int row) { return head.qkv_row(row); }, q0);
    load(
            t.g, dout, [&](int row) { return head.out_row(row); }, q0);
    if (threadIdx.x < FLASH_TILE) {
        int row = q0 + threadIdx.x;
        t.lse[threadIdx.x] = row < T ? lse_all[(long long)blockIdx.y * T + row] : 0.0f;
        t.dsum[threadIdx.x] = row < T ? dsum_all[(long long)blockIdx.y * T + row] : 0.0f;
    }
}

// The launchers. Forward: out and each row's log-sum-exp (lse) from qkv. Backward: dqkv from dO,
// qkv, lse and dsum (each row's sum of dO * O, flash_row_dot). grid: (query or key tiles, B * NH).
// attention_flash.cu, float32:
void flash_forward(dim3 grid, float *out, float *lse, const float *qkv, int T, int C, int NH, float scale);
void flash_backward(baton_context *ctx, dim3 grid, float *dqkv, const float *dout, const float *qkv, const float *lse,
                    const float *dsum, int T, int C, int NH, float scale);
// dsum[row] = sum over d of dO[row, d] * O[row, d], in the context's activations.
void flash_row_dot(baton_context *ctx, float *dsum, const void *dout, const void *out, int B, int T, int C, int NH);
// attention_flash_tc.cu, on tensor cores in the context's precision (bf16 or tf32):
void flash_tc_forward(baton_context *ctx, dim3 grid, void *out, float *lse, const void *qkv, int T, int C, int NH,
                      float scale);
void flash_tc_backward(baton_context *ctx, dim3 grid, void *dqkv, const void *dout, const void *qkv, const float *lse,
                       const float *dsum, int T, int C, int NH, float scale);
