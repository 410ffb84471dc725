// reshape, concat, slice, gather_rows, scatter_rows and transpose: values against hand-built
// expectations, finite-difference gradient checks over several shapes (odd sizes, repeated
// gather indices), reshape's gradient sharing, and the shape kernels' accumulate conventions.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

static idoc_tensor *in_(int nd, const int64_t *s, bool g) {
  return gc_input(A, &R, nd, s, -1, 1, g);
}
// 0, 1, 2, ... so expected values can be written down by hand.
static idoc_tensor *iota(int nd, const int64_t *s, float start) {
  idoc_tensor *t = idoc_tensor_new(A, IDOC_F32, nd, s);
  for (int64_t i = 0; i < idoc_numel(t); i++)
    IDOC_F(t)[i] = start + (float)i;
  return t;
}
static idoc_tensor *idx_(int n, const int32_t *v) {
  idoc_tensor *t = idoc_tensor_1d(A, IDOC_I32, n);
  memcpy(t->data, v, (size_t)n * sizeof *v);
  return t;
}
static bool equals(const idoc_tensor *t, const float *want, int64_t n) {
  if (idoc_numel(t) != n) return false;
  for (int64_t i = 0; i < n; i++)
    if (IDOC_F(t)[i] != want[i]) return false;
  return true;
}
static bool shape_is(const idoc_tensor *t, int nd, const int64_t *s) {
  if (t->ndim != nd) return false;
  for (int i = 0; i < nd; i++)
    if (t->shape[i] != s[i]) return false;
  return true;
}

// ---- reshape --------------------------------------------------------------------------------
static idoc_tensor *f_reshape_twice(idoc_ctx *c, idoc_tensor **in, void *ud) {
  // x used through two views and a nonlinear product: the gradients must add up
  idoc_tensor *r = idoc_reshape(c, in[0], 2, (int64_t[]){5, 3});
  idoc_tensor *q = idoc_reshape(c, in[0], 3, (int64_t[]){1, 5, 3});
  return idoc_add(c, idoc_mul(c, r, r), idoc_reshape(c, q, 2, (int64_t[]){5, 3}));
}
static idoc_tensor *f_reshape_mixed(idoc_ctx *c, idoc_tensor **in, void *ud) {
  // x is consumed directly (recorded before the view) and through a view
  idoc_tensor *s = idoc_scale(c, in[0], 3.0f);
  idoc_tensor *r = idoc_reshape(c, in[0], 1, (int64_t[]){15});
  return idoc_mul(c, idoc_reshape(c, s, 1, (int64_t[]){15}), r);
}

static void test_reshape(void) {
  int64_t s[2] = {3, 5};
  idoc_tensor *x = in_(2, s, true), *p[1] = {x};
  GC_EXPECT("reshape (two views)", f_reshape_twice, NULL, p, 1);
  GC_EXPECT("reshape (direct use + view)", f_reshape_mixed, NULL, p, 1);

  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 16);
  idoc_tensor *y = idoc_reshape(c, x, 3, (int64_t[]){5, 1, 3});
  T_CHECK(y->data == x->data && shape_is(y, 3, (int64_t[]){5, 1, 3}) && y->requires_grad,
          "reshape is a recorded view");
  // The first gradient of x is dy's storage itself (no copy), with x's shape.
  idoc_tensor *dy = idoc_grad(c, y);
  idoc_tensor_uniform(dy, &R, -1, 1);
  x->grad = NULL;
  idoc_backward_range(c, 0);
  T_CHECK(x->grad && x->grad->data == dy->data && shape_is(x->grad, 2, s),
          "reshape's gradient shares dy");
  // An existing gradient is accumulated into.
  idoc_ctx_reset(c);
  y = idoc_reshape(c, x, 1, (int64_t[]){15});
  dy = idoc_grad(c, y);
  idoc_tensor_fill(dy, 2.0f);
  x->grad = idoc_tensor_zeros_like(c->act, x);
  idoc_tensor_fill(x->grad, 0.5f);
  idoc_backward_range(c, 0);
  bool ok = true;
  for (int i = 0; i < 15; i++)
    ok &= IDOC_F(x->grad)[i] == 2.5f;
  T_CHECK(ok, "reshape accumulates into an existing gradient");
  x->grad = NULL;
  // No grad mode / no grad input: a plain view, nothing recorded.
  idoc_ctx_reset(c);
  idoc_tensor *z = iota(1, (int64_t[]){6}, 0);
  idoc_tensor *v = idoc_reshape(c, z, 2, (int64_t[]){2, 3});
  T_CHECK(c->n_nodes == 0 && !v->requires_grad && v->data == z->data, "reshape without grad");
  idoc_ctx_free(c);
}

