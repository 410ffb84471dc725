// idoc-requires: cuda
// CUDA kernels against the CPU reference on random data, with f32 and bf16 storage: linear
// (cuBLAS), RMSNorm, cross-entropy, add/scale/axpy/sum, and linear + cross-entropy end to end
// through the autograd layer. bf16 inputs are rounded to bf16 on the CPU side first, so both
// backends see the same numbers and only the GPU's fp32-accumulate / bf16-store differs.
// Error metric: max|gpu - cpu| / max|cpu| per output. One "CASE" line per comparison
// (scripts/gpu_check.sh collects them). Skips (exit 0) when no GPU is present.
#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "nn/ops.h"
#include "tests/test.h"

static idoc_arena *H, *G; // host and GPU arenas, reset after every case
static idoc_rng R;
static const idoc_device GPU = {IDOC_CUDA, 0};

// fp32 tolerance is tight enough to catch TF32 GEMMs (errors ~1e-4 and up); bf16 allows the
// final rounding to bf16 (2^-9 relative) plus accumulation-order differences.
static double tol(idoc_dtype dt) { return dt == IDOC_F32 ? 1e-5 : 1e-2; }

static void round_bf16(idoc_tensor *t) {
  for (int64_t i = 0; i < idoc_numel(t); i++)
    IDOC_F(t)[i] = idoc_bf16_to_f32(idoc_f32_to_bf16(IDOC_F(t)[i]));
}
// Random N(0, std) host f32 tensor, rounded to bf16 values when the case runs in bf16.
static idoc_tensor *hrand(idoc_dtype dt, int nd, const int64_t *s, float std) {
  idoc_tensor *t = idoc_tensor_new(H, IDOC_F32, nd, s);
  idoc_tensor_normal(t, &R, 0.0f, std);
  if (dt == IDOC_BF16) round_bf16(t);
  return t;
}
static idoc_tensor *hcopy(const idoc_tensor *h) {
  idoc_tensor *t = idoc_tensor_like(H, h);
  idoc_tensor_copy(t, h);
  return t;
}
// GPU copy of a host tensor in storage dtype dt (i32 stays i32).
static idoc_tensor *up(const idoc_tensor *h, idoc_dtype dt) {
  idoc_tensor *g = idoc_tensor_new(G, h->dtype == IDOC_I32 ? IDOC_I32 : dt, h->ndim, h->shape);
  idoc_tensor_convert(g, h);
  return g;
}
static idoc_tensor *down(const idoc_tensor *g) {
  idoc_tensor *h = idoc_tensor_new(H, IDOC_F32, g->ndim, g->shape);
  idoc_tensor_convert(h, g);
  return h;
}

static double worst_ratio; // max over cases of err / tol, for the summary line

static void compare(const char *kernel, idoc_dtype dt, const char *shape, const char *what,
                    const idoc_tensor *gpu, const idoc_tensor *want, double tolerance) {
  idoc_tensor *got = down(gpu);
  double md = 0, mw = 0;
  int64_t n = idoc_numel(want);
  bool finite = true;
  for (int64_t i = 0; i < n; i++) {
    double g = IDOC_F(got)[i], w = IDOC_F(want)[i];
    if (!isfinite(g)) finite = false;
    md = fmax(md, fabs(g - w));
    mw = fmax(mw, fabs(w));
  }
  double err = finite ? md / fmax(mw, 1e-30) : INFINITY;
  if (err / tolerance > worst_ratio) worst_ratio = err / tolerance;
  bool ok = err <= tolerance;
  printf("CASE %-17s %-4s %-22s %-6s rel_err=%.3e tol=%.0e %s\n", kernel, idoc_dtype_name(dt),
         shape, what, err, tolerance, ok ? "ok" : "FAIL");
  T_CHECK(ok, "%s %s %s %s: rel_err %.3e > %.0e", kernel, idoc_dtype_name(dt), shape, what, err,
          tolerance);
}

