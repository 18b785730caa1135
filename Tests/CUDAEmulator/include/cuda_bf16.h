// cuda_bf16.h of the CUDA emulator: bfloat16 storage and its conversions, rounding to nearest even
// as __float2bfloat16 does on a GPU (the rule in baton_rounding.h, shared with the CPU backend).
#pragma once

#include <cstdint>

#include "baton_rounding.h"
#include "cuda_runtime.h"

struct __nv_bfloat16 {
    uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16(float x) {
    return __nv_bfloat16{(uint16_t)(baton_round_float_bits(__float_as_uint(x), 16) >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 x) { return __uint_as_float((unsigned)x.bits << 16); }
