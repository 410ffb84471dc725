// The fused LM head + loss ops (idoc_head_cross_entropy, idoc_head_token_logprobs): chunked runs
// against the plain linear + loss ops (values and the gradients of the hidden states and the
// head weight, ignored / unscored rows, a last chunk shorter than the others), finite-difference
// checks, the activation arena's peak (a [T, V] logits buffer is never materialised: the peak
// drops by about (T - chunk) * V * 8 bytes), and, when a GPU is present, the same on it against
// the CPU.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

enum { N = 45, H = 16, V = 300 };

typedef struct {
  float val[2 * N];           // CE: the loss in [0]; log-probs: logp then entropy
  float dh[N * H], dw[V * H]; // gradients
  size_t peak;                // the activation arena's high-water mark
} result;

// One forward + backward on `dev` of mode 0 (CE, ignore index -100) or 1 (log-probs and
// entropies weighted by fixed random coefficients), `chunk` rows at a time.
static void run(idoc_device dev, int mode, int64_t chunk, const idoc_tensor *h0,
                const idoc_tensor *w0, const idoc_tensor *t0, const idoc_tensor *coef,
                result *out) {
  idoc_ctx *c = idoc_ctx_new(dev, (size_t)8 << 20);
  idoc_arena *P = idoc_arena_new("inputs", dev, (size_t)1 << 20);
  idoc_tensor *h = idoc_tensor_like(P, h0), *w = idoc_tensor_like(P, w0);
  idoc_tensor *t = idoc_tensor_like(P, t0);
  idoc_tensor_copy(h, h0);
  idoc_tensor_copy(w, w0);
  idoc_tensor_copy(t, t0);
  h->requires_grad = w->requires_grad = true;
  idoc_tensor *loss;
  if (mode == 0) {
    loss = idoc_head_cross_entropy(c, h, w, t, -100, chunk);
    idoc_tensor_to_host(loss, out->val);
  } else {
    idoc_tensor *ent, *lp = idoc_head_token_logprobs(c, h, w, t, &ent, chunk);
    idoc_tensor_to_host(lp, out->val);
    idoc_tensor_to_host(ent, out->val + N);
    idoc_tensor *xs[2] = {lp, ent};
    idoc_tensor *k = idoc_ctx_on_device(c, (idoc_tensor *)coef);
    loss = idoc_sum(c, idoc_mul(c, idoc_concat(c, xs, 2, 0), k));
  }
  idoc_backward(c, loss);
  idoc_tensor_to_host(h->grad, out->dh);
  idoc_tensor_to_host(w->grad, out->dw);
  out->peak = idoc_arena_peak(c->act);
  idoc_arena_free(P);
  idoc_ctx_free(c);
}

static double rel(const float *a, const float *b, int64_t n) {
  double md = 0, mb = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) return INFINITY;
    md = fmax(md, fabs((double)a[i] - b[i]));
    mb = fmax(mb, fabs((double)b[i]));
  }
  return md / fmax(mb, 1e-30);
}

// `got` against `want`: the values and both gradients within tol (relative to the largest).
static void compare(const char *what, const result *got, const result *want, int mode, double tol) {
  int nv = mode == 0 ? 1 : 2 * N;
  double ev = rel(got->val, want->val, nv), eh = rel(got->dh, want->dh, N * H),
         ew = rel(got->dw, want->dw, V * H);
  printf("CASE %-34s values %.3e  dh %.3e  dw %.3e  peak %zu / %zu bytes\n", what, ev, eh, ew,
         got->peak, want->peak);
  T_CHECK(ev <= tol && eh <= tol && ew <= tol, "%s: values %g dh %g dw %g (tol %g)", what, ev, eh,
          ew, tol);
}

