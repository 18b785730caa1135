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

BATON_FOR_EACH_OP(BATON_DECLARE_OP)

/* Threads used by the kernels and by OpenBLAS (n < 1 means one per core). */
void baton_cpu_set_threads(int n);
int baton_cpu_threads(void);

#ifdef __cplusplus
}
#endif
#endif
