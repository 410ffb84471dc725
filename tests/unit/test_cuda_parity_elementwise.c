// idoc-requires: cuda
// CUDA kernels against the CPU reference (harness: tests/unit/cuda_parity_util.h): mul with
// broadcasts, the activations and SwiGLU, the squared-difference loss, fill_grad, sumsq, AdamW
// over several steps, embeddings with repeated ids, and the batched matmul. Backward cases
// accumulate into nonzero gradients and cover NULL gradient outputs.
#include "tests/unit/cuda_parity_util.h"

// A GPU copy of h whose data starts `off` elements into its allocation (so, for off = 1, not
// 16-byte aligned: the kernels' one-element paths run). The tensor still ends at its
// allocation's end, where the simulator's guard page catches overruns.
static idoc_tensor *up_off(const idoc_tensor *h, idoc_dtype dt, int off) {
  idoc_tensor *g = idoc_tensor_wrap(H, NULL, dt, GPU, h->ndim, h->shape);
  T_CHECK(n_dev < PARITY_MAX_DEV, "too many GPU tensors in one case");
  size_t es = idoc_dtype_size(dt);
  char *p = idoc_cuda_malloc(idoc_nbytes(g) + (size_t)off * es);
  dev_ptrs[n_dev++] = p;
  g->data = p + (size_t)off * es;
  idoc_tensor_convert(g, h);
  return g;
}

static const char *shape_str(char *buf, size_t n, int nd, const int64_t *s) {
  int k = snprintf(buf, n, "[");
  for (int i = 0; i < nd && k < (int)n; i++)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "," : "", (long long)s[i]);
  if (k < (int)n) snprintf(buf + k, n - (size_t)k, "]");
  return buf;
}

