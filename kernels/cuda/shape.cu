// Data movement: slices along a dim, row gathers / scatters / zeroing, embedding lookups and
// their backward, batched transposes. Rows move 16 bytes at a time when widths, offsets and
// pointers allow.
//
// Out-of-range indices: the CPU kernels check every index and abort; a device kernel cannot, so
// here an index outside [0, rows) names no row. A gather (and embedding_fwd) writes a zero row
// for it (leaves the row as it was when accumulating); a scatter, zero_rows and embedding_bwd
// skip it. A scatter without accumulation needs distinct indices (nn/ops.h; the CPU copies rows
// in parallel too): with repeats, which source row lands is unspecified.
//
// Accumulating scatters (scatter_rows with accumulate, embedding_bwd) are deterministic with
// repeated indices and use no float atomics: the indices are stably sorted (each position's rank
// is a count of smaller (index, position) pairs, summed with integer atomics, which do not
// depend on order), then one block per distinct index adds its source rows in their original
// order onto the destination row, as the CPU does; f32 sums equal the CPU's bit for bit. The
// ranks cost m^2 integer compares spread over the whole GPU: little for the m of a batch's
// tokens or an image's patches (thousands), but quadratic (4G compares at m = 64K).
#include <limits.h>

#include <initializer_list>

#include "kernels/cuda/common.cuh"

#define SHAPE_THREADS 256
#define GRID_STRIDE(i, n)                                                                          \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

// ---- moving one unit: an element, or 16 bytes of elements (VEC) --------------------------------
template <typename T, bool VEC> struct unit {
  static constexpr int N = VEC ? (int)(16 / sizeof(T)) : 1;
};
template <typename T, bool VEC> __device__ __forceinline__ void copy_unit(T *d, const T *s) {
  if constexpr (VEC)
    store16(d, load16(s));
  else
    *d = *s;
}
template <typename T, bool VEC> __device__ __forceinline__ void add_unit(T *d, const T *s) {
  if constexpr (VEC) {
    vec16<T> a = load16(d), b = load16(s);
#pragma unroll
    for (int l = 0; l < unit<T, VEC>::N; l++)
      a.v[l] = from_f<T>(to_f(a.v[l]) + to_f(b.v[l]));
    store16(d, a);
  } else {
    *d = from_f<T>(to_f(*d) + to_f(*s));
  }
}
template <typename T, bool VEC> __device__ __forceinline__ void zero_unit(T *d) {
  if constexpr (VEC) {
    vec16<T> z;
#pragma unroll
    for (int l = 0; l < unit<T, VEC>::N; l++)
      z.v[l] = from_f<T>(0.0f);
    store16(d, z);
  } else {
    *d = from_f<T>(0.0f);
  }
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }
// Whether rows of `w` elements (and every listed pointer) allow 16-byte units.
template <typename T> static bool vec_ok(int64_t w, std::initializer_list<const void *> ptrs) {
  if (w % (int64_t)(16 / sizeof(T))) return false;
  for (const void *p : ptrs)
    if (p && !aligned16(p)) return false;
  return true;
}

// Runs `launch.template operator()<VEC>()` with VEC chosen at run time.
#define SHAPE_VEC_DISPATCH(vec, ...)                                                               \
  do {                                                                                             \
    if (vec) {                                                                                     \
      constexpr bool VEC = true;                                                                   \
      __VA_ARGS__;                                                                                 \
    } else {                                                                                       \
      constexpr bool VEC = false;                                                                  \
      __VA_ARGS__;                                                                                 \
    }                                                                                              \
  } while (0)

// ---- slice_copy ---------------------------------------------------------------------------------
// Per outer index o: L elements from src + o * sstride to dst + o * dstride (or added).
template <typename T, bool VEC>
__global__ void slice_kernel(T *dst, const T *src, int64_t outer, int64_t L, int64_t sstride,
                             int64_t dstride, bool acc) {
  constexpr int U = unit<T, VEC>::N;
  int64_t lu = L / U;
  GRID_STRIDE(e, outer * lu) {
    int64_t o = e / lu, k = (e - o * lu) * U;
    T *d = dst + o * dstride + k;
    const T *s = src + o * sstride + k;
    if (acc)
      add_unit<T, VEC>(d, s);
    else
      copy_unit<T, VEC>(d, s);
  }
}

