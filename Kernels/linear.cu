// A linear layer's fused ops on cuBLASLt: the matmul with its bias (and GELU) in the epilogue, and
// the gradient through a linear layer and the GELU before it. The twin of Sources/CBatonCPU/linear.c.
// Where cuBLASLt declines a shape (GELU's auxiliary matrix needs a leading dimension divisible by
// 8) or finds no algorithm, the same results come from the separate kernels.
#include "common.cuh"

namespace {

// The four cuBLASLt objects one call needs, destroyed together.
struct LtCall {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulPreference_t preference = nullptr;
    ~LtCall() {
        if (preference) cublasLtMatmulPreferenceDestroy(preference);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

cublasComputeType_t compute_type(int precision) {
    switch (precision) {
    case BATON_PRECISION_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case BATON_PRECISION_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    default: return CUBLAS_COMPUTE_32F;
    }
}

// Column-major D[m,n] = op(A)[m,k] B[k,n] (B never transposed here), float32 everywhere, then the
// epilogue with `bias` (m values) and the auxiliary matrix `aux` (m x n, leading dimension
// aux_ld). Returns false, having done nothing, when cuBLASLt declines; a failure after it
// accepted is recorded as any cuBLAS error.
bool lt_matmul(baton_context *ctx, float *d, const float *a, const float *b, int m, int n, int k, bool trans_a, int lda, int ldb,
               cublasLtEpilogue_t epilogue, const float *bias, const float *aux, int64_t aux_ld, const char *op) {
    if (aux && aux_ld % 8 != 0) return false;
    LtCall call;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    uint64_t workspace = CUBLAS_WORKSPACE_BYTES;
    const void *bias_pointer = bias, *aux_pointer = aux;
    auto ok = [](cublasStatus_t status) { return status == CUBLAS_STATUS_SUCCESS; };
    bool described =
        ok(cublasLtMatmulDescCreate(&call.desc, compute_type(ctx->precision), CUDA_R_32F)) &&
        ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a)) &&
        ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b)) &&
        ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue)) &&
        (!bias || ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_pointer, sizeof bias_pointer))) &&
        (!aux || (ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux_pointer, sizeof aux_pointer)) &&
                  ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld)))) &&
        ok(cublasLtMatrixLayoutCreate(&call.a, CUDA_R_32F, trans_a ? k : m, trans_a ? m : k, lda)) &&
        ok(cublasLtMatrixLayoutCreate(&call.b, CUDA_R_32F, k, n, ldb)) &&
        ok(cublasLtMatrixLayoutCreate(&call.d, CUDA_R_32F, m, n, m)) &&
        ok(cublasLtMatmulPreferenceCreate(&call.preference)) &&
        ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    if (!described) return false;
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    if (!ok(cublasLtMatmulAlgoGetHeuristic(ctx->cublaslt, call.desc, call.a, call.b, call.d, call.d, call.preference, 1, &heuristic, &found)) ||
        found == 0)
        return false;
    float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t status = cublasLtMatmul(ctx->cublaslt, call.desc, &alpha, a, call.a, b, call.b, &beta, d, call.d, d, call.d,
                                           &heuristic.algo, ctx->cublas_workspace, CUBLAS_WORKSPACE_BYTES, 0);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
    record_cublas_error(ctx, status, op);
    return true;
}

void round_if_bf16(baton_context *ctx, float *x, long long n) {
    if (ctx->precision == BATON_PRECISION_BF16) round_to_precision(ctx, x, n, BATON_PRECISION_BF16);
}

}  // namespace

// Row-major out[N,OC] = inp[N,IC] weight[IC,OC] is column-major out^T[OC,N] = weight^T[OC,IC]
// inp^T[IC,N], with the weight as stored (leading dimension OC) and the input as stored (IC): the
// bias runs along D's rows, as cuBLASLt broadcasts it; GELU's input is the auxiliary output.
void linear_forward(baton_context *ctx, float *out, float *gelu_out, const float *inp, const float *weight, const float *bias, int N, int IC,
                    int OC) {
    long long n = (long long)N * OC;
    bool fused = gelu_out ? lt_matmul(ctx, gelu_out, weight, inp, OC, N, IC, false, OC, IC, CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias, out, OC,
                                      "linear_forward")
                          : lt_matmul(ctx, out, weight, inp, OC, N, IC, false, OC, IC, CUBLASLT_EPILOGUE_BIAS, bias, nullptr, 0,
                                      "linear_forward");
    if (!fused) {
        gemm_in_precision(ctx, out, inp, weight, N, OC, IC, 0, 0, 0.0f, "linear_forward");
        bias_forward(ctx, out, bias, N, OC);
        if (gelu_out) gelu_forward(ctx, gelu_out, out, n);
    }
    round_if_bf16(ctx, out, n);
    if (gelu_out) round_if_bf16(ctx, gelu_out, n);
}

// Row-major dinp[N,IC] = dout[N,OC] weight[IC,OC]^T is column-major dinp^T[IC,N] =
// (weight^T)^T[IC,OC] dout^T[OC,N]: the stored weight (column-major OC x IC) transposed. The DGELU
// epilogue multiplies by GELU' of the auxiliary input, the forward pass's pre-activation.
void matmul_gelu_backward(baton_context *ctx, float *dinp, const float *dout, const float *weight, const float *pre_gelu, int N, int IC,
                          int OC) {
    long long n = (long long)N * IC;
    if (!lt_matmul(ctx, dinp, weight, dout, IC, N, OC, true, OC, OC, CUBLASLT_EPILOGUE_DGELU, nullptr, pre_gelu, IC,
                   "matmul_gelu_backward")) {
        gemm_in_precision(ctx, dinp, dout, weight, N, IC, OC, 0, 1, 0.0f, "matmul_gelu_backward");
        gelu_backward(ctx, dinp, pre_gelu, dinp, n);
    }
    round_if_bf16(ctx, dinp, n);
}
