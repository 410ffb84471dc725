// SiLU, exact GELU, ReLU, sigmoid, sin, cos and SwiGLU: finite-difference gradient checks over
// several shapes (odd sizes, inputs kept away from ReLU's kink), forward values and derivatives
// against double-precision formulas, and the kernels' accumulate / NULL-gradient conventions.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

enum { SILU, GELU, RELU, SIGMOID, SWIGLU, SIN, COS, N_ACT };
static const char *names[N_ACT] = {"silu", "gelu", "relu", "sigmoid", "swiglu", "sin", "cos"};
// The kernels' IDOC_ACT_* kind of a test activation (SwiGLU has none).
static int act_kind(int k) { return k == SIN ? IDOC_ACT_SIN : k == COS ? IDOC_ACT_COS : k; }

static idoc_tensor *f_act(idoc_ctx *c, idoc_tensor **in, void *ud) {
  switch (*(int *)ud) {
  case SILU: return idoc_silu(c, in[0]);
  case GELU: return idoc_gelu(c, in[0]);
  case RELU: return idoc_relu(c, in[0]);
  case SIGMOID: return idoc_sigmoid(c, in[0]);
  case SIN: return idoc_sin(c, in[0]);
  case COS: return idoc_cos(c, in[0]);
  default: return idoc_swiglu(c, in[0], in[1]);
  }
}

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }
static double ref_fwd(int k, double v, double u) {
  switch (k) {
  case SILU: return v * sigm(v);
  case GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
  case RELU: return v > 0 ? v : 0;
  case SIGMOID: return sigm(v);
  case SIN: return sin(v);
  case COS: return cos(v);
  default: return v * sigm(v) * u;
  }
}
// d act / d x (for SwiGLU: d / d gate).
static double ref_der(int k, double v, double u) {
  double s = sigm(v);
  switch (k) {
  case SILU: return s * (1 + v * (1 - s));
  case GELU: return 0.5 * (1 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) * 0.3989422804014327;
  case RELU: return v > 0 ? 1 : 0;
  case SIGMOID: return s * (1 - s);
  case SIN: return cos(v);
  case COS: return -sin(v);
  default: return u * s * (1 + v * (1 - s));
  }
}

// Random inputs in [lo, hi] with no element within 0.05 of 0 (ReLU's kink; h is 1e-3).
static idoc_tensor *input(int nd, const int64_t *s, float lo, float hi) {
  idoc_tensor *t = gc_input(A, &R, nd, s, lo, hi, true);
  for (int64_t i = 0; i < idoc_numel(t); i++)
    if (fabsf(IDOC_F(t)[i]) < 0.05f) IDOC_F(t)[i] = IDOC_F(t)[i] < 0 ? -0.3f : 0.3f;
  return t;
}

static void test_gradients(void) {
  const int64_t shapes[4][3] = {{1, 1, 1}, {3, 7, 1}, {5, 3, 11}, {40, 37, 1}};
  const int nds[4] = {1, 2, 3, 2};
  for (int s = 0; s < 4; s++) {
    idoc_tensor *x = input(nds[s], shapes[s], -4, 4), *u = input(nds[s], shapes[s], -2, 2);
    idoc_tensor *p[2] = {x, u};
    for (int k = 0; k < N_ACT; k++) {
      char nm[64];
      snprintf(nm, sizeof nm, "%s shape#%d", names[k], s);
      GC_EXPECT(nm, f_act, &k, p, k == SWIGLU ? 2 : 1);
    }
  }
  // Only one SwiGLU input needing a gradient: the other must be left alone.
  int64_t s2[2] = {4, 9};
  idoc_tensor *g = input(2, s2, -3, 3), *u = input(2, s2, -3, 3), *p[2] = {g, u};
  u->requires_grad = false;
  int k = SWIGLU;
  GC_EXPECT("swiglu (gate only)", f_act, &k, p, 2);
  g->requires_grad = false;
  u->requires_grad = true;
  GC_EXPECT("swiglu (up only)", f_act, &k, p, 2);
}

