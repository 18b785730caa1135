/*
 * baton_backend.h — the whole contract between Baton's Swift code and a compute backend.
 *
 * Every backend, the CPU included, fills one table of this shape: the CPU's is linked into
 * `baton` (baton_cpu_get_table), the CUDA one is a library loaded at run time that exports one
 * symbol, `baton_backend_get_table`. Swift drives either table through one type (Device.swift).
 *
 * Every op is declared once here, as a function type, and listed once in BATON_FOR_EACH_OP; the
 * table's fields and each backend's kernel declarations are generated from that list, so a kernel
 * that is missing or has another signature does not compile. Adding an op: one line in the list
 * (and its type here), its CPU kernel, its CUDA kernel, one Swift method.
 *
 * Conventions: tensors are row-major and contiguous, float32 except the activations (below);
 * pointers are device pointers for the backend that runs the op. B = batch, T = sequence length,
 * C = channels, NH = (query) heads, KV = key/value heads, V = vocabulary size, N = rows (B*T).
 * Ops that "accumulate" add into their output (gradients are summed over micro-batches); every
 * other op overwrites its output.
 * Every op takes the context its device was opened with: a device's settings (CPU threads; GPU
 * handle and scratch) live there, never in globals, so two devices in one process do not touch
 * each other.
 */
#ifndef BATON_BACKEND_H
#define BATON_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_BACKEND_ABI_VERSION 10

/* What went wrong, as a code the caller branches on; the text that comes with it is only shown. */
typedef enum baton_status {
    BATON_OK = 0,
    BATON_ERROR_NO_DRIVER = 1,     /* no usable driver for the device (missing, or too old) */
    BATON_ERROR_NO_DEVICE = 2,     /* the driver works, but there is no device at that index */
    BATON_ERROR_OUT_OF_MEMORY = 3, /* an allocation failed */
    BATON_ERROR_DEVICE = 4,        /* any other failure of the device or its libraries */
} baton_status;

/* A backend's own state for one opened device; each backend defines the struct. */
typedef struct baton_context baton_context;

/* Which attention kernels a context runs (fixed when it opens):
 *  - FLASH: flash attention wherever the backend has it and the head fits (the default): no
 *           T x T matrix, each row's log-sum-exp kept (BATON_CAPABILITY_FLASH_ATTENTION).
 *  - MATERIALIZED: the scores kept in memory everywhere, as the CPU always keeps them: for
 *           measuring both ways on one GPU. */
typedef enum baton_attention {
    BATON_ATTENTION_FLASH = 0,
    BATON_ATTENTION_MATERIALIZED = 1,
} baton_attention;

typedef struct baton_context_options {
    int device_index; /* which GPU (ignored by the CPU) */
    int threads;      /* CPU threads, < 1 for one per core (ignored by GPUs) */
    int attention;    /* a baton_attention */
} baton_context_options;

/* What an opened context can do, as bits of the table's `capabilities`: a precision p it runs
 * (set_precision accepts it) is bit BATON_CAPABILITY_PRECISION(p); flash attention (for heads of
 * up to BATON_ATTENTION_MAX_HEAD channels) is BATON_CAPABILITY_FLASH_ATTENTION. */
#define BATON_CAPABILITY_PRECISION(p)    (1u << (p))
#define BATON_CAPABILITY_FLASH_ATTENTION (1u << 8)

/* How products compute (set on a context with set_precision; fp32 until then): the matmul and
 * linear ops, and attention's products; every other op computes in fp32 in every mode.
 *  - FP32: float32 products and sums.
 *  - TF32: matmul inputs rounded to TF32 (10 mantissa bits, round to nearest even), products
 *          summed in float32: TF32 tensor cores on a GPU.
 *  - BF16: matmul inputs rounded to bfloat16 (7 mantissa bits, round to nearest even), products
 *          summed in float32 (bf16 tensor cores), and a fresh output (beta = 0: an activation or
 *          an activation's gradient) rounded to bfloat16 (the linear ops: once, at their end); an
 *          accumulated output (beta = 1: a weight's gradient) stays float32. The activations are
 *          stored in bfloat16 (baton_activation, below).
 *  In TF32 and BF16, attention (heads of up to 64 channels) rounds q, k, v, dO, the
 *  probabilities and dS to the precision before they multiply, its softmax float32 (attention.c). */
