// Flash attention on tensor cores (bf16 and tf32, sm_80 and newer; attention.cu picks it): the
// float32 kernels' three kernels (attention_flash.cu) with their tile products in wmma fragments.
#include "attention_flash.cuh"
#include "baton_rounding.h"

#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

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
    typedef uint16_t Storage; // the activations: bf16 bits
    typedef __nv_bfloat16 Element;
    typedef __nv_bfloat16 FragmentElement;
    static constexpr int K = 16;                 // wmma's depth
    static constexpr int PAD = FLASH_MAX_HS + 8; // operand row stride: 144 bytes
    static constexpr int PPAD = FLASH_TILE + 8;  // probability row stride: 80 bytes
    __device__ static Element operand(float x) { return __float2bfloat16(x); }
    template <class Fragment> __device__ static void after_load(Fragment &) {}
};
struct Tf32Products {
    typedef float Storage; // the activations: float32
    typedef float Element;
    typedef wmma::precision::tf32 FragmentElement;
    static constexpr int K = 8;
    static constexpr int PAD = FLASH_MAX_HS + 4; // 272 bytes
    static constexpr int PPAD = FLASH_TILE + 4;  // 144 bytes
    __device__ static Element operand(float x) {
        return __uint_as_float(baton_round_float_bits(__float_as_uint(x), 13));
    }
    // wmma asks tf32 fragments to be converted after loading; the values are TF32 already, so this
    // changes nothing (whatever rounding the conversion uses).
    template <class Fragment> __device__ static void after_load(Fragment &f) {
        for (int i = 0; i < f.num_elements; i++) f.x[i] = wmma::__float_to_tf32(f.x[i]);
    }
};
// Row strides of the float32 tiles: scores (144 bytes) and products (272 bytes). Every stride is
// a multiple of 16 bytes and 16 rows of every tile a multiple of 32, as wmma's pointers need.
constexpr int TC_SPAD = FLASH_TILE + 4;
constexpr int TC_OPAD = FLASH_MAX_HS + 4;

template <class P> using TileSum = wmma::fragment<wmma::accumulator, 16, 16, P::K, float>;
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
__device__ inline void load_operand_tile(typename P::Element (*tile)[P::PAD], const typename P::Storage *base, Row row,
                                         int first, int T, int hs) {
    load_rows(tile, base, row, first, T, hs, [](float x) { return P::operand(x); });
}

// out[r0.., c0..] (16 x 16, float32) = a[r0.., 0..depth) b[c0.., 0..depth)^T for two [32 rows][channels]
// operand tiles: the scores q k^T (and dO v^T). depth: hs rounded up to 16.
template <class P>
__device__ inline void tile_times_transposed(float (*out)[TC_SPAD], typename P::Element (*a)[P::PAD],
                                             typename P::Element (*b)[P::PAD], int r0, int c0, int depth) {
    TileSum<P> sum;
    wmma::fill_fragment(sum, 0.0f);
    for (int kk = 0; kk < depth; kk += P::K) {
        RowsA<P> x;
        ColumnsB<P> y; // b^T: element (d, key) is b[key][d]
        load_operand<P>(x, &a[r0][kk], P::PAD);
        load_operand<P>(y, &b[c0][kk], P::PAD);
        wmma::mma_sync(sum, x, y, sum);
    }
    wmma::store_matrix_sync(&out[r0][c0], sum, TC_SPAD, wmma::mem_row_major);
}

