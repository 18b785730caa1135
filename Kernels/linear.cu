// A linear layer's fused ops on cuBLASLt: the matmul with its bias (and GELU) in the epilogue, and
// the gradient through a linear layer and the GELU before it. The twin of Sources/CBatonCPU/linear.c.
// Every matrix and the bias are activations: float32, or bf16 in bf16 (cuBLASLt then reads and
// writes bf16, sums in float32 and rounds once as it stores). Where cuBLASLt declines a shape
// (GELU's auxiliary matrix needs a leading dimension divisible by 8) or finds no algorithm, the
// same results come from a matmul into float32 and one epilogue kernel.
#include "baton_gelu.h"
#include "common.cuh"

#include <map>
#include <memory>
#include <tuple>

// The four cuBLASLt objects one call needs, destroyed together. (These types are outside the
// anonymous namespace because the context's LtPlans holds them.)
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

namespace {

// The largest power of two up to 256 that divides the address: the alignment a matrix really has.
uint32_t pointer_alignment(const void *p) {
    uint32_t alignment = 256;
    while (alignment > 1 && reinterpret_cast<uintptr_t>(p) % alignment != 0) alignment /= 2;
    return alignment;
}

// bf16 operands sum in plain float32; float32 operands are rounded for tensor cores in tf32.
cublasComputeType_t compute_type(int precision) {
    return precision == BATON_PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

} // namespace

// What fixes a cuBLASLt call's descriptors and algorithm: everything but the pointers, and the
// pointers' alignments, which the chosen algorithm may rely on.
struct LtKey {
    int precision, m, n, k, lda, ldb, trans_a, epilogue;
    int64_t aux_ld;
    uint32_t align_a, align_b, align_d, align_bias, align_aux;
    auto tied() const {
        return std::tie(precision, m, n, k, lda, ldb, trans_a, epilogue, aux_ld, align_a, align_b, align_d, align_bias,
                        align_aux);
    }
    bool operator<(const LtKey &other) const { return tied() < other.tied(); }
};

// A key's descriptors and the algorithm cuBLASLt's heuristic chose for it (usable false: it
// declined). Made at a key's first call; later calls only set the bias and auxiliary pointers,
// so a step asks the heuristic nothing (a GPT-2 step has about five distinct linear shapes).
struct LtPlan {
    LtCall call;
    cublasLtMatmulAlgo_t algo;
    bool usable = false;
};

struct LtPlans {
    std::map<LtKey, std::unique_ptr<LtPlan>> plans;
};

void destroy_lt_plans(baton_context *ctx) {
    delete ctx->lt_plans;
    ctx->lt_plans = nullptr;
}

namespace {

// The descriptors and the heuristic's algorithm for `key`, asked with this first call's bias and
// auxiliary pointers set (as cuBLASLt is asked for a single call; each later call sets its own).
std::unique_ptr<LtPlan> make_plan(baton_context *ctx, const LtKey &key, const void *bias, const void *aux) {
    auto plan = std::make_unique<LtPlan>();
    LtCall &call = plan->call;
    cublasOperation_t op_a = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = static_cast<cublasLtEpilogue_t>(key.epilogue);
    uint64_t workspace = CUBLAS_WORKSPACE_BYTES;
    cudaDataType_t type = key.precision == BATON_PRECISION_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    int m = key.m, n = key.n, k = key.k;
    auto ok = [](cublasStatus_t status) { return status == CUBLAS_STATUS_SUCCESS; };
    bool described =
            ok(cublasLtMatmulDescCreate(&call.desc, compute_type(key.precision), CUDA_R_32F)) &&
            ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a)) &&
            ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b)) &&
            ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue)) &&
            (!bias ||
             ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias))) &&
            (!aux || (ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                        sizeof aux)) &&
                      ok(cublasLtMatmulDescSetAttribute(call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &key.aux_ld,
                                                        sizeof key.aux_ld)))) &&
            ok(cublasLtMatrixLayoutCreate(&call.a, type, key.trans_a ? k : m, key.trans_a ? m : k, key.lda)) &&
            ok(cublasLtMatrixLayoutCreate(&call.b, type, k, n, key.ldb)) &&
            ok(cublasLtMatrixLayoutCreate(&call.d, type, m, n, m)) &&
            ok(cublasLtMatmulPreferenceCreate(&call.preference)) &&
            ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace, sizeof workspace)) &&
            ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                    &key.align_a, sizeof key.align_a)) &&
            ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                    &key.align_b, sizeof key.align_b)) &&
            ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                    &key.align_d, sizeof key.align_d)) &&
            ok(cublasLtMatmulPreferenceSetAttribute(call.preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                    &key.align_d, sizeof key.align_d));
    if (!described) return plan;
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    if (ok(cublasLtMatmulAlgoGetHeuristic(ctx->cublaslt, call.desc, call.a, call.b, call.d, call.d, call.preference, 1,
                                          &heuristic, &found)) &&
        found > 0) {
        plan->algo = heuristic.algo;
        plan->usable = true;
    }
    return plan;
}

