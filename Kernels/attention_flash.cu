// Flash attention in float32 on CUDA cores (heads of up to 64 channels; attention.cu picks it):
// one block of 256 threads per 32-row query tile and (batch, query head), the keys (of its
// key/value head) in tiles of 32, one key a lane, an online softmax; the backward pass recomputes
// the scores tile by tile, dK and dV in one kernel (a block per key tile and key/value head,
// over its group's query heads in order) and dQ in another, so no sum needs atomics.
#include "attention_flash.cuh"

template <class Row>
__device__ inline void load_tile(float (*tile)[FLASH_PAD], const float *base, Row row, int first, int T, int hs) {
    load_rows(tile, base, row, first, T, hs, [](float x) { return x; });
}

// dot[i] = sum over d of a[first + i][d] * b[d] for the warp's rows i, d ascending: the lane's
// b[d] is loaded once for all rows (the rows' values are broadcasts), so shared memory serves
// 4 multiply-adds with 5 loads instead of 8.
__device__ inline void rows_dot(float (&dot)[FLASH_ROWS_PER_WARP], float (*a)[FLASH_PAD], int first, const float *b,
                                int hs) {
#pragma unroll
    for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) dot[i] = 0.0f;
    for (int d = 0; d < hs; d++) {
        float bd = b[d];
#pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) dot[i] += a[first + i][d] * bd;
    }
}