// The probabilities' operand tile, in the scores' memory (`scores` is free by then: each kernel
// reads every score into registers and passes a barrier before writing these).
template <class P> __device__ inline typename P::Element (*probability_view(float (*scores)[TC_SPAD]))[P::PPAD] {
    static_assert(sizeof(typename P::Element) * FLASH_TILE * P::PPAD <= sizeof(float) * FLASH_TILE * TC_SPAD,
                  "fits in the scores");
    return reinterpret_cast<typename P::Element(*)[P::PPAD]>(&scores[0][0]);
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
template <class P> struct __align__(32) FlashForwardTiles {
    typename P::Element q[FLASH_TILE][P::PAD], k[FLASH_TILE][P::PAD], v[FLASH_TILE][P::PAD];
    float s[FLASH_TILE][TC_SPAD];  // the tile's scores, then its rounded exp(score - running max)
    float pv[FLASH_TILE][TC_OPAD]; // the tile's p v
    float correction[FLASH_TILE];  // each row's rescaling for this tile
};

template <class P>
__global__ void flash_forward_tc_kernel(typename P::Storage *out, float *lse, const typename P::Storage *qkv,
                                        FlashShape shape, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); // tensor cores in bf16 and tf32 need sm_80; the host never launches this below it
#else
    __shared__ FlashForwardTiles<P> shared[1]; // an array of one: the emulator poisons shared arrays
    FlashForwardTiles<P> &tiles = shared[0];
    auto p = probability_view<P>(tiles.s);
    FlashHead head = FlashHead::query(shape);
    int T = shape.T, hs = head.hs, depth = (hs + 15) / 16 * 16, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32,
        lane = threadIdx.x % 32;
    auto qkv_row = [&](int t) { return head.qkv_row(t); };
    load_operand_tile<P>(tiles.q, qkv + head.q, qkv_row, q0, T, hs);
    OnlineSoftmax rows;
    int last = min(q0 + FLASH_TILE, T);
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads(); // the previous tile's k, v, p and pv are no longer read
        load_operand_tile<P>(tiles.k, qkv + head.k, qkv_row, k0, T, hs);
        load_operand_tile<P>(tiles.v, qkv + head.v, qkv_row, k0, T, hs);
        __syncthreads();
        if (warp < 4)
            tile_times_transposed<P>(tiles.s, tiles.q, tiles.k, (warp / 2) * 16, (warp % 2) * 16,
                                     depth); // 2 x 2 tiles of q k^T
        __syncthreads();
        // The online softmax, in float32: warp w owns rows 4w..4w+3, lane the key.
        float e[FLASH_ROWS_PER_WARP];
#pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i, t = q0 + r, key = k0 + lane;
            float score = (t < T && key <= t) ? tiles.s[r][lane] * scale : -INFINITY, rescale;
            rows.step(i, score, e[i], rescale); // a row without keys in this tile: e = 0, rescale = 1
            if (lane == 0) tiles.correction[r] = rescale;
        }
        __syncthreads(); // every score read: the probabilities take their memory
#pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) p[warp * FLASH_ROWS_PER_WARP + i][lane] = P::operand(e[i]);
        __syncthreads();
        { // pv = p v: 2 x 4 tiles of 16 rows x 16 channels, one a warp, 32 keys deep
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
            for (int j = 0; j < FLASH_CHUNKS; j++)
                rows.acc[i][j] = rows.acc[i][j] * tiles.correction[r] + tiles.pv[r][lane + 32 * j];
        }
    }
    rows.finish(out, lse, head, q0);
#endif
}

// The shared memory of both backward kernels: 27.9 KB in bf16, 44.3 KB in tf32 (under the 48 KB a
// block gets without opting in to more, because P and dS take the scores' and dP's memory and the
// results take q's and k's once the loop is done).
template <class P> struct __align__(32) FlashBackwardTiles {
    typename P::Element q[FLASH_TILE][P::PAD], k[FLASH_TILE][P::PAD], v[FLASH_TILE][P::PAD],
            g[FLASH_TILE][P::PAD];                         // g: dO
    float s[FLASH_TILE][TC_SPAD], dp[FLASH_TILE][TC_SPAD]; // scores and dP, then P and dS (probability_view)
    float lse[FLASH_TILE], dsum[FLASH_TILE];
    // A 32 x 64 float32 result tile in q's and k's memory, for after the loop.
    __device__ float(*result())[TC_OPAD] {
        static_assert(sizeof(float) * FLASH_TILE * TC_OPAD <= 2 * sizeof(q), "fits in q and k");
        return reinterpret_cast<float(*)[TC_OPAD]>(&q[0][0]);
    }
};

