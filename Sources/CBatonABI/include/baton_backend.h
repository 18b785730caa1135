/*
 * baton_backend.h — the whole contract between Baton's Swift code and a compute backend.
 *
 * Every op a GPT training step needs is declared here once, as a function type. The CPU kernels
 * (Sources/CBatonCPU) are declared with these types, and a loadable backend library (the CUDA one,
 * built from Kernels/) exports one symbol, `baton_backend_get_table`, that returns a table of
 * pointers of these same types. Both sides include this header, so they cannot disagree on a
 * signature; the table carries a version, and the loader refuses a version it does not know.
 *
 * Conventions: all tensors are float32, row-major, contiguous; pointers are device pointers for
 * the backend that runs the op. B = batch, T = sequence length, C = channels, NH = heads,
 * V = vocabulary size, N = rows (B*T). Ops that "accumulate" add into their output (gradients are
 * summed over micro-batches); every other op overwrites its output.
 */
#ifndef BATON_BACKEND_H
#define BATON_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_BACKEND_ABI_VERSION 1

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] */
typedef void baton_encoder_forward_fn(float *out, const int32_t *tokens, const float *wte,
                                      const float *wpe, int B, int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:]  (accumulates) */
typedef void baton_encoder_backward_fn(float *dwte, float *dwpe, const float *dout,
                                       const int32_t *tokens, int B, int T, int C);

/* out = (inp - mean) * rstd * weight + bias over the last dimension; saves mean and rstd (N each). */
typedef void baton_layernorm_forward_fn(float *out, float *mean, float *rstd, const float *inp,
                                        const float *weight, const float *bias, int N, int C);
/* dinp, dweight, dbias accumulate. */
typedef void baton_layernorm_backward_fn(float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp, const float *weight,
                                         const float *mean, const float *rstd, int N, int C);

/* c[M,N] = op(a)[M,K] @ op(b)[K,N] + beta * c, where op transposes when trans_* is non-zero.
 * a is stored as [M,K] (or [K,M] when transposed), b as [K,N] (or [N,K] when transposed). */
typedef void baton_matmul_fn(float *c, const float *a, const float *b, int M, int N, int K,
                             int trans_a, int trans_b, float beta);
/* out[n,:] += bias  */
typedef void baton_bias_forward_fn(float *out, const float *bias, int N, int OC);
/* dbias += sum over n of dout[n,:]  (accumulates) */
typedef void baton_bias_backward_fn(float *dbias, const float *dout, int N, int OC);

/* Causal multi-head self-attention. qkv is [B,T,3C] (q, k, v side by side, each split into NH
 * heads of C/NH channels); out is [B,T,C]; att [B,NH,T,T] receives the softmax probabilities.
 * scratch holds BATON_ATTENTION_SCRATCH(B,T,C,NH) floats, free for the op to use (a backend may
 * repack q, k and v there); it carries nothing from one call to the next. */
#define BATON_ATTENTION_SCRATCH(B, T, C, NH) \
    ((int64_t)(B) * (NH) * (T) * (T) + 7 * (int64_t)(B) * (T) * (C))
typedef void baton_attention_forward_fn(float *out, float *att, const float *qkv, float *scratch,
                                        int B, int T, int C, int NH);
/* dqkv is overwritten. */
typedef void baton_attention_backward_fn(float *dqkv, float *scratch, const float *dout,
                                         const float *qkv, const float *att, int B, int T, int C,
                                         int NH);

/* GELU, tanh approximation. Backward overwrites dinp. */
typedef void baton_gelu_forward_fn(float *out, const float *inp, int64_t n);
typedef void baton_gelu_backward_fn(float *dinp, const float *inp, const float *dout, int64_t n);

/* out = a + b, elementwise. */
typedef void baton_residual_forward_fn(float *out, const float *a, const float *b, int64_t n);

/* Fused softmax + cross-entropy over V classes for N rows: losses[n] = -log softmax(logits[n])[t].
 * When dlogits is not NULL it receives (softmax - onehot) * dloss; it may alias logits. */
typedef void baton_softmax_crossentropy_fn(float *losses, float *dlogits, const float *logits,
                                           const int32_t *targets, int N, int V, float dloss);

/* AdamW as in PyTorch: p *= 1 - lr*wd; m, v updated with g = grads*grad_scale;
 * p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps). t is the 1-based step. */
typedef void baton_adamw_update_fn(float *params, const float *grads, float *m, float *v,
                                   int64_t n, float lr, float beta1, float beta2, float eps,
                                   float weight_decay, float grad_scale, int64_t t);

/* out[0] = sum of x[i]^2, summed in a fixed order (deterministic). */
typedef void baton_global_norm_squared_fn(float *out, const float *x, int64_t n);

/* x[i] = value */
typedef void baton_fill_fn(float *x, float value, int64_t n);

/* Every op, once: X(name) for each. Backends declare their kernels with it, so a kernel that is
 * missing or has another signature does not compile. */
#define BATON_FOR_EACH_OP(X) \
    X(encoder_forward) X(encoder_backward) X(layernorm_forward) X(layernorm_backward) X(matmul) \
    X(bias_forward) X(bias_backward) X(attention_forward) X(attention_backward) X(gelu_forward) \
    X(gelu_backward) X(residual_forward) X(softmax_crossentropy) X(adamw_update) \
    X(global_norm_squared) X(fill)
#define BATON_DECLARE_OP(name) baton_##name##_fn name;

/* The table a loadable backend returns. Memory functions return 0 on success. Ops return
 * nothing: a failure (a launch error, a cuBLAS status) is recorded, and take_error returns it
 * once, as "op: error string", or NULL when all went well. The caller checks after each op. */
typedef struct baton_backend_table {
    int abi_version; /* BATON_BACKEND_ABI_VERSION of the library that filled the table */
    const char *name;
    /* Opens device `device_index`; on failure returns non-zero and take_error says why. */
    int (*open_device)(int device_index);
    /* A line describing the device (name, memory, compute capability). */
    const char *(*describe)(void);
    const char *(*take_error)(void);
    int (*alloc)(void **ptr, size_t bytes);
    int (*release)(void *ptr);
    int (*copy_to_device)(void *dst, const void *src, size_t bytes);
    int (*copy_to_host)(void *dst, const void *src, size_t bytes);
    int (*copy_on_device)(void *dst, const void *src, size_t bytes);
    int (*synchronize)(void);
    baton_encoder_forward_fn *encoder_forward;
    baton_encoder_backward_fn *encoder_backward;
    baton_layernorm_forward_fn *layernorm_forward;
    baton_layernorm_backward_fn *layernorm_backward;
    baton_matmul_fn *matmul;
    baton_bias_forward_fn *bias_forward;
    baton_bias_backward_fn *bias_backward;
    baton_attention_forward_fn *attention_forward;
    baton_attention_backward_fn *attention_backward;
    baton_gelu_forward_fn *gelu_forward;
    baton_gelu_backward_fn *gelu_backward;
    baton_residual_forward_fn *residual_forward;
    baton_softmax_crossentropy_fn *softmax_crossentropy;
    baton_adamw_update_fn *adamw_update;
    baton_global_norm_squared_fn *global_norm_squared;
    baton_fill_fn *fill;
} baton_backend_table;

/* The one symbol a backend library exports. */
typedef const baton_backend_table *baton_backend_get_table_fn(void);

/* The ABI version this build of Baton speaks (for messages). */
int baton_backend_abi_version(void);

#ifdef __cplusplus
}
#endif
#endif