extern "C" void cuda_slice_copy(idoc_tensor *dst, int64_t dst_off, const idoc_tensor *src,
                                int64_t src_off, int dim, int64_t len, bool accumulate) {
  const char *k = "slice_copy";
  cu_on_gpu(k, dst), cu_on_gpu(k, src), cu_same_dtype(k, dst, src);
  IDOC_CHECK(dim >= 0 && dim < src->ndim && dim < dst->ndim, "cuda slice_copy: bad dim %d", dim);
  int64_t outer = idoc_outer(src, dim), inner = idoc_inner(src, dim + 1);
  int64_t sd = src->shape[dim], dd = dst->shape[dim];
  IDOC_CHECK(
      len >= 0 && src_off >= 0 && dst_off >= 0 && src_off + len <= sd && dst_off + len <= dd &&
          idoc_outer(dst, dim) == outer && idoc_inner(dst, dim + 1) == inner,
      "cuda slice_copy: slice [%lld, +%lld) does not fit", (long long)src_off, (long long)len);
  int64_t L = len * inner;
  if (outer * L == 0) return;
  IDOC_CU_DISPATCH(src->dtype, k, T, {
    T *d = (T *)dst->data + dst_off * inner;
    const T *s = (const T *)src->data + src_off * inner;
    const int64_t vn = 16 / (int64_t)sizeof(T);
    bool vec = vec_ok<T>(L, {d, s}) && (sd * inner) % vn == 0 && (dd * inner) % vn == 0;
    int64_t units = outer * (vec ? L / vn : L);
    SHAPE_VEC_DISPATCH(vec, {
      IDOC_LAUNCH((slice_kernel<T, VEC>), cu_blocks(units, SHAPE_THREADS), SHAPE_THREADS, 0,
                  idoc_cu_stream())
      (d, s, outer, L, sd * inner, dd * inner, accumulate);
    });
  });
  CUDA_LAUNCH_CHECK();
}

// ---- gathers, scatters without accumulation, zeroing --------------------------------------------
// out[i] (+)= x[idx[i]] for rows of w elements.
template <typename T, bool VEC>
__global__ void gather_kernel(T *out, const T *x, const int32_t *idx, int64_t m, int64_t w,
                              int64_t nrows, bool acc) {
  constexpr int U = unit<T, VEC>::N;
  int64_t wu = w / U;
  GRID_STRIDE(e, m * wu) {
    int64_t i = e / wu, k = (e - i * wu) * U;
    int64_t id = idx[i];
    T *d = out + i * w + k;
    if (id >= 0 && id < nrows) {
      if (acc)
        add_unit<T, VEC>(d, x + id * w + k);
      else
        copy_unit<T, VEC>(d, x + id * w + k);
    } else if (!acc) {
      zero_unit<T, VEC>(d);
    }
  }
}

// out[idx[i]] = src[i] (indices distinct, as nn/ops.h requires); src NULL: the rows are zeroed.
template <typename T, bool VEC>
__global__ void scatter_set_kernel(T *out, const T *src, const int32_t *idx, int64_t m, int64_t w,
                                   int64_t nrows) {
  constexpr int U = unit<T, VEC>::N;
  int64_t wu = w / U;
  GRID_STRIDE(e, m * wu) {
    int64_t i = e / wu, k = (e - i * wu) * U;
    int64_t id = idx[i];
    if (id < 0 || id >= nrows) continue;
    if (src)
      copy_unit<T, VEC>(out + id * w + k, src + i * w + k);
    else
      zero_unit<T, VEC>(out + id * w + k);
  }
}

static void idx_check(const char *k, const idoc_tensor *idx) {
  cu_on_gpu(k, idx), cu_dtype_is(k, idx, IDOC_I32);
  IDOC_CHECK(idoc_numel(idx) <= INT_MAX, "cuda %s: more than INT_MAX indices", k);
}

template <typename T>
static void gather_launch(T *out, const T *x, const int32_t *idx, int64_t m, int64_t w,
                          int64_t nrows, bool acc) {
  if (m * w == 0) return;
  bool vec = vec_ok<T>(w, {out, x});
  int64_t units = m * (vec ? w / (int64_t)(16 / sizeof(T)) : w);
  SHAPE_VEC_DISPATCH(vec, {
    IDOC_LAUNCH((gather_kernel<T, VEC>), cu_blocks(units, SHAPE_THREADS), SHAPE_THREADS, 0,
                idoc_cu_stream())
    (out, x, idx, m, w, nrows, acc);
  });
  CUDA_LAUNCH_CHECK();
}