// ---- mul --------------------------------------------------------------------------------------
// b broadcasts over a's leading dims (b of one row, a single element, or a's own shape).
// grads: bit 0 da, bit 1 db (a cleared bit passes NULL). off: alignment offset of every operand.
static void case_mul(idoc_dtype dt, int na, const int64_t *sa, int nb, const int64_t *sb, int grads,
                     int off) {
  char shape[128], s1[32], s2[32];
  snprintf(shape, sizeof shape, "a=%s b=%s%s%s", shape_str(s1, sizeof s1, na, sa),
           shape_str(s2, sizeof s2, nb, sb),
           grads == 3   ? ""
           : grads == 1 ? " db=NULL"
                        : " da=NULL",
           off ? " +1" : "");
  idoc_tensor *a = hrand(dt, na, sa, 1.0f), *b = hrand(dt, nb, sb, 1.0f);
  idoc_tensor *y = idoc_tensor_like(H, a);
  cpu_mul_fwd(y, a, b);
  idoc_tensor *ga = up_off(a, dt, off), *gb = up_off(b, dt, off), *gy = up_off(a, dt, off);
  IDOC_K(GPU, mul_fwd)(gy, ga, gb);
  compare("mul_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *dy = hrand(dt, na, sa, 1.0f);
  idoc_tensor *da = grads & 1 ? hrand(dt, na, sa, 1.0f) : NULL;
  idoc_tensor *db = grads & 2 ? hrand(dt, nb, sb, 1.0f) : NULL;
  idoc_tensor *gdy = up_off(dy, dt, off), *gda = da ? up_off(da, dt, off) : NULL;
  idoc_tensor *gdb = db ? up_off(db, dt, off) : NULL;
  cpu_mul_bwd(da, db, dy, a, b);
  IDOC_K(GPU, mul_bwd)(gda, gdb, gdy, ga, gb);
  if (da) compare("mul_bwd", dt, shape, "da", gda, da, tol(dt));
  if (db) compare("mul_bwd", dt, shape, "db", gdb, db, tol(dt));
  reset();
}

// ---- activations ------------------------------------------------------------------------------
static const char *act_name[6] = {"silu", "gelu", "relu", "sigmoid", "sin", "cos"};

// with_y: act_bwd gets the forward output (sigmoid reads it; the others ignore it).
static void case_act(idoc_dtype dt, int kind, int64_t n, float std, bool with_y) {
  char shape[128];
  snprintf(shape, sizeof shape, "%s n=%lld%s", act_name[kind], (long long)n,
           with_y ? "" : " y=NULL");
  idoc_tensor *x = hrand(dt, 1, &n, std), *y = idoc_tensor_like(H, x);
  cpu_act_fwd(y, x, kind);
  idoc_tensor *gx = up(x, dt), *gy = dev_new(dt, 1, &n);
  IDOC_K(GPU, act_fwd)(gy, gx, kind);
  compare("act_fwd", dt, shape, "y", gy, y, tol(dt));

  // The CPU backward sees the forward output the GPU produced (rounded to bf16 in bf16 runs),
  // as the op would pass it.
  idoc_tensor *yh = down(gy);
  idoc_tensor *dy = hrand(dt, 1, &n, 1.0f), *dx = hrand(dt, 1, &n, 1.0f);
  idoc_tensor *gdy = up(dy, dt), *gdx = up(dx, dt);
  cpu_act_bwd(dx, dy, x, with_y ? yh : NULL, kind);
  IDOC_K(GPU, act_bwd)(gdx, gdy, gx, with_y ? gy : NULL, kind);
  compare("act_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  reset();
}

// grads: bit 0 dgate, bit 1 dup.
static void case_swiglu(idoc_dtype dt, int nd, const int64_t *s, int grads) {
  char shape[128], s1[32];
  snprintf(shape, sizeof shape, "%s%s", shape_str(s1, sizeof s1, nd, s),
           grads == 3   ? ""
           : grads == 1 ? " dup=NULL"
                        : " dgate=NULL");
  idoc_tensor *g = hrand(dt, nd, s, 2.0f), *u = hrand(dt, nd, s, 1.0f), *y = idoc_tensor_like(H, g);
  cpu_swiglu_fwd(y, g, u);
  idoc_tensor *gg = up(g, dt), *gu = up(u, dt), *gy = dev_new(dt, nd, s);
  IDOC_K(GPU, swiglu_fwd)(gy, gg, gu);
  compare("swiglu_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *dy = hrand(dt, nd, s, 1.0f);
  idoc_tensor *dg = grads & 1 ? hrand(dt, nd, s, 1.0f) : NULL;
  idoc_tensor *du = grads & 2 ? hrand(dt, nd, s, 1.0f) : NULL;
  idoc_tensor *gdy = up(dy, dt), *gdg = dg ? up(dg, dt) : NULL, *gdu = du ? up(du, dt) : NULL;
  cpu_swiglu_bwd(dg, du, dy, g, u);
  IDOC_K(GPU, swiglu_bwd)(gdg, gdu, gdy, gg, gu);
  if (dg) compare("swiglu_bwd", dt, shape, "dgate", gdg, dg, tol(dt));
  if (du) compare("swiglu_bwd", dt, shape, "dup", gdu, du, tol(dt));
  reset();
}

// ---- losses and reductions --------------------------------------------------------------------
static void case_sq_diff(idoc_dtype dt, int nd, const int64_t *s, int off) {
  char shape[128], s1[32];
  snprintf(shape, sizeof shape, "%s%s", shape_str(s1, sizeof s1, nd, s), off ? " +1" : "");
  idoc_tensor *p = hrand(dt, nd, s, 1.0f), *t = hrand(dt, nd, s, 1.0f);
  idoc_tensor *out = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  cpu_sq_diff_sum(out, p, t);
  idoc_tensor *gp = up_off(p, dt, off), *gt = up_off(t, dt, off);
  // The GPU output starts as garbage: sq_diff_sum overwrites it.
  idoc_tensor *nan = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  IDOC_F(nan)[0] = NAN;
  idoc_tensor *gout = up(nan, IDOC_F32);
  IDOC_K(GPU, sq_diff_sum)(gout, gp, gt);
  compare("sq_diff_sum", dt, shape, "out", gout, out, 1e-5); // fp32 sum of exact inputs

  idoc_tensor *dp = hrand(dt, nd, s, 1.0f), *gdp = up_off(dp, dt, off);
  float dscale = 0.37f;
  cpu_sq_diff_bwd(dp, p, t, dscale);
  IDOC_K(GPU, sq_diff_bwd)(gdp, gp, gt, dscale);
  compare("sq_diff_bwd", dt, shape, "dp", gdp, dp, tol(dt));
  IDOC_K(GPU, sq_diff_bwd)(NULL, gp, gt, dscale); // a NULL gradient is skipped

  // The mean's backward, its upstream gradient read on the device.
  idoc_tensor *dout = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  IDOC_F(dout)[0] = -1.5f;
  idoc_tensor *gdout = up(dout, IDOC_F32);
  idoc_tensor *dm = hrand(dt, nd, s, 1.0f), *gdm = up_off(dm, dt, off);
  float n = (float)(idoc_numel(p) > 0 ? idoc_numel(p) : 0);
  cpu_sq_diff_mean_bwd(dm, p, t, dout, n);
  IDOC_K(GPU, sq_diff_mean_bwd)(gdm, gp, gt, gdout, n);
  compare("sq_diff_mean_bwd", dt, shape, "dp", gdm, dm, tol(dt));
  IDOC_K(GPU, sq_diff_mean_bwd)(NULL, gp, gt, gdout, n);
  reset();
}

// fill_grad from an f32 scalar (the loss gradient), and sumsq accumulating onto a nonzero value.
static void case_fill_sumsq(idoc_dtype dt, int nd, const int64_t *s) {
  char shape[128], s1[32];
  shape_str(s1, sizeof s1, nd, s);
  snprintf(shape, sizeof shape, "%s", s1);
  idoc_tensor *dout = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  IDOC_F(dout)[0] = -1.625f;
  idoc_tensor *dx = hrand(dt, nd, s, 1.0f), *gdx = up(dx, dt), *gdout = up(dout, IDOC_F32);
  cpu_fill_grad(dx, dout, 0.25f);
  IDOC_K(GPU, fill_grad)(gdx, gdout, 0.25f);
  compare("fill_grad", dt, shape, "dx", gdx, dx, tol(dt));

  idoc_tensor *x = hrand(dt, nd, s, 1.0f), *acc = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  IDOC_F(acc)[0] = 3.5f;
  idoc_tensor *gx = up(x, dt), *gacc = up(acc, IDOC_F32);
  cpu_sumsq(acc, x);
  IDOC_K(GPU, sumsq)(gacc, gx);
  cpu_sumsq(acc, x); // twice: the second call adds onto the first's result
  IDOC_K(GPU, sumsq)(gacc, gx);
  compare("sumsq", dt, shape, "out", gacc, acc, 1e-5); // squares of exact inputs, fp32 sums
  reset();
}

// The data-parallel fp64 gradient sums: acc += g then g = 0, and g = (f32) acc, bit for bit the
// CPU's (one fp64 add and one rounding per element, nothing to reorder).
static void case_grad_f64(int64_t n) {
  idoc_tensor *acc = idoc_tensor_new(H, IDOC_F64, 1, &n), *g = hrand(IDOC_F32, 1, &n, 1.0f);
  double *A = acc->data;
  for (int64_t i = 0; i < n; i++)
    A[i] = (double)idoc_rng_normal(&R) * (i % 3 ? 1e-9 : 1e3); // sums that fp32 would round
  idoc_tensor *gacc = dev_new(IDOC_F64, 1, &n), *gg = up(g, IDOC_F32);
  idoc_tensor_copy(gacc, acc);
  cpu_grad_accumulate(acc, g);
  IDOC_K(GPU, grad_accumulate)(gacc, gg);
  double *back = idoc_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(double));
  float *gb = idoc_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  idoc_tensor_to_host(gacc, back);
  idoc_tensor_to_host(gg, gb);
  bool same = !memcmp(back, A, (size_t)n * sizeof(double)), zero = true;
  for (int64_t i = 0; i < n; i++)
    zero &= gb[i] == 0.0f && IDOC_F(g)[i] == 0.0f;
  T_CHECK(same && zero, "grad_accumulate n=%lld: sums bitwise %d, gradients zeroed %d",
          (long long)n, same, zero);
  cpu_grad_round_f64(g, acc);
  IDOC_K(GPU, grad_round_f64)(gg, gacc);
  idoc_tensor_to_host(gg, gb);
  T_CHECK(!memcmp(gb, IDOC_F(g), (size_t)n * sizeof(float)), "grad_round_f64 n=%lld: not bitwise",
          (long long)n);
  for (int64_t i = 0; i < n && i < 4; i++)
    T_CHECK(IDOC_F(g)[i] == (float)A[i], "grad_round_f64: element %lld", (long long)i);
  printf("CASE %-20s f64  n=%-26lld acc,g  bitwise ok\n", "grad_accumulate/round", (long long)n);
  free(back);
  free(gb);
  reset();
}

// ---- AdamW --------------------------------------------------------------------------------------
// Three steps in a row with fresh gradients, from nonzero moments. f32 storage must equal the
// CPU bit for bit (the same torch-AdamW arithmetic, no FMA contraction); bf16 w is rounded each
// step, so w is compared at the bf16 tolerance, while m and v (f32, fed by the same bf16
// gradients) are still exact.
static void case_adamw(idoc_dtype dt, int64_t n, float lr, float wd, float grad_scale) {
  char shape[128];
  snprintf(shape, sizeof shape, "n=%lld wd=%g gs=%g", (long long)n, (double)wd, (double)grad_scale);
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  idoc_tensor *w = hrand(dt, 1, &n, 1.0f), *m = hrand(IDOC_F32, 1, &n, 0.01f);
  idoc_tensor *v = idoc_tensor_new(H, IDOC_F32, 1, &n);
  idoc_tensor_uniform(v, &R, 0.0f, 1e-4f);
  idoc_tensor *gw = up(w, dt), *gm = up(m, IDOC_F32), *gv = up(v, IDOC_F32);
  for (int step = 1; step <= 3; step++) {
    idoc_tensor *g = hrand(dt, 1, &n, step == 2 ? 3.0f : 0.5f), *gg = up(g, dt);
    cpu_adamw_step(w, g, m, v, lr, b1, b2, eps, wd, grad_scale, step);
    IDOC_K(GPU, adamw_step)(gw, gg, gm, gv, lr, b1, b2, eps, wd, grad_scale, step);
  }
  compare("adamw_step", dt, shape, "w", gw, w, dt == IDOC_F32 ? 0.0 : tol(dt));
  compare("adamw_step", dt, shape, "m", gm, m, 0.0);
  compare("adamw_step", dt, shape, "v", gv, v, 0.0);
  reset();
}

// ---- embedding ----------------------------------------------------------------------------------
// ids drawn from the first `distinct` rows (few distinct ids: many repeats); the backward of
// repeated ids adds their rows in id order, so f32 equals the CPU bit for bit.
static void case_embedding(idoc_dtype dt, int64_t vocab, int64_t c, int nd,
                           const int64_t *ids_shape, int64_t distinct) {
  char shape[128], s1[32];
  snprintf(shape, sizeof shape, "V=%lld C=%lld ids=%s d=%lld", (long long)vocab, (long long)c,
           shape_str(s1, sizeof s1, nd, ids_shape), (long long)distinct);
  idoc_tensor *table = hrand(dt, 2, (int64_t[]){vocab, c}, 1.0f);
  idoc_tensor *ids = idoc_tensor_new(H, IDOC_I32, nd, ids_shape);
  int64_t n = idoc_numel(ids);
  for (int64_t i = 0; i < n; i++)
    IDOC_I(ids)[i] = (int32_t)((idoc_rng_below(&R, (uint64_t)distinct) * 7919) % (uint64_t)vocab);
  int64_t os[2] = {n, c};
  idoc_tensor *out = idoc_tensor_new(H, IDOC_F32, 2, os);
  cpu_embedding_fwd(out, table, ids);
  idoc_tensor *gt = up(table, dt), *gids = up(ids, dt), *gout = dev_new(dt, 2, os);
  IDOC_K(GPU, embedding_fwd)(gout, gt, gids);
  compare("embedding_fwd", dt, shape, "out", gout, out, 0.0); // a copy

  idoc_tensor *dout = hrand(dt, 2, os, 1.0f), *dtab = hrand(dt, 2, (int64_t[]){vocab, c}, 1.0f);
  idoc_tensor *gdout = up(dout, dt), *gdtab = up(dtab, dt);
  cpu_embedding_bwd(dtab, dout, ids);
  IDOC_K(GPU, embedding_bwd)(gdtab, gdout, gids);
  compare("embedding_bwd", dt, shape, "dtable", gdtab, dtab, dt == IDOC_F32 ? 0.0 : tol(dt));
  reset();
}

// ---- matmul -------------------------------------------------------------------------------------
// C[B,M,N] (+)= op(A) op(B); batch 0 means 2-D operands.
static void case_matmul(idoc_dtype dt, int64_t batch, int64_t m, int64_t n, int64_t k, bool ta,
                        bool tb, bool acc) {
  char shape[128];
  snprintf(shape, sizeof shape, "B=%lld M=%lld N=%lld K=%lld %c%c%s", (long long)batch,
           (long long)m, (long long)n, (long long)k, ta ? 'T' : 'N', tb ? 'T' : 'N',
           acc ? " acc" : "");
  int nd = batch ? 3 : 2;
  int64_t as[3] = {batch, ta ? k : m, ta ? m : k}, bs[3] = {batch, tb ? n : k, tb ? k : n};
  int64_t cs[3] = {batch, m, n};
  const int64_t *A = batch ? as : as + 1, *Bs = batch ? bs : bs + 1, *C = batch ? cs : cs + 1;
  float sa = k > 0 ? 1.0f / sqrtf((float)k) : 1.0f;
  idoc_tensor *a = hrand(dt, nd, A, sa), *b = hrand(dt, nd, Bs, 1.0f);
  idoc_tensor *c = hrand(dt, nd, C, 1.0f), *ga = up(a, dt), *gb = up(b, dt);
  idoc_tensor *gc = up(c, dt);
  if (!acc) { // the output is overwritten: start the GPU copy from NaN to prove it is not read
    idoc_tensor *nan = idoc_tensor_like(H, c);
    idoc_tensor_fill(nan, NAN);
    idoc_tensor_convert(gc, nan);
  }
  cpu_matmul(c, a, b, ta, tb, acc);
  IDOC_K(GPU, matmul)(gc, ga, gb, ta, tb, acc);
  compare("matmul", dt, shape, "out", gc, c, tol(dt));
  reset();
}

int main(void) {
  if (!parity_init(4321)) return t_summary("test_cuda_parity_elementwise");
  for (int d = 0; d < 2; d++) {
    idoc_dtype dt = d ? IDOC_BF16 : IDOC_F32;
    // mul: full shape, b of one row (vectorizable and odd), a single element, NULL grads,
    // unaligned operands, size 0, the MLP's hidden 2048.
    PARITY(case_mul(dt, 3, (int64_t[]){5, 3, 4}, 3, (int64_t[]){5, 3, 4}, 3, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){37, 64}, 1, (int64_t[]){64}, 3, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){101, 13}, 1, (int64_t[]){13}, 3, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){1000, 7}, 1, (int64_t[]){1}, 3, 0));
    PARITY(case_mul(dt, 1, (int64_t[]){1}, 1, (int64_t[]){1}, 3, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){6, 10}, 2, (int64_t[]){1, 10}, 1, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){6, 10}, 2, (int64_t[]){1, 10}, 2, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){9, 24}, 1, (int64_t[]){24}, 3, 1));
    PARITY(case_mul(dt, 1, (int64_t[]){1003}, 1, (int64_t[]){1003}, 3, 1));
    PARITY(case_mul(dt, 2, (int64_t[]){0, 8}, 1, (int64_t[]){8}, 3, 0));
    PARITY(case_mul(dt, 2, (int64_t[]){33, 2048}, 1, (int64_t[]){2048}, 3, 0));

    for (int kind = 0; kind <= IDOC_ACT_COS; kind++) {
      PARITY(case_act(dt, kind, 1, 2.0f, true));
      PARITY(case_act(dt, kind, 1031, 3.0f, true)); // wide inputs: both tails of each curve
      PARITY(case_act(dt, kind, 4096, 1.0f, kind != IDOC_ACT_SIGMOID));
      PARITY(case_act(dt, kind, 0, 1.0f, true));
    }
    PARITY(case_act(dt, IDOC_ACT_SIGMOID, 1031, 3.0f, false));

    PARITY(case_swiglu(dt, 1, (int64_t[]){1}, 3));
    PARITY(case_swiglu(dt, 2, (int64_t[]){7, 13}, 3));
    PARITY(case_swiglu(dt, 2, (int64_t[]){7, 13}, 1));
    PARITY(case_swiglu(dt, 2, (int64_t[]){7, 13}, 2));
    PARITY(case_swiglu(dt, 2, (int64_t[]){5, 11008}, 3)); // a 3B MLP's intermediate width
    PARITY(case_swiglu(dt, 2, (int64_t[]){0, 16}, 3));

    PARITY(case_sq_diff(dt, 1, (int64_t[]){1}, 0));
    PARITY(case_sq_diff(dt, 1, (int64_t[]){999}, 0));
    PARITY(case_sq_diff(dt, 1, (int64_t[]){999}, 1));
    PARITY(case_sq_diff(dt, 4, (int64_t[]){2, 2, 56, 56}, 0)); // heatmaps
    PARITY(case_sq_diff(dt, 1, (int64_t[]){300007}, 0));
    PARITY(case_sq_diff(dt, 1, (int64_t[]){0}, 0));

    PARITY(case_fill_sumsq(dt, 0, NULL));
    PARITY(case_fill_sumsq(dt, 2, (int64_t[]){17, 31}));
    PARITY(case_fill_sumsq(dt, 2, (int64_t[]){128, 2048}));
    PARITY(case_fill_sumsq(dt, 1, (int64_t[]){0}));
    if (dt == IDOC_F32) {
      case_grad_f64(1);
      case_grad_f64(300007);
      case_grad_f64(0);
    }

    PARITY(case_adamw(dt, 1, 1e-3f, 0.0f, 1.0f));
    PARITY(case_adamw(dt, 1001, 1e-3f, 0.1f, 0.5f));
    PARITY(case_adamw(dt, 1001, 3e-4f, 0.0f, 1.0f));
    PARITY(case_adamw(dt, 2048 * 16, 2e-5f, 0.01f, 0.73f));
    PARITY(case_adamw(dt, 0, 1e-3f, 0.1f, 0.5f));

    PARITY(case_embedding(dt, 50, 8, 1, (int64_t[]){1}, 50));
    PARITY(case_embedding(dt, 97, 13, 1, (int64_t[]){300}, 5)); // many repeats, odd width
    PARITY(case_embedding(dt, 1000, 128, 2, (int64_t[]){3, 77}, 1000));
    PARITY(case_embedding(dt, 1000, 128, 1, (int64_t[]){2500}, 40)); // several sort chunks
    PARITY(case_embedding(dt, 512, 2048, 1, (int64_t[]){64}, 16));   // a 3B hidden width
    PARITY(case_embedding(dt, 10, 4, 1, (int64_t[]){0}, 10));

    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t & 2;
      PARITY(case_matmul(dt, 0, 7, 5, 3, ta, tb, false));
      PARITY(case_matmul(dt, 3, 13, 11, 17, ta, tb, true));
    }
    PARITY(case_matmul(dt, 0, 1, 1, 1, false, false, false));
    PARITY(case_matmul(dt, 16, 64, 64, 128, false, true, false)); // 16 heads, head_dim 128
    PARITY(case_matmul(dt, 16, 64, 128, 64, false, false, true));
    PARITY(case_matmul(dt, 2, 31, 29, 0, false, false, false)); // K = 0: zeros
    PARITY(case_matmul(dt, 2, 31, 29, 0, true, false, true));   // K = 0 accumulate: unchanged
    PARITY(case_matmul(dt, 2, 0, 29, 5, false, false, false));
    PARITY(case_matmul(dt, 0, 1, 256, 64, false, false, true)); // a [1, 64] row times [64, 256]
  }
  return parity_finish("test_cuda_parity_elementwise");
}
