// Matrix multiply on cuBLAS, and a linear layer's bias: the twin of Sources/CBatonCPU/matmul.c.
#include "common.cuh"

// Row-major C[M,N] = op(A)[M,K] op(B)[K,N] is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B
// as its first operand and A as its second, with the dimensions swapped and no copies.
void row_major_sgemm(baton_context *ctx, float *c, const float *a, const float *b, int M, int N, int K, int trans_a,
                     int trans_b, float alpha, float beta, long long stride_a, long long stride_b, long long stride_c,
                     int batches, const char *op) {
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batches == 1)
        record_cublas_error(ctx, cublasSgemm(ctx->cublas, op_b, op_a, N, M, K, &alpha, b, ldb, a, lda, &beta, c, N),
                            op);
    else
        record_cublas_error(ctx,
                            cublasSgemmStridedBatched(ctx->cublas, op_b, op_a, N, M, K, &alpha, b, ldb, stride_b, a,
                                                      lda, stride_a, &beta, c, N, stride_c, batches),
                            op);
}

// A matmul in the context's precision: fp32 is cublasSgemm; tf32 is cublasGemmEx on float32
// matrices with the compute type that rounds the inputs for tensor cores and sums in float32
// (CUBLAS_COMPUTE_32F_FAST_TF32, CUDA 11+); bf16 is cublasGemmEx on the bf16 activations
// (CUDA_R_16BF) with float32 sums, c bf16 (cuBLAS rounds the sums to nearest even as it stores
// them) or float32. Attention's products stay fp32 (row_major_sgemm).
void gemm_in_precision(baton_context *ctx, void *c, bool c_is_activation, const void *a, const void *b, int M, int N,
                       int K, int trans_a, int trans_b, float beta, const char *op) {
    if (ctx->precision == BATON_PRECISION_FP32) {
        row_major_sgemm(ctx, static_cast<float *>(c), static_cast<const float *>(a), static_cast<const float *>(b), M,
                        N, K, trans_a, trans_b, 1.0f, beta, 0, 0, 0, 1, op);
        return;
    }
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    float alpha = 1.0f;
    bool bf16 = stores_bf16(ctx);
    cudaDataType_t operands = bf16 ? CUDA_R_16BF : CUDA_R_32F,
                   output = bf16 && c_is_activation ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    record_cublas_error(ctx,
                        cublasGemmEx(ctx->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, b, operands, ldb, a,
                                     operands, lda, &beta, c, output, N, compute, CUBLAS_GEMM_DEFAULT),
                        op);
}

// The matmul op: a fresh output (beta 0) is an activation, an accumulated one float32.
void matmul(baton_context *ctx, void *c, const baton_activation *a, const baton_activation *b, int M, int N, int K,
            int trans_a, int trans_b, float beta) {
    gemm_in_precision(ctx, c, beta == 0.0f, a, b, M, N, K, trans_a, trans_b, beta, "matmul");
}

// Stage 1: chunk j of the rows, one thread per column: partial[j][c].
template <class In>
__global__ void column_partials_kernel(float *partial, const In *in, int rows, int columns, int chunk_rows) {
    int c = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (c >= columns) return;
    int begin = j * chunk_rows, end = min(rows, begin + chunk_rows);
    float sum = 0.0f;
    for (int n = begin; n < end; n++) sum += load_act(in, (long long)n * columns + c);
    partial[(long long)j * columns + c] = sum;
}

// Stage 2: out[c] += the chunk sums, in chunk order.
__global__ void column_total_kernel(float *out, const float *partial, int columns, int chunks) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= columns) return;
    float sum = 0.0f;
    for (int j = 0; j < chunks; j++) sum += partial[(long long)j * columns + c];
    out[c] += sum;
}

template <class In>
static void column_sum_of(baton_context *ctx, float *out, const In *in, int rows, int columns, const char *op) {
    int chunks = column_chunks(rows, columns, columns);
    int chunk_rows = (rows + chunks - 1) / chunks;
    column_partials_kernel<In>
            <<<dim3(blocks_for(columns, 128), chunks), 128>>>(ctx->column_partials, in, rows, columns, chunk_rows);
    check_launch(ctx, op);
    column_total_kernel<<<blocks_for(columns, 128), 128>>>(out, ctx->column_partials, columns, chunks);
    check_launch(ctx, op);
}

void column_sum(baton_context *ctx, float *out, const float *in, int rows, int columns, const char *op) {
    column_sum_of(ctx, out, in, rows, columns, op);
}

void bias_backward(baton_context *ctx, float *dbias, const baton_activation *dout, int N, int OC) {
    with_activations(ctx, [&](auto type) {
        column_sum_of(ctx, dbias, static_cast<const decltype(type) *>(dout), N, OC, "bias_backward");
    });
}
