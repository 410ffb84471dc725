// Convolutions over NCHW maps as GEMMs. im2col gathers col[(c,kh,kw), (a,b)] =
// img[c, a*s - p + kh, b*s - p + kw] over an Ha x Wa grid (zero outside the image); col2im is
// its adjoint (scatter-add). A stride-1 conv is im2col + GEMM (backward: GEMM + col2im); a
// transposed conv is GEMM + col2im (backward: im2col + GEMM), with the same two helpers.
#include "kernels/cpu/check.h"
#include "kernels/cpu/gemm.h"
#include "kernels/ops.h"

// Columns b of the Wa grid whose tap b*s - p + kw lands inside [0, W): [lo, hi).
static inline int64_t ceil_div(int64_t a, int64_t b) {
  return a >= 0 ? (a + b - 1) / b : -(-a / b);
}
static inline void tap_range(int64_t W, int s, int p, int kw, int64_t Wa, int64_t *lo,
                             int64_t *hi) {
  int64_t l = ceil_div(p - kw, s), h = ceil_div(W + p - kw, s);
  l = l < 0 ? 0 : l > Wa ? Wa : l;
  h = h < l ? l : h > Wa ? Wa : h;
  *lo = l;
  *hi = h;
}

static void im2col(const float *img, int64_t C, int64_t H, int64_t W, int k, int s, int p,
                   int64_t Ha, int64_t Wa, float *col) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t c = 0; c < C; c++)
    for (int kk = 0; kk < k * k; kk++) {
      int kh = kk / k, kw = kk % k;
      int64_t lo, hi;
      tap_range(W, s, p, kw, Wa, &lo, &hi);
      float *dst = col + (c * k * k + kk) * Ha * Wa;
      for (int64_t a = 0; a < Ha; a++) {
        int64_t y = a * s - p + kh;
        float *d = dst + a * Wa;
        if (y < 0 || y >= H) {
          memset(d, 0, (size_t)Wa * sizeof *d);
          continue;
        }
        const float *row = img + (c * H + y) * W;
        int64_t off = kw - p; // column b's tap is row[b * s + off]
        for (int64_t b = 0; b < lo; b++)
          d[b] = 0.0f;
        if (s == 1 && hi > lo)
          memcpy(d + lo, row + lo + off, (size_t)(hi - lo) * sizeof *d);
        else
          for (int64_t b = lo; b < hi; b++)
            d[b] = row[b * s + off];
        for (int64_t b = hi; b < Wa; b++)
          d[b] = 0.0f;
      }
    }
}

// img[c, a*s - p + kh, b*s - p + kw] += col[(c,kh,kw), (a,b)]; threads own channels (no races).
static void col2im(const float *col, int64_t C, int64_t H, int64_t W, int k, int s, int p,
                   int64_t Ha, int64_t Wa, float *img) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++)
    for (int kk = 0; kk < k * k; kk++) {
      int kh = kk / k, kw = kk % k;
      int64_t lo, hi;
      tap_range(W, s, p, kw, Wa, &lo, &hi);
      const float *src = col + (c * k * k + kk) * Ha * Wa;
      for (int64_t a = 0; a < Ha; a++) {
        int64_t y = a * s - p + kh;
        if (y < 0 || y >= H) continue;
        float *row = img + (c * H + y) * W;
        int64_t off = kw - p;
        const float *sr = src + a * Wa;
        for (int64_t b = lo; b < hi; b++)
          row[b * s + off] += sr[b];
      }
    }
}

// Scratch reused across calls (grows until the largest layer fits; no malloc in steady state).
static float *scratch(size_t n) {
  static float *buf;
  static size_t cap;
  if (n > cap) {
    buf = idoc_xrealloc(buf, n * sizeof *buf);
    cap = n;
  }
  return buf;
}

static void add_bias(float *y, const float *b, int64_t C, int64_t HW) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++)
    for (int64_t i = 0; i < HW; i++)
      y[c * HW + i] += b[c];
}

static void bias_grad(float *db, const float *dy, int64_t B, int64_t C, int64_t HW) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t n = 0; n < B; n++)
      for (int64_t i = 0; i < HW; i++)
        s += dy[(n * C + c) * HW + i];
    db[c] += (float)s;
  }
}

