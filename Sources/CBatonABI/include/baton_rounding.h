/*
 * baton_rounding.h — the one rounding rule of the matmul precisions (baton_precision): a float's
 * bits rounded to nearest, ties to even, keeping all but the low `dropped` bits (16 for bfloat16,
 * 13 for TF32). NaN stays NaN (quieted, its payload's top bits kept); a value past the largest
 * finite one becomes infinity. Integer arithmetic only, so the CPU backend (precision.c), the CUDA
 * kernel (precision.cu) and the CUDA emulator's cuBLAS give the same bits.
 */
#ifndef BATON_ROUNDING_H
#define BATON_ROUNDING_H

#include <stdint.h>

#include "baton_host_device.h"

static inline BATON_HOST_DEVICE uint32_t baton_round_float_bits(uint32_t bits, int dropped) {
    uint32_t mask = ~((1u << dropped) - 1u);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return (bits | 0x00400000u) & mask;
    bits += ((1u << (dropped - 1)) - 1u) + ((bits >> dropped) & 1u);
    return bits & mask;
}

/* bfloat16 storage (baton_activation): a float's bits rounded as above, top half kept; and back,
 * exactly. */
static inline BATON_HOST_DEVICE uint16_t baton_bf16_from_float_bits(uint32_t bits) {
    return (uint16_t)(baton_round_float_bits(bits, 16) >> 16);
}
static inline BATON_HOST_DEVICE uint32_t baton_float_bits_from_bf16(uint16_t bf16) { return (uint32_t)bf16 << 16; }

#endif
