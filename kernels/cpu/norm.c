// Normalization kernels (fp32): RMSNorm and LayerNorm over the last dim, and the channel-wise
// RMS norm of NCHW maps. Row statistics are accumulated in double; rstd/mean are saved as f32.
//
// Parameter gradients (dw, db, dscale) are sums over rows: threads own disjoint column chunks so
// backward never races and the result does not depend on the thread count.
#include <math.h>

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

#define COL_CHUNK 32 // columns per thread-owned chunk of a parameter gradient
#define PIX_CHUNK 64 // contiguous pixels processed together by the channel norm

void cpu_rmsnorm_fwd(idoc_tensor *y, idoc_tensor *rstd, const idoc_tensor *x, const idoc_tensor *w,
                     float eps) {
  CPU_F32("rmsnorm_fwd", y, rstd, x, w);
  int64_t c = x->shape[x->ndim - 1], n = c ? idoc_numel(x) / c : 0;
  const float *X = IDOC_F(x), *W = IDOC_F(w);
  float *Y = IDOC_F(y), *R = IDOC_F(rstd);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *xr = X + i * c;
    double ss = 0;
    for (int64_t j = 0; j < c; j++)
      ss += (double)xr[j] * xr[j];
    float r = (float)(1.0 / sqrt(ss / (double)c + eps));
    R[i] = r;
    for (int64_t j = 0; j < c; j++)
      Y[i * c + j] = xr[j] * r * W[j];
  }
}

// y = x r w, r = (mean(x^2) + eps)^-1/2:
//   dx_j = r (dy_j w_j) - r^3 / C * x_j * sum_k dy_k w_k x_k,   dw_j = sum_rows dy_j x_j r.
void cpu_rmsnorm_bwd(idoc_tensor *dx, idoc_tensor *dw, const idoc_tensor *dy, const idoc_tensor *x,
                     const idoc_tensor *w, const idoc_tensor *rstd) {
  CPU_F32("rmsnorm_bwd", dx, dw, dy, x, w, rstd);
  int64_t c = x->shape[x->ndim - 1], n = c ? idoc_numel(x) / c : 0;
  const float *X = IDOC_F(x), *W = IDOC_F(w), *D = IDOC_F(dy), *R = IDOC_F(rstd);
  if (dx) {
    float *DX = IDOC_F(dx);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const float *xr = X + i * c, *dr = D + i * c;
      double dot = 0;
      for (int64_t j = 0; j < c; j++)
        dot += (double)dr[j] * W[j] * xr[j];
      double r = R[i];
      float k = (float)(r * r * r * dot / (double)c);
      for (int64_t j = 0; j < c; j++)
        DX[i * c + j] += (float)r * dr[j] * W[j] - k * xr[j];
    }
  }
  if (dw) {
    float *DW = IDOC_F(dw);
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < c; j0 += COL_CHUNK) {
      int64_t m = c - j0 < COL_CHUNK ? c - j0 : COL_CHUNK;
      double acc[COL_CHUNK] = {0};
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++)
          acc[j] += (double)D[i * c + j0 + j] * X[i * c + j0 + j] * R[i];
      for (int64_t j = 0; j < m; j++)
        DW[j0 + j] += (float)acc[j];
    }
  }
}

void cpu_layernorm_fwd(idoc_tensor *y, idoc_tensor *mean, idoc_tensor *rstd, const idoc_tensor *x,
                       const idoc_tensor *w, const idoc_tensor *b, float eps) {
  CPU_F32("layernorm_fwd", y, mean, rstd, x, w, b);
  int64_t c = x->shape[x->ndim - 1], n = c ? idoc_numel(x) / c : 0;
  const float *X = IDOC_F(x), *W = w ? IDOC_F(w) : NULL, *B = b ? IDOC_F(b) : NULL;
  float *Y = IDOC_F(y), *M = IDOC_F(mean), *R = IDOC_F(rstd);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *xr = X + i * c;
    double s = 0;
    for (int64_t j = 0; j < c; j++)
      s += xr[j];
    double mu = s / (double)c, v = 0;
    for (int64_t j = 0; j < c; j++)
      v += ((double)xr[j] - mu) * ((double)xr[j] - mu);
    double r = 1.0 / sqrt(v / (double)c + eps);
    M[i] = (float)mu;
    R[i] = (float)r;
    for (int64_t j = 0; j < c; j++) { // centred in double: f32 x - f32 mean cancels badly
      float h = (float)(((double)xr[j] - mu) * r);
      Y[i * c + j] = (W ? h * W[j] : h) + (B ? B[j] : 0.0f);
    }
  }
}

