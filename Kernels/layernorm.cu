// LayerNorm over channels, eps 1e-5: the twin of Sources/CBatonCPU/layernorm.c. One warp per row.
// Input (the residual stream) and statistics float32; the output and its gradient activations (Act).
#include "common.cuh"

// One row by one warp: out = (x - mean) * rstd * weight + bias, and its statistics. Lane l reads
// and writes chunks of W channels, l, l + 32, ... (W = 8: 16-byte accesses, vector_width_fits;
// W = 1: channel by channel), only its own, so x may be what the same lane just wrote.
template <int W, class Act>
__device__ void normalize_row(Act *out, float *mean, float *rstd, const float *x, const float *weight,
                              const float *bias, int row, int C, int lane) {
    float sum = 0.0f;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W];
        load_values(v, x, c);
        for (int k = 0; k < W; k++) sum += v[k];
    }
    float m = warp_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W];
        load_values(v, x, c);
        for (int k = 0; k < W; k++) {
            float d = v[k] - m;
            var += d * d;
        }
    }
    float s = rsqrtf(warp_sum(var) / C + 1e-5f);
    Act *o = out + (long long)row * C;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W], w[W], b[W], y[W];
        load_values(v, x, c);
        load_values(w, weight, c);
        load_values(b, bias, c);
        for (int k = 0; k < W; k++) y[k] = (v[k] - m) * s * w[k] + b[k];
        store_values(o, c, y);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

template <int W, class Act>
__global__ void layernorm_forward_kernel(Act *out, float *mean, float *rstd, const float *inp, const float *weight,
                                         const float *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    normalize_row<W>(out, mean, rstd, inp + (long long)row * C, weight, bias, row, C, lane);
}

void layernorm_forward(baton_context *ctx, baton_activation *out, float *mean, float *rstd, const float *inp,
                       const float *weight, const float *bias, int N, int C) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        with_vector_width(vector_width_fits(C, out, inp, weight, bias), [&](auto width) {
            constexpr int W = decltype(width)::value;
            layernorm_forward_kernel<W, Act>
                    <<<blocks_for(N, 8), 256>>>(static_cast<Act *>(out), mean, rstd, inp, weight, bias, N, C);
        });
    });
    check_launch(ctx, "layernorm_forward");
}

// residual = a + b and its LayerNorm, one warp per row: the residual is read once and written
// once, instead of written, then read back by a second kernel.
template <int W, class Act>
__global__ void residual_layernorm_forward_kernel(float *residual, Act *out, float *mean, float *rstd, const float *a,
                                                  const Act *b, const float *weight, const float *bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    float *r = add_residual_row<W>(residual, a, b, row, C, lane);
    normalize_row<W>(out, mean, rstd, r, weight, bias, row, C, lane);
}

void residual_layernorm_forward(baton_context *ctx, float *residual, baton_activation *out, float *mean, float *rstd,
                                const float *a, const baton_activation *b, const float *weight, const float *bias,
                                int N, int C) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        with_vector_width(vector_width_fits(C, residual, out, a, b, weight, bias), [&](auto width) {
            constexpr int W = decltype(width)::value;
            residual_layernorm_forward_kernel<W, Act><<<blocks_for(N, 8), 256>>>(
                    residual, static_cast<Act *>(out), mean, rstd, a, static_cast<const Act *>(b), weight, bias, N, C);
        });
    });
    check_launch(ctx, "residual_layernorm_forward");
}

// dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight, and the sum also into
// dinp_activation where given. One warp per row, chunks of W channels a lane as in normalize_row.
template <int W, class Act>
__global__ void layernorm_backward_input_kernel(float *dinp, Act *dinp_activation, const Act *dout, const float *inp,
                                                const float *weight, const float *mean, const float *rstd, int N,
                                                int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (long long)row * C;
    const Act *d = dout + (long long)row * C;
    float m = mean[row], s = rstd[row];
    float g_sum = 0.0f, gx_sum = 0.0f;
    for (int c = lane * W; c < C; c += 32 * W) {
        float dv[W], xv[W], wv[W];
        load_values(dv, d, c);
        load_values(xv, x, c);
        load_values(wv, weight, c);
        for (int k = 0; k < W; k++) {
            float g = dv[k] * wv[k];
            g_sum += g;
            gx_sum += g * (xv[k] - m) * s;
        }
    }
    float g_mean = warp_sum(g_sum) / C, gx_mean = warp_sum(gx_sum) / C;
    float *di = dinp + (long long)row * C;
    for (int c = lane * W; c < C; c += 32 * W) {
        float dv[W], xv[W], wv[W], acc[W];
        load_values(dv, d, c);
        load_values(xv, x, c);
        load_values(wv, weight, c);
        load_values(acc, di, c);
        for (int k = 0; k < W; k++) {
            float xhat = (xv[k] - m) * s;
            acc[k] += s * (dv[k] * wv[k] - g_mean - xhat * gx_mean);
        }
        store_values(di, c, acc);
        if (dinp_activation) store_values(dinp_activation + (long long)row * C, c, acc);
    }
}

// dweight = sum over rows of dout * xhat, dbias = sum of dout, in two deterministic stages (as
// column_sum): stage 1, row chunk j and one thread per channel, with enough chunks to fill the GPU
// (column_chunks: ~340 of 48 rows for GPT-2's 768 channels at 16K rows, ~64 warps an SM where a
// fixed 64 chunks gave ~12); stage 2, the chunks added in order.
template <class Act>
__global__ void layernorm_params_partials_kernel(float *partial, const Act *dout, const float *inp, const float *mean,
                                                 const float *rstd, int N, int C, int chunk_rows) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (c >= C) return;
    int begin = j * chunk_rows, end = min(N, begin + chunk_rows);
    float dw = 0.0f, db = 0.0f;
    for (int n = begin; n < end; n++) {
        float d = load_act(dout, (long long)n * C + c);
        db += d;
        dw += d * (inp[(long long)n * C + c] - mean[n]) * rstd[n];
    }
    partial[(long long)j * C + c] = dw;
    partial[((long long)gridDim.y + j) * C + c] = db;
}

__global__ void layernorm_params_total_kernel(float *dweight, float *dbias, const float *partial, int C, int chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f, db = 0.0f;
    for (int j = 0; j < chunks; j++) {
        dw += partial[(long long)j * C + c];
        db += partial[((long long)chunks + j) * C + c];
    }
    dweight[c] += dw;
    dbias[c] += db;
}

void layernorm_backward(baton_context *ctx, float *dinp, baton_activation *dinp_activation, float *dweight,
                        float *dbias, const baton_activation *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd, int N, int C) {
    int chunks = column_chunks(N, C, 2ll * C);
    int chunk_rows = (N + chunks - 1) / chunks;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        const Act *d = static_cast<const Act *>(dout);
        bool aligned = vector_width_fits(C, dinp, dout, inp, weight) &&
                       vector_width_fits(C, dinp_activation); // NULL is aligned
        with_vector_width(aligned, [&](auto width) {
            constexpr int W = decltype(width)::value;
            layernorm_backward_input_kernel<W, Act><<<blocks_for(N, 8), 256>>>(
                    dinp, static_cast<Act *>(dinp_activation), d, inp, weight, mean, rstd, N, C);
        });
        check_launch(ctx, "layernorm_backward");
        layernorm_params_partials_kernel<Act>
                <<<dim3(blocks_for(C, 128), chunks), 128>>>(ctx->column_partials, d, inp, mean, rstd, N, C, chunk_rows);
    });
    check_launch(ctx, "layernorm_backward");
    layernorm_params_total_kernel<<<blocks_for(C, 128), 128>>>(dweight, dbias, ctx->column_partials, C, chunks);
    check_launch(ctx, "layernorm_backward");
}
