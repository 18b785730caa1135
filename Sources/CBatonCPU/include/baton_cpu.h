/*
 * baton_cpu.h — the CPU backend's kernels. Each is declared with the function type from
 * baton_backend.h, under the same name as its CUDA twin in Kernels/, so the two can be read
 * side by side and cannot drift apart in signature.
 *
 * Determinism: every kernel splits its work so that each output element is computed by one
 * thread, in a fixed order. Results are therefore bit-identical run to run, whatever the thread
 * count (matmul is OpenBLAS's sgemm, deterministic for a fixed thread count).
 */
#ifndef BATON_CPU_H
#define BATON_CPU_H

#include "baton_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

baton_encoder_forward_fn encoder_forward;
baton_encoder_backward_fn encoder_backward;
baton_layernorm_forward_fn layernorm_forward;
baton_layernorm_backward_fn layernorm_backward;
baton_matmul_fn matmul;
baton_bias_forward_fn bias_forward;
baton_bias_backward_fn bias_backward;
baton_attention_forward_fn attention_forward;
baton_attention_backward_fn attention_backward;
baton_gelu_forward_fn gelu_forward;
baton_gelu_backward_fn gelu_backward;
baton_residual_forward_fn residual_forward;
baton_softmax_crossentropy_fn softmax_crossentropy;
baton_adamw_update_fn adamw_update;
baton_global_norm_squared_fn global_norm_squared;
baton_fill_fn fill;

/* Threads used by the kernels and by OpenBLAS (n < 1 means one per core). */
void baton_cpu_set_threads(int n);
int baton_cpu_threads(void);

#ifdef __cplusplus
}
#endif
#endif