// Column-major D[m,n] = op(A)[m,k] B[k,n] (B never transposed here), all activations, then the
// epilogue with `bias` (m values) and the auxiliary matrix `aux` (m x n, leading dimension
// aux_ld), of the same type. Returns false, having done nothing, when cuBLASLt declines; a
// failure after it accepted is recorded as any cuBLAS error.
bool lt_matmul(baton_context *ctx, void *d, const void *a, const void *b, int m, int n, int k, bool trans_a, int lda,
               int ldb, cublasLtEpilogue_t epilogue, const void *bias, const void *aux, int64_t aux_ld,
               const char *op) {
    if (aux && aux_ld % 8 != 0) return false;
    // The heuristic assumes 256-byte aligned matrices unless told otherwise, and a weight's slice
    // of the flat parameter buffer may be less aligned (in bf16, or at a width not a multiple of 64).
    LtKey key{ctx->precision,
              m,
              n,
              k,
              lda,
              ldb,
              trans_a ? 1 : 0,
              static_cast<int>(epilogue),
              aux ? aux_ld : 0,
              pointer_alignment(a),
              pointer_alignment(b),
              pointer_alignment(d),
              bias ? pointer_alignment(bias) : 0,
              aux ? pointer_alignment(aux) : 0};
    if (!ctx->lt_plans) ctx->lt_plans = new LtPlans();
    std::unique_ptr<LtPlan> &plan = ctx->lt_plans->plans[key];
    if (!plan) plan = make_plan(ctx, key, bias, aux);
    if (!plan->usable) return false;
    auto ok = [](cublasStatus_t status) { return status == CUBLAS_STATUS_SUCCESS; };
    if ((bias &&
         !ok(cublasLtMatmulDescSetAttribute(plan->call.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias))) ||
        (aux && !ok(cublasLtMatmulDescSetAttribute(plan->call.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                   sizeof aux))))
        return false;
    float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t status = cublasLtMatmul(ctx->cublaslt, plan->call.desc, &alpha, a, plan->call.a, b, plan->call.b,
                                           &beta, d, plan->call.d, d, plan->call.d, &plan->algo, ctx->cublas_workspace,
                                           CUBLAS_WORKSPACE_BYTES, 0);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) { // declined after all: the fallback from now on, without asking again
        plan->usable = false;
        return false;
    }
    record_cublas_error(ctx, status, op);
    return true;
}

// The epilogues where cuBLASLt declines, from the matmul's float32 sums `wide` (which may be
// `out` itself in float32): out = wide + bias and gelu_out = GELU(out) (the linear layer), or
// out = GELU'(pre_gelu) * wide (its gradient, bias NULL). The same formulas as cuBLASLt's and the
// CPU's, rounded once as stored.
template <class Act>
__global__ void epilogue_kernel(Act *out, Act *gelu_out, const float *wide, const Act *bias, const Act *pre_gelu,
                                long long n, int columns) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (pre_gelu) {
        store_act(out, i, baton_gelu_backward(load_act(pre_gelu, i), wide[i]));
        return;
    }
    float pre = wide[i] + (bias ? load_act(bias, i % columns) : 0.0f);
    store_act(out, i, pre);
    if (gelu_out) store_act(gelu_out, i, baton_gelu(pre));
}

// A matmul into float32 (in place in float32, else the context's wide buffer) and the epilogue.
void unfused(baton_context *ctx, void *out, void *gelu_out, const void *a, const void *b, const void *bias,
             const void *pre_gelu, int N, int OC, int K, int trans_b, const char *op) {
    long long n = (long long)N * OC;
    float *wide = stores_bf16(ctx) ? wide_buffer(ctx, n, op) : static_cast<float *>(out);
    if (!wide) return;
    gemm_in_precision(ctx, wide, false, a, b, N, OC, K, 0, trans_b, 0.0f, op);
    with_activations(ctx, [&](auto type) {
        using Act = decltype(type);
        epilogue_kernel<Act><<<blocks_for(n, 256), 256>>>(static_cast<Act *>(out), static_cast<Act *>(gelu_out), wide,
                                                          static_cast<const Act *>(bias),
                                                          static_cast<const Act *>(pre_gelu), n, OC);
    });
    check_launch(ctx, op);
}

} // namespace

// Row-major out[N,OC] = inp[N,IC] weight[IC,OC] is column-major out^T[OC,N] = weight^T[OC,IC]
// inp^T[IC,N], with the weight as stored (leading dimension OC) and the input as stored (IC): the
// bias runs along D's rows, as cuBLASLt broadcasts it; GELU's input is the auxiliary output. A
// weight stored [OC,IC] (trans_w) is column-major [IC,OC] with leading dimension IC, transposed.
void linear_forward(baton_context *ctx, baton_activation *out, baton_activation *gelu_out, const baton_activation *inp,
                    const baton_activation *weight, const baton_activation *bias, int N, int IC, int OC, int trans_w) {
    int lda = trans_w ? IC : OC;
    bool fused = gelu_out ? bias && lt_matmul(ctx, gelu_out, weight, inp, OC, N, IC, trans_w, lda, IC,
                                              CUBLASLT_EPILOGUE_GELU_AUX_BIAS, bias, out, OC, "linear_forward")
                          : lt_matmul(ctx, out, weight, inp, OC, N, IC, trans_w, lda, IC,
                                      bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, bias, nullptr, 0,
                                      "linear_forward");
    if (!fused) unfused(ctx, out, gelu_out, inp, weight, bias, nullptr, N, OC, IC, trans_w, "linear_forward");
}

// Row-major dinp[N,IC] = dout[N,OC] weight[IC,OC]^T is column-major dinp^T[IC,N] =
// (weight^T)^T[IC,OC] dout^T[OC,N]: the stored weight (column-major OC x IC) transposed. The DGELU
// epilogue multiplies by GELU' of the auxiliary input, the forward pass's pre-activation.
void matmul_gelu_backward(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                          const baton_activation *weight, const baton_activation *pre_gelu, int N, int IC, int OC) {
    if (!lt_matmul(ctx, dinp, weight, dout, IC, N, OC, true, OC, OC, CUBLASLT_EPILOGUE_DGELU, nullptr, pre_gelu, IC,
                   "matmul_gelu_backward"))
        unfused(ctx, dinp, nullptr, dout, weight, nullptr, pre_gelu, N, IC, OC, 1, "matmul_gelu_backward");
}