typedef enum baton_precision {
    BATON_PRECISION_FP32 = 0,
    BATON_PRECISION_TF32 = 1,
    BATON_PRECISION_BF16 = 2,
} baton_precision;

/* An activation: what a matmul, a linear layer or attention reads or writes (a LayerNorm's output,
 * qkv, attention's output, the MLP's hidden layer, the logits, and their gradients) and the
 * weights and biases those products read (the model keeps a copy of its float32 weights in this
 * type). Stored as bfloat16 (the top 16 bits of a float32, rounded to nearest even: see
 * baton_rounding.h) in a BF16 context, as float32 otherwise: half the memory and traffic, and
 * what bf16 tensor cores read. The residual stream, LayerNorm statistics, losses, weights,
 * gradients and optimizer moments are float32 in every precision. */
typedef void baton_activation;

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; wpe NULL (rotary models): out = wte[tokens[b,t],:]. */
typedef void baton_encoder_forward_fn(baton_context *ctx, float *out, const int32_t *tokens, const float *wte,
                                      const float *wpe, int B, int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]  (accumulates). The rows come
 * grouped by token too: group g (of `buckets`) is rows bucket_rows[bucket_starts[g] ..
 * bucket_starts[g+1]), all of one token, in row order; so each token's rows can be added in row
 * order, in parallel over tokens, without atomics. dwpe NULL: no position table. */
typedef void baton_encoder_backward_fn(baton_context *ctx, float *dwte, float *dwpe, const float *dout,
                                       const int32_t *tokens, const int32_t *bucket_rows, const int32_t *bucket_starts,
                                       int buckets, int B, int T, int C);

/* out = (inp - mean) * rstd * weight + bias over the last dimension; saves mean and rstd (N each). */
typedef void baton_layernorm_forward_fn(baton_context *ctx, baton_activation *out, float *mean, float *rstd,
                                        const float *inp, const float *weight, const float *bias, int N, int C);
/* residual = a + b, then out, mean, rstd = layernorm_forward(residual): a block's residual add and
 * the next LayerNorm in one pass over each row (the same sums, so the same bits, as the two ops). */
typedef void baton_residual_layernorm_forward_fn(baton_context *ctx, float *residual, baton_activation *out,
                                                 float *mean, float *rstd, const float *a, const baton_activation *b,
                                                 const float *weight, const float *bias, int N, int C);
/* dinp, dweight, dbias accumulate. When dinp_activation is not NULL it also receives dinp (after
 * the addition) as an activation: the residual stream's gradient as the matmuls read it (a bf16
 * copy in BF16), in the same pass. */
typedef void baton_layernorm_backward_fn(baton_context *ctx, float *dinp, baton_activation *dinp_activation,
                                         float *dweight, float *dbias, const baton_activation *dout, const float *inp,
                                         const float *weight, const float *mean, const float *rstd, int N, int C);

/* RMSNorm over the last dimension (the Llama family): out = inp * rstd * weight, rstd =
 * 1/sqrt(mean(inp^2) + eps), the mean of squares in float32; saves rstd (N). */
typedef void baton_rmsnorm_forward_fn(baton_context *ctx, baton_activation *out, float *rstd, const float *inp,
                                      const float *weight, int N, int C, float eps);
/* residual = a + b, then out, rstd = rmsnorm_forward(residual), in one pass over each row. */
typedef void baton_residual_rmsnorm_forward_fn(baton_context *ctx, float *residual, baton_activation *out, float *rstd,
                                               const float *a, const baton_activation *b, const float *weight, int N,
                                               int C, float eps);
/* dinp += rstd * (g - xhat * mean(g * xhat)), g = dout * weight, xhat = inp * rstd; dweight +=
 * sum over rows of dout * xhat (both accumulate). dinp_activation as layernorm_backward's. */
typedef void baton_rmsnorm_backward_fn(baton_context *ctx, float *dinp, baton_activation *dinp_activation,
                                       float *dweight, const baton_activation *dout, const float *inp,
                                       const float *weight, const float *rstd, int N, int C);

/* Rotary position embedding in place, transformers' rotate-half convention: in each row of x
 * [B,T,width] the first `heads` heads of HS channels (the queries' and the keys' heads, side by
 * side) are rotated by position t: for i < HS/2, (x_i, x_{i+HS/2}) becomes (x_i cos - x_{i+HS/2} sin,
 * x_{i+HS/2} cos + x_i sin) with (cos, sin) = freqs[t, i, 0..1]. freqs [T, HS/2, 2] is float32,
 * made by the caller. rope_backward rotates the gradient back (sin negated). */