// For one (query tile, key tile), q, dO, k, v loaded: the scores (warps 0-3) and dP = dO v^T
// (warps 4-7) on tensor cores, then P = exp(S - lse) and dS = P (dP - D) in float32, rounded into
// the probability views of s and dp (row: query, column: key).
template <class P>
__device__ inline void tc_scores(FlashBackwardTiles<P> &t, int q0, int k0, int T, int depth, float scale) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quarter = warp % 4;
    if (warp < 4)
        tile_times_transposed<P>(t.s, t.q, t.k, (quarter / 2) * 16, (quarter % 2) * 16, depth);
    else
        tile_times_transposed<P>(t.dp, t.g, t.v, (quarter / 2) * 16, (quarter % 2) * 16, depth);
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
    __syncthreads(); // every score and dP read: P and dS take their memory
    auto p = probability_view<P>(t.s), ds = probability_view<P>(t.dp);
#pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
        int r = warp * FLASH_ROWS_PER_WARP + i;
        p[r][lane] = P::operand(prob[i]);
        ds[r][lane] = P::operand(grad[i]);
    }
}

// Loads activation rows into a tensor-core kernel's operand tiles, rounded to precision P.
template <class P> struct OperandRows {
    const FlashHead &head;
    template <class Row>
    __device__ void operator()(typename P::Element (*tile)[P::PAD], const typename P::Storage *base, Row row,
                               int first) const {
        load_operand_tile<P>(tile, base, row, first, head.T, head.hs);
    }
};