// xh = (x - mean) r, g = dy w:  dx = r (g - mean(g) - xh mean(g xh)),
//   dw = sum_rows dy xh, db = sum_rows dy.
void cpu_layernorm_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db, const idoc_tensor *dy,
                       const idoc_tensor *x, const idoc_tensor *w, const idoc_tensor *mean,
                       const idoc_tensor *rstd) {
  CPU_F32("layernorm_bwd", dx, dw, db, dy, x, w, mean, rstd);
  int64_t c = x->shape[x->ndim - 1], n = c ? idoc_numel(x) / c : 0;
  const float *X = IDOC_F(x), *W = w ? IDOC_F(w) : NULL, *D = IDOC_F(dy);
  const float *M = IDOC_F(mean), *R = IDOC_F(rstd);
  if (dx) {
    float *DX = IDOC_F(dx);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const float *xr = X + i * c, *dr = D + i * c;
      double sg = 0, sgx = 0;
      for (int64_t j = 0; j < c; j++) {
        double g = W ? (double)dr[j] * W[j] : dr[j];
        sg += g;
        sgx += g * ((double)xr[j] - M[i]) * R[i];
      }
      float mg = (float)(sg / (double)c), mgx = (float)(sgx / (double)c);
      for (int64_t j = 0; j < c; j++) {
        float g = W ? dr[j] * W[j] : dr[j], h = (xr[j] - M[i]) * R[i];
        DX[i * c + j] += R[i] * (g - mg - h * mgx);
      }
    }
  }
  if (dw || db) {
    float *DW = dw ? IDOC_F(dw) : NULL, *DB = db ? IDOC_F(db) : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < c; j0 += COL_CHUNK) {
      int64_t m = c - j0 < COL_CHUNK ? c - j0 : COL_CHUNK;
      double aw[COL_CHUNK] = {0}, ab[COL_CHUNK] = {0};
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
          int64_t e = i * c + j0 + j;
          aw[j] += (double)D[e] * ((X[e] - M[i]) * R[i]);
          ab[j] += D[e];
        }
      for (int64_t j = 0; j < m; j++) {
        if (DW) DW[j0 + j] += (float)aw[j];
        if (DB) DB[j0 + j] += (float)ab[j];
      }
    }
  }
}

// Channel norm of x [B, C, H, W]: channel c of pixel p of image b is at (b C + c) P + p with
// P = H W. Pixels are taken PIX_CHUNK at a time so the loops over channels stay contiguous.
void cpu_rmsnorm_channels_fwd(idoc_tensor *y, idoc_tensor *rstd, const idoc_tensor *x,
                              const idoc_tensor *scale, float eps) {
  CPU_F32("rmsnorm_channels_fwd", y, rstd, x, scale);
  int64_t nb = x->shape[0], nc = x->shape[1], np = x->shape[2] * x->shape[3];
  int64_t chunks = (np + PIX_CHUNK - 1) / PIX_CHUNK;
  const float *X = IDOC_F(x), *S = IDOC_F(scale);
  float *Y = IDOC_F(y), *R = IDOC_F(rstd);
#pragma omp parallel for schedule(static)
  for (int64_t u = 0; u < nb * chunks; u++) {
    int64_t b = u / chunks, p0 = (u % chunks) * PIX_CHUNK;
    int64_t m = np - p0 < PIX_CHUNK ? np - p0 : PIX_CHUNK;
    const float *xb = X + b * nc * np + p0;
    float *yb = Y + b * nc * np + p0, r[PIX_CHUNK];
    double ss[PIX_CHUNK] = {0};
    for (int64_t ch = 0; ch < nc; ch++)
      for (int64_t p = 0; p < m; p++)
        ss[p] += (double)xb[ch * np + p] * xb[ch * np + p];
    for (int64_t p = 0; p < m; p++) {
      r[p] = (float)(1.0 / sqrt(ss[p] / (double)nc + eps));
      R[b * np + p0 + p] = r[p];
    }
    for (int64_t ch = 0; ch < nc; ch++)
      for (int64_t p = 0; p < m; p++)
        yb[ch * np + p] = xb[ch * np + p] * r[p] * S[ch];
  }
}

// As rmsnorm_bwd with the sum over channels at each pixel:
//   dx = r dy s - r^3 / C * x * sum_c dy s x,   dscale[c] = sum_{b,p} dy x r.
void cpu_rmsnorm_channels_bwd(idoc_tensor *dx, idoc_tensor *dscale, const idoc_tensor *dy,
                              const idoc_tensor *x, const idoc_tensor *scale,
                              const idoc_tensor *rstd) {
  CPU_F32("rmsnorm_channels_bwd", dx, dscale, dy, x, scale, rstd);
  int64_t nb = x->shape[0], nc = x->shape[1], np = x->shape[2] * x->shape[3];
  int64_t chunks = (np + PIX_CHUNK - 1) / PIX_CHUNK;
  const float *X = IDOC_F(x), *S = IDOC_F(scale), *D = IDOC_F(dy), *R = IDOC_F(rstd);
  if (dx) {
    float *DX = IDOC_F(dx);
#pragma omp parallel for schedule(static)
    for (int64_t u = 0; u < nb * chunks; u++) {
      int64_t b = u / chunks, p0 = (u % chunks) * PIX_CHUNK;
      int64_t m = np - p0 < PIX_CHUNK ? np - p0 : PIX_CHUNK, o = b * nc * np + p0;
      const float *xb = X + o, *db = D + o, *r = R + b * np + p0;
      float *gb = DX + o, k[PIX_CHUNK];
      double dot[PIX_CHUNK] = {0};
      for (int64_t ch = 0; ch < nc; ch++)
        for (int64_t p = 0; p < m; p++)
          dot[p] += (double)db[ch * np + p] * S[ch] * xb[ch * np + p];
      for (int64_t p = 0; p < m; p++)
        k[p] = (float)((double)r[p] * r[p] * r[p] * dot[p] / (double)nc);
      for (int64_t ch = 0; ch < nc; ch++)
        for (int64_t p = 0; p < m; p++)
          gb[ch * np + p] += r[p] * db[ch * np + p] * S[ch] - k[p] * xb[ch * np + p];
    }
  }
  if (dscale) {
    float *DS = IDOC_F(dscale);
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nc; ch++) {
      double acc = 0;
      for (int64_t b = 0; b < nb; b++) {
        const float *xb = X + (b * nc + ch) * np, *db = D + (b * nc + ch) * np, *r = R + b * np;
        for (int64_t p = 0; p < np; p++)
          acc += (double)db[p] * xb[p] * r[p];
      }
      DS[ch] += (float)acc;
    }
  }
}