typedef void baton_rope_forward_fn(baton_context *ctx, baton_activation *x, const float *freqs, int B, int T, int width,
                                   int heads, int HS);
typedef void baton_rope_backward_fn(baton_context *ctx, baton_activation *dx, const float *freqs, int B, int T,
                                    int width, int heads, int HS);

/* SwiGLU: inp [N, 2*H] holds gate and up side by side in each row; out[n,i] = silu(gate) * up,
 * computed in float32 and rounded once in bf16. The backward writes d(gate) and d(up) into dinp
 * [N, 2*H] (overwrites). */
typedef void baton_swiglu_forward_fn(baton_context *ctx, baton_activation *out, const baton_activation *inp, int N,
                                     int H);
typedef void baton_swiglu_backward_fn(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                                      const baton_activation *inp, int N, int H);

/* c[M,N] = op(a)[M,K] @ op(b)[K,N] + beta * c, where op transposes when trans_* is non-zero.
 * a is stored as [M,K] (or [K,M] when transposed), b as [K,N] (or [N,K] when transposed). c is
 * an activation when beta is 0 (a fresh output), float32 otherwise (a weight's gradient). */
typedef void baton_matmul_fn(baton_context *ctx, void *c, const baton_activation *a, const baton_activation *b, int M,
                             int N, int K, int trans_a, int trans_b, float beta);
/* A linear layer: out[N,OC] = inp[N,IC] @ weight + bias (matmul, then the bias), the weight stored
 * [IC,OC] (GPT-2's Conv1D) or, with trans_w, [OC,IC] (nn.Linear's layout: the Llama family); bias
 * NULL: none. With
 * gelu_out not NULL, also gelu_out = GELU(out), out keeping the pre-activation for the backward
 * pass. In bf16 each output is rounded to bfloat16 once, at the end, from the float32 sum plus the
 * bias (and its GELU). On a GPU: one cuBLASLt matmul with the bias (and GELU) in its epilogue. */
typedef void baton_linear_forward_fn(baton_context *ctx, baton_activation *out, baton_activation *gelu_out,
                                     const baton_activation *inp, const baton_activation *weight,
                                     const baton_activation *bias, int N, int IC, int OC, int trans_w);
/* The gradient through a linear layer and the GELU before it: dinp[N,IC] = GELU'(pre_gelu) *
 * (dout[N,OC] @ weight[IC,OC]^T) (matmul, then GELU's gradient), rounded once at the end in bf16.
 * On a GPU: one cuBLASLt matmul with the GELU gradient in its epilogue. */
typedef void baton_matmul_gelu_backward_fn(baton_context *ctx, baton_activation *dinp, const baton_activation *dout,
                                           const baton_activation *weight, const baton_activation *pre_gelu, int N,
                                           int IC, int OC);
/* dbias += sum over n of dout[n,:]  (accumulates) */
typedef void baton_bias_backward_fn(baton_context *ctx, float *dbias, const baton_activation *dout, int N, int OC);

/* Attention's tiles, which the GPU's flash kernels use and the CPU's bf16 and tf32 attention (their
 * twin, rounding at the same points) follows: queries and keys in tiles of BATON_ATTENTION_TILE
 * rows, heads of up to BATON_ATTENTION_MAX_HEAD channels (wider heads keep the scores). */
#define BATON_ATTENTION_TILE     32
#define BATON_ATTENTION_MAX_HEAD 64

/* Causal self-attention with grouped key/value heads: NH query heads of HS = C/NH channels and KV
 * key/value heads (KV divides NH; KV = NH is multi-head attention, KV = 1 multi-query), query head
 * h reading key/value head h / (NH/KV) in place. qkv is [B,T,(NH+2KV)*HS]: each row its NH query
 * heads, then its KV key heads, then its KV value heads (with KV = NH: [B,T,3C], q, k, v side by
 * side); out is [B,T,C]. `saved` keeps what the backward pass needs besides qkv and out, in a
 * layout the backend chooses: the CPU keeps the softmax probabilities [B,NH,T,T]; the CUDA
 * backend, for heads of up to 64 channels, only each row's log-sum-exp [B,NH,T] (flash attention:
 * no T x T matrix). `scratch` is free for the op to use and carries nothing from one call to the
 * next. The table's attention_sizes gives both sizes, in floats. */