static bool bits_equal(const idoc_tensor *a, const idoc_tensor *b) {
  size_t n = idoc_nbytes(a);
  char *x = idoc_xmalloc(n), *y = idoc_xmalloc(n);
  idoc_tensor_to_host(a, x);
  idoc_tensor_to_host(b, y);
  bool eq = memcmp(x, y, n) == 0;
  free(x);
  free(y);
  return eq;
}

static void reset(void) {
  idoc_arena_reset(H);
  idoc_arena_reset(G);
}

// ---- linear -----------------------------------------------------------------------------------
// x has `lead` leading dims (n = product), so [2,3,I] inputs are covered too.
static void case_linear(idoc_dtype dt, int nlead, const int64_t *lead, int64_t in, int64_t out,
                        bool bias, bool all_grads) {
  int64_t xs[4], n = 1;
  for (int i = 0; i < nlead; i++)
    xs[i] = lead[i], n *= lead[i];
  xs[nlead] = in;
  int64_t ys[4];
  memcpy(ys, xs, sizeof xs);
  ys[nlead] = out;
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld I=%lld O=%lld%s", (long long)n, (long long)in,
           (long long)out, bias ? " +b" : "");
  float ws = 1.0f / sqrtf((float)in);
  idoc_tensor *x = hrand(dt, nlead + 1, xs, 1.0f), *w = hrand(dt, 2, (int64_t[]){out, in}, ws);
  idoc_tensor *b = bias ? hrand(dt, 1, &out, 1.0f) : NULL;
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, nlead + 1, ys);
  cpu_linear_fwd(y, x, w, b);
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gb = b ? up(b, dt) : NULL;
  idoc_tensor *gy = idoc_tensor_new(G, dt, nlead + 1, ys);
  IDOC_K(GPU, linear_fwd)(gy, gx, gw, gb);
  compare("linear_fwd", dt, shape, "y", gy, y, tol(dt));

  // Backward accumulates into nonzero gradients; NULL outputs are skipped.
  idoc_tensor *dy = hrand(dt, nlead + 1, ys, 1.0f);
  idoc_tensor *dx = all_grads ? hrand(dt, nlead + 1, xs, 1.0f) : NULL;
  idoc_tensor *dw = hrand(dt, 2, (int64_t[]){out, in}, 1.0f);
  idoc_tensor *db = bias && all_grads ? hrand(dt, 1, &out, 1.0f) : NULL;
  idoc_tensor *gdy = up(dy, dt), *gdx = dx ? up(dx, dt) : NULL, *gdw = up(dw, dt);
  idoc_tensor *gdb = db ? up(db, dt) : NULL;
  cpu_linear_bwd(dx, dw, db, dy, x, w);
  IDOC_K(GPU, linear_bwd)(gdx, gdw, gdb, gdy, gx, gw);
  if (dx) compare("linear_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  compare("linear_bwd", dt, shape, "dw", gdw, dw, tol(dt));
  if (db) compare("linear_bwd", dt, shape, "db", gdb, db, tol(dt));
  reset();
}

