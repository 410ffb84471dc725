// Gradient checks for linear, matmul, embedding, add, mul, scale, cross-entropy, mse, sum, mean;
// and a self-test proving the checker rejects a wrong backward.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

static idoc_tensor *in_(int nd, const int64_t *s) { return gc_input(A, &R, nd, s, -1, 1, true); }

static idoc_tensor *f_linear(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_linear(c, in[0], in[1], ud ? in[2] : NULL);
}
static idoc_tensor *f_matmul(idoc_ctx *c, idoc_tensor **in, void *ud) {
  int t = *(int *)ud;
  return idoc_matmul(c, in[0], in[1], t & 1, t & 2);
}
static idoc_tensor *f_embedding(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_embedding(c, in[0], in[1]);
}
static idoc_tensor *f_add(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_add(c, in[0], in[1]);
}
static idoc_tensor *f_mul(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_mul(c, in[0], in[1]);
}
static idoc_tensor *f_scale(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_scale(c, in[0], -1.75f);
}
static idoc_tensor *f_ce(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_cross_entropy(c, in[0], in[1], -100);
}
static idoc_tensor *f_mse(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_mse(c, in[0], in[1]);
}
static idoc_tensor *f_sum(idoc_ctx *c, idoc_tensor **in, void *ud) { return idoc_sum(c, in[0]); }
static idoc_tensor *f_mean(idoc_ctx *c, idoc_tensor **in, void *ud) { return idoc_mean(c, in[0]); }

// A deliberately wrong op: y = 2x with a backward that claims dy/dx = 2.2.
static void wrong_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *dx = idoc_grad(c, n->in[0]);
  if (dx) cpu_axpy(dx, n->out->grad, 2.2f);
}
static idoc_tensor *f_wrong(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *y = idoc_tensor_like(c->act, in[0]);
  cpu_scale_fwd(y, in[0], 2.0f);
  if (idoc_needs_grad(c, in, 1)) idoc_record(c, "wrong", wrong_bw, y, in, 1);
  return y;
}

static idoc_tensor *ids_(int64_t n, int vocab, bool with_ignore) {
  idoc_tensor *t = idoc_tensor_1d(A, IDOC_I32, n);
  for (int64_t i = 0; i < n; i++)
    IDOC_I(t)[i] = (with_ignore && i % 4 == 1) ? -100 : (int32_t)idoc_rng_below(&R, vocab);
  return t;
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 7);
  int one = 1;

  // linear: odd sizes, with and without bias, 3-D input
  for (int k = 0; k < 3; k++) {
    int64_t xs[3][3] = {{5, 7}, {1, 3}, {2, 3, 9}}, ws[3][2] = {{3, 7}, {4, 3}, {6, 9}};
    int nd = k == 2 ? 3 : 2;
    idoc_tensor *in[3] = {in_(nd, xs[k]), in_(2, ws[k]), in_(1, &ws[k][0])};
    GC_EXPECT("linear+bias", f_linear, &one, in, 3);
    GC_EXPECT("linear", f_linear, NULL, in, 2);
  }
  // matmul: every transpose combination, 2-D and batched
  for (int t = 0; t < 4; t++) {
    int64_t m = 3, kk = 5, n = 4;
    int64_t as[3] = {2, t & 1 ? kk : m, t & 1 ? m : kk},
            bs[3] = {2, t & 2 ? n : kk, t & 2 ? kk : n};
    idoc_tensor *in3[2] = {in_(3, as), in_(3, bs)};
    GC_EXPECT("matmul batched", f_matmul, &t, in3, 2);
    idoc_tensor *in2[2] = {in_(2, as + 1), in_(2, bs + 1)};
    GC_EXPECT("matmul 2d", f_matmul, &t, in2, 2);
  }
  { // embedding with repeated ids
    idoc_tensor *tab = in_(2, (int64_t[]){11, 6}), *ids = idoc_tensor_1d(A, IDOC_I32, 9);
    int32_t v[9] = {3, 0, 10, 3, 3, 7, 0, 1, 10};
    memcpy(ids->data, v, sizeof v);
    idoc_tensor *in[2] = {tab, ids};
    GC_EXPECT("embedding", f_embedding, NULL, in, 2);
  }
  { // add/mul: same shape and broadcast over leading dims
    idoc_tensor *a = in_(3, (int64_t[]){3, 4, 5}), *b = in_(3, (int64_t[]){3, 4, 5});
    idoc_tensor *bb = in_(2, (int64_t[]){4, 5}), *bc = in_(3, (int64_t[]){1, 1, 5});
    idoc_tensor *p1[2] = {a, b}, *p2[2] = {a, bb}, *p3[2] = {a, bc};
    GC_EXPECT("add", f_add, NULL, p1, 2);
    GC_EXPECT("add broadcast", f_add, NULL, p2, 2);
    GC_EXPECT("add broadcast row", f_add, NULL, p3, 2);
    GC_EXPECT("mul", f_mul, NULL, p1, 2);
    GC_EXPECT("mul broadcast", f_mul, NULL, p2, 2);
    idoc_tensor *p4[1] = {a};
    GC_EXPECT("scale", f_scale, NULL, p4, 1);
    GC_EXPECT("sum", f_sum, NULL, p4, 1);
    GC_EXPECT("mean", f_mean, NULL, p4, 1);
    idoc_tensor *t = gc_input(A, &R, 3, (int64_t[]){3, 4, 5}, -1, 1, false);
    idoc_tensor *p5[2] = {a, t};
    GC_EXPECT("mse", f_mse, NULL, p5, 2);
  }
  { // cross-entropy, with ignored rows and an odd vocab; large logits stay stable
    idoc_tensor *lg = gc_input(A, &R, 2, (int64_t[]){9, 13}, -3, 3, true);
    idoc_tensor *in[2] = {lg, ids_(9, 13, true)};
    GC_EXPECT("cross_entropy ignore", f_ce, NULL, in, 2);
    idoc_tensor *in2[2] = {lg, ids_(9, 13, false)};
    GC_EXPECT("cross_entropy", f_ce, NULL, in2, 2);
  }
  { // cross-entropy value against a hand computation, and all-ignored -> 0
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
    idoc_tensor *lg = idoc_tensor_2d(A, IDOC_F32, 2, 3), *tg = idoc_tensor_1d(A, IDOC_I32, 2);
    float l[6] = {1000, 1001, 1002, 0, 0, 0};
    memcpy(lg->data, l, sizeof l);
    IDOC_I(tg)[0] = 0;
    IDOC_I(tg)[1] = 2;
    double want = 0.5 * ((log(1 + exp(1) + exp(2)) + 2 - 2) + log(3.0));
    T_CLOSE(idoc_tensor_get(idoc_cross_entropy(c, lg, tg, -100), 0), want, 1e-5, 1e-6);
    IDOC_I(tg)[0] = IDOC_I(tg)[1] = -100;
    T_CLOSE(idoc_tensor_get(idoc_cross_entropy(c, lg, tg, -100), 0), 0.0, 0, 0);
    idoc_ctx_free(c);
  }
  { // the checker itself must reject a wrong backward
    idoc_tensor *in[1] = {in_(2, (int64_t[]){3, 4})};
    T_CHECK(gc_check("deliberately wrong", f_wrong, NULL, in, 1) > 0, "wrong backward passed");
  }
  idoc_arena_free(A);
  return t_summary("test_grad_basic");
}
