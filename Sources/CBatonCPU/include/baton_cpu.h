/*
 * baton_cpu.h — the CPU backend: the same versioned table as a loadable backend
 * (baton_backend.h), linked into `baton`. Its kernels (one file per op group in this folder,
 * under the same names as their CUDA twins in Kernels/) are reached only through the table.
 *
 * Determinism: work is cut into pieces whose bounds do not depend on the thread count, each
 * output element is computed by one piece in a fixed order, and sgemm never splits the K
 * dimension; so results are bit-identical run to run and whatever the thread count.
 */
#ifndef BATON_CPU_H
#define BATON_CPU_H

#include "baton_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

const baton_backend_table *baton_cpu_get_table(void);

/* The BLAS the CPU backend's sgemm calls and the core it runs on: "OpenBLAS 0.3.21 Haswell". */
void baton_cpu_blas(char *line, size_t size);

/* One float rounded to bfloat16 or TF32 (round to nearest even), as the matmul precisions round
 * (baton_precision): for tests and for anyone checking a GPU's rounding against the CPU's. */
float baton_round_bf16(float x);
float baton_round_tf32(float x);

#ifdef __cplusplus
}
#endif
#endif
