// Matrix multiply on cuBLAS, and a linear layer's bias: the twin of Sources/CBatonCPU/matmul.c.
#include "common.cuh"

// Row-major C[M,N] = op(A)[M,K] op(B)[K,N] + beta C is column-major C^T = op(B)^T op(A)^T.
void matmul(float *c, const float *a, const float *b, int M, int N, int K, int trans_a, int trans_b, float beta) {
    const float one = 1.0f;
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    record_cublas_error(cublasSgemm(cublas_handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    N, M, K, &one, b, ldb, a, lda, &beta, c, N),
                        "matmul");
}

__global__ void bias_forward_kernel(float *out, const float *bias, int N, int OC) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)N * OC) out[i] += bias[i % OC];
}

void bias_forward(float *out, const float *bias, int N, int OC) {
    bias_forward_kernel<<<blocks_for((long long)N * OC, 256), 256>>>(out, bias, N, OC);
    check_launch("bias_forward");
}

// One thread per output channel, rows in order (deterministic, like the CPU).
__global__ void bias_backward_kernel(float *dbias, const float *dout, int N, int OC) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= OC) return;
    float sum = dbias[c];
    for (int n = 0; n < N; n++) sum += dout[(long long)n * OC + c];
    dbias[c] = sum;
}

void bias_backward(float *dbias, const float *dout, int N, int OC) {
    bias_backward_kernel<<<blocks_for(OC, 128), 128>>>(dbias, dout, N, OC);
    check_launch("bias_backward");
}
