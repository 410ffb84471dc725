// Gradient checks and forward values (against the formulas in double) for rmsnorm, layernorm
// and rmsnorm_channels at shapes beyond test_grad_ops: rows wider than the kernels' 32-column
// gradient chunks, 3-D inputs, layernorm without weight or bias, channel maps with more pixels
// than the 64-pixel chunk, single-pixel maps; backward kernels accumulate into given gradients.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

enum { LN_FULL, LN_NO_BIAS, LN_NO_WEIGHT };

static idoc_tensor *f_rms(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_rmsnorm(c, in[0], in[1], 1e-6f);
}
static idoc_tensor *f_ln(idoc_ctx *c, idoc_tensor **in, void *ud) {
  int mode = *(int *)ud;
  return idoc_layernorm(c, in[0], mode == LN_NO_WEIGHT ? NULL : in[1],
                        mode == LN_NO_BIAS ? NULL : in[2], 1e-5f);
}
static idoc_tensor *f_rmsc(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_rmsnorm_channels(c, in[0], in[1], 1e-6f);
}

static double worst_rms = 0, worst_ln = 0, worst_rmsc = 0;

// rows x C: y = x / sqrt(mean(x^2) + eps) * w  and  (x - mu) / sqrt(var + eps) * w + b
static void check_rows(idoc_tensor *x, idoc_tensor *w, idoc_tensor *b, int mode) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  int64_t C = x->shape[x->ndim - 1], n = idoc_numel(x) / C;
  idoc_tensor *y = idoc_rmsnorm(c, x, w, 1e-6f);
  idoc_tensor *z = f_ln(c, (idoc_tensor *[]){x, w, b}, &mode);
  const float *X = IDOC_F(x), *W = IDOC_F(w), *B = IDOC_F(b);
  double er = 0, el = 0;
  for (int64_t i = 0; i < n; i++) {
    double ss = 0, mu = 0, var = 0;
    for (int64_t j = 0; j < C; j++) {
      ss += (double)X[i * C + j] * X[i * C + j];
      mu += X[i * C + j];
    }
    mu /= (double)C;
    for (int64_t j = 0; j < C; j++)
      var += (X[i * C + j] - mu) * (X[i * C + j] - mu);
    var /= (double)C;
    for (int64_t j = 0; j < C; j++) {
      double r = X[i * C + j] / sqrt(ss / (double)C + 1e-6) * W[j];
      double h = (X[i * C + j] - mu) / sqrt(var + 1e-5);
      double l = (mode == LN_NO_WEIGHT ? h : h * W[j]) + (mode == LN_NO_BIAS ? 0 : B[j]);
      er = fmax(er, fabs(r - IDOC_F(y)[i * C + j]));
      el = fmax(el, fabs(l - IDOC_F(z)[i * C + j]) / fmax(1.0, fabs(l)));
    }
  }
  T_CHECK(er < 1e-5, "rmsnorm forward C=%lld: %.3g", (long long)C, er);
  T_CHECK(el < 1e-5, "layernorm forward C=%lld mode %d: %.3g", (long long)C, mode, el);
  worst_rms = fmax(worst_rms, er);
  worst_ln = fmax(worst_ln, el);
  idoc_ctx_free(c);
}

static void test_rows(void) {
  static const int64_t shapes[4][3] = {{5, 7, 0}, {2, 3, 70}, {1, 1, 33}, {3, 1, 2}};
  for (int s = 0; s < 4; s++) {
    int nd = shapes[s][2] ? 3 : 2;
    int64_t C = shapes[s][nd - 1];
    idoc_tensor *x = gc_input(A, &R, nd, shapes[s], -2, 2, true);
    idoc_tensor *w = gc_input(A, &R, 1, &C, 0.5, 1.5, true),
                *b = gc_input(A, &R, 1, &C, -1, 1, true);
    idoc_tensor *p[3] = {x, w, b};
    char name[64];
    snprintf(name, sizeof name, "rmsnorm C=%lld", (long long)C);
    GC_EXPECT(name, f_rms, NULL, p, 2);
    for (int mode = 0; mode < 3; mode++) {
      snprintf(name, sizeof name, "layernorm C=%lld mode %d", (long long)C, mode);
      w->requires_grad = mode != LN_NO_WEIGHT;
      b->requires_grad = mode != LN_NO_BIAS;
      GC_EXPECT(name, f_ln, &mode, p, 3);
      check_rows(x, w, b, mode);
    }
    w->requires_grad = b->requires_grad = true;
  }
  { // layernorm of rows with a large common offset stays accurate (variance in double)
    int64_t s[2] = {4, 37}, C = 37;
    idoc_tensor *x = gc_input(A, &R, 2, s, -1, 1, false);
    for (int64_t i = 0; i < 4 * 37; i++)
      IDOC_F(x)[i] += 300.0f;
    idoc_tensor *w = gc_input(A, &R, 1, &C, 0.5, 1.5, false),
                *b = gc_input(A, &R, 1, &C, -1, 1, false);
    check_rows(x, w, b, LN_FULL);
  }
}