// ---- concat / slice -------------------------------------------------------------------------
static idoc_tensor *f_concat(idoc_ctx *c, idoc_tensor **in, void *ud) {
  int *u = ud; // {dim, n}
  return idoc_concat(c, in, u[1], u[0]);
}
static idoc_tensor *f_slice(idoc_ctx *c, idoc_tensor **in, void *ud) {
  const int64_t *u = ud; // {dim, start, len}
  return idoc_slice(c, in[0], (int)u[0], u[1], u[2]);
}

static void test_concat_slice(void) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 16);
  // Hand-built: a = [[0,1,2],[3,4,5]], b = [[10,11,12]], d = [[20],[21]]
  idoc_tensor *a = iota(2, (int64_t[]){2, 3}, 0), *b = iota(2, (int64_t[]){1, 3}, 10);
  idoc_tensor *d = iota(2, (int64_t[]){2, 1}, 20);
  idoc_tensor *ab[2] = {a, b}, *ad[2] = {a, d}, *one[1] = {a};
  idoc_tensor *y0 = idoc_concat(c, ab, 2, 0), *y1 = idoc_concat(c, ad, 2, 1);
  T_CHECK(shape_is(y0, 2, (int64_t[]){3, 3}) &&
              equals(y0, (float[]){0, 1, 2, 3, 4, 5, 10, 11, 12}, 9),
          "concat dim 0");
  T_CHECK(shape_is(y1, 2, (int64_t[]){2, 4}) && equals(y1, (float[]){0, 1, 2, 20, 3, 4, 5, 21}, 8),
          "concat dim 1");
  T_CHECK(equals(idoc_concat(c, one, 1, 1), (float[]){0, 1, 2, 3, 4, 5}, 6), "concat of one");
  // x = iota [2, 3, 4]: slices along each dim
  idoc_tensor *x = iota(3, (int64_t[]){2, 3, 4}, 0);
  T_CHECK(equals(idoc_slice(c, x, 0, 1, 1),
                 (float[]){12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}, 12),
          "slice dim 0");
  T_CHECK(shape_is(idoc_slice(c, x, 1, 1, 2), 3, (int64_t[]){2, 2, 4}) &&
              equals(idoc_slice(c, x, 1, 1, 2),
                     (float[]){4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23}, 16),
          "slice dim 1");
  T_CHECK(equals(idoc_slice(c, x, 2, 3, 1), (float[]){3, 7, 11, 15, 19, 23}, 6), "slice dim 2");
  T_CHECK(idoc_numel(idoc_slice(c, x, 1, 3, 0)) == 0, "empty slice");
  idoc_ctx_free(c);

  // Gradient checks: every dim of a 3-D tensor with odd sizes, 1..4 inputs, one without grad.
  for (int dim = 0; dim < 3; dim++) {
    int64_t base[3] = {3, 5, 7};
    idoc_tensor *p[4];
    for (int k = 0; k < 4; k++) {
      int64_t s[3] = {base[0], base[1], base[2]};
      s[dim] = k + 1;
      p[k] = in_(3, s, k != 2);
    }
    for (int n = 1; n <= 4; n += 3) {
      int u[2] = {dim, n};
      char nm[48];
      snprintf(nm, sizeof nm, "concat dim %d n %d", dim, n);
      GC_EXPECT(nm, f_concat, u, p, n);
    }
    // concat then slicing each part back gives the part
    c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 16);
    idoc_tensor *y = idoc_concat(c, p, 4, dim);
    int64_t off = 0;
    bool ok = y->shape[dim] == 1 + 2 + 3 + 4;
    for (int k = 0; k < 4; k++) {
      idoc_tensor *part = idoc_slice(c, y, dim, off, k + 1);
      ok &= !memcmp(part->data, p[k]->data, idoc_nbytes(p[k]));
      off += k + 1;
    }
    T_CHECK(ok, "slices of a concat along dim %d are its parts", dim);
    idoc_ctx_free(c);
    int64_t sl[3] = {dim, 1, dim == 0 ? 1 : 3}, xs[3] = {3, 5, 7};
    idoc_tensor *xx = in_(3, xs, true), *px[1] = {xx};
    char nm[32];
    snprintf(nm, sizeof nm, "slice dim %d", dim);
    GC_EXPECT(nm, f_slice, sl, px, 1);
  }
}

