// RMSNorm over the last dim: one warp per row (fp32 sums with shuffles), dw as a deterministic
// two-pass column reduction (no float atomics, so gradients are bit-reproducible). And the
// channel RMS norm of NCHW maps: one thread per pixel walks the channels (reads coalesced along
// the pixels), dscale one block per channel.
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

// ---- channel norm of x [B, C, H, W]: channel c of pixel p of image b is at (b C + c) P + p
// --------
#define CH_THREADS 256

template <typename T>
__global__ void rmsnorm_channels_fwd_kernel(T *y, float *rstd, const T *x, const T *scale,
                                            int64_t nb, int64_t nc, int64_t np, float eps) {
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < nb * np;
       u += (int64_t)gridDim.x * blockDim.x) {
    int64_t b = u / np, p = u % np, o = b * nc * np + p;
    float ss = 0.0f;
    for (int64_t c = 0; c < nc; c++) {
      float v = to_f(x[o + c * np]);
      ss += v * v;
    }
    float r = rsqrtf(ss / (float)nc + eps);
    rstd[u] = r;
    for (int64_t c = 0; c < nc; c++)
      y[o + c * np] = from_f<T>(to_f(x[o + c * np]) * r * to_f(scale[c]));
  }
}

// dx += r dy s - r^3 / C * x * sum_c dy s x at each pixel.
template <typename T>
__global__ void rmsnorm_channels_bwd_dx_kernel(T *dx, const T *dy, const T *x, const T *scale,
                                               const float *rstd, int64_t nb, int64_t nc,
                                               int64_t np) {
  for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < nb * np;
       u += (int64_t)gridDim.x * blockDim.x) {
    int64_t b = u / np, p = u % np, o = b * nc * np + p;
    float dot = 0.0f;
    for (int64_t c = 0; c < nc; c++)
      dot += to_f(dy[o + c * np]) * to_f(scale[c]) * to_f(x[o + c * np]);
    float r = rstd[u], kx = r * r * r * dot / (float)nc;
    for (int64_t c = 0; c < nc; c++) {
      int64_t e = o + c * np;
      dx[e] = from_f<T>(to_f(dx[e]) + r * to_f(dy[e]) * to_f(scale[c]) - kx * to_f(x[e]));
    }
  }
}

// dscale[c] += sum over b, p of dy x r: one block per channel, a fixed-order block sum.
template <typename T>
__global__ void rmsnorm_channels_dscale_kernel(T *dscale, const T *dy, const T *x,
                                               const float *rstd, int64_t nb, int64_t nc,
                                               int64_t np) {
  for (int64_t c = blockIdx.x; c < nc; c += gridDim.x) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
      const T *xb = x + (b * nc + c) * np, *db = dy + (b * nc + c) * np;
      const float *r = rstd + b * np;
      for (int64_t p = threadIdx.x; p < np; p += blockDim.x)
        s += to_f(db[p]) * to_f(xb[p]) * r[p];
    }
    s = block_sum(s);
    if (threadIdx.x == 0) dscale[c] = from_f<T>(to_f(dscale[c]) + s);
  }
}

static void ch_check(const char *k, const idoc_tensor *x, const idoc_tensor *scale,
                     const idoc_tensor *rstd) {
  cu_on_gpu(k, x), cu_on_gpu(k, scale), cu_on_gpu(k, rstd);
  cu_same_dtype(k, x, scale), cu_dtype_is(k, rstd, IDOC_F32);
  IDOC_CHECK(x->ndim == 4 && idoc_numel(scale) == x->shape[1] &&
                 idoc_numel(rstd) == x->shape[0] * x->shape[2] * x->shape[3],
             "cuda %s: x must be [B, C, H, W], scale [C] and rstd [B, H*W]", k);
}

extern "C" void cuda_rmsnorm_channels_fwd(idoc_tensor *y, idoc_tensor *rstd, const idoc_tensor *x,
                                          const idoc_tensor *scale, float eps) {
  const char *k = "rmsnorm_channels_fwd";
  ch_check(k, x, scale, rstd);
  cu_on_gpu(k, y), cu_same_dtype(k, y, x);
  int64_t nb = x->shape[0], nc = x->shape[1], np = x->shape[2] * x->shape[3];
  if (nb * np == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(rmsnorm_channels_fwd_kernel<T>, cu_blocks(nb * np, CH_THREADS), CH_THREADS, 0,
                idoc_cu_stream())
    ((T *)y->data, (float *)rstd->data, (const T *)x->data, (const T *)scale->data, nb, nc, np,
     eps);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_rmsnorm_channels_bwd(idoc_tensor *dx, idoc_tensor *dscale,
                                          const idoc_tensor *dy, const idoc_tensor *x,
                                          const idoc_tensor *scale, const idoc_tensor *rstd) {
  const char *k = "rmsnorm_channels_bwd";
  ch_check(k, x, scale, rstd);
  cu_on_gpu(k, dx), cu_on_gpu(k, dscale), cu_on_gpu(k, dy);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, dx, x), cu_same_dtype(k, dscale, x);
  int64_t nb = x->shape[0], nc = x->shape[1], np = x->shape[2] * x->shape[3];
  if (nb * np == 0 || nc == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    const T *D = (const T *)dy->data, *X = (const T *)x->data;
    const float *R = (const float *)rstd->data;
    if (dx) {
      IDOC_LAUNCH(rmsnorm_channels_bwd_dx_kernel<T>, cu_blocks(nb * np, CH_THREADS), CH_THREADS, 0,
                  idoc_cu_stream())
      ((T *)dx->data, D, X, (const T *)scale->data, R, nb, nc, np);
      CUDA_LAUNCH_CHECK();
    }
    if (dscale) {
      unsigned blocks = (unsigned)(nc < 65535 ? nc : 65535);
      IDOC_LAUNCH(rmsnorm_channels_dscale_kernel<T>, blocks, CH_THREADS, 0, idoc_cu_stream())
      ((T *)dscale->data, D, X, R, nb, nc, np);
      CUDA_LAUNCH_CHECK();
    }
  });
}