// ---- rmsnorm ----------------------------------------------------------------------------------
static void case_rmsnorm(idoc_dtype dt, int64_t rows, int64_t c) {
  char shape[64];
  snprintf(shape, sizeof shape, "rows=%lld C=%lld", (long long)rows, (long long)c);
  float eps = 1e-6f;
  int64_t s[2] = {rows, c};
  idoc_tensor *x = hrand(dt, 2, s, 1.0f), *w = hrand(dt, 1, &c, 1.0f);
  for (int64_t j = 0; j < c; j++)
    IDOC_F(w)[j] += 1.0f; // weights near 1, as trained
  if (dt == IDOC_BF16) round_bf16(w);
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 2, s), *rstd = idoc_tensor_1d(H, IDOC_F32, rows);
  cpu_rmsnorm_fwd(y, rstd, x, w, eps);
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gy = idoc_tensor_new(G, dt, 2, s);
  idoc_tensor *grstd = idoc_tensor_1d(G, IDOC_F32, rows);
  IDOC_K(GPU, rmsnorm_fwd)(gy, grstd, gx, gw, eps);
  compare("rmsnorm_fwd", dt, shape, "y", gy, y, tol(dt));
  compare("rmsnorm_fwd", dt, shape, "rstd", grstd, rstd, 1e-5); // f32 output either way

  idoc_tensor *dy = hrand(dt, 2, s, 1.0f), *dx = hrand(dt, 2, s, 1.0f);
  idoc_tensor *dw = hrand(dt, 1, &c, 1.0f);
  idoc_tensor *gdy = up(dy, dt), *gdx = up(dx, dt), *gdw = up(dw, dt), *gdw2 = up(dw, dt);
  cpu_rmsnorm_bwd(dx, dw, dy, x, w, rstd);
  // The GPU backward uses its own rstd, as the op would.
  IDOC_K(GPU, rmsnorm_bwd)(gdx, gdw, gdy, gx, gw, grstd);
  compare("rmsnorm_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  compare("rmsnorm_bwd", dt, shape, "dw", gdw, dw, tol(dt));
  // dw is reduced without atomics: a second run gives the same bits.
  IDOC_K(GPU, rmsnorm_bwd)(NULL, gdw2, gdy, gx, gw, grstd);
  T_CHECK(bits_equal(gdw, gdw2), "rmsnorm_bwd dw is not deterministic (%s)", shape);
  reset();
}

// ---- cross-entropy ----------------------------------------------------------------------------
// Every `ignore_every`-th row (0: none; 1: all) gets the ignore index.
static void case_ce(idoc_dtype dt, int64_t n, int64_t v, int ignore_every) {
  const int ignore = -100;
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld V=%lld ign=1/%d", (long long)n, (long long)v, ignore_every);
  int64_t s[2] = {n, v};
  idoc_tensor *logits = hrand(dt, 2, s, 3.0f);
  idoc_tensor *tg = idoc_tensor_1d(H, IDOC_I32, n);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    bool ign = ignore_every && i % ignore_every == 0;
    IDOC_I(tg)[i] = ign ? ignore : (int32_t)idoc_rng_below(&R, (uint64_t)v);
    kept += !ign;
  }
  idoc_tensor *loss = idoc_tensor_1d(H, IDOC_F32, n), *lse = idoc_tensor_1d(H, IDOC_F32, n);
  cpu_cross_entropy_fwd(loss, lse, logits, tg, ignore);
  idoc_tensor *gl = up(logits, dt), *gt = up(tg, dt);
  idoc_tensor *gloss = idoc_tensor_1d(G, IDOC_F32, n), *glse = idoc_tensor_1d(G, IDOC_F32, n);
  IDOC_K(GPU, cross_entropy_fwd)(gloss, glse, gl, gt, ignore);
  compare("cross_entropy_fwd", dt, shape, "loss", gloss, loss, 1e-5);
  compare("cross_entropy_fwd", dt, shape, "lse", glse, lse, 1e-5);

  float dscale = kept ? 1.0f / (float)kept : 0.0f;
  idoc_tensor *dl = hrand(dt, 2, s, 1e-3f), *gdl = up(dl, dt);
  cpu_cross_entropy_bwd(dl, logits, lse, tg, ignore, dscale);
  IDOC_K(GPU, cross_entropy_bwd)(gdl, gl, glse, gt, ignore, dscale);
  compare("cross_entropy_bwd", dt, shape, "dlogit", gdl, dl, tol(dt));
  reset();
}