void cpu_conv2d_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                    const idoc_tensor *b, int pad) {
  CPU_F32("conv2d_fwd", y, x, w, b);
  int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t Co = w->shape[0], Ho = y->shape[2], Wo = y->shape[3];
  int k = (int)w->shape[2];
  int64_t K = Ci * k * k, HWo = Ho * Wo;
  float *col = scratch((size_t)(K * HWo));
  for (int64_t n = 0; n < B; n++) {
    float *yn = IDOC_F(y) + n * Co * HWo;
    im2col(IDOC_F(x) + n * Ci * H * W, Ci, H, W, k, 1, pad, Ho, Wo, col);
    idoc_sgemm(false, false, Co, HWo, K, 1.0f, IDOC_F(w), K, col, HWo, 0.0f, yn, HWo);
    if (b) add_bias(yn, IDOC_F(b), Co, HWo);
  }
}

void cpu_conv2d_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db, const idoc_tensor *dy,
                    const idoc_tensor *x, const idoc_tensor *w, int pad) {
  CPU_F32("conv2d_bwd", dx, dw, db, dy, x, w);
  int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t Co = w->shape[0], Ho = dy->shape[2], Wo = dy->shape[3];
  int k = (int)w->shape[2];
  int64_t K = Ci * k * k, HWo = Ho * Wo;
  float *col = scratch((size_t)(K * HWo));
  for (int64_t n = 0; n < B; n++) {
    const float *dyn = IDOC_F(dy) + n * Co * HWo;
    if (dw) { // dW[Co, K] += dy[Co, HWo] col^T
      im2col(IDOC_F(x) + n * Ci * H * W, Ci, H, W, k, 1, pad, Ho, Wo, col);
      idoc_sgemm(false, true, Co, K, HWo, 1.0f, dyn, HWo, col, HWo, 1.0f, IDOC_F(dw), K);
    }
    if (dx) { // dcol[K, HWo] = W^T dy, then scatter into dx
      idoc_sgemm(true, false, K, HWo, Co, 1.0f, IDOC_F(w), K, dyn, HWo, 0.0f, col, HWo);
      col2im(col, Ci, H, W, k, 1, pad, Ho, Wo, IDOC_F(dx) + n * Ci * H * W);
    }
  }
  if (db) bias_grad(IDOC_F(db), IDOC_F(dy), B, Co, HWo);
}

void cpu_conv_transpose2d_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                              const idoc_tensor *b, int stride, int pad) {
  CPU_F32("conv_transpose2d_fwd", y, x, w, b);
  int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t Co = w->shape[1], Ho = y->shape[2], Wo = y->shape[3];
  int k = (int)w->shape[2];
  int64_t K = Co * k * k, HW = H * W;
  float *col = scratch((size_t)(K * HW));
  idoc_tensor_zero(y);
  for (int64_t n = 0; n < B; n++) {
    float *yn = IDOC_F(y) + n * Co * Ho * Wo;
    // col[(o,kh,kw), (i,j)] = sum_c W[c, (o,kh,kw)] x[c, (i,j)]
    idoc_sgemm(true, false, K, HW, Ci, 1.0f, IDOC_F(w), K, IDOC_F(x) + n * Ci * HW, HW, 0.0f, col,
               HW);
    col2im(col, Co, Ho, Wo, k, stride, pad, H, W, yn);
    if (b) add_bias(yn, IDOC_F(b), Co, Ho * Wo);
  }
}

void cpu_conv_transpose2d_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                              const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *w,
                              int stride, int pad) {
  CPU_F32("conv_transpose2d_bwd", dx, dw, db, dy, x, w);
  int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t Co = w->shape[1], Ho = dy->shape[2], Wo = dy->shape[3];
  int k = (int)w->shape[2];
  int64_t K = Co * k * k, HW = H * W;
  float *col = scratch((size_t)(K * HW));
  for (int64_t n = 0; n < B; n++) {
    im2col(IDOC_F(dy) + n * Co * Ho * Wo, Co, Ho, Wo, k, stride, pad, H, W, col);
    if (dx) // dx[Ci, HW] += W[Ci, K] dcol[K, HW]
      idoc_sgemm(false, false, Ci, HW, K, 1.0f, IDOC_F(w), K, col, HW, 1.0f,
                 IDOC_F(dx) + n * Ci * HW, HW);
    if (dw) // dW[Ci, K] += x[Ci, HW] dcol^T
      idoc_sgemm(false, true, Ci, K, HW, 1.0f, IDOC_F(x) + n * Ci * HW, HW, col, HW, 1.0f,
                 IDOC_F(dw), K);
  }
  if (db) bias_grad(IDOC_F(db), IDOC_F(dy), B, Co, Ho * Wo);
}
