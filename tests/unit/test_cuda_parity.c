// idoc-requires: cuda
// CUDA kernels against the CPU reference (harness: tests/unit/cuda_parity_util.h): linear
// (cuBLAS), RMSNorm, cross-entropy, token log-probabilities and entropies, add/scale/axpy/sum,
// and linear + cross-entropy end to end through the autograd layer.
#include "tests/unit/cuda_parity_util.h"

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
  idoc_tensor *gy = dev_new(dt, nlead + 1, ys);
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
  idoc_tensor *gx = up(x, dt), *gw = up(w, dt), *gy = dev_new(dt, 2, s);
  idoc_tensor *grstd = dev_new(IDOC_F32, 1, &rows);
  IDOC_K(GPU, rmsnorm_fwd)(gy, grstd, gx, gw, eps);
  compare("rmsnorm_fwd", dt, shape, "y", gy, y, tol(dt));
  compare("rmsnorm_fwd", dt, shape, "rstd", grstd, rstd, 1e-5); // f32 output either way

  idoc_tensor *dy = hrand(dt, 2, s, 1.0f), *dx = hrand(dt, 2, s, 1.0f);
  idoc_tensor *dw = hrand(dt, 1, &c, 1.0f);
  idoc_tensor *gdy = up(dy, dt), *gdx = up(dx, dt), *gdw = up(dw, dt);
  cpu_rmsnorm_bwd(dx, dw, dy, x, w, rstd);
  // The GPU backward uses its own rstd, as the op would.
  IDOC_K(GPU, rmsnorm_bwd)(gdx, gdw, gdy, gx, gw, grstd);
  compare("rmsnorm_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  compare("rmsnorm_bwd", dt, shape, "dw", gdw, dw, tol(dt));
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
  idoc_tensor *gloss = dev_new(IDOC_F32, 1, &n), *glse = dev_new(IDOC_F32, 1, &n);
  IDOC_K(GPU, cross_entropy_fwd)(gloss, glse, gl, gt, ignore);
  compare("cross_entropy_fwd", dt, shape, "loss", gloss, loss, 1e-5);
  compare("cross_entropy_fwd", dt, shape, "lse", glse, lse, 1e-5);

  float dscale = kept ? 1.0f / (float)kept : 0.0f;
  // The accumulated-into gradient is on the scale of the update (dscale), so the fp32
  // reference's d + p - 1 does not lose the digits the comparison measures.
  idoc_tensor *dl = hrand(dt, 2, s, dscale > 0 ? dscale : 1.0f), *gdl = up(dl, dt);
  cpu_cross_entropy_bwd(dl, logits, lse, tg, ignore, dscale);
  IDOC_K(GPU, cross_entropy_bwd)(gdl, gl, glse, gt, ignore, dscale);
  compare("cross_entropy_bwd", dt, shape, "dlogit", gdl, dl, tol(dt));

  // The mean's backward with its upstream gradient on the device (what the op uses).
  idoc_tensor *dout = idoc_tensor_new(H, IDOC_F32, 0, NULL);
  IDOC_F(dout)[0] = 0.75f;
  idoc_tensor *gdout = up(dout, IDOC_F32);
  idoc_tensor *dm = hrand(dt, 2, s, dscale > 0 ? dscale : 1.0f), *gdm = up(dm, dt);
  cpu_cross_entropy_mean_bwd(dm, logits, lse, tg, ignore, dout, (float)kept);
  IDOC_K(GPU, cross_entropy_mean_bwd)(gdm, gl, glse, gt, ignore, gdout, (float)kept);
  compare("cross_entropy_mean_bwd", dt, shape, "dlogit", gdm, dm, tol(dt));
  IDOC_K(GPU, cross_entropy_mean_bwd)(NULL, gl, glse, gt, ignore, gdout, (float)kept); // skipped
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
  idoc_tensor *ga = up(a, dt), *gb = up(b, dt), *gy = dev_new(dt, na, sa);
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
  idoc_tensor *gx = up(x, dt), *gy = dev_new(dt, 1, &n);
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
  idoc_tensor *gp = up(p, dt), *gs = dev_new(IDOC_F32, 0, NULL);
  IDOC_K(GPU, sum)(gs, gp);
  compare("sum", dt, shape, "out", gs, s, 1e-5); // fp32 accumulation of exact inputs
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

// ---- token log-probabilities and entropies ------------------------------------------------------
// Every `neg_every`-th row has a negative target (logp 0); with_entropy adds H and its gradient.
static void case_logprobs(idoc_dtype dt, int64_t n, int64_t v, int neg_every, bool with_entropy) {
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld V=%lld neg=1/%d%s", (long long)n, (long long)v, neg_every,
           with_entropy ? " +H" : "");
  int64_t s[2] = {n, v};
  idoc_tensor *logits = hrand(dt, 2, s, 2.0f), *tg = idoc_tensor_1d(H, IDOC_I32, n);
  for (int64_t i = 0; i < n; i++)
    IDOC_I(tg)[i] = neg_every && i % neg_every == 1 ? -1 : (int32_t)idoc_rng_below(&R, (uint64_t)v);
  idoc_tensor *lp = idoc_tensor_1d(H, IDOC_F32, n), *lse = idoc_tensor_1d(H, IDOC_F32, n);
  idoc_tensor *ent = with_entropy ? idoc_tensor_1d(H, IDOC_F32, n) : NULL;
  cpu_token_logprobs_fwd(lp, lse, ent, logits, tg);
  idoc_tensor *gl = up(logits, dt), *gt = up(tg, dt);
  idoc_tensor *glp = dev_new(IDOC_F32, 1, &n), *glse = dev_new(IDOC_F32, 1, &n);
  idoc_tensor *gent = with_entropy ? dev_new(IDOC_F32, 1, &n) : NULL;
  IDOC_K(GPU, token_logprobs_fwd)(glp, glse, gent, gl, gt);
  compare("token_logprobs_fwd", dt, shape, "logp", glp, lp, 1e-5);
  compare("token_logprobs_fwd", dt, shape, "lse", glse, lse, 1e-5);
  if (ent) compare("token_logprobs_fwd", dt, shape, "entropy", gent, ent, 1e-5);

  idoc_tensor *dlp = hrand(IDOC_F32, 1, &n, 1.0f),
              *dent = with_entropy ? hrand(IDOC_F32, 1, &n, 1.0f) : NULL;
  idoc_tensor *dl = hrand(dt, 2, s, 0.1f), *gdl = up(dl, dt);
  cpu_token_logprobs_bwd(dl, logits, lse, tg, ent, dlp, dent);
  IDOC_K(GPU, token_logprobs_bwd)
  (gdl, gl, glse, gt, gent, up(dlp, IDOC_F32), dent ? up(dent, IDOC_F32) : NULL);
  compare("token_logprobs_bwd", dt, shape, "dlogit", gdl, dl, tol(dt));
  reset();
}

