// conv2d (stride 1, k x k, zero padding, optional bias) and conv_transpose2d (PyTorch
// semantics): output shapes, forward values against direct double-precision loops (the gather
// definition for conv2d, the scatter definition for the transposed conv), finite-difference
// gradient checks over several shapes with odd sizes, and the accumulating backward kernels.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

typedef struct {
  int B, Ci, H, W, Co, k, pad, stride, opad;
  bool bias;
} cfg;

static idoc_tensor *f_conv(idoc_ctx *c, idoc_tensor **in, void *ud) {
  const cfg *g = ud;
  return idoc_conv2d(c, in[0], in[1], g->bias ? in[2] : NULL, g->pad);
}
static idoc_tensor *f_convt(idoc_ctx *c, idoc_tensor **in, void *ud) {
  const cfg *g = ud;
  return idoc_conv_transpose2d(c, in[0], in[1], g->bias ? in[2] : NULL, g->stride, g->pad, g->opad);
}

// y[n,o,i,j] = b[o] + sum_{c,kh,kw} x[n,c,i-p+kh,j-p+kw] w[o,c,kh,kw]
static double *ref_conv(const cfg *g, const float *x, const float *w, const float *b, int Ho,
                        int Wo) {
  int k = g->k;
  double *y = calloc((size_t)g->B * g->Co * Ho * Wo, sizeof *y);
  for (int n = 0; n < g->B; n++)
    for (int o = 0; o < g->Co; o++)
      for (int i = 0; i < Ho; i++)
        for (int j = 0; j < Wo; j++) {
          double s = b ? b[o] : 0;
          for (int ci = 0; ci < g->Ci; ci++)
            for (int kh = 0; kh < k; kh++)
              for (int kw = 0; kw < k; kw++) {
                int yy = i - g->pad + kh, xx = j - g->pad + kw;
                if (yy < 0 || yy >= g->H || xx < 0 || xx >= g->W) continue;
                s += (double)x[((n * g->Ci + ci) * g->H + yy) * g->W + xx] *
                     w[((o * g->Ci + ci) * k + kh) * k + kw];
              }
          y[((n * g->Co + o) * Ho + i) * Wo + j] = s;
        }
  return y;
}

// out[n, o, i*s - p + kh, j*s - p + kw] += x[n,c,i,j] * w[c,o,kh,kw]  (+ b[o] everywhere)
static double *ref_convt(const cfg *g, const float *x, const float *w, const float *b, int Ho,
                         int Wo) {
  int k = g->k;
  double *y = calloc((size_t)g->B * g->Co * Ho * Wo, sizeof *y);
  for (int n = 0; n < g->B; n++)
    for (int o = 0; o < g->Co; o++)
      for (int q = 0; q < Ho * Wo; q++)
        y[(n * g->Co + o) * Ho * Wo + q] = b ? b[o] : 0;
  for (int n = 0; n < g->B; n++)
    for (int ci = 0; ci < g->Ci; ci++)
      for (int i = 0; i < g->H; i++)
        for (int j = 0; j < g->W; j++)
          for (int o = 0; o < g->Co; o++)
            for (int kh = 0; kh < k; kh++)
              for (int kw = 0; kw < k; kw++) {
                int yy = i * g->stride - g->pad + kh, xx = j * g->stride - g->pad + kw;
                if (yy < 0 || yy >= Ho || xx < 0 || xx >= Wo) continue;
                y[((n * g->Co + o) * Ho + yy) * Wo + xx] +=
                    (double)x[((n * g->Ci + ci) * g->H + i) * g->W + j] *
                    w[((ci * g->Co + o) * k + kh) * k + kw];
              }
  return y;
}

