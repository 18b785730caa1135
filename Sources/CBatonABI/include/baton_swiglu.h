/*
 * baton_swiglu.h — SwiGLU's formulas, one for the CPU backend (swiglu.c) and the CUDA kernels
 * (swiglu.cu), so both compute the same expression:
 *   y = silu(gate) * up, silu(g) = g * s, s = sigmoid(g) = 1 / (1 + exp(-g))
 *   dgate = dy * up * (s + g s (1 - s)), dup = dy * g * s.
 */
#ifndef BATON_SWIGLU_H
#define BATON_SWIGLU_H

#include <math.h>

#include "baton_host_device.h"

static inline BATON_HOST_DEVICE float baton_swiglu(float gate, float up) { return gate / (1.0f + expf(-gate)) * up; }

static inline BATON_HOST_DEVICE void baton_swiglu_backward(float gate, float up, float dy, float *dgate, float *dup) {
    float s = 1.0f / (1.0f + expf(-gate));
    *dgate = dy * up * (s + gate * s * (1.0f - s));
    *dup = dy * gate * s;
}

#endif
