// LayerNorm over the last dim, w and b optional: one warp per row, two passes over the row in
// fp32 (the mean, then the centred sum of squares: no E[x^2] - E[x]^2 cancellation); dw and db
// as deterministic column reductions (colsum_accumulate: no float atomics).
#include "kernels/cuda/common.cuh"

#define LN_ROWS_PER_BLOCK 8 // warps per 256-thread block

template <typename T>
__global__ void layernorm_fwd_kernel(T *y, float *mean, float *rstd, const T *x, const T *w,
                                     const T *b, int64_t rows, int64_t C, float eps) {
  int64_t r = (int64_t)blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= rows) return; // the whole warp leaves together
  const T *xr = x + r * C;
  float s = 0.0f;
  for (int64_t j = lane; j < C; j += 32)
    s += to_f(xr[j]);
  float mu = warp_sum(s) / (float)C, q = 0.0f;
  for (int64_t j = lane; j < C; j += 32) {
    float d = to_f(xr[j]) - mu;
    q += d * d;
  }
  float rs = rsqrtf(warp_sum(q) / (float)C + eps);
  if (lane == 0) mean[r] = mu, rstd[r] = rs;
  T *yr = y + r * C;
  for (int64_t j = lane; j < C; j += 32) {
    float h = (to_f(xr[j]) - mu) * rs;
    yr[j] = from_f<T>((w ? h * to_f(w[j]) : h) + (b ? to_f(b[j]) : 0.0f));
  }
}

// xh = (x - mean) r, g = dy w (dy without w): dx += r (g - mean(g) - xh mean(g xh)).
template <typename T>
__global__ void layernorm_bwd_dx_kernel(T *dx, const T *dy, const T *x, const T *w,
                                        const float *mean, const float *rstd, int64_t rows,
                                        int64_t C) {
  int64_t r = (int64_t)blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const T *xr = x + r * C, *dr = dy + r * C;
  float mu = mean[r], rs = rstd[r], sg = 0.0f, sgx = 0.0f;
  for (int64_t j = lane; j < C; j += 32) {
    float g = w ? to_f(dr[j]) * to_f(w[j]) : to_f(dr[j]);
    sg += g;
    sgx += g * ((to_f(xr[j]) - mu) * rs);
  }
  float mg = warp_sum(sg) / (float)C, mgx = warp_sum(sgx) / (float)C;
  T *gr = dx + r * C;
  for (int64_t j = lane; j < C; j += 32) {
    float g = w ? to_f(dr[j]) * to_f(w[j]) : to_f(dr[j]), h = (to_f(xr[j]) - mu) * rs;
    gr[j] = from_f<T>(to_f(gr[j]) + rs * (g - mg - h * mgx));
  }
}

template <typename T> struct ln_dw_term { // dy xh
  const T *dy, *x;
  const float *mean, *rstd;
  int64_t C;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(dy[r * C + c]) * ((to_f(x[r * C + c]) - mean[r]) * rstd[r]);
  }
};
template <typename T> struct ln_db_term {
  const T *dy;
  int64_t C;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(dy[r * C + c]);
  }
};

static unsigned ln_blocks(int64_t rows) {
  return (unsigned)((rows + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK);
}

static void ln_check(const char *k, const idoc_tensor *x, const idoc_tensor *w,
                     const idoc_tensor *b, const idoc_tensor *mean, const idoc_tensor *rstd,
                     int64_t *rows, int64_t *C) {
  cu_on_gpu(k, x), cu_on_gpu(k, w), cu_on_gpu(k, b), cu_on_gpu(k, mean), cu_on_gpu(k, rstd);
  cu_same_dtype(k, x, w), cu_same_dtype(k, x, b);
  cu_dtype_is(k, mean, IDOC_F32), cu_dtype_is(k, rstd, IDOC_F32);
  IDOC_CHECK(x->ndim >= 1, "cuda %s: x has no dims", k);
  *C = x->shape[x->ndim - 1];
  *rows = *C ? idoc_numel(x) / *C : 0;
  IDOC_CHECK((!w || idoc_numel(w) == *C) && (!b || idoc_numel(b) == *C) &&
                 idoc_numel(mean) == *rows && idoc_numel(rstd) == *rows,
             "cuda %s: w/b must have the last dim's size, mean/rstd one entry per row", k);
}

extern "C" void cuda_layernorm_fwd(idoc_tensor *y, idoc_tensor *mean, idoc_tensor *rstd,
                                   const idoc_tensor *x, const idoc_tensor *w, const idoc_tensor *b,
                                   float eps) {
  const char *k = "layernorm_fwd";
  int64_t rows, C;
  ln_check(k, x, w, b, mean, rstd, &rows, &C);
  cu_on_gpu(k, y), cu_same_dtype(k, y, x);
  if (rows == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(layernorm_fwd_kernel<T>, ln_blocks(rows), 32 * LN_ROWS_PER_BLOCK, 0,
                idoc_cu_stream())
    ((T *)y->data, (float *)mean->data, (float *)rstd->data, (const T *)x->data,
     w ? (const T *)w->data : NULL, b ? (const T *)b->data : NULL, rows, C, eps);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_layernorm_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                                   const idoc_tensor *dy, const idoc_tensor *x,
                                   const idoc_tensor *w, const idoc_tensor *mean,
                                   const idoc_tensor *rstd) {
  const char *k = "layernorm_bwd";
  int64_t rows, C;
  ln_check(k, x, w, NULL, mean, rstd, &rows, &C);
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, db), cu_on_gpu(k, dy);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, x),
      cu_same_dtype(k, db, x);
  if (rows == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    const T *D = (const T *)dy->data, *X = (const T *)x->data;
    const float *M = (const float *)mean->data, *R = (const float *)rstd->data;
    if (dx) {
      IDOC_LAUNCH(layernorm_bwd_dx_kernel<T>, ln_blocks(rows), 32 * LN_ROWS_PER_BLOCK, 0,
                  idoc_cu_stream())
      ((T *)dx->data, D, X, w ? (const T *)w->data : NULL, M, R, rows, C);
      CUDA_LAUNCH_CHECK();
    }
    if (dw) colsum_accumulate((T *)dw->data, ln_dw_term<T>{D, X, M, R, C}, rows, C);
    if (db) colsum_accumulate((T *)db->data, ln_db_term<T>{D, C}, rows, C);
  });
}
