// Data movement kernels: slices along a dim, row gathers/scatters, batched transposes.
#include "kernels/cpu/check.h"
#include "kernels/ops.h"

// dst and src viewed as [outer, dim, inner]; copies len entries of `dim` from src_off to
// dst_off (or adds them).
void cpu_slice_copy(idoc_tensor *dst, int64_t dst_off, const idoc_tensor *src, int64_t src_off,
                    int dim, int64_t len, bool accumulate) {
  CPU_F32("slice_copy", dst, src);
  int64_t outer = idoc_outer(src, dim), inner = idoc_inner(src, dim + 1);
  int64_t sd = src->shape[dim], dd = dst->shape[dim];
  const float *S = IDOC_F(src);
  float *D = IDOC_F(dst);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < outer; o++) {
    const float *s = S + (o * sd + src_off) * inner;
    float *d = D + (o * dd + dst_off) * inner;
    if (accumulate)
      for (int64_t i = 0; i < len * inner; i++)
        d[i] += s[i];
    else
      memcpy(d, s, (size_t)(len * inner) * sizeof(float));
  }
}

// out[i] (+)= x[idx[i]] with rows of idoc_inner(x, 1) floats.
void cpu_gather_rows(idoc_tensor *out, const idoc_tensor *x, const idoc_tensor *idx,
                     bool accumulate) {
  CPU_F32("gather_rows", out, x);
  CPU_I32("gather_rows", idx);
  int64_t m = idoc_numel(idx), w = idoc_inner(x, 1), n = x->shape[0];
  const int32_t *I = IDOC_I(idx);
  const float *X = IDOC_F(x);
  float *O = IDOC_F(out);
  for (int64_t i = 0; i < m; i++) // checked up front: no aborts from inside a parallel region
    IDOC_CHECK(I[i] >= 0 && I[i] < n, "gather_rows: index %d outside [0, %lld)", I[i],
               (long long)n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; i++) {
    const float *s = X + (int64_t)I[i] * w;
    float *d = O + i * w;
    if (accumulate)
      for (int64_t j = 0; j < w; j++)
        d[j] += s[j];
    else
      memcpy(d, s, (size_t)w * sizeof(float));
  }
}

// out[idx[i]] (+)= src[i]. With accumulate, repeated indices add up: threads own blocks of
// columns (so no two touch the same element) and walk all rows in order (deterministic sums).
#define SCATTER_COLS 32
void cpu_scatter_rows(idoc_tensor *out, const idoc_tensor *src, const idoc_tensor *idx,
                      bool accumulate) {
  CPU_F32("scatter_rows", out, src);
  CPU_I32("scatter_rows", idx);
  int64_t m = idoc_numel(idx), w = idoc_inner(out, 1), n = out->shape[0];
  const int32_t *I = IDOC_I(idx);
  const float *S = IDOC_F(src);
  float *O = IDOC_F(out);
  for (int64_t i = 0; i < m; i++)
    IDOC_CHECK(I[i] >= 0 && I[i] < n, "scatter_rows: index %d outside [0, %lld)", I[i],
               (long long)n);
  if (!accumulate) { // indices are distinct here (nn/ops.h), so rows can go in parallel
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
      memcpy(O + (int64_t)I[i] * w, S + i * w, (size_t)w * sizeof(float));
    return;
  }
  int64_t nb = (w + SCATTER_COLS - 1) / SCATTER_COLS;
#pragma omp parallel for schedule(static)
  for (int64_t jb = 0; jb < nb; jb++) {
    int64_t j0 = jb * SCATTER_COLS, j1 = j0 + SCATTER_COLS < w ? j0 + SCATTER_COLS : w;
    for (int64_t i = 0; i < m; i++) {
      const float *s = S + i * w;
      float *o = O + (int64_t)I[i] * w;
      for (int64_t j = j0; j < j1; j++)
        o[j] += s[j];
    }
  }
}

void cpu_zero_rows(idoc_tensor *out, const idoc_tensor *idx) {
  CPU_F32("zero_rows", out);
  CPU_I32("zero_rows", idx);
  int64_t m = idoc_numel(idx), w = idoc_inner(out, 1), n = out->shape[0];
  const int32_t *I = IDOC_I(idx);
  float *O = IDOC_F(out);
  for (int64_t i = 0; i < m; i++) {
    IDOC_CHECK(I[i] >= 0 && I[i] < n, "zero_rows: index %d outside [0, %lld)", I[i], (long long)n);
    memset(O + (int64_t)I[i] * w, 0, (size_t)w * sizeof(float));
  }
}

// [B, M, N] -> [B, N, M] (2-D is B = 1), in TILE x TILE tiles so both the strided reads and
// the writes stay in cache; threads own output tiles.
#define TILE 32
void cpu_transpose(idoc_tensor *out, const idoc_tensor *x, bool accumulate) {
  CPU_F32("transpose", out, x);
  int64_t m = x->shape[x->ndim - 2], n = x->shape[x->ndim - 1], mn = m * n;
  int64_t b = mn > 0 ? idoc_numel(x) / mn : 0;
  int64_t tn = (n + TILE - 1) / TILE, tm = (m + TILE - 1) / TILE;
  const float *X = IDOC_F(x);
  float *O = IDOC_F(out);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t k = 0; k < b; k++)
    for (int64_t jt = 0; jt < tn; jt++) {
      const float *xs = X + k * mn;
      float *os = O + k * mn;
      int64_t j0 = jt * TILE, j1 = j0 + TILE < n ? j0 + TILE : n;
      for (int64_t i0 = 0; i0 < tm * TILE; i0 += TILE) {
        int64_t i1 = i0 + TILE < m ? i0 + TILE : m;
        for (int64_t j = j0; j < j1; j++) {
          float *o = os + j * m;
          if (accumulate)
            for (int64_t i = i0; i < i1; i++)
              o[i] += xs[i * n + j];
          else
            for (int64_t i = i0; i < i1; i++)
              o[i] = xs[i * n + j];
        }
      }
    }
}
