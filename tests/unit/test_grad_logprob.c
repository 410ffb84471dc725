// idoc_token_logprobs: forward values against the formulas in double (log-softmax at the target,
// softmax entropy) including huge and -inf logits and unscored rows (negative targets); gradient
// checks of each output alone and of both together; the backward kernel accumulates; and, when a
// GPU is present, the CUDA kernels against the CPU ones (f32 and bf16 storage, Qwen's vocabulary).
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

static idoc_tensor *targets(int64_t n, int64_t v, bool with_unscored) {
  idoc_tensor *t = idoc_tensor_1d(A, IDOC_I32, n);
  for (int64_t i = 0; i < n; i++)
    IDOC_I(t)[i] = with_unscored && i % 4 == 2 ? -1 : (int32_t)idoc_rng_below(&R, (uint64_t)v);
  return t;
}

static idoc_tensor *f_logp(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_token_logprobs(c, in[0], in[1], NULL);
}
static idoc_tensor *f_entropy(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *h;
  idoc_token_logprobs(c, in[0], in[1], &h);
  return h;
}
static idoc_tensor *f_both(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *h, *lp = idoc_token_logprobs(c, in[0], in[1], &h);
  idoc_tensor *xs[2] = {lp, h};
  return idoc_concat(c, xs, 2, 0);
}

// logp, entropy and lse of each row in double.
static void reference(const idoc_tensor *logits, const idoc_tensor *tg, double *lp, double *h,
                      double *lse) {
  int64_t n = logits->shape[0], v = logits->shape[1];
  for (int64_t i = 0; i < n; i++) {
    const float *row = IDOC_F(logits) + i * v;
    double mx = -INFINITY, s = 0, e = 0;
    for (int64_t j = 0; j < v; j++)
      mx = fmax(mx, row[j]);
    for (int64_t j = 0; j < v; j++)
      s += exp(row[j] - mx);
    lse[i] = mx + log(s);
    for (int64_t j = 0; j < v; j++) {
      double p = exp(row[j] - lse[i]);
      if (p > 0) e -= p * (row[j] - lse[i]);
    }
    h[i] = e;
    lp[i] = IDOC_I(tg)[i] < 0 ? 0.0 : row[IDOC_I(tg)[i]] - lse[i];
  }
}

static void test_forward(void) {
  int64_t n = 8, v = 37;
  idoc_tensor *lg = gc_input(A, &R, 2, (int64_t[]){n, v}, -4, 4, false);
  for (int64_t j = 0; j < v; j++) {
    IDOC_F(lg)[1 * v + j] += 1000.0f;                  // would overflow a naive exp
    if (j % 3 == 0) IDOC_F(lg)[3 * v + j] = -INFINITY; // masked vocabulary entries
    IDOC_F(lg)[5 * v + j] = 0.0f;                      // uniform: H = log V
    IDOC_F(lg)[6 * v + j] = j == 4 ? 30.0f : -30.0f;   // near one-hot: H ~ 0
  }
  idoc_tensor *tg = targets(n, v, true);
  IDOC_I(tg)[3] = 1; // a finite entry of the masked row
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *h, *lp = idoc_token_logprobs(c, lg, tg, &h);
  double rl[8], rh[8], rs[8], el = 0, eh = 0;
  reference(lg, tg, rl, rh, rs);
  for (int64_t i = 0; i < n; i++) {
    el = fmax(el, fabs(IDOC_F(lp)[i] - rl[i]) / fmax(1, fabs(rl[i])));
    eh = fmax(eh, fabs(IDOC_F(h)[i] - rh[i]) / fmax(1, fabs(rh[i])));
    T_CHECK(isfinite(IDOC_F(lp)[i]) && isfinite(IDOC_F(h)[i]), "row %lld not finite", (long long)i);
  }
  printf("forward vs double: logp %.3g, entropy %.3g (relative)\n", el, eh);
  T_CHECK(el < 1e-6 && eh < 1e-6, "forward errors logp %g entropy %g", el, eh);
  T_CLOSE(IDOC_F(h)[5], log((double)v), 1e-6, 0);
  T_CHECK(IDOC_F(lp)[2] == 0.0f, "an unscored row has logp 0");
  // Backward with -inf logits stays finite, gives 0 to the masked entries, and accumulates.
  idoc_tensor *dl = idoc_tensor_like(A, lg), *gl = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor *gh = idoc_tensor_1d(A, IDOC_F32, n), *lse = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor_fill(dl, 0.5f);
  idoc_tensor_uniform(gl, &R, -1, 1);
  idoc_tensor_uniform(gh, &R, -1, 1);
  for (int64_t i = 0; i < n; i++)
    IDOC_F(lse)[i] = (float)rs[i];
  cpu_token_logprobs_bwd(dl, lg, lse, tg, h, gl, gh);
  bool finite = true;
  for (int64_t k = 0; k < n * v; k++)
    finite &= isfinite(IDOC_F(dl)[k]);
  T_CHECK(finite, "backward with -inf logits is not finite");
  T_CHECK(IDOC_F(dl)[3 * v + 0] == 0.5f && IDOC_F(dl)[3 * v + 3] == 0.5f,
          "masked entries get nothing added to the existing gradient");
  // Each row's gradient sums to zero (softmax is shift invariant), scored or not.
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t j = 0; j < v; j++)
      s += IDOC_F(dl)[i * v + j] - 0.5;
    T_CLOSE(s, 0.0, 2e-5, 0);
  }
  idoc_ctx_free(c);
}

