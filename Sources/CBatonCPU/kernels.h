/* Inside the CPU backend: the context every kernel gets, the kernels' declarations (generated
 * from the op list, so each has exactly its function type), and the thread pool. */
#ifndef BATON_CPU_KERNELS_H
#define BATON_CPU_KERNELS_H

#include "include/baton_cpu.h"
#include "baton_rounding.h"
#include <string.h>

typedef struct thread_pool thread_pool;

struct baton_context {
    thread_pool *pool; /* NULL when the device runs on one thread */
    int threads;
    char description[128];
    int precision;            /* baton_precision of the matmuls */
    float *rounded;           /* the matmul's inputs rounded to that precision (precision.c) */
    int64_t rounded_capacity; /* floats */
    float *wide;              /* a float32 result before it is stored as bf16 activations (wide_buffer) */
    int64_t wide_capacity;    /* floats */
};

/* Activations (baton_activation) are bfloat16 in a BF16 context, float32 otherwise. Kernels read
 * and write them element by element through these, with `bf16` read once per call. */
static inline int stores_bf16(const baton_context *ctx) { return ctx->precision == BATON_PRECISION_BF16; }
static inline float act_load(const void *p, int64_t i, int bf16) {
    if (!bf16) return ((const float *)p)[i];
    uint32_t bits = baton_float_bits_from_bf16(((const uint16_t *)p)[i]);
    float x;
    memcpy(&x, &bits, 4);
    return x;
}
static inline void act_store(void *p, int64_t i, float x, int bf16) {
    if (!bf16) {
        ((float *)p)[i] = x;
        return;
    }
    uint32_t bits;
    memcpy(&bits, &x, 4);
    ((uint16_t *)p)[i] = baton_bf16_from_float_bits(bits);
}
/* x rounded to nearest even, keeping all but the low `dropped` bits (16: bfloat16, 13: TF32). */
static inline float round_float(float x, int dropped) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    bits = baton_round_float_bits(bits, dropped);
    memcpy(&x, &bits, 4);
    return x;
}
/* Element i of an activation tensor, as a pointer. */
static inline void *act_at(const void *p, int64_t i, int bf16) { return (char *)p + i * (bf16 ? 2 : 4); }
/* The context's buffer for float32 results stored as bf16 afterwards, at least n floats; NULL
 * when memory is out. */
float *wide_buffer(baton_context *ctx, int64_t n);
/* out[0..n) = in[0..n) as activations (rounded in bf16), split over the pool. */
void store_activations(baton_context *ctx, void *out, const float *in, int64_t n);

BATON_FOR_EACH_OP(BATON_DECLARE_OP)
/* precision.c: out[0..n) = in[0..n) rounded to TF32 or bfloat16, round to nearest even (FP32: a
 * copy); one element at a time, as baton_rounding.h says (the CUDA emulator's rounding too). */
void round_copy_to_precision(baton_context *ctx, float *out, const float *in, int64_t n, int precision);
/* The context's own buffer for rounded copies, at least n floats; NULL when memory is out. */
float *rounding_buffer(baton_context *ctx, int64_t n);
/* matmul.c: c = op(a) @ op(b) + beta * c with a and b activations, rounded to the context's
 * precision, and the output float32, not rounded (matmul and the linear layer's ops round it where they store it). */
void gemm_in_precision(baton_context *ctx, float *c, const void *a, const void *b, int M, int N, int K, int trans_a,
                       int trans_b, float beta);
/* attention.c: the buffers the attention ops need (the same on every context). */
void cpu_attention_sizes(baton_context *ctx, int B, int T, int C, int NH, int KV, int64_t *saved, int64_t *scratch);

/* Calls body(arg, begin, end) on disjoint ranges covering [0, count). The ranges are pieces of
 * `grain` items (the last one shorter), handed out to the context's threads; their bounds do not
 * depend on the thread count, so neither do the results of a body that writes each output in one
 * piece. Runs on the caller alone when there is one thread or one piece. */
typedef void (*parallel_body)(void *arg, int64_t begin, int64_t end);
void parallel_for(baton_context *ctx, int64_t count, int64_t grain, parallel_body body, void *arg);

thread_pool *thread_pool_create(int threads);
void thread_pool_destroy(thread_pool *pool);

#endif