// ---- elementwise ------------------------------------------------------------------------------
static void case_add(idoc_dtype dt, int na, const int64_t *sa, int nb, const int64_t *sb) {
  idoc_tensor *a = hrand(dt, na, sa, 1.0f), *b = hrand(dt, nb, sb, 1.0f);
  char shape[64];
  snprintf(shape, sizeof shape, "a=%lld b=%lld", (long long)idoc_numel(a),
           (long long)idoc_numel(b));
  idoc_tensor *y = idoc_tensor_like(H, a);
  cpu_add_fwd(y, a, b);
  idoc_tensor *ga = up(a, dt), *gb = up(b, dt), *gy = idoc_tensor_new(G, dt, na, sa);
  IDOC_K(GPU, add_fwd)(gy, ga, gb);
  compare("add_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *dy = hrand(dt, na, sa, 1.0f), *da = hrand(dt, na, sa, 1.0f);
  idoc_tensor *db = hrand(dt, nb, sb, 1.0f);
  idoc_tensor *gdy = up(dy, dt), *gda = up(da, dt), *gdb = up(db, dt);
  cpu_add_bwd(da, db, dy);
  IDOC_K(GPU, add_bwd)(gda, gdb, gdy);
  compare("add_bwd", dt, shape, "da", gda, da, tol(dt));
  compare("add_bwd", dt, shape, "db", gdb, db, tol(dt));
  reset();
}

static void case_scale_axpy_sum(idoc_dtype dt, int64_t n) {
  char shape[64];
  snprintf(shape, sizeof shape, "n=%lld", (long long)n);
  idoc_tensor *x = hrand(dt, 1, &n, 1.0f), *y = idoc_tensor_like(H, x);
  cpu_scale_fwd(y, x, -1.75f);
  idoc_tensor *gx = up(x, dt), *gy = idoc_tensor_new(G, dt, 1, &n);
  IDOC_K(GPU, scale_fwd)(gy, gx, -1.75f);
  compare("scale_fwd", dt, shape, "y", gy, y, tol(dt));

  idoc_tensor *acc = hrand(dt, 1, &n, 1.0f), *gacc = up(acc, dt);
  cpu_axpy(acc, x, 0.37f);
  IDOC_K(GPU, axpy)(gacc, gx, 0.37f);
  compare("axpy", dt, shape, "y", gacc, acc, tol(dt));

  // Positive values, so the relative error is not inflated by cancellation.
  idoc_tensor *p = idoc_tensor_new(H, IDOC_F32, 1, &n);
  idoc_tensor_uniform(p, &R, 0.5f, 1.5f);
  if (dt == IDOC_BF16) round_bf16(p);
  idoc_tensor *s = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  cpu_sum(s, p);
  idoc_tensor *gp = up(p, dt), *gs = idoc_tensor_new(G, IDOC_F32, 0, NULL);
  idoc_tensor *gs2 = idoc_tensor_new(G, IDOC_F32, 0, NULL);
  IDOC_K(GPU, sum)(gs, gp);
  compare("sum", dt, shape, "out", gs, s, 1e-5); // fp32 accumulation of exact inputs
  IDOC_K(GPU, sum)(gs2, gp);
  T_CHECK(bits_equal(gs, gs2), "sum is not deterministic (%s)", shape);
  reset();
}

// ---- end to end through autograd ---------------------------------------------------------------
static void case_e2e(idoc_dtype dt, int64_t n, int64_t in, int64_t vocab) {
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld I=%lld V=%lld", (long long)n, (long long)in,
           (long long)vocab);
  idoc_tensor *x = hrand(dt, 2, (int64_t[]){n, in}, 1.0f);
  idoc_tensor *w = hrand(dt, 2, (int64_t[]){vocab, in}, 1.0f / sqrtf((float)in));
  idoc_tensor *b = hrand(dt, 1, &vocab, 0.1f), *tg = idoc_tensor_1d(H, IDOC_I32, n);
  for (int64_t i = 0; i < n; i++)
    IDOC_I(tg)[i] = i % 5 == 2 ? -100 : (int32_t)idoc_rng_below(&R, (uint64_t)vocab);
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gb = up(b, dt), *gt = up(tg, dt);
  idoc_tensor *leaves[2][3] = {{x, w, b}, {gx, gw, gb}};
  idoc_tensor *loss[2];
  for (int d = 0; d < 2; d++) {
    for (int k = 0; k < 3; k++)
      leaves[d][k]->requires_grad = true;
    idoc_ctx *c = idoc_ctx_new(d ? GPU : IDOC_DEV_CPU, 0);
    idoc_tensor *logits = idoc_linear(c, leaves[d][0], leaves[d][1], leaves[d][2]);
    loss[d] = idoc_cross_entropy(c, logits, d ? gt : tg, -100);
    idoc_backward(c, loss[d]);
    float lv = idoc_tensor_get(loss[d], 0);
    if (d == 0) {
      // CPU gradients move to the host arena before the context (and its arena) goes away.
      for (int k = 0; k < 3; k++)
        leaves[0][k]->grad = hcopy(leaves[0][k]->grad);
      loss[0] = idoc_tensor_new(H, IDOC_F32, 0, NULL);
      IDOC_F(loss[0])[0] = lv;
    } else {
      idoc_tensor *lh = idoc_tensor_new(H, IDOC_F32, 0, NULL);
      IDOC_F(lh)[0] = lv;
      // bf16 runs keep bf16 logits, so the loss is compared at the bf16 tolerance.
      compare("e2e_linear_ce", dt, shape, "loss", lh, loss[0], tol(dt));
      const char *names[3] = {"dx", "dw", "db"};
      for (int k = 0; k < 3; k++) {
        T_CHECK(leaves[1][k]->grad != NULL, "e2e: no GPU gradient for %s", names[k]);
        if (leaves[1][k]->grad)
          compare("e2e_linear_ce", dt, shape, names[k], leaves[1][k]->grad, leaves[0][k]->grad,
                  tol(dt));
      }
    }
    idoc_ctx_free(c);
  }
  reset();
}