// ---- next-token choice ------------------------------------------------------------------------
// n outputs over R logits rows (rows[i] = i % R, seen slot n-1-i), every 97th token suppressed,
// one row of ties at the top: the same tokens and marks as the CPU (exactly), log-probs 1e-6.
static void case_sample(idoc_dtype dt, int64_t n, int64_t R_, int64_t v, idoc_sample_opts o) {
  char shape[96];
  snprintf(shape, sizeof shape, "n=%lld V=%lld %s t%g k%d p%g r%g", (long long)n, (long long)v,
           o.do_sample ? "sample" : "greedy", (double)o.temperature, o.top_k, (double)o.top_p,
           (double)o.penalty);
  int64_t s[2] = {R_, v};
  idoc_tensor *logits = hrand(dt, 2, s, 3.0f);
  for (int64_t j = 0; j < v && R_ > 1; j += 5)
    IDOC_F(logits)[v + j] = 8.0f;
  idoc_tensor *rows = idoc_tensor_1d(H, IDOC_I32, n), *slots = idoc_tensor_1d(H, IDOC_I32, n);
  idoc_tensor *u = idoc_tensor_new(H, IDOC_F64, 1, &n);
  idoc_tensor *seen = idoc_tensor_new(H, IDOC_U8, 2, (int64_t[]){n, v});
  idoc_tensor *sup = idoc_tensor_new(H, IDOC_U8, 1, &v);
  memset(seen->data, 0, (size_t)(n * v));
  for (int64_t j = 0; j < v; j++)
    ((uint8_t *)sup->data)[j] = j % 97 == 1;
  for (int64_t i = 0; i < n; i++) {
    IDOC_I(rows)[i] = (int32_t)(i % R_);
    IDOC_I(slots)[i] = (int32_t)(n - 1 - i);
    ((double *)u->data)[i] = idoc_rng_uniform(&R);
    for (int64_t j = i; j < v; j += 3 + i)
      ((uint8_t *)seen->data)[(n - 1 - i) * v + j] = 1;
  }
  idoc_tensor *gl = up(logits, dt), *grows = up(rows, dt), *gslots = up(slots, dt);
  idoc_tensor *gseen = up(seen, dt), *gsup = up(sup, dt), *gu = dev_new(IDOC_F64, 1, &n);
  idoc_tensor_copy(gu, u);
  idoc_tensor *tok = idoc_tensor_1d(H, IDOC_I32, n), *lp = idoc_tensor_1d(H, IDOC_F32, n);
  idoc_tensor *lps = idoc_tensor_1d(H, IDOC_F32, n);
  idoc_tensor *work = idoc_tensor_2d(H, IDOC_F32, n, 7 * v);
  cpu_sample_tokens(tok, lp, lps, seen, work, logits, rows, slots, NULL, sup, u, &o);
  idoc_tensor *gtok = dev_new(IDOC_I32, 1, &n), *glp = dev_new(IDOC_F32, 1, &n);
  idoc_tensor *glps = dev_new(IDOC_F32, 1, &n),
              *gwork = dev_new(IDOC_F32, 2, (int64_t[]){n, 7 * v});
  IDOC_K(GPU, sample_tokens)(gtok, glp, glps, gseen, gwork, gl, grows, gslots, NULL, gsup, gu, &o);
  compare("sample_tokens", dt, shape, "token", gtok, down(tok), 0.0);
  compare("sample_tokens", dt, shape, "marks", gseen, down(seen), 0.0);
  compare("sample_tokens", dt, shape, "logp", glp, lp, 1e-6);
  compare("sample_tokens", dt, shape, "logp_t", glps, lps, 1e-6);
  reset();
}