// ---- gather / scatter -------------------------------------------------------------------------
static idoc_tensor *f_gather(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_gather_rows(c, in[0], in[1]);
}
static idoc_tensor *f_scatter(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_scatter_rows(c, in[0], in[1], in[2]);
}

static void test_gather_scatter(void) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  // Hand-built: x = [[0,1],[2,3],[4,5]], idx = [2, 0, 2]
  idoc_tensor *x = iota(2, (int64_t[]){3, 2}, 0);
  idoc_tensor *g = idoc_gather_rows(c, x, idx_(3, (int32_t[]){2, 0, 2}));
  T_CHECK(shape_is(g, 2, (int64_t[]){3, 2}) && equals(g, (float[]){4, 5, 0, 1, 4, 5}, 6),
          "gather_rows");
  // rows of a 3-D tensor are its [dim1, dim2] slabs
  idoc_tensor *x3 = iota(3, (int64_t[]){3, 2, 2}, 0);
  idoc_tensor *g3 = idoc_gather_rows(c, x3, idx_(2, (int32_t[]){1, 1}));
  T_CHECK(shape_is(g3, 3, (int64_t[]){2, 2, 2}) && equals(g3, (float[]){4, 5, 6, 7, 4, 5, 6, 7}, 8),
          "gather_rows 3-D");
  // scatter: base = [[0,1],[2,3],[4,5],[6,7]], rows 3 and 1 <- [[10,11],[12,13]]
  idoc_tensor *base = iota(2, (int64_t[]){4, 2}, 0), *src = iota(2, (int64_t[]){2, 2}, 10);
  idoc_tensor *s = idoc_scatter_rows(c, base, src, idx_(2, (int32_t[]){3, 1}));
  T_CHECK(equals(s, (float[]){0, 1, 12, 13, 4, 5, 10, 11}, 8) && IDOC_F(base)[6] == 6,
          "scatter_rows (base untouched)");

  // Gradient checks: repeated indices (gather backward scatter-adds), 3-D rows, odd widths.
  idoc_tensor *t5 = in_(2, (int64_t[]){5, 3}, true);
  idoc_tensor *pg[2] = {t5, idx_(7, (int32_t[]){2, 0, 2, 4, 1, 2, 0})};
  GC_EXPECT("gather_rows repeated", f_gather, NULL, pg, 2);
  idoc_tensor *t3 = in_(3, (int64_t[]){4, 3, 5}, true);
  idoc_tensor *pg3[2] = {t3, idx_(3, (int32_t[]){3, 3, 0})};
  GC_EXPECT("gather_rows 3-D", f_gather, NULL, pg3, 2);
  idoc_tensor *bs = in_(3, (int64_t[]){6, 1, 3}, true), *sr = in_(2, (int64_t[]){3, 3}, true);
  idoc_tensor *ps[3] = {bs, sr, idx_(3, (int32_t[]){5, 0, 2})};
  GC_EXPECT("scatter_rows", f_scatter, NULL, ps, 3);
  sr->requires_grad = false;
  GC_EXPECT("scatter_rows (base only)", f_scatter, NULL, ps, 3);
  sr->requires_grad = true;
  bs->requires_grad = false;
  GC_EXPECT("scatter_rows (src only)", f_scatter, NULL, ps, 3);

  // The scatter-add backward with many collisions and wide rows, against a serial double sum
  // (several column blocks, so more than one thread writes).
  int64_t n = 7, m = 4001, w = 203;
  idoc_tensor *dy = idoc_tensor_2d(A, IDOC_F32, m, w), *ix = idoc_tensor_1d(A, IDOC_I32, m);
  idoc_tensor_uniform(dy, &R, -1, 1);
  for (int64_t i = 0; i < m; i++)
    IDOC_I(ix)[i] = (int32_t)idoc_rng_below(&R, (uint64_t)n);
  idoc_tensor *acc = idoc_tensor_2d(A, IDOC_F32, n, w);
  idoc_tensor_fill(acc, 1.0f);
  cpu_scatter_rows(acc, dy, ix, true);
  double *ref = calloc((size_t)(n * w), sizeof *ref), e = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < w; j++)
      ref[IDOC_I(ix)[i] * w + j] += IDOC_F(dy)[i * w + j];
  for (int64_t i = 0; i < n * w; i++)
    e = fmax(e, fabs(IDOC_F(acc)[i] - 1.0 - ref[i]));
  printf("scatter-add of %lld rows into %lld: max err %.3g\n", (long long)m, (long long)n, e);
  T_CHECK(e < 1e-3, "scatter-add with collisions: max err %.3g", e);
  free(ref);
  // zero_rows
  idoc_tensor *zr = iota(2, (int64_t[]){4, 2}, 1);
  cpu_zero_rows(zr, idx_(2, (int32_t[]){0, 2}));
  T_CHECK(equals(zr, (float[]){0, 0, 3, 4, 0, 0, 7, 8}, 8), "zero_rows");
  idoc_ctx_free(c);
}