static idoc_tensor *f_ce(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_head_cross_entropy(c, in[0], in[1], in[2], -100, *(int64_t *)ud);
}
static idoc_tensor *f_tlp(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *ent, *lp = idoc_head_token_logprobs(c, in[0], in[1], in[2], &ent, *(int64_t *)ud);
  idoc_tensor *xs[2] = {lp, ent};
  return idoc_concat(c, xs, 2, 0);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, (size_t)4 << 20);
  idoc_rng_seed(&R, 11);
  idoc_tensor *h = gc_input(A, &R, 2, (int64_t[]){N, H}, -1.5f, 1.5f, false);
  idoc_tensor *w = gc_input(A, &R, 2, (int64_t[]){V, H}, -0.5f, 0.5f, false);
  idoc_tensor *tce = idoc_tensor_1d(A, IDOC_I32, N), *tlp = idoc_tensor_1d(A, IDOC_I32, N);
  for (int i = 0; i < N; i++) {
    int32_t k = (int32_t)idoc_rng_below(&R, V);
    IDOC_I(tce)[i] = i % 5 == 3 ? -100 : k; // ignored rows
    IDOC_I(tlp)[i] = i % 7 == 2 ? -1 : k;   // unscored rows
  }
  idoc_tensor *coef = gc_input(A, &R, 1, (int64_t[]){2 * N}, -1, 1, false);
  const idoc_tensor *tg[2] = {tce, tlp};
  static result plain[2], r;
  char what[96];
  for (int mode = 0; mode < 2; mode++) {
    const char *op = mode ? "head_token_logprobs" : "head_cross_entropy";
    run(IDOC_DEV_CPU, mode, 0, h, w, tg[mode], coef, &plain[mode]);
    // chunk >= N is the plain path: the same bits.
    run(IDOC_DEV_CPU, mode, N, h, w, tg[mode], coef, &r);
    snprintf(what, sizeof what, "%s chunk %d (whole)", op, N);
    compare(what, &r, &plain[mode], mode, 0.0);
    for (int64_t chunk = 1; chunk < N; chunk = chunk * 3 + 1) { // 1, 4, 13, 40: short tails
      run(IDOC_DEV_CPU, mode, chunk, h, w, tg[mode], coef, &r);
      snprintf(what, sizeof what, "%s chunk %lld", op, (long long)chunk);
      compare(what, &r, &plain[mode], mode, 2e-6);
      // The plain path holds logits and their gradient (N x V f32 each); a chunked run one
      // chunk's pair at a time.
      double saved = (double)plain[mode].peak - (double)r.peak,
             expect = 2.0 * (N - chunk) * V * sizeof(float);
      T_CHECK(saved >= 0.9 * expect, "%s: peak %zu vs %zu unchunked, saved %.0f < 0.9 x %.0f", what,
              r.peak, plain[mode].peak, saved, expect);
    }
    int64_t chunk = 7;
    idoc_tensor *hg = gc_input(A, &R, 2, (int64_t[]){N, H}, -1.5f, 1.5f, true);
    idoc_tensor *wg = gc_input(A, &R, 2, (int64_t[]){V, H}, -0.5f, 0.5f, true);
    idoc_tensor *in[3] = {hg, wg, (idoc_tensor *)tg[mode]};
    T_CHECK(gc_check(op, mode ? f_tlp : f_ce, &chunk, in, 3) == 0, "%s: gradient check", op);
  }
  if (idoc_cuda_available()) {
    for (int mode = 0; mode < 2; mode++) {
      const char *op = mode ? "head_token_logprobs" : "head_cross_entropy";
      for (int64_t chunk = 0; chunk < N; chunk += 13) {
        run(idoc_dev_cuda(0), mode, chunk, h, w, tg[mode], coef, &r);
        snprintf(what, sizeof what, "cuda %s chunk %lld", op, (long long)chunk);
        compare(what, &r, &plain[mode], mode, 1e-5);
      }
    }
  } else {
    T_SKIP("no GPU: the fused head ops not compared on a device");
  }
  idoc_arena_free(A);
  return t_summary("test_grad_head");
}