int main(void) {
  if (!parity_init(1234)) return t_summary("test_cuda_parity");
  for (int d = 0; d < 2; d++) {
    idoc_dtype dt = d ? IDOC_BF16 : IDOC_F32;
    PARITY(case_linear(dt, 1, (int64_t[]){1}, 1, 1, true, true));
    PARITY(case_linear(dt, 1, (int64_t[]){5}, 7, 3, true, true));
    PARITY(case_linear(dt, 1, (int64_t[]){64}, 33, 17, false, true));
    PARITY(case_linear(dt, 1, (int64_t[]){128}, 256, 96, true, true));
    PARITY(case_linear(dt, 2, (int64_t[]){3, 4}, 16, 8, true, false));
    PARITY(case_linear(dt, 1, (int64_t[]){131}, 509, 263, true, true));
    PARITY(case_linear(dt, 1, (int64_t[]){0}, 8, 4, true, true));

    PARITY(case_rmsnorm(dt, 1, 2)); // C = 1 is all cancellation: dx ~ eps / x^2
    PARITY(case_rmsnorm(dt, 3, 7));
    PARITY(case_rmsnorm(dt, 64, 128));
    PARITY(case_rmsnorm(dt, 37, 1000));
    PARITY(case_rmsnorm(dt, 300, 2048));

    PARITY(case_ce(dt, 1, 1, 0));
    PARITY(case_ce(dt, 4, 7, 0));
    PARITY(case_ce(dt, 16, 1000, 3));
    PARITY(case_ce(dt, 9, 1001, 4));
    PARITY(case_ce(dt, 3, 151936, 0));
    PARITY(case_ce(dt, 2, 50, 1)); // every row ignored

    PARITY(case_logprobs(dt, 1, 1, 0, true));
    PARITY(case_logprobs(dt, 5, 13, 3, true));
    PARITY(case_logprobs(dt, 7, 1003, 2, false));
    PARITY(case_logprobs(dt, 3, 151936, 0, true));

    PARITY(case_sample(dt, 8, 3, 1000, (idoc_sample_opts){false, 1.0f, 1.0f, 0, 1.0f}));
    PARITY(case_sample(dt, 8, 3, 1000, (idoc_sample_opts){false, 1.0f, 1.0f, 0, 1.3f}));
    PARITY(case_sample(dt, 8, 3, 1000, (idoc_sample_opts){true, 1.0f, 1.0f, 50, 1.0f}));
    PARITY(case_sample(dt, 8, 3, 1000, (idoc_sample_opts){true, 0.7f, 0.9f, 0, 1.2f}));
    PARITY(case_sample(dt, 2, 2, 151936, (idoc_sample_opts){true, 1.3f, 0.6f, 7, 1.05f}));

    PARITY(case_add(dt, 2, (int64_t[]){6, 10}, 1, (int64_t[]){10}));
    PARITY(case_add(dt, 3, (int64_t[]){5, 3, 4}, 3, (int64_t[]){5, 3, 4}));
    PARITY(case_add(dt, 1, (int64_t[]){7}, 1, (int64_t[]){1}));
    PARITY(case_add(dt, 2, (int64_t[]){1000, 64}, 2, (int64_t[]){1, 64}));

    PARITY(case_scale_axpy_sum(dt, 1));
    PARITY(case_scale_axpy_sum(dt, 1000));
    PARITY(case_scale_axpy_sum(dt, 1000003));

    PARITY(case_e2e(dt, 24, 32, 100));
    PARITY(case_e2e(dt, 7, 5, 1000));
  }
  return parity_finish("test_cuda_parity");
}
