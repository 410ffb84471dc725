// nvcuda::wmma for the host SIMT simulator (IDOC_CUDA_SIM builds). NVIDIA leaves the mapping of
// tile elements to a warp's lanes unspecified, so here every lane holds the whole tile
// (x[] row-major, num_elements = rows * cols); element-wise code over x[i] then means the same
// thing as on the GPU. load/store/mma are warp-collective (all 32 lanes, a full warp, the same
// arguments) and check what the documentation requires: 256-bit aligned pointers and ldm a
// multiple of 16 bytes. mma_sync accumulates in fp32 (fmaf in k order).
#pragma once
#include <stdint.h>

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
  static_assert(std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value ||
                    std::is_same<T, float>::value,
                "wmma fragments hold bf16, half or float");
  static_assert((M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                    (M == 8 && N == 32 && K == 16),
                "wmma shapes for 16-bit inputs: m16n16k16, m32n8k16, m8n32k16");
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  enum { num_elements = rows * cols };
  T x[num_elements];
};

namespace detail {
static inline void collective(const char *what, const void *p, unsigned ldm, size_t elem) {
  if (((uintptr_t)p & 31u) != 0)
    ::idoc_sim::fail("wmma::%s: pointer %p is not 256-bit aligned", what, p);
  if ((ldm * elem) % 16 != 0)
    ::idoc_sim::fail("wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
  // All 32 lanes take part, with the same pointer.
  uint64_t first =
      ::idoc_sim::warp_collective(::idoc_sim::W_WMMA, 0xffffffffu, (uint64_t)(uintptr_t)p, 0, 32);
  (void)first;
}
template <class T> static inline float f(T v) { return (float)v; }
} // namespace detail

template <class Use, int M, int N, int K, class T, class L, class V>
static inline void fill_fragment(fragment<Use, M, N, K, T, L> &a, const V &v) {
  for (int i = 0; i < a.num_elements; i++)
    a.x[i] = T(v);
}

// matrix_a / matrix_b: the layout is part of the fragment type.
template <class Use, int M, int N, int K, class T, class L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &a, const T *p, unsigned ldm) {
  static_assert(std::is_same<L, row_major>::value || std::is_same<L, col_major>::value,
                "matrix_a/matrix_b fragments need a row_major or col_major layout");
  detail::collective("load_matrix_sync", p, ldm, sizeof(T));
  constexpr int R = fragment<Use, M, N, K, T, L>::rows, C = fragment<Use, M, N, K, T, L>::cols;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      a.x[r * C + c] =
          std::is_same<L, row_major>::value ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

// Accumulators: the memory layout is an argument.
template <int M, int N, int K, class T>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &a, const T *p, unsigned ldm,
                                    layout_t layout) {
  detail::collective("load_matrix_sync", p, ldm, sizeof(T));
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++)
      a.x[r * N + c] = layout == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
template <int M, int N, int K, class T>
static inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &a, unsigned ldm,
                                     layout_t layout) {
  detail::collective("store_matrix_sync", p, ldm, sizeof(T));
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) {
      T *d = layout == mem_row_major ? p + (size_t)r * ldm + c : p + (size_t)c * ldm + r;
      *d = a.x[r * N + c];
    }
}

template <int M, int N, int K, class TI, class LA, class LB, class TC>
static inline void mma_sync(fragment<accumulator, M, N, K, TC> &d,
                            const fragment<matrix_a, M, N, K, TI, LA> &a,
                            const fragment<matrix_b, M, N, K, TI, LB> &b,
                            const fragment<accumulator, M, N, K, TC> &c) {
  static_assert(std::is_same<TC, float>::value, "the simulator's wmma accumulates in float");
  ::idoc_sim::warp_collective(::idoc_sim::W_WMMA, 0xffffffffu, 0, 1, 32);
  float out[M * N];
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      float s = c.x[m * N + n];
      for (int k = 0; k < K; k++)
        s = fmaf(detail::f(a.x[m * K + k]), detail::f(b.x[k * N + n]), s);
      out[m * N + n] = s;
    }
  for (int i = 0; i < M * N; i++)
    d.x[i] = out[i];
}
} // namespace wmma
} // namespace nvcuda