// One block per (query tile, query head, batch). Warp w owns query rows 4w..4w+3 of the tile; for a key
// tile, lane c scores key c, the warp's max and sum update the row's running max m and sum l,
// and the lane's output channels (lane, lane + 32) are rescaled and accumulated.
__global__ void flash_forward_kernel(float *out, float *lse, const float *qkv, FlashShape shape, float scale) {
    __shared__ float q[FLASH_TILE][FLASH_PAD];
    __shared__ float k[FLASH_TILE][FLASH_PAD];
    __shared__ float v[FLASH_TILE][FLASH_PAD];
    __shared__ float p[FLASH_TILE][FLASH_TILE + 1];
    FlashHead head = FlashHead::query(shape);
    int T = shape.T, hs = head.hs, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_tile(
            q, qkv + head.q, [&](int t) { return head.qkv_row(t); }, q0, T, hs);
    OnlineSoftmax rows;
    int last = min(q0 + FLASH_TILE, T); // keys at or after `last` are above every row's diagonal
    for (int k0 = 0; k0 < last; k0 += FLASH_TILE) {
        __syncthreads(); // the previous tile's k and v are no longer read
        load_tile(
                k, qkv + head.k, [&](int t) { return head.qkv_row(t); }, k0, T, hs);
        load_tile(
                v, qkv + head.v, [&](int t) { return head.qkv_row(t); }, k0, T, hs);
        __syncthreads();
        float dots[FLASH_ROWS_PER_WARP];
        rows_dot(dots, q, warp * FLASH_ROWS_PER_WARP, k[lane], hs);
#pragma unroll
        for (int i = 0; i < FLASH_ROWS_PER_WARP; i++) {
            int r = warp * FLASH_ROWS_PER_WARP + i, t = q0 + r, key = k0 + lane;
            float score = (t < T && key <= t) ? dots[i] * scale : -INFINITY, e, correction;
            if (!rows.step(i, score, e, correction)) continue; // no key of this tile for this row
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
            __syncwarp(); // p's row is rewritten by the next tile
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
    float q[FLASH_TILE][FLASH_PAD], k[FLASH_TILE][FLASH_PAD], v[FLASH_TILE][FLASH_PAD],
            g[FLASH_TILE][FLASH_PAD]; // g: dO
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

// Loads float32 rows into the float32 kernels' tiles.
struct FloatRows {
    const FlashHead &head;
    template <class Row>
    __device__ void operator()(float (*tile)[FLASH_PAD], const float *base, Row row, int first) const {
        load_tile(tile, base, row, first, head.T, head.hs);
    }
};

// One block per (key tile, key/value head, batch): dK and dV of its 32 keys, summed over the
// group's query heads in head order and, for each, over its query tiles at or below the diagonal
// in query order: one running sum (the CPU sums each head's product, then adds the heads in head
// order: the same terms in another float32 order). Warp w owns keys 4w..4w+3, lane the channels
// lane, lane+32.
__global__ void flash_backward_dkdv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse_all,
                                           const float *dsum_all, FlashShape shape, float scale) {
    __shared__ FlashFloatBackwardTiles shared[1]; // an array of one: the emulator poisons shared arrays
    FlashFloatBackwardTiles &tiles = shared[0];
    auto &q = tiles.q, &g = tiles.g;
    auto &p = tiles.p, &ds = tiles.ds;
    int T = shape.T, group = shape.group, kv = blockIdx.y, b = blockIdx.z, first = kv * group;
    FlashHead keys(shape, b, first, kv); // the group's first query head: its key/value head's rows
    FloatRows load{keys};
    int hs = keys.hs, k0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_key_side(tiles, qkv, keys, k0, load);
    float dk[FLASH_ROWS_PER_WARP][FLASH_CHUNKS] = {}, dv[FLASH_ROWS_PER_WARP][FLASH_CHUNKS] = {};
    // The group's query heads in order, each over its query tiles from k0 on (the tiles below k0
    // see none of these keys).
    int tiles_per_head = (T - k0 + FLASH_TILE - 1) / FLASH_TILE;
    for (int step = 0; step < group * tiles_per_head; step++) {
        int q0 = k0 + step % tiles_per_head * FLASH_TILE;
        FlashHead head(shape, b, first + step / tiles_per_head, kv);
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
            dqkv[keys.qkv_row(key) + keys.k + d] = dk[i][j] * scale;
            dqkv[keys.qkv_row(key) + keys.v + d] = dv[i][j];
        }
    }
}

// One block per (query tile, query head, batch): dQ of its 32 rows, summed over the key tiles (of its
// key/value head) up to the diagonal in key order. Warp w owns rows 4w..4w+3, lane the channels
// lane, lane+32.
__global__ void flash_backward_dq_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse_all,
                                         const float *dsum_all, FlashShape shape, float scale) {
    __shared__ FlashFloatBackwardTiles shared[1];
    FlashFloatBackwardTiles &tiles = shared[0];
    auto &k = tiles.k;
    auto &ds = tiles.ds;
    FlashHead head = FlashHead::query(shape);
    FloatRows load{head};
    int T = shape.T, hs = head.hs, q0 = blockIdx.x * FLASH_TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
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
            if (d < hs) dqkv[head.qkv_row(t) + head.q + d] = dq[i][j] * scale;
        }
    }
}

void flash_forward(int B, float *out, float *lse, const float *qkv, int T, int C, int NH, int KV, float scale) {
    FlashShape shape = flash_shape(T, C, NH, KV);
    flash_forward_kernel<<<flash_query_grid(B, shape), FLASH_THREADS>>>(out, lse, qkv, shape, scale);
}

void flash_backward(baton_context *ctx, int B, float *dqkv, const float *dout, const float *qkv, const float *lse,
                    const float *dsum, int T, int C, int NH, int KV, float scale) {
    FlashShape shape = flash_shape(T, C, NH, KV);
    flash_backward_dkdv_kernel<<<flash_key_grid(B, shape), FLASH_THREADS>>>(dqkv, dout, qkv, lse, dsum, shape, scale);
    check_launch(ctx, "attention_backward");
    flash_backward_dq_kernel<<<flash_query_grid(B, shape), FLASH_THREADS>>>(dqkv, dout, qkv, lse, dsum, shape, scale);
}

void flash_row_dot(baton_context *ctx, float *dsum, const void *dout, const void *out, int B, int T, int C, int NH) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        flash_row_dot_kernel<Act><<<blocks_for((long long)B * NH * T, 8), 256>>>(
                dsum, static_cast<const Act *>(dout), static_cast<const Act *>(out), B, T, C, NH);
    });
}