static void test_channels(void) {
  static const int64_t shapes[3][4] = {{2, 7, 9, 11}, {1, 3, 1, 1}, {3, 1, 5, 2}};
  for (int s = 0; s < 3; s++) {
    const int64_t *sh = shapes[s];
    idoc_tensor *x = gc_input(A, &R, 4, sh, -2, 2, true);
    idoc_tensor *sc = gc_input(A, &R, 1, &sh[1], 0.5, 1.5, true), *p[2] = {x, sc};
    char name[64];
    snprintf(name, sizeof name, "rmsnorm_channels C=%lld HW=%lld", (long long)sh[1],
             (long long)(sh[2] * sh[3]));
    GC_EXPECT(name, f_rmsc, NULL, p, 2);
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
    idoc_tensor *y = idoc_rmsnorm_channels(c, x, sc, 1e-6f);
    int64_t nc = sh[1], np = sh[2] * sh[3];
    double e = 0;
    for (int64_t b = 0; b < sh[0]; b++)
      for (int64_t q = 0; q < np; q++) {
        double ss = 0;
        for (int64_t ch = 0; ch < nc; ch++)
          ss += pow(IDOC_F(x)[(b * nc + ch) * np + q], 2);
        for (int64_t ch = 0; ch < nc; ch++) {
          int64_t i = (b * nc + ch) * np + q;
          e = fmax(
              e, fabs(IDOC_F(x)[i] / sqrt(ss / (double)nc + 1e-6) * IDOC_F(sc)[ch] - IDOC_F(y)[i]));
        }
      }
    T_CHECK(e < 1e-5, "%s forward: %.3g", name, e);
    worst_rmsc = fmax(worst_rmsc, e);
    idoc_ctx_free(c);
  }
}

// Backward kernels add into existing gradients and skip NULL outputs independently.
static void test_accumulate(void) {
  int64_t s[2] = {6, 40}, C = 40, n = 6, cs[4] = {2, 5, 3, 30};
  idoc_tensor *x = gc_input(A, &R, 2, s, -1, 1, false), *dy = gc_input(A, &R, 2, s, -1, 1, false);
  idoc_tensor *w = gc_input(A, &R, 1, &C, 0.5, 1.5, false),
              *bb = gc_input(A, &R, 1, &C, -1, 1, false);
  idoc_tensor *y = idoc_tensor_like(A, x), *mean = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor *rstd = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor *ref[3] = {idoc_tensor_zeros_like(A, x), idoc_tensor_zeros_like(A, w),
                         idoc_tensor_zeros_like(A, w)};
  idoc_tensor *acc[3] = {idoc_tensor_like(A, x), idoc_tensor_like(A, w), idoc_tensor_like(A, w)};
  double e = 0;
  for (int kind = 0; kind < 3; kind++) {
    idoc_tensor *xx = x, *dd = dy, *ww = w, *r = rstd;
    if (kind == 2) { // channel norm on a [2, 5, 3, 30] map
      xx = gc_input(A, &R, 4, cs, -1, 1, false);
      dd = gc_input(A, &R, 4, cs, -1, 1, false);
      ww = gc_input(A, &R, 1, &cs[1], 0.5, 1.5, false);
      r = idoc_tensor_2d(A, IDOC_F32, 2, 90);
      ref[0] = idoc_tensor_zeros_like(A, xx);
      ref[1] = idoc_tensor_zeros_like(A, ww);
      acc[0] = idoc_tensor_like(A, xx);
      acc[1] = idoc_tensor_like(A, ww);
      cpu_rmsnorm_channels_fwd(idoc_tensor_like(A, xx), r, xx, ww, 1e-6f);
    } else if (kind == 0) {
      cpu_rmsnorm_fwd(y, r, xx, ww, 1e-6f);
    } else {
      cpu_layernorm_fwd(y, mean, r, xx, ww, bb, 1e-5f);
    }
    int n_out = kind == 1 ? 3 : 2;
    for (int i = 0; i < n_out; i++)
      idoc_tensor_zero(ref[i]);
    for (int only = -1; only < n_out; only++) {
      idoc_tensor *o[3] = {NULL, NULL, NULL};
      for (int i = 0; i < n_out; i++)
        if (only < 0 || only == i) {
          o[i] = only < 0 ? ref[i] : acc[i];
          if (only >= 0) idoc_tensor_fill(acc[i], 0.5f);
        }
      if (kind == 0) cpu_rmsnorm_bwd(o[0], o[1], dd, xx, ww, r);
      if (kind == 1) cpu_layernorm_bwd(o[0], o[1], o[2], dd, xx, ww, mean, r);
      if (kind == 2) cpu_rmsnorm_channels_bwd(o[0], o[1], dd, xx, ww, r);
      if (only < 0) continue;
      for (int64_t i = 0; i < idoc_numel(acc[only]); i++)
        e = fmax(e, fabs(IDOC_F(acc[only])[i] - 0.5 - IDOC_F(ref[only])[i]));
    }
  }
  T_CHECK(e < 1e-6, "norm backward kernels accumulate and skip NULL outputs: %.3g", e);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 3);
  test_rows();
  test_channels();
  test_accumulate();
  printf("forward max err: rmsnorm %.3g, layernorm %.3g (relative), rmsnorm_channels %.3g\n",
         worst_rms, worst_ln, worst_rmsc);
  idoc_arena_free(A);
  return t_summary("test_grad_norm");
}
