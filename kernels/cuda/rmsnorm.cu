// RMSNorm over the last dim: one warp per row (fp32 sums with shuffles), dw as a deterministic
// two-pass column reduction (no float atomics, so gradients are bit-reproducible).
#include "kernels/cuda/common.cuh"

#define ROWS_PER_BLOCK 8 // warps per 256-thread block

template <typename T>
__global__ void rmsnorm_fwd_kernel(T *y, float *rstd, const T *x, const T *w, int64_t rows,
                                   int64_t C, float eps) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= rows) return; // the whole warp leaves together
  const T *xr = x + r * C;
  float ss = 0.0f;
  for (int64_t j = lane; j < C; j += 32) {
    float v = to_f(xr[j]);
    ss += v * v;
  }
  float rs = rsqrtf(warp_sum(ss) / (float)C + eps);
  if (lane == 0) rstd[r] = rs;
  T *yr = y + r * C;
  for (int64_t j = lane; j < C; j += 32)
    yr[j] = from_f<T>(to_f(xr[j]) * rs * to_f(w[j]));
}

// dx_j += r dy_j w_j - r^3 / C * x_j * sum_k dy_k w_k x_k
template <typename T>
__global__ void rmsnorm_bwd_dx_kernel(T *dx, const T *dy, const T *x, const T *w, const float *rstd,
                                      int64_t rows, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const T *xr = x + r * C, *dr = dy + r * C;
  float dot = 0.0f;
  for (int64_t j = lane; j < C; j += 32)
    dot += to_f(dr[j]) * to_f(w[j]) * to_f(xr[j]);
  dot = warp_sum(dot);
  float rs = rstd[r], kx = rs * rs * rs * dot / (float)C;
  T *g = dx + r * C;
  for (int64_t j = lane; j < C; j += 32)
    g[j] = from_f<T>(to_f(g[j]) + rs * to_f(dr[j]) * to_f(w[j]) - kx * to_f(xr[j]));
}

// dw_j = sum over rows of dy_j x_j r
template <typename T> struct rms_dw_term {
  const T *dy, *x;
  const float *rstd;
  int64_t C;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(dy[r * C + c]) * to_f(x[r * C + c]) * rstd[r];
  }
};

static unsigned row_blocks(int64_t rows) {
  return (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

extern "C" void cuda_rmsnorm_fwd(idoc_tensor *y, idoc_tensor *rstd, const idoc_tensor *x,
                                 const idoc_tensor *w, float eps) {
  const char *k = "rmsnorm_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, rstd), cu_on_gpu(k, x), cu_on_gpu(k, w);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, w), cu_dtype_is(k, rstd, IDOC_F32);
  int64_t C = x->shape[x->ndim - 1], rows = C ? idoc_numel(x) / C : 0;
  if (rows == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(rmsnorm_fwd_kernel<T>, row_blocks(rows), 32 * ROWS_PER_BLOCK, 0, idoc_cu_stream())
    ((T *)y->data, (float *)rstd->data, (const T *)x->data, (const T *)w->data, rows, C, eps);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_rmsnorm_bwd(idoc_tensor *dx, idoc_tensor *dw, const idoc_tensor *dy,
                                 const idoc_tensor *x, const idoc_tensor *w,
                                 const idoc_tensor *rstd) {
  const char *k = "rmsnorm_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, dy), cu_on_gpu(k, x), cu_on_gpu(k, w),
      cu_on_gpu(k, rstd);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, x, w), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, w);
  cu_dtype_is(k, rstd, IDOC_F32);
  int64_t C = x->shape[x->ndim - 1], rows = C ? idoc_numel(x) / C : 0;
  if (rows == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    if (dx) {
      IDOC_LAUNCH(rmsnorm_bwd_dx_kernel<T>, row_blocks(rows), 32 * ROWS_PER_BLOCK, 0,
                  idoc_cu_stream())
      ((T *)dx->data, (const T *)dy->data, (const T *)x->data, (const T *)w->data,
       (const float *)rstd->data, rows, C);
      CUDA_LAUNCH_CHECK();
    }
    if (dw)
      colsum_accumulate(
          (T *)dw->data,
          rms_dw_term<T>{(const T *)dy->data, (const T *)x->data, (const float *)rstd->data, C},
          rows, C);
  });
}