template <typename T>
static void scatter_set_launch(T *out, const T *src, const int32_t *idx, int64_t m, int64_t w,
                               int64_t nrows) {
  if (m * w == 0) return;
  bool vec = vec_ok<T>(w, {out, src});
  int64_t units = m * (vec ? w / (int64_t)(16 / sizeof(T)) : w);
  SHAPE_VEC_DISPATCH(vec, {
    IDOC_LAUNCH((scatter_set_kernel<T, VEC>), cu_blocks(units, SHAPE_THREADS), SHAPE_THREADS, 0,
                idoc_cu_stream())
    (out, src, idx, m, w, nrows);
  });
  CUDA_LAUNCH_CHECK();
}

// ---- deterministic scatter-add ------------------------------------------------------------------
// The sort key of position i: its index, or -1 when the index names no row.
__device__ __forceinline__ int64_t scatter_key(const int32_t *idx, int64_t i, int64_t nrows) {
  int64_t id = idx[i];
  return id >= 0 && id < nrows ? id : -1;
}

// rank[i] += the number of positions k in this block's chunk with (key_k, k) < (key_i, i): over
// all chunks, i's place in the stable sort by key. Integer sums: order-independent.
__global__ void scatter_rank_kernel(int32_t *rank, const int32_t *idx, int64_t m, int64_t nrows,
                                    int64_t chunk) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= m) return;
  int64_t ki = scatter_key(idx, i, nrows), k0 = (int64_t)blockIdx.y * chunk;
  int64_t k1 = k0 + chunk < m ? k0 + chunk : m;
  int32_t cnt = 0;
  for (int64_t k = k0; k < k1; k++) {
    int64_t kk = scatter_key(idx, k, nrows);
    cnt += kk < ki || (kk == ki && k < i);
  }
  if (cnt) atomicAdd(&rank[i], cnt);
}

__global__ void scatter_place_kernel(int32_t *sorted, const int32_t *rank, int64_t m) {
  GRID_STRIDE(i, m) sorted[rank[i]] = (int32_t)i;
}

// One block per run of equal indices in the sorted order (the run's first position): each
// thread owns columns of the destination row and adds the run's source rows in their original
// order, starting from the row's current value.
template <typename T, bool VEC>
__global__ void scatter_add_walk_kernel(T *out, const T *src, const int32_t *idx,
                                        const int32_t *sorted, int64_t m, int64_t w,
                                        int64_t nrows) {
  constexpr int U = unit<T, VEC>::N;
  for (int64_t p = blockIdx.x; p < m; p += gridDim.x) {
    int64_t r = scatter_key(idx, sorted[p], nrows);
    if (r < 0 || (p > 0 && scatter_key(idx, sorted[p - 1], nrows) == r)) continue;
    T *o = out + r * w;
    for (int64_t j = (int64_t)threadIdx.x * U; j < w; j += (int64_t)blockDim.x * U) {
      float acc[U];
      if constexpr (VEC) {
        vec16<T> e = load16(o + j);
#pragma unroll
        for (int l = 0; l < U; l++)
          acc[l] = to_f(e.v[l]);
      } else {
        acc[0] = to_f(o[j]);
      }
      for (int64_t q = p; q < m; q++) {
        int64_t i = sorted[q];
        if (idx[i] != r) break;
        const T *s = src + i * w + j;
        if constexpr (VEC) {
          vec16<T> e = load16(s);
#pragma unroll
          for (int l = 0; l < U; l++)
            acc[l] += to_f(e.v[l]);
        } else {
          acc[0] += to_f(s[0]);
        }
      }
      if constexpr (VEC) {
        vec16<T> e;
#pragma unroll
        for (int l = 0; l < U; l++)
          e.v[l] = from_f<T>(acc[l]);
        store16(o + j, e);
      } else {
        o[j] = from_f<T>(acc[0]);
      }
    }
  }
}