int main(void) {
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device (idoc_cuda_available() is false): CUDA parity not checked");
    return t_summary("test_cuda_parity");
  }
  printf("device: %s\n", idoc_cuda_device_name());
  idoc_rng_seed(&R, 1234);
  H = idoc_arena_new("host", IDOC_DEV_CPU, 0);
  G = idoc_arena_new("gpu", GPU, 0);
  for (int d = 0; d < 2; d++) {
    idoc_dtype dt = d ? IDOC_BF16 : IDOC_F32;
    case_linear(dt, 1, (int64_t[]){1}, 1, 1, true, true);
    case_linear(dt, 1, (int64_t[]){5}, 7, 3, true, true);
    case_linear(dt, 1, (int64_t[]){64}, 33, 17, false, true);
    case_linear(dt, 1, (int64_t[]){128}, 256, 96, true, true);
    case_linear(dt, 2, (int64_t[]){3, 4}, 16, 8, true, false);
    case_linear(dt, 1, (int64_t[]){200}, 1024, 520, true, true);

    case_rmsnorm(dt, 1, 1);
    case_rmsnorm(dt, 3, 7);
    case_rmsnorm(dt, 64, 128);
    case_rmsnorm(dt, 37, 1000);
    case_rmsnorm(dt, 300, 2048);

    case_ce(dt, 1, 1, 0);
    case_ce(dt, 4, 7, 0);
    case_ce(dt, 16, 1000, 3);
    case_ce(dt, 9, 1001, 4);
    case_ce(dt, 3, 151936, 0);
    case_ce(dt, 2, 50, 1); // every row ignored

    case_add(dt, 2, (int64_t[]){6, 10}, 1, (int64_t[]){10});
    case_add(dt, 3, (int64_t[]){5, 3, 4}, 3, (int64_t[]){5, 3, 4});
    case_add(dt, 1, (int64_t[]){7}, 1, (int64_t[]){1});
    case_add(dt, 2, (int64_t[]){1000, 64}, 2, (int64_t[]){1, 64});

    case_scale_axpy_sum(dt, 1);
    case_scale_axpy_sum(dt, 1000);
    case_scale_axpy_sum(dt, 1000003);

    case_e2e(dt, 24, 32, 100);
    case_e2e(dt, 7, 5, 1000);
  }
  printf("worst error / tolerance over all cases: %.3f\n", worst_ratio);
  idoc_arena_free(H);
  idoc_arena_free(G);
  return t_summary("test_cuda_parity");
}