static void test_gradcheck(void) {
  int64_t shapes[3][2] = {{6, 13}, {9, 5}, {3, 64}};
  for (int k = 0; k < 3; k++) {
    idoc_tensor *lg = gc_input(A, &R, 2, shapes[k], -3, 3, true);
    idoc_tensor *in[2] = {lg, targets(shapes[k][0], shapes[k][1], k != 2)};
    GC_EXPECT("token_logprobs logp", f_logp, NULL, in, 2);
    GC_EXPECT("token_logprobs entropy", f_entropy, NULL, in, 2);
    GC_EXPECT("token_logprobs both", f_both, NULL, in, 2);
  }
  { // large offsets: the stable log-sum-exp keeps the gradient right
    idoc_tensor *lg = gc_input(A, &R, 2, (int64_t[]){4, 7}, -2, 2, true);
    for (int64_t i = 0; i < 28; i++)
      IDOC_F(lg)[i] += 80.0f;
    idoc_tensor *in[2] = {lg, targets(4, 7, false)};
    gc_tol tol = {1e-4, 2e-3, 2e-2}; // h relative to |x| ~ 80
    GC_EXPECT_TOL("token_logprobs offset 80", f_both, NULL, in, 2, tol);
  }
}

// ---- CUDA against the CPU ---------------------------------------------------------------------
static double rel_err(const float *got, const float *want, int64_t n) {
  double md = 0, mw = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(got[i])) return INFINITY;
    md = fmax(md, fabs((double)got[i] - want[i]));
    mw = fmax(mw, fabs((double)want[i]));
  }
  return md / fmax(mw, 1e-30);
}