// out[idx[i]] += src[i] for i in order, rows of w elements, out having nrows rows.
template <typename T>
static void scatter_add(T *out, const T *src, const int32_t *idx, int64_t m, int64_t w,
                        int64_t nrows) {
  if (m == 0 || w == 0) return;
  cudaStream_t st = idoc_cu_stream();
  int32_t *rank = (int32_t *)idoc_cu_scratch((size_t)(2 * m) * sizeof(int32_t)), *sorted = rank + m;
  CUDA_CHECK(cudaMemsetAsync(rank, 0, (size_t)m * sizeof(int32_t), st));
  int64_t chunk = (m + 65534) / 65535; // grid.y stays within its limit
  if (chunk < 1024) chunk = 1024;
  dim3 grid((unsigned)((m + SHAPE_THREADS - 1) / SHAPE_THREADS),
            (unsigned)((m + chunk - 1) / chunk));
  IDOC_LAUNCH(scatter_rank_kernel, grid, SHAPE_THREADS, 0, st)(rank, idx, m, nrows, chunk);
  CUDA_LAUNCH_CHECK();
  IDOC_LAUNCH(scatter_place_kernel, cu_blocks(m, SHAPE_THREADS), SHAPE_THREADS, 0, st)
  (sorted, rank, m);
  CUDA_LAUNCH_CHECK();
  bool vec = vec_ok<T>(w, {out, src});
  int64_t wu = vec ? w / (int64_t)(16 / sizeof(T)) : w;
  int threads = wu >= SHAPE_THREADS ? SHAPE_THREADS : (int)((wu + 31) / 32 * 32);
  int64_t cap = (int64_t)idoc_cu_sm_count() * 16;
  unsigned blocks = (unsigned)(m < cap ? m : cap);
  SHAPE_VEC_DISPATCH(vec, {
    IDOC_LAUNCH((scatter_add_walk_kernel<T, VEC>), blocks, threads, 0, st)
    (out, src, idx, sorted, m, w, nrows);
  });
  CUDA_LAUNCH_CHECK();
}

// ---- the kernels -------------------------------------------------------------------------------
extern "C" void cuda_gather_rows(idoc_tensor *out, const idoc_tensor *x, const idoc_tensor *idx,
                                 bool accumulate) {
  const char *k = "gather_rows";
  cu_on_gpu(k, out), cu_on_gpu(k, x), cu_same_dtype(k, out, x), idx_check(k, idx);
  IDOC_CHECK(x->ndim >= 1, "cuda gather_rows: x has no dims");
  int64_t m = idoc_numel(idx), w = idoc_inner(x, 1);
  IDOC_CHECK(idoc_numel(out) == m * w, "cuda gather_rows: out must have one row per index");
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    gather_launch((T *)out->data, (const T *)x->data, (const int32_t *)idx->data, m, w, x->shape[0],
                  accumulate);
  });
}

extern "C" void cuda_scatter_rows(idoc_tensor *out, const idoc_tensor *src, const idoc_tensor *idx,
                                  bool accumulate) {
  const char *k = "scatter_rows";
  cu_on_gpu(k, out), cu_on_gpu(k, src), cu_same_dtype(k, out, src), idx_check(k, idx);
  IDOC_CHECK(out->ndim >= 1, "cuda scatter_rows: out has no dims");
  int64_t m = idoc_numel(idx), w = idoc_inner(out, 1);
  IDOC_CHECK(idoc_numel(src) == m * w, "cuda scatter_rows: src must have one row per index");
  IDOC_CU_DISPATCH(out->dtype, k, T, {
    T *O = (T *)out->data;
    const T *S = (const T *)src->data;
    const int32_t *I = (const int32_t *)idx->data;
    if (accumulate)
      scatter_add(O, S, I, m, w, out->shape[0]);
    else
      scatter_set_launch(O, S, I, m, w, out->shape[0]);
  });
}

extern "C" void cuda_zero_rows(idoc_tensor *out, const idoc_tensor *idx) {
  const char *k = "zero_rows";
  cu_on_gpu(k, out), idx_check(k, idx);
  IDOC_CHECK(out->ndim >= 1, "cuda zero_rows: out has no dims");
  IDOC_CU_DISPATCH(out->dtype, k, T, {
    scatter_set_launch((T *)out->data, (const T *)NULL, (const int32_t *)idx->data, idoc_numel(idx),
                       idoc_inner(out, 1), out->shape[0]);
  });
}