/* The materialized kernels' scratch: dS [B,NH,T,T], then q, dO, dq [B,NH,T,HS] and k, v, dk, dv
 * [B,KV,T,HS]. */
#define BATON_ATTENTION_SCRATCH(B, T, C, NH, KV)                                                                       \
    ((int64_t)(B) * (NH) * (T) * (T) + 3 * (int64_t)(B) * (T) * (C) + 4 * (int64_t)(B) * (T) * ((C) / (NH)) * (KV))
typedef void baton_attention_forward_fn(baton_context *ctx, baton_activation *out, float *saved,
                                        const baton_activation *qkv, float *scratch, int B, int T, int C, int NH,
                                        int KV);
/* dqkv (qkv's layout) is overwritten; a key/value head's gradients are the sums over its NH/KV
 * query heads. out and saved are what the forward pass left. */
typedef void baton_attention_backward_fn(baton_context *ctx, baton_activation *dqkv, float *scratch,
                                         const baton_activation *dout, const baton_activation *qkv,
                                         const baton_activation *out, const float *saved, int B, int T, int C, int NH,
                                         int KV);

/* out = a + b, elementwise (out may alias a or b): summing gradients (micro-batches, ranks). */
typedef void baton_add_fn(baton_context *ctx, float *out, const float *a, const float *b, int64_t n);

/* Fused softmax + cross-entropy over the first V of each row's Vp columns (Vp >= V: the padded
 * vocabulary, its extra columns masked) for N rows: losses[n] = -log softmax(logits[n, :V])[t].
 * When dlogits is not NULL it receives (softmax - onehot) * dloss in the first V columns and 0 in
 * the padded ones; it may alias logits. A negative target is ignored (a masked position, as
 * PyTorch's ignore_index): its loss is 0 and its dlogits row all 0 (since ABI 10). */
typedef void baton_softmax_crossentropy_fn(baton_context *ctx, float *losses, baton_activation *dlogits,
                                           const baton_activation *logits, const int32_t *targets, int N, int V, int Vp,
                                           float dloss);

/* AdamW as in PyTorch, over a flat buffer of tensors in one call: p *= 1 - lr*wd where p decays;
 * m, v updated with g = grads*grad_scale; p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
 * t is the 1-based step. Element i decays (weight_decay applies) when it lies in one of the
 * range_count ranges [decay_ranges[2r], decay_ranges[2r+1]), sorted and disjoint, in device
 * memory; decay_ranges NULL: every element decays. */
typedef void baton_adamw_update_fn(baton_context *ctx, float *params, const float *grads, float *m, float *v, int64_t n,
                                   float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                   int64_t t, const int64_t *decay_ranges, int range_count);

/* out[0] = sum of x[i]^2, summed in a fixed order (deterministic). */
typedef void baton_global_norm_squared_fn(baton_context *ctx, float *out, const float *x, int64_t n);

/* x[i] = value */
typedef void baton_fill_fn(baton_context *ctx, float *x, float value, int64_t n);

/* out[i] = in[i] as an activation: rounded to bfloat16 (nearest even) in BF16, copied otherwise.
 * The model's bf16 copy of its weights. */
typedef void baton_to_activation_fn(baton_context *ctx, baton_activation *out, const float *in, int64_t n);

/* Every op, once: X(name) for each. */
// clang-format off
#define BATON_FOR_EACH_OP(X) \
    X(encoder_forward) \
    X(encoder_backward) \
    X(layernorm_forward) \
    X(residual_layernorm_forward) \
    X(layernorm_backward) \
    X(rmsnorm_forward) \
    X(residual_rmsnorm_forward) \
    X(rmsnorm_backward) \
    X(rope_forward) \
    X(rope_backward) \
    X(swiglu_forward) \
    X(swiglu_backward) \
    X(matmul) \
    X(linear_forward) \
    X(matmul_gelu_backward) \
    X(bias_backward) \
    X(attention_forward) \
    X(attention_backward) \
    X(add) \
    X(softmax_crossentropy) \
    X(adamw_update) \
    X(global_norm_squared) \
    X(fill) \
    X(to_activation)