// Forward values and the backward kernels against the double formulas, on a dense sweep of
// [-9, 9] (the tails of GELU and sigmoid included).
static void test_values(void) {
  int64_t n = 3601;
  idoc_tensor *x = idoc_tensor_1d(A, IDOC_F32, n), *u = idoc_tensor_1d(A, IDOC_F32, n);
  for (int64_t i = 0; i < n; i++)
    IDOC_F(x)[i] = -9.0f + 0.005f * (float)i;
  idoc_tensor_uniform(u, &R, -2, 2);
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *in[2] = {x, u};
  for (int k = 0; k < N_ACT; k++) {
    bool prev = idoc_no_grad_begin(c);
    idoc_tensor *y = f_act(c, in, &k);
    idoc_grad_restore(c, prev);
    T_CHECK(idoc_same_shape(y, x) && !y->requires_grad, "%s: shape / no-grad", names[k]);
    // backward kernels accumulate: start from 1 and dy = 0.5
    idoc_tensor *dy = idoc_tensor_like(c->act, x), *dx = idoc_tensor_like(c->act, x);
    idoc_tensor *du = idoc_tensor_like(c->act, x);
    idoc_tensor_fill(dy, 0.5f);
    idoc_tensor_fill(dx, 1.0f);
    idoc_tensor_fill(du, 1.0f);
    if (k == SWIGLU)
      cpu_swiglu_bwd(dx, du, dy, x, u);
    else
      cpu_act_bwd(dx, dy, x, k == SIGMOID ? y : NULL, act_kind(k));
    double ef = 0, eb = 0, eu = 0;
    for (int64_t i = 0; i < n; i++) {
      double v = IDOC_F(x)[i], w = IDOC_F(u)[i], r = ref_fwd(k, v, w);
      ef = fmax(ef, fabs(IDOC_F(y)[i] - r) / fmax(1.0, fabs(r)));
      double d = 1.0 + 0.5 * ref_der(k, v, w);
      eb = fmax(eb, fabs(IDOC_F(dx)[i] - d) / fmax(1.0, fabs(d)));
      if (k == SWIGLU)
        eu = fmax(eu, fabs(IDOC_F(du)[i] - (1.0 + 0.5 * v * sigm(v))) / fmax(1, fabs(v)));
    }
    printf("%-8s forward max rel err %.3g, backward %.3g%s\n", names[k], ef, eb,
           k == SWIGLU ? " (d gate)" : "");
    T_CHECK(ef < 1e-6, "%s forward max rel err %.3g", names[k], ef);
    T_CHECK(eb < 1e-6, "%s backward max rel err %.3g", names[k], eb);
    if (k == SWIGLU) T_CHECK(eu < 1e-6, "swiglu d up max rel err %.3g", eu);
  }
  // sigmoid's backward without y recomputes it: same result
  idoc_tensor *d1 = idoc_tensor_zeros_like(c->act, x), *d2 = idoc_tensor_zeros_like(c->act, x);
  idoc_tensor *dy = idoc_tensor_like(c->act, x), *y = idoc_tensor_like(c->act, x);
  idoc_tensor_uniform(dy, &R, -1, 1);
  cpu_act_fwd(y, x, IDOC_ACT_SIGMOID);
  cpu_act_bwd(d1, dy, x, y, IDOC_ACT_SIGMOID);
  cpu_act_bwd(d2, dy, x, NULL, IDOC_ACT_SIGMOID);
  double e = 0;
  for (int64_t i = 0; i < n; i++)
    e = fmax(e, fabs(IDOC_F(d1)[i] - IDOC_F(d2)[i]));
  T_CHECK(e < 1e-7, "sigmoid backward with/without y differ by %.3g", e);
  // swiglu_bwd skips a NULL gradient output
  idoc_tensor *dg = idoc_tensor_zeros_like(c->act, x);
  cpu_swiglu_bwd(dg, NULL, dy, x, u);
  cpu_swiglu_bwd(NULL, dg, dy, x, u); // adds d up into the same buffer
  e = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = IDOC_F(x)[i], g = IDOC_F(dy)[i];
    e = fmax(e, fabs(IDOC_F(dg)[i] - g * (ref_der(SWIGLU, v, IDOC_F(u)[i]) + v * sigm(v))));
  }
  T_CHECK(e < 1e-5, "swiglu_bwd with NULL outputs: err %.3g", e);
  // ReLU: exactly zero gradient for negative inputs, dy for positive
  idoc_tensor *dr = idoc_tensor_zeros_like(c->act, x);
  cpu_act_bwd(dr, dy, x, NULL, IDOC_ACT_RELU);
  bool ok = true;
  for (int64_t i = 0; i < n; i++)
    if (IDOC_F(x)[i] != 0.0f) ok &= IDOC_F(dr)[i] == (IDOC_F(x)[i] > 0 ? IDOC_F(dy)[i] : 0.0f);
  T_CHECK(ok, "relu backward is a mask");
  idoc_ctx_free(c);
}

// A chain through the tape: the recorded nodes carry the right kind (sigmoid uses its output).
static idoc_tensor *f_chain(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *h = idoc_gelu(c, idoc_silu(c, in[0]));
  return idoc_swiglu(c, idoc_sigmoid(c, h), idoc_relu(c, in[1]));
}

static void test_chain(void) {
  int64_t s[2] = {3, 5};
  idoc_tensor *p[2] = {input(2, s, -2, 2), input(2, s, -2, 2)};
  GC_EXPECT("silu->gelu->sigmoid->swiglu(relu)", f_chain, NULL, p, 2);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 7);
  test_gradients();
  test_values();
  test_chain();
  idoc_arena_free(A);
  return t_summary("test_grad_activation");
}