extern "C" void cuda_embedding_fwd(idoc_tensor *out, const idoc_tensor *table,
                                   const idoc_tensor *ids) {
  const char *k = "embedding_fwd";
  cu_on_gpu(k, out), cu_on_gpu(k, table), cu_same_dtype(k, out, table), idx_check(k, ids);
  IDOC_CHECK(table->ndim == 2, "cuda embedding_fwd: the table must be 2-D");
  int64_t n = idoc_numel(ids), c = table->shape[1];
  IDOC_CHECK(idoc_numel(out) == n * c, "cuda embedding_fwd: out must have one row per id");
  IDOC_CU_DISPATCH(table->dtype, k, T, {
    gather_launch((T *)out->data, (const T *)table->data, (const int32_t *)ids->data, n, c,
                  table->shape[0], false);
  });
}

extern "C" void cuda_embedding_bwd(idoc_tensor *dtable, const idoc_tensor *dout,
                                   const idoc_tensor *ids) {
  const char *k = "embedding_bwd";
  cu_on_gpu(k, dtable), cu_on_gpu(k, dout), cu_same_dtype(k, dtable, dout), idx_check(k, ids);
  if (!dtable) return;
  IDOC_CHECK(dtable->ndim == 2, "cuda embedding_bwd: the table gradient must be 2-D");
  int64_t n = idoc_numel(ids), c = dtable->shape[1];
  IDOC_CHECK(idoc_numel(dout) == n * c, "cuda embedding_bwd: dout must have one row per id");
  IDOC_CU_DISPATCH(dtable->dtype, k, T, {
    scatter_add((T *)dtable->data, (const T *)dout->data, (const int32_t *)ids->data, n, c,
                dtable->shape[0]);
  });
}

// ---- transpose: [B, M, N] -> [B, N, M] through 32 x 33 shared tiles (both sides coalesced) -----
// A 1-D grid of at most 16 blocks per SM walks the B * tiles_m * tiles_n tiles.
#define TP_TILE 32
#define TP_ROWS 8

template <typename T>
__global__ void transpose_kernel(T *out, const T *x, int64_t B, int64_t M, int64_t N, bool acc) {
  IDOC_SHARED(float, tile, [TP_TILE][TP_TILE + 1]);
  int64_t tiles_m = (M + TP_TILE - 1) / TP_TILE, tiles_n = (N + TP_TILE - 1) / TP_TILE;
  int tx = threadIdx.x, ty = threadIdx.y;
  for (int64_t t = blockIdx.x; t < B * tiles_m * tiles_n; t += gridDim.x) {
    int64_t b = t / (tiles_m * tiles_n), r0 = t % (tiles_m * tiles_n);
    int64_t i0 = r0 / tiles_n * TP_TILE, j0 = r0 % tiles_n * TP_TILE;
    const T *xs = x + b * M * N;
    T *os = out + b * M * N;
    for (int r = ty; r < TP_TILE; r += TP_ROWS) { // rows i of x, columns j
      int64_t i = i0 + r, j = j0 + tx;
      if (i < M && j < N) tile[r][tx] = to_f(xs[i * N + j]);
    }
    __syncthreads();
    for (int r = ty; r < TP_TILE; r += TP_ROWS) { // rows j of out, columns i
      int64_t j = j0 + r, i = i0 + tx;
      if (i < M && j < N) {
        float v = tile[tx][r];
        os[j * M + i] = from_f<T>(acc ? to_f(os[j * M + i]) + v : v);
      }
    }
    __syncthreads(); // the next tile overwrites this one
  }
}

extern "C" void cuda_transpose(idoc_tensor *out, const idoc_tensor *x, bool accumulate) {
  const char *k = "transpose";
  cu_on_gpu(k, out), cu_on_gpu(k, x), cu_same_dtype(k, out, x);
  IDOC_CHECK(x->ndim >= 2 && idoc_numel(out) == idoc_numel(x), "cuda transpose: bad shapes");
  int64_t m = x->shape[x->ndim - 2], n = x->shape[x->ndim - 1], mn = m * n;
  int64_t b = mn > 0 ? idoc_numel(x) / mn : 0;
  if (b == 0) return;
  int64_t tiles = b * ((m + TP_TILE - 1) / TP_TILE) * ((n + TP_TILE - 1) / TP_TILE);
  int64_t cap = (int64_t)idoc_cu_sm_count() * 16;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(transpose_kernel<T>, (unsigned)(tiles < cap ? tiles : cap), dim3(TP_TILE, TP_ROWS),
                0, idoc_cu_stream())
    ((T *)out->data, (const T *)x->data, b, m, n, accumulate);
  });
  CUDA_LAUNCH_CHECK();
}