// clang-format on
/* A backend declares its kernels with BATON_FOR_EACH_OP(BATON_DECLARE_OP). */
#define BATON_DECLARE_OP(name)  baton_##name##_fn name;
#define BATON_TABLE_FIELD(name) baton_##name##_fn *name;
#define BATON_TABLE_ENTRY(name) .name = name,
/* A backend's whole table: its functions are named PREFIX_create_context, PREFIX_alloc, ... and
 * its kernels by the op names. */
#define BATON_BACKEND_TABLE(NAME, HOST_MEMORY, PREFIX)                                                                 \
    {                                                                                                                  \
        .abi_version = BATON_BACKEND_ABI_VERSION, .name = NAME, .host_memory = HOST_MEMORY,                            \
        .create_context = PREFIX##_create_context, .destroy_context = PREFIX##_destroy_context,                        \
        .describe = PREFIX##_describe, .take_error = PREFIX##_take_error, .alloc = PREFIX##_alloc,                     \
        .release = PREFIX##_release, .copy_to_device = PREFIX##_copy_to_device, .copy_to_host = PREFIX##_copy_to_host, \
        .copy_on_device = PREFIX##_copy_on_device, .alloc_host = PREFIX##_alloc_host,                                  \
        .release_host = PREFIX##_release_host, .synchronize = PREFIX##_synchronize,                                    \
        .attention_sizes = PREFIX##_attention_sizes, .set_precision = PREFIX##_set_precision,                          \
        .capabilities = PREFIX##_capabilities, BATON_FOR_EACH_OP(BATON_TABLE_ENTRY)                                    \
    }

/* The table every backend fills. Functions that can fail return a baton_status. Ops return
 * nothing: a failure (a launch error, a cuBLAS status) is recorded in the context, and
 * take_error returns the first one since the last call (BATON_OK when all went well), with a
 * line of detail in *message (valid until the next call on that context). The caller checks
 * after each op. */
typedef struct baton_backend_table {
    int abi_version; /* BATON_BACKEND_ABI_VERSION of the code that filled the table */
    const char *name;
    /* Non-zero when device pointers are host pointers (the CPU): checkpoints read them in place. */
    int host_memory;
    /* Opens a device. On failure *context is NULL and message (message_size bytes) says why. */
    baton_status (*create_context)(const baton_context_options *options, baton_context **context, char *message,
                                   size_t message_size);
    void (*destroy_context)(baton_context *ctx);
    /* A line describing the device (name, memory, compute capability; threads on the CPU). */
    const char *(*describe)(baton_context *ctx);
    baton_status (*take_error)(baton_context *ctx, const char **message);
    /* New memory reads as zeros. */
    baton_status (*alloc)(baton_context *ctx, void **ptr, size_t bytes);
    baton_status (*release)(baton_context *ctx, void *ptr);
    baton_status (*copy_to_device)(baton_context *ctx, void *dst, const void *src, size_t bytes);
    baton_status (*copy_to_host)(baton_context *ctx, void *dst, const void *src, size_t bytes);
    baton_status (*copy_on_device)(baton_context *ctx, void *dst, const void *src, size_t bytes);
    /* Host memory that copies to and from the device read or write at the bus's speed: pinned
     * (page-locked) on a GPU, where it can be had, else plain; plain on the CPU. Reads as zeros.
     * (An asynchronous checkpoint copies the training state into it.) */
    baton_status (*alloc_host)(baton_context *ctx, void **ptr, size_t bytes);
    baton_status (*release_host)(baton_context *ctx, void *ptr);
    baton_status (*synchronize)(baton_context *ctx);
    /* Floats of `saved` and `scratch` the attention ops need at these sizes on this context (its
     * attention option decides). */
    void (*attention_sizes)(baton_context *ctx, int B, int T, int C, int NH, int KV, int64_t *saved, int64_t *scratch);
    /* The matmul precision from now on (a baton_precision). */
    baton_status (*set_precision)(baton_context *ctx, int precision);
    /* What this context can do: BATON_CAPABILITY_* bits. Asking changes nothing. */
    uint32_t (*capabilities)(baton_context *ctx);
    BATON_FOR_EACH_OP(BATON_TABLE_FIELD)
} baton_backend_table;

/* A short name for a status ("no driver"), for messages. */
const char *baton_status_name(baton_status status);

/* The one symbol a loadable backend library exports. */
typedef const baton_backend_table *baton_backend_get_table_fn(void);

#ifdef __cplusplus
}
#endif
#endif