static double max_err(const float *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

// Forward value, shape and gradient check of one configuration; returns the forward max error.
static double run(const cfg *g, bool transposed, bool gradcheck) {
  int64_t xs[4] = {g->B, g->Ci, g->H, g->W}, bs = g->Co;
  int64_t ws[4] = {transposed ? g->Ci : g->Co, transposed ? g->Co : g->Ci, g->k, g->k};
  idoc_tensor *x = gc_input(A, &R, 4, xs, -1, 1, true), *w = gc_input(A, &R, 4, ws, -1, 1, true);
  idoc_tensor *b = gc_input(A, &R, 1, &bs, -1, 1, true), *p[3] = {x, w, b};
  int Ho, Wo;
  if (transposed) {
    Ho = (g->H - 1) * g->stride - 2 * g->pad + g->k + g->opad;
    Wo = (g->W - 1) * g->stride - 2 * g->pad + g->k + g->opad;
  } else {
    Ho = g->H + 2 * g->pad - g->k + 1;
    Wo = g->W + 2 * g->pad - g->k + 1;
  }
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *y = (transposed ? f_convt : f_conv)(c, p, (void *)g);
  T_CHECK(y->ndim == 4 && y->shape[0] == g->B && y->shape[1] == g->Co && y->shape[2] == Ho &&
              y->shape[3] == Wo,
          "output shape [%lld,%lld,%lld,%lld], want [%d,%d,%d,%d]", (long long)y->shape[0],
          (long long)y->shape[1], (long long)y->shape[2], (long long)y->shape[3], g->B, g->Co, Ho,
          Wo);
  double *ref = (transposed ? ref_convt : ref_conv)(g, IDOC_F(x), IDOC_F(w),
                                                    g->bias ? IDOC_F(b) : NULL, Ho, Wo);
  double e = max_err(IDOC_F(y), ref, idoc_numel(y));
  char nm[96];
  snprintf(nm, sizeof nm, "%s B%d C%d->%d %dx%d k%d s%d p%d op%d%s",
           transposed ? "conv_transpose2d" : "conv2d", g->B, g->Ci, g->Co, g->H, g->W, g->k,
           g->stride, g->pad, g->opad, g->bias ? " +b" : "");
  printf("%-52s -> %dx%d forward max err %.3g\n", nm, Ho, Wo, e);
  T_CHECK(e < 1e-5 * sqrt((double)g->Ci * g->k * g->k), "%s forward max err %.3g", nm, e);
  free(ref);
  idoc_ctx_free(c);
  if (gradcheck) GC_EXPECT(nm, transposed ? f_convt : f_conv, (void *)g, p, g->bias ? 3 : 2);
  return e;
}

static void test_conv2d(void) {
  const cfg cs[] = {
      {2, 3, 5, 7, 4, 3, 1, 1, 0, true},  // 3x3 "same", odd sizes
      {1, 1, 1, 1, 1, 3, 1, 1, 0, true},  // a single pixel: only the kernel centre sees data
      {1, 2, 6, 5, 3, 1, 0, 1, 0, false}, // 1x1
      {1, 3, 4, 6, 2, 3, 0, 1, 0, true},  // "valid" (no padding) -> 2x4
      {2, 2, 5, 4, 3, 5, 2, 1, 0, false}, // 5x5 same
      {1, 2, 3, 3, 2, 3, 2, 1, 0, true},  // padding larger than "same" -> 5x5
      {1, 8, 9, 9, 8, 3, 1, 1, 0, true},  // decoder-like channel counts
  };
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
    run(&cs[i], false, true);
}

static void test_conv_transpose2d(void) {
  const cfg cs[] = {
      {2, 3, 3, 4, 5, 3, 1, 2, 1, true},  // the heatmap upsampler: k3 s2 p1 op1 -> 6x8
      {2, 3, 3, 4, 5, 2, 0, 2, 0, false}, // SAM: k2 s2 p0 -> 6x8
      {1, 2, 4, 4, 3, 2, 0, 2, 0, true},  // SAM 4 -> 8
      {1, 2, 3, 5, 3, 3, 0, 1, 0, true},  // stride 1: the adjoint of a "valid" conv -> 5x7
      {1, 2, 3, 3, 2, 3, 0, 2, 0, true},  // k3 s2 p0 -> 7x7 (overlapping taps)
      {1, 2, 3, 2, 2, 4, 1, 2, 0, false}, // k4 s2 p1 -> 6x4
      {1, 1, 1, 1, 2, 3, 1, 2, 1, true},  // 1x1 input -> 2x2
      {1, 2, 5, 3, 2, 3, 1, 3, 2, true},  // stride 3, output_padding 2 -> 15x9
  };
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
    run(&cs[i], true, true);
  // The decoder's real sizes: 18 -> 36 (k3 s2 p1 op1) and SAM's 4 -> 8 (k2 s2); forward values
  // on all of them, gradient check (sampled probes) on 18 -> 36.
  cfg up = {1, 4, 18, 18, 3, 3, 1, 2, 1, true}, sam = {2, 3, 4, 4, 2, 2, 0, 2, 0, true};
  run(&up, true, true);
  run(&sam, true, false);
}

// Backward kernels accumulate into what is there and skip NULL outputs.
static void test_accumulate(void) {
  for (int t = 0; t < 2; t++) {
    bool tr = t == 1;
    int64_t xs[4] = {2, 3, 5, 4}, ws[4] = {tr ? 3 : 4, tr ? 4 : 3, 3, 3}, bs = 4;
    int64_t ys[4] = {2, 4, tr ? 10 : 5, tr ? 8 : 4};
    idoc_tensor *x = gc_input(A, &R, 4, xs, -1, 1, false),
                *w = gc_input(A, &R, 4, ws, -1, 1, false);
    idoc_tensor *dy = gc_input(A, &R, 4, ys, -1, 1, false);
    idoc_tensor *g1[3], *g2[3];
    const idoc_tensor *like[3] = {x, w, NULL};
    idoc_tensor *bt = idoc_tensor_1d(A, IDOC_F32, bs);
    like[2] = bt;
    for (int i = 0; i < 3; i++) {
      g1[i] = idoc_tensor_zeros_like(A, like[i]);
      g2[i] = idoc_tensor_like(A, like[i]);
      idoc_tensor_fill(g2[i], 0.25f);
    }
    if (tr) {
      cpu_conv_transpose2d_bwd(g1[0], g1[1], g1[2], dy, x, w, 2, 1);
      cpu_conv_transpose2d_bwd(g2[0], NULL, NULL, dy, x, w, 2, 1);
      cpu_conv_transpose2d_bwd(NULL, g2[1], NULL, dy, x, w, 2, 1);
      cpu_conv_transpose2d_bwd(NULL, NULL, g2[2], dy, x, w, 2, 1);
    } else {
      cpu_conv2d_bwd(g1[0], g1[1], g1[2], dy, x, w, 1);
      cpu_conv2d_bwd(g2[0], NULL, NULL, dy, x, w, 1);
      cpu_conv2d_bwd(NULL, g2[1], NULL, dy, x, w, 1);
      cpu_conv2d_bwd(NULL, NULL, g2[2], dy, x, w, 1);
    }
    double e = 0;
    for (int i = 0; i < 3; i++)
      for (int64_t j = 0; j < idoc_numel(g1[i]); j++)
        e = fmax(e, fabs(IDOC_F(g2[i])[j] - 0.25f - IDOC_F(g1[i])[j]));
    T_CHECK(e < 1e-5, "%s backward accumulates (err %.3g)", tr ? "conv_transpose2d" : "conv2d", e);
  }
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 22);
  idoc_rng_seed(&R, 11);
  test_conv2d();
  test_conv_transpose2d();
  test_accumulate();
  idoc_arena_free(A);
  return t_summary("test_grad_conv");
}