static void cuda_case(idoc_dtype dt, int64_t n, int64_t v) {
  idoc_device gpu = idoc_dev_cuda(0);
  idoc_arena *G = idoc_arena_new("gpu", gpu, 1 << 20);
  idoc_tensor *lg = idoc_tensor_2d(A, IDOC_F32, n, v), *tg = targets(n, v, true);
  idoc_tensor_normal(lg, &R, 0.0f, 2.0f);
  if (dt == IDOC_BF16) // both sides see the same (bf16-representable) numbers
    for (int64_t k = 0; k < n * v; k++)
      IDOC_F(lg)[k] = idoc_bf16_to_f32(idoc_f32_to_bf16(IDOC_F(lg)[k]));
  idoc_tensor *lp = idoc_tensor_1d(A, IDOC_F32, n), *lse = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor *h = idoc_tensor_1d(A, IDOC_F32, n);
  cpu_token_logprobs_fwd(lp, lse, h, lg, tg);
  idoc_tensor *glg = idoc_tensor_2d(G, dt, n, v), *gtg = idoc_tensor_1d(G, IDOC_I32, n);
  idoc_tensor_convert(glg, lg);
  idoc_tensor_copy(gtg, tg);
  idoc_tensor *glp = idoc_tensor_1d(G, IDOC_F32, n), *glse = idoc_tensor_1d(G, IDOC_F32, n);
  idoc_tensor *gh = idoc_tensor_1d(G, IDOC_F32, n);
  IDOC_K(gpu, token_logprobs_fwd)(glp, glse, gh, glg, gtg);
  float *b1 = idoc_xmalloc((size_t)n * sizeof *b1);
  idoc_tensor_to_host(glp, b1);
  double e1 = rel_err(b1, IDOC_F(lp), n);
  idoc_tensor_to_host(gh, b1);
  double e2 = rel_err(b1, IDOC_F(h), n);
  // Backward from both outputs into an existing gradient.
  idoc_tensor *dl = idoc_tensor_2d(A, IDOC_F32, n, v), *gdl = idoc_tensor_2d(G, dt, n, v);
  idoc_tensor_normal(dl, &R, 0.0f, 1e-3f);
  if (dt == IDOC_BF16)
    for (int64_t k = 0; k < n * v; k++)
      IDOC_F(dl)[k] = idoc_bf16_to_f32(idoc_f32_to_bf16(IDOC_F(dl)[k]));
  idoc_tensor_convert(gdl, dl);
  idoc_tensor *g1 = idoc_tensor_1d(A, IDOC_F32, n), *g2 = idoc_tensor_1d(A, IDOC_F32, n);
  idoc_tensor_uniform(g1, &R, -1, 1);
  idoc_tensor_uniform(g2, &R, -1, 1);
  idoc_tensor *gg1 = idoc_tensor_1d(G, IDOC_F32, n), *gg2 = idoc_tensor_1d(G, IDOC_F32, n);
  idoc_tensor_copy(gg1, g1);
  idoc_tensor_copy(gg2, g2);
  cpu_token_logprobs_bwd(dl, lg, lse, tg, h, g1, g2);
  IDOC_K(gpu, token_logprobs_bwd)(gdl, glg, glse, gtg, gh, gg1, gg2);
  idoc_tensor *back = idoc_tensor_2d(A, IDOC_F32, n, v);
  idoc_tensor_convert(back, gdl);
  double e3 = rel_err(IDOC_F(back), IDOC_F(dl), n * v);
  double tol = dt == IDOC_F32 ? 1e-5 : 1e-2;
  printf("CASE token_logprobs %-4s n=%lld V=%lld logp %.3e entropy %.3e dlogits %.3e\n",
         idoc_dtype_name(dt), (long long)n, (long long)v, e1, e2, e3);
  T_CHECK(e1 <= 1e-5 && e2 <= 1e-5 && e3 <= tol, "cuda token_logprobs %s V=%lld: %g %g %g",
          idoc_dtype_name(dt), (long long)v, e1, e2, e3);
  free(b1);
  idoc_arena_free(G);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 5);
  test_forward();
  test_gradcheck();
  if (idoc_cuda_available()) {
    for (int d = 0; d < 2; d++) {
      cuda_case(d ? IDOC_BF16 : IDOC_F32, 7, 1000);
      cuda_case(d ? IDOC_BF16 : IDOC_F32, 5, 151936);
    }
  } else {
    T_SKIP("no GPU: CUDA token_logprobs kernels not compared with the CPU");
  }
  idoc_arena_free(A);
  return t_summary("test_grad_logprob");
}