// ---- transpose --------------------------------------------------------------------------------
static idoc_tensor *f_transpose(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_transpose(c, in[0]);
}

static void test_transpose(void) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *x = iota(2, (int64_t[]){2, 3}, 0), *y = idoc_transpose(c, x);
  T_CHECK(shape_is(y, 2, (int64_t[]){3, 2}) && equals(y, (float[]){0, 3, 1, 4, 2, 5}, 6),
          "transpose 2-D");
  idoc_tensor *x3 = iota(3, (int64_t[]){2, 2, 3}, 0), *y3 = idoc_transpose(c, x3);
  T_CHECK(shape_is(y3, 3, (int64_t[]){2, 3, 2}) &&
              equals(y3, (float[]){0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11}, 12),
          "transpose 3-D");
  // Sizes across tile edges (the kernel works in 32x32 tiles), and accumulate mode.
  int64_t dims[3][3] = {{3, 33, 65}, {1, 64, 31}, {2, 1, 40}};
  for (int t = 0; t < 3; t++) {
    idoc_tensor *a = in_(3, dims[t], false);
    int64_t B = dims[t][0], M = dims[t][1], N = dims[t][2];
    idoc_tensor *o = idoc_tensor_3d(c->act, IDOC_F32, B, N, M);
    idoc_tensor_fill(o, 0.5f);
    cpu_transpose(o, a, true);
    bool ok = true;
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
          ok &= IDOC_F(o)[(b * N + j) * M + i] == IDOC_F(a)[(b * M + i) * N + j] + 0.5f;
    T_CHECK(ok, "transpose %lldx%lldx%lld (accumulate)", (long long)B, (long long)M, (long long)N);
  }
  idoc_tensor *p[1] = {in_(3, (int64_t[]){3, 5, 7}, true)};
  GC_EXPECT("transpose 3x5x7", f_transpose, NULL, p, 1);
  idoc_tensor *q[1] = {in_(2, (int64_t[]){1, 9}, true)};
  GC_EXPECT("transpose 1x9", f_transpose, NULL, q, 1);
  idoc_ctx_free(c);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 22);
  idoc_rng_seed(&R, 5);
  test_reshape();
  test_concat_slice();
  test_gather_scatter();
  test_transpose();
  idoc_arena_free(A);
  return t_summary("test_grad_shape");
}