// dK and dV of one key tile of a key/value head, summed over its group's query heads in head
// order and, for each, over its query tiles in order: one running sum, in fragments that stay in
// the warps across the loop (warp w owns the 16 x 16 tile (w / 4, w % 4) of both [32 keys][64
// channels]). The CPU sums each head's product and then adds the heads, in head order: the same
// terms in another float32 order.
template <class P>
__global__ void flash_backward_dkdv_tc_kernel(typename P::Storage *dqkv, const typename P::Storage *dout,
                                              const typename P::Storage *qkv, const float *lse_all,
                                              const float *dsum_all, FlashShape shape, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    __shared__ FlashBackwardTiles<P> shared[1]; // an array of one: the emulator poisons shared arrays
    FlashBackwardTiles<P> &tiles = shared[0];
    auto p = probability_view<P>(tiles.s), ds = probability_view<P>(tiles.dp);
    int T = shape.T, group = shape.group, kv = blockIdx.y, b = blockIdx.z, first = kv * group;
    FlashHead keys(shape, b, first, kv); // the group's first query head: its key/value head's rows
    int hs = keys.hs, depth = (hs + 15) / 16 * 16, k0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32;
    int r0 = (warp / 4) * 16, c0 = (warp % 4) * 16; // this warp's tile: keys r0.., channels c0..
    OperandRows<P> load{keys};
    load_key_side(tiles, qkv, keys, k0, load);
    TileSum<P> dk, dv;
    wmma::fill_fragment(dk, 0.0f);
    wmma::fill_fragment(dv, 0.0f);
    // The group's query heads in order, each over its query tiles from k0 on (the tiles below k0
    // see none of these keys).
    int tiles_per_head = (T - k0 + FLASH_TILE - 1) / FLASH_TILE;
    for (int step = 0; step < group * tiles_per_head; step++) {
        int q0 = k0 + step % tiles_per_head * FLASH_TILE;
        FlashHead head(shape, b, first + step / tiles_per_head, kv);
        __syncthreads();
        load_query_side(tiles, qkv, dout, lse_all, dsum_all, head, q0, load);
        __syncthreads();
        tc_scores(tiles, q0, k0, T, depth, scale);
        __syncthreads();
        for (int kk = 0; kk < FLASH_TILE; kk += P::K) { // over the tile's 32 queries
            ColumnsA<P> pt, dst;                        // P^T and dS^T: element (key, query) is p[query][key]
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
    __syncthreads();
    wmma::store_matrix_sync(&result[r0][c0], dk, TC_OPAD, wmma::mem_row_major);
    __syncthreads();
    auto qkv_row = [&](int t) { return keys.qkv_row(t); };
    store_tile(dqkv + keys.k, qkv_row, result, k0, T, hs, scale);
    __syncthreads();
    wmma::store_matrix_sync(&result[r0][c0], dv, TC_OPAD, wmma::mem_row_major);
    __syncthreads();
    store_tile(dqkv + keys.v, qkv_row, result, k0, T, hs, 1.0f);
#endif
}

// dQ of one query tile, summed over the key tiles (of its key/value head) up to the diagonal in
// order: warp w owns the 16 x 16 tile (w / 4, w % 4) of [32 rows][64 channels].
template <class P>
__global__ void flash_backward_dq_tc_kernel(typename P::Storage *dqkv, const typename P::Storage *dout,
                                            const typename P::Storage *qkv, const float *lse_all, const float *dsum_all,
                                            FlashShape shape, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    __shared__ FlashBackwardTiles<P> shared[1];
    FlashBackwardTiles<P> &tiles = shared[0];
    auto ds = probability_view<P>(tiles.dp);
    FlashHead head = FlashHead::query(shape);
    int T = shape.T, hs = head.hs, depth = (hs + 15) / 16 * 16, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32;
    int r0 = (warp / 4) * 16, c0 = (warp % 4) * 16; // this warp's tile: rows r0.., channels c0..
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
        for (int kk = 0; kk < FLASH_TILE; kk += P::K) { // over the tile's 32 keys
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
    store_tile(
            dqkv + head.q, [&](int t) { return head.qkv_row(t); }, result, q0, T, hs, scale);
#endif
}

// The three kernels in one precision, on its activations (P::Storage).
template <class P>
static void forward_in(int B, void *out, float *lse, const void *qkv, int T, int C, int NH, int KV, float scale) {
    typedef typename P::Storage Act;
    FlashShape shape = flash_shape(T, C, NH, KV);
    flash_forward_tc_kernel<P><<<flash_query_grid(B, shape), FLASH_THREADS>>>(
            static_cast<Act *>(out), lse, static_cast<const Act *>(qkv), shape, scale);
}
template <class P>
static void backward_in(baton_context *ctx, int B, void *dqkv, const void *dout, const void *qkv, const float *lse,
                        const float *dsum, int T, int C, int NH, int KV, float scale) {
    typedef typename P::Storage Act;
    Act *dx = static_cast<Act *>(dqkv);
    const Act *g = static_cast<const Act *>(dout), *x = static_cast<const Act *>(qkv);
    FlashShape shape = flash_shape(T, C, NH, KV);
    flash_backward_dkdv_tc_kernel<P><<<flash_key_grid(B, shape), FLASH_THREADS>>>(dx, g, x, lse, dsum, shape, scale);
    check_launch(ctx, "attention_backward");
    flash_backward_dq_tc_kernel<P><<<flash_query_grid(B, shape), FLASH_THREADS>>>(dx, g, x, lse, dsum, shape, scale);
}

void flash_tc_forward(baton_context *ctx, int B, void *out, float *lse, const void *qkv, int T, int C, int NH, int KV,
                      float scale) {
    if (ctx->precision == BATON_PRECISION_BF16)
        forward_in<Bf16Products>(B, out, lse, qkv, T, C, NH, KV, scale);
    else
        forward_in<Tf32Products>(B, out, lse, qkv, T, C, NH, KV, scale);
}

void flash_tc_backward(baton_context *ctx, int B, void *dqkv, const void *dout, const void *qkv, const float *lse,
                       const float *dsum, int T, int C, int NH, int KV, float scale) {
    if (ctx->precision == BATON_PRECISION_BF16)
        backward_in<Bf16Products>(ctx, B, dqkv, dout, qkv, lse, dsum, T, C, NH, KV, scale);
    else
        backward_in<Tf32Products>(ctx, B, dqkv, dout, qkv, lse, dsum, T, C, NH, KV, scale);
}
