// RMSNorm over channels (the Llama family): the twin of Sources/CBatonCPU/rmsnorm.c. One warp per
// row, as layernorm.cu. Input (the residual stream) and rstd float32; the output and its gradient
// activations (Act).
#include "common.cuh"

// One row by one warp: out = x * rstd * weight, rstd = 1/sqrt(mean(x^2) + eps). Lane l reads and
// writes chunks of W channels, l, l + 32, ..., only its own, so x may be what the lane just wrote.
template <int W, class Act>
__device__ void rms_normalize_row(Act *out, float *rstd, const float *x, const float *weight, int row, int C, float eps,
                                  int lane) {
    float squares = 0.0f;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W];
        load_values(v, x, c);
        for (int k = 0; k < W; k++) squares += v[k] * v[k];
    }
    float s = rsqrtf(warp_sum(squares) / C + eps);
    Act *o = out + (long long)row * C;
    for (int c = lane * W; c < C; c += 32 * W) {
        float v[W], w[W], y[W];
        load_values(v, x, c);
        load_values(w, weight, c);
        for (int k = 0; k < W; k++) y[k] = v[k] * s * w[k];
        store_values(o, c, y);
    }
    if (lane == 0) rstd[row] = s;
}

template <int W, class Act>
__global__ void rmsnorm_forward_kernel(Act *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                       float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    rms_normalize_row<W>(out, rstd, inp + (long long)row * C, weight, row, C, eps, lane);
}

void rmsnorm_forward(baton_context *ctx, baton_activation *out, float *rstd, const float *inp, const float *weight,
                     int N, int C, float eps) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        with_vector_width(vector_width_fits(C, out, inp, weight), [&](auto width) {
            constexpr int W = decltype(width)::value;
            rmsnorm_forward_kernel<W, Act>
                    <<<blocks_for(N, 8), 256>>>(static_cast<Act *>(out), rstd, inp, weight, N, C, eps);
        });
    });
    check_launch(ctx, "rmsnorm_forward");
}

template <int W, class Act>
__global__ void residual_rmsnorm_forward_kernel(float *residual, Act *out, float *rstd, const float *a, const Act *b,
                                                const float *weight, int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    float *r = add_residual_row<W>(residual, a, b, row, C, lane);
    rms_normalize_row<W>(out, rstd, r, weight, row, C, eps, lane);
}

void residual_rmsnorm_forward(baton_context *ctx, float *residual, baton_activation *out, float *rstd, const float *a,
                              const baton_activation *b, const float *weight, int N, int C, float eps) {
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        with_vector_width(vector_width_fits(C, residual, out, a, b, weight), [&](auto width) {
            constexpr int W = decltype(width)::value;
            residual_rmsnorm_forward_kernel<W, Act><<<blocks_for(N, 8), 256>>>(
                    residual, static_cast<Act *>(out), rstd, a, static_cast<const Act *>(b), weight, N, C, eps);
        });
    });
    check_launch(ctx, "residual_rmsnorm_forward");
}

// dinp += rstd * (g - xhat * mean(g * xhat)), g = dout * weight, xhat = x * rstd, and the sum also
// into dinp_activation where given. One warp per row.
template <class Act>
__global__ void rmsnorm_backward_input_kernel(float *dinp, Act *dinp_activation, const Act *dout, const float *inp,
                                              const float *weight, const float *rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    long long offset = (long long)row * C;
    float s = rstd[row], gx_sum = 0.0f;
    for (int c = lane; c < C; c += 32) gx_sum += load_act(dout, offset + c) * weight[c] * inp[offset + c] * s;
    float gx_mean = warp_sum(gx_sum) / C;
    for (int c = lane; c < C; c += 32) {
        float d = dinp[offset + c] + s * (load_act(dout, offset + c) * weight[c] - inp[offset + c] * s * gx_mean);
        dinp[offset + c] = d;
        if (dinp_activation) store_act(dinp_activation, offset + c, d);
    }
}

// dweight = sum over rows of dout * xhat, in two deterministic stages as layernorm.cu's.
template <class Act>
__global__ void rmsnorm_weight_partials_kernel(float *partial, const Act *dout, const float *inp, const float *rstd,
                                               int N, int C, int chunk_rows) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (c >= C) return;
    int begin = j * chunk_rows, end = min(N, begin + chunk_rows);
    float dw = 0.0f;
    for (int n = begin; n < end; n++) dw += load_act(dout, (long long)n * C + c) * inp[(long long)n * C + c] * rstd[n];
    partial[(long long)j * C + c] = dw;
}

__global__ void rmsnorm_weight_total_kernel(float *dweight, const float *partial, int C, int chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f;
    for (int j = 0; j < chunks; j++) dw += partial[(long long)j * C + c];
    dweight[c] += dw;
}

void rmsnorm_backward(baton_context *ctx, float *dinp, baton_activation *dinp_activation, float *dweight,
                      const baton_activation *dout, const float *inp, const float *weight, const float *rstd, int N,
                      int C) {
    int chunks = column_chunks(N, C, C);
    int chunk_rows = (N + chunks - 1) / chunks;
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        const Act *d = static_cast<const Act *>(dout);
        rmsnorm_backward_input_kernel<Act>
                <<<blocks_for(N, 8), 256>>>(dinp, static_cast<Act *>(dinp_activation), d, inp, weight, rstd, N, C);
        check_launch(ctx, "rmsnorm_backward");
        rmsnorm_weight_partials_kernel<Act>
                <<<dim3(blocks_for(C, 128), chunks), 128>>>(ctx->column_partials, d, inp, rstd, N, C, chunk_rows);
    });
    check_launch(ctx, "rmsnorm_backward");
    rmsnorm_weight_total_kernel<<<blocks_for(C, 128), 128>>>(dweight, ctx->column_partials, C, chunks);
    check_launch(ctx, "rmsnorm_backward");
}
