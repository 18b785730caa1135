/*
 * baton_gelu.h — GELU with the tanh approximation, one formula for the CPU backend (gelu.c,
 * linear.c), the CUDA kernels (gelu.cu) and the CUDA emulator's cuBLASLt epilogues, so that all
 * of them give the same bits for the same input.
 *   GELU(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x * sigmoid(2u)
 *   (the same value: one expf instead of tanhf, several times slower in glibc, and no
 *   cancellation for large negative x).
 *   GELU'(x) = s + 2 x s (1 - s) u', s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
 */
#ifndef BATON_GELU_H
#define BATON_GELU_H

#include <math.h>

#include "baton_host_device.h"

#define BATON_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

static inline BATON_HOST_DEVICE float baton_gelu(float x) {
    float u = BATON_GELU_SCALE * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
}

/* GELU'(x) * g: the gradient through GELU of the gradient g of its output. */
static inline BATON_HOST_DEVICE float baton_gelu_backward(float x, float g) {
    float u = BATON_GELU_SCALE * (x + 0.044715f * x * x * x);
    float s = 1.0f / (1.0f + expf(-2.0f * u));
    float du = BATON_GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    return (s + 2.0f * x * s * (1.0f - s) * du) * g;
}

#endif
