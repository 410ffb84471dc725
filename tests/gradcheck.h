// Finite-difference gradient checks for differentiable ops (CPU, fp32).
//
// gc_check(name, fn, ud, inputs, n) runs y = fn(inputs), seeds dy with fixed random weights R
// (so the implied loss is L = sum(R * y), accumulated in double) and compares the analytic
// gradient of every input that requires grad against central differences of L, on every element
// (or a seeded sample of at most GC_MAX_PROBES elements for big inputs). A probe passes when
// |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|). Returns the number of
// failing probes (0 = pass) and prints the worst error per input.
#pragma once
#include "nn/ops.h"
#include "tests/test.h"

#ifndef GC_MAX_PROBES
#define GC_MAX_PROBES 96
#endif

typedef idoc_tensor *(*gc_fn)(idoc_ctx *c, idoc_tensor **in, void *ud);

typedef struct {
  double h;    // finite-difference step (relative to max(1, |x|))
  double atol; // absolute tolerance
  double rtol; // relative tolerance
} gc_tol;
static const gc_tol GC_DEFAULT = {1e-3, 2e-3, 2e-2};

// An input tensor for a gradient check: f32 on the CPU, filled with U(lo, hi), owned by `a`.
static inline idoc_tensor *gc_input(idoc_arena *a, idoc_rng *r, int ndim, const int64_t *shape,
                                    float lo, float hi, bool requires_grad) {
  idoc_tensor *t = idoc_tensor_new(a, IDOC_F32, ndim, shape);
  idoc_tensor_uniform(t, r, lo, hi);
  t->requires_grad = requires_grad;
  return t;
}

static inline double gc_loss(idoc_ctx *c, gc_fn fn, void *ud, idoc_tensor **in, const float *R) {
  idoc_arena_mark m = idoc_arena_get_mark(c->act);
  bool prev = idoc_no_grad_begin(c);
  idoc_tensor *y = fn(c, in, ud);
  idoc_grad_restore(c, prev);
  int64_t n = idoc_numel(y);
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)R[i] * IDOC_F(y)[i];
  idoc_arena_reset_to(c->act, m);
  return s;
}

static inline int gc_check_tol(const char *name, gc_fn fn, void *ud, idoc_tensor **in, int n_in,
                               gc_tol tol) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, (size_t)16 << 20);
  idoc_rng rng;
  idoc_rng_seed(&rng, 1234);
  for (int i = 0; i < n_in; i++)
    in[i]->grad = NULL;

  idoc_tensor *y = fn(c, in, ud);
  int64_t ny = idoc_numel(y);
  float *R = idoc_xmalloc((size_t)ny * sizeof *R);
  for (int64_t i = 0; i < ny; i++)
    R[i] = (float)(2.0 * idoc_rng_uniform(&rng) - 1.0);
  int bad = 0;
  if (!y->requires_grad) {
    fprintf(stderr, "gradcheck %s: output does not require grad\n", name);
    bad = 1;
    goto done;
  }
  idoc_tensor_from_host(idoc_grad(c, y), R);
  idoc_backward_range(c, 0);

  for (int i = 0; i < n_in; i++) {
    idoc_tensor *x = in[i];
    if (!x->requires_grad) continue;
    int64_t n = idoc_numel(x);
    if (!x->grad) {
      fprintf(stderr, "gradcheck %s: input %d got no gradient\n", name, i);
      bad++;
      continue;
    }
    float *ga = idoc_xmalloc((size_t)n * sizeof *ga);
    memcpy(ga, x->grad->data, (size_t)n * sizeof *ga);
    idoc_tensor *saved_grad = x->grad;
    x->grad = NULL; // forward-only evaluations below must not see it
    int64_t probes = n < GC_MAX_PROBES ? n : GC_MAX_PROBES;
    double worst = 0;
    int64_t worst_j = -1;
    int fails = 0;
    for (int64_t p = 0; p < probes; p++) {
      int64_t j = n <= GC_MAX_PROBES ? p : (int64_t)idoc_rng_below(&rng, (uint64_t)n);
      float *xv = IDOC_F(x) + j, x0 = *xv;
      double h = tol.h * (fabs(x0) > 1 ? fabs(x0) : 1);
      *xv = (float)(x0 + h);
      double hp = (double)*xv - x0; // the step actually taken after rounding to f32
      double lp = gc_loss(c, fn, ud, in, R);
      *xv = (float)(x0 - h);
      double hm = x0 - (double)*xv;
      double lm = gc_loss(c, fn, ud, in, R);
      *xv = x0;
      double num = (lp - lm) / (hp + hm), an = ga[j];
      double err = fabs(an - num), lim = tol.atol + tol.rtol * fmax(fabs(an), fabs(num));
      if (err > lim) {
        if (fails < 3)
          fprintf(stderr, "gradcheck %s: input %d elem %lld: analytic %.6g numeric %.6g\n", name, i,
                  (long long)j, an, num);
        fails++;
      }
      if (err / (lim > 0 ? lim : 1) > worst) {
        worst = err / (lim > 0 ? lim : 1);
        worst_j = j;
      }
    }
    printf("gradcheck %-28s input %d: %lld probes, worst err/tol %.3f (elem %lld)%s\n", name, i,
           (long long)probes, worst, (long long)worst_j, fails ? "  FAILED" : "");
    bad += fails;
    (void)saved_grad; // lived in the context's arena, freed below
    free(ga);
  }
done:
  for (int i = 0; i < n_in; i++)
    in[i]->grad = NULL;
  free(R);
  idoc_ctx_free(c);
  return bad;
}

static inline int gc_check(const char *name, gc_fn fn, void *ud, idoc_tensor **in, int n_in) {
  return gc_check_tol(name, fn, ud, in, n_in, GC_DEFAULT);
}

// Asserts through the test harness.
#define GC_EXPECT(name, fn, ud, in, n_in)                                                          \
  T_CHECK(gc_check(name, fn, ud, in, n_in) == 0, "gradient check %s", name)
#define GC_EXPECT_TOL(name, fn, ud, in, n_in, tol)                                                 \
  T_CHECK(gc_check_tol(name, fn, ud, in, n_in, tol) == 0, "gradient check %s", name)
