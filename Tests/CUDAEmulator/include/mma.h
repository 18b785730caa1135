// mma.h of the CUDA emulator: the warp matrix operations (nvcuda::wmma) the tensor-core attention
// kernels use: 16 x 16 x 16 tiles of bfloat16 and 16 x 16 x 8 of TF32, float32 accumulators. On a GPU a fragment
// is spread over the warp's 32 lanes in a layout CUDA does not specify; here every lane holds the
// whole tile and computes the whole product, which gives each lane what the documented calls give
// the warp (kernels that only load, multiply, fill and store fragments cannot tell). Products are
// summed in float32 in ascending k (a GPU's order within a tile differs). The calls check what a
// GPU requires: 256-bit aligned pointers and a leading dimension that is a multiple of 16 bytes.
#pragma once

#include <type_traits>

#include "baton_rounding.h"
#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace baton_emulator {
// Stops the process with a message naming the call when `pointer` or `ldm` breaks wmma's rules.
void check_wmma_access(const void *pointer, unsigned ldm, size_t element_bytes, const char *call);
} // namespace baton_emulator

namespace nvcuda {
namespace wmma {

struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32; // TF32 operands, stored (and held in fragments) as float
}

// What a fragment of element type T holds: T itself, float for tf32.
template <class T> struct stored { typedef T type; };
template <> struct stored<precision::tf32> { typedef float type; };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    static constexpr int num_elements = rows * cols;
    typename stored<T>::type x[num_elements]; // the whole tile, row by row
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, typename stored<T>::type value) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = value;
}

// To TF32, rounding to nearest even (a GPU may round ties otherwise; Baton converts values that
// are TF32 already, which no rounding changes).
inline float __float_to_tf32(float x) { return __uint_as_float(baton_round_float_bits(__float_as_uint(x), 13)); }

// matrix_a / matrix_b, whose layout is part of the type.
template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const typename stored<T>::type *p, unsigned ldm) {
    baton_emulator::check_wmma_access(p, ldm, sizeof(*p), "wmma::load_matrix_sync");
    constexpr bool row = std::is_same<Layout, row_major>::value;
    for (int i = 0; i < f.rows; i++)
        for (int j = 0; j < f.cols; j++) f.x[i * f.cols + j] = row ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i];
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t layout) {
    baton_emulator::check_wmma_access(p, ldm, sizeof(float), "wmma::load_matrix_sync");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            f.x[i * N + j] = layout == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i];
}

template <int M, int N, int K>
inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t layout) {
    baton_emulator::check_wmma_access(p, ldm, sizeof(float), "wmma::store_matrix_sync");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            (layout == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]) = f.x[i * N + j];
}

inline float operand_value(float x) { return x; }
inline float operand_value(__nv_bfloat16 x) { return __bfloat162float(x); }

template <int M, int N, int K, class T, class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LayoutA> &a,
                     const fragment<matrix_b, M, N, K, T, LayoutB> &b, const fragment<accumulator, M, N, K, float> &c) {
    float result[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float sum = c.x[i * N + j];
            for (int k = 0; k < K; k++) sum += operand_value(a.x[i * K + k]) * operand_value(b.x[k * N + j]);
            result[i * N + j] = sum;
        }
    for (int i = 0; i < M * N; i++) d.x[i] = result[i];
}

} // namespace wmma
} // namespace nvcuda
