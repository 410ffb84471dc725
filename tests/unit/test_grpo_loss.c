// The GRPO advantages and loss against a PyTorch float64 implementation of TRL's formulas
// (scripts/make_grpo_fixtures.py -> tests/fixtures/grpo/grpo.json): every aggregation mode x
// num_iterations {1, 2} x beta {0, 0.04} x {plain, STD filter, entropy gating, entropy bonus,
// all three}, advantages for each scaling mode with and without the filter, torch.quantile.
// Tolerances: values |got - want| <= 1e-12 + 1e-6 |want|; gradients per element
// |got - want| <= 1e-12 + 1e-6 max|want| (the C side computes in double from the same f32
// inputs, so the observed errors are ~1e-16). Hand cases: constant groups give exactly zero
// advantage, clipping starts exactly past 1 - eps_low / 1 + eps_high (adjacent f32 inputs),
// micro-batches with a step-wide denominator sum to the full-batch loss, ties at the gating
// threshold, an empty batch, bad input errors; gradient checks of the autograd node alone and
// chained after idoc_token_logprobs.
#include <math.h>
#include <string.h>

#include "nn/json.h"
#include "rl/grpo_loss.h"
#include "tests/gradcheck.h"

#define FIXTURE "tests/fixtures/grpo/grpo.json"

// Max observed errors: relative for values >= 1e-6 in magnitude and absolute for all values
// (some losses are ~1e-14, rounding noise of centred advantages), relative to max|want| for
// gradient and advantage arrays.
static double worst_val, worst_val_abs, worst_grad, worst_adv;

// ---- fixture helpers -------------------------------------------------------------------------
static const idoc_json *need(const idoc_json *o, const char *key) {
  const idoc_json *v = idoc_json_get(o, key);
  IDOC_CHECK(v, "%s: key '%s' missing", FIXTURE, key);
  return v;
}
static double num(const idoc_json *o, const char *key) {
  double d;
  IDOC_CHECK(idoc_json_as_double(need(o, key), &d) == IDOC_OK, "%s: '%s': %s", FIXTURE, key,
             idoc_last_error());
  return d;
}
static bool boolean(const idoc_json *o, const char *key) {
  bool b;
  IDOC_CHECK(idoc_json_as_bool(need(o, key), &b) == IDOC_OK, "%s: '%s': %s", FIXTURE, key,
             idoc_last_error());
  return b;
}
// A numeric array of exactly n entries, as doubles (malloc'd).
static double *darr(const idoc_json *o, const char *key, int64_t n) {
  const idoc_json *a = need(o, key);
  IDOC_CHECK(idoc_json_is(a, IDOC_JSON_ARRAY) && (int64_t)a->n == n,
             "%s: '%s' must be an array of %lld numbers", FIXTURE, key, (long long)n);
  double *d = idoc_xmalloc((size_t)n * sizeof *d);
  for (int64_t i = 0; i < n; i++)
    IDOC_CHECK(idoc_json_as_double(&a->kids[i], &d[i]) == IDOC_OK, "%s: '%s'[%lld]: %s", FIXTURE,
               key, (long long)i, idoc_last_error());
  return d;
}
static float *farr(const idoc_json *o, const char *key, int64_t n) {
  double *d = darr(o, key, n);
  float *f = idoc_xmalloc((size_t)n * sizeof *f);
  for (int64_t i = 0; i < n; i++) {
    f[i] = (float)d[i];
    IDOC_CHECK((double)f[i] == d[i], "%s: '%s'[%lld] is not an f32 value", FIXTURE, key,
               (long long)i);
  }
  free(d);
  return f;
}

static void close_val(const char *what, const char *name, double got, double want) {
  double err = fabs(got - want);
  worst_val_abs = fmax(worst_val_abs, err);
  if (fabs(want) >= 1e-6) worst_val = fmax(worst_val, err / fabs(want));
  T_CHECK(err <= 1e-12 + 1e-6 * fabs(want), "%s %s: %.17g, want %.17g", name, what, got, want);
}
static void close_arr(const char *what, const char *name, const double *got, const double *want,
                      int64_t n, double *worst) {
  double scale = 0, err = 0;
  for (int64_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(want[i]));
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++)
    if (fabs(got[i] - want[i]) > err) err = fabs(got[i] - want[i]), at = i;
  if (scale > 0) *worst = fmax(*worst, err / scale);
  T_CHECK(err <= 1e-12 + 1e-6 * scale, "%s %s: element %lld is %.17g, want %.17g", name, what,
          (long long)at, got[at], want[at]);
}

// ---- fixture cases ---------------------------------------------------------------------------
typedef struct {
  int64_t G, n_groups, L, B, T, mcl;
  double eps_low, eps_high, adv_eps, tau;
  double *rewards;
  uint8_t *mask;
  float *logp, *old, *ref, *ent;
  int64_t *off;
} fixture;

static void load(const idoc_json *r, fixture *f) {
  f->G = (int64_t)num(r, "group_size");
  f->n_groups = (int64_t)num(r, "n_groups");
  f->L = (int64_t)num(r, "max_len");
  f->B = f->G * f->n_groups;
  f->T = f->B * f->L;
  f->mcl = (int64_t)num(r, "max_completion_length");
  f->eps_low = num(r, "eps_low");
  f->eps_high = num(r, "eps_high");
  f->adv_eps = num(r, "adv_eps");
  f->tau = num(r, "std_tau");
  f->rewards = darr(r, "rewards", f->B);
  double *m = darr(r, "mask", f->T);
  f->mask = idoc_xmalloc((size_t)f->T);
  for (int64_t i = 0; i < f->T; i++)
    f->mask[i] = m[i] != 0;
  free(m);
  f->logp = farr(r, "logp", f->T);
  f->old = farr(r, "old_logp", f->T);
  f->ref = farr(r, "ref_logp", f->T);
  f->ent = farr(r, "entropy", f->T);
  f->off = idoc_xmalloc((size_t)(f->B + 1) * sizeof *f->off);
  for (int64_t i = 0; i <= f->B; i++)
    f->off[i] = i * f->L; // padded [B, L] layout
}

static idoc_adv_scale scale_of(const char *s) {
  return strcmp(s, "batch") == 0  ? IDOC_ADV_SCALE_BATCH
         : strcmp(s, "none") == 0 ? IDOC_ADV_SCALE_NONE
                                  : IDOC_ADV_SCALE_GROUP;
}

static void test_quantiles(const idoc_json *root) {
  const idoc_json *qc = need(root, "quantile_cases");
  int exact = 0;
  for (uint32_t k = 0; k < qc->n; k++) {
    const idoc_json *c = &qc->kids[k];
    int64_t n = need(c, "x")->n;
    double *x = darr(c, "x", n), q = num(c, "q"), want = num(c, "value");
    double got = idoc_quantile_linear(x, n, q);
    exact += got == want;
    T_CHECK(got == want, "quantile n=%lld q=%g: %.17g, want %.17g (torch.quantile)", (long long)n,
            q, got, want);
    free(x);
  }
  printf("quantile: %d/%u cases equal to torch.quantile bit for bit\n", exact, qc->n);
}

static void test_advantages(const idoc_json *root, const fixture *f) {
  const idoc_json *ac = need(root, "advantage_cases");
  for (uint32_t k = 0; k < ac->n; k++) {
    const idoc_json *c = &ac->kids[k];
    const char *sc = idoc_json_string(need(c, "scale"));
    idoc_grpo_adv_opts o = {.group_size = (int)f->G,
                            .scale = scale_of(sc),
                            .eps = f->adv_eps,
                            .std_filter = boolean(c, "std_filter"),
                            .std_tau = f->tau};
    double *adv = idoc_xmalloc((size_t)f->B * sizeof *adv), *want = darr(c, "adv", f->B);
    double *keep_w = darr(c, "keep", f->B);
    uint8_t *keep = idoc_xmalloc((size_t)f->B);
    idoc_grpo_adv_stats st;
    char name[64];
    snprintf(name, sizeof name, "advantages %s filter=%d", sc, o.std_filter);
    T_CHECK(idoc_grpo_advantages(f->rewards, f->B, &o, adv, keep, &st) == IDOC_OK, "%s: %s", name,
            idoc_last_error());
    close_arr("adv", name, adv, want, f->B, &worst_adv);
    for (int64_t i = 0; i < f->B; i++)
      T_CHECK(keep[i] == (keep_w[i] != 0), "%s: keep[%lld]", name, (long long)i);
    T_CHECK(st.dropped_frac == num(c, "dropped_frac"), "%s: dropped_frac %g", name,
            st.dropped_frac);
    close_val("reward_std", name, st.reward_std, num(c, "reward_std"));
    free(adv), free(want), free(keep_w), free(keep);
  }
}

static void test_loss_cases(const idoc_json *root, const fixture *f) {
  const idoc_json *lc = need(root, "loss_cases");
  double *adv = idoc_xmalloc((size_t)f->B * sizeof *adv);
  uint8_t *keep = idoc_xmalloc((size_t)f->B);
  double *g = idoc_xmalloc((size_t)f->T * sizeof *g), *ge = idoc_xmalloc((size_t)f->T * sizeof *ge);
  double t_total = 0;
  for (uint32_t k = 0; k < lc->n; k++) {
    const idoc_json *c = &lc->kids[k];
    const char *name = idoc_json_string(need(c, "name"));
    idoc_grpo_adv_opts ao = idoc_grpo_adv_defaults();
    ao.group_size = (int)f->G;
    ao.eps = f->adv_eps;
    ao.std_filter = boolean(c, "std_filter");
    ao.std_tau = f->tau;
    T_CHECK(idoc_grpo_advantages(f->rewards, f->B, &ao, adv, keep, NULL) == IDOC_OK, "%s", name);
    idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
    T_CHECK(idoc_grpo_agg_parse(idoc_json_string(need(c, "agg")), &o.agg) == IDOC_OK, "%s", name);
    o.eps_low = f->eps_low;
    o.eps_high = f->eps_high;
    o.beta = num(c, "beta");
    o.max_completion_length = f->mcl;
    o.entropy_coef = num(c, "entropy_coef");
    o.entropy_top_rho = num(c, "rho");
    idoc_grpo_batch b = {.n_seq = f->B,
                         .seq_off = f->off,
                         .logp = f->logp,
                         .old_logp = num(c, "num_iterations") > 1 ? f->old : NULL,
                         .ref_logp = f->ref,
                         .entropy = f->ent,
                         .mask = f->mask,
                         .advantages = adv,
                         .seq_keep = keep};
    idoc_grpo_loss_stats st;
    double t0 = idoc_now();
    int rc = idoc_grpo_loss(&b, &o, g, ge, &st);
    t_total += idoc_now() - t0;
    T_CHECK(rc == IDOC_OK, "%s: %s", name, idoc_last_error());
    close_val("loss", name, st.loss, num(c, "loss"));
    const idoc_json *sw = need(c, "stats");
    close_val("pg_loss", name, st.pg_loss, num(sw, "pg_loss"));
    close_val("kl_loss", name, st.kl_loss, num(sw, "kl_loss"));
    close_val("entropy_loss", name, st.entropy_loss, num(sw, "entropy_loss"));
    close_val("kl_mean", name, st.kl_mean, num(sw, "kl_mean"));
    close_val("ratio_mean", name, st.ratio_mean, num(sw, "ratio_mean"));
    close_val("clip_low", name, st.clip_low, num(sw, "clip_low"));
    close_val("clip_high", name, st.clip_high, num(sw, "clip_high"));
    close_val("clip_region", name, st.clip_region, num(sw, "clip_region"));
    close_val("entropy_mean", name, st.entropy_mean, num(sw, "entropy_mean"));
    close_val("entropy_threshold", name, st.entropy_threshold, num(sw, "entropy_threshold"));
    close_val("gate_frac", name, st.gate_frac, num(sw, "gate_frac"));
    T_CHECK(st.n_tokens == (int64_t)num(sw, "n_tokens") && st.n_seq == (int64_t)num(sw, "n_seq"),
            "%s: n_tokens %lld n_seq %lld", name, (long long)st.n_tokens, (long long)st.n_seq);
    double *want = darr(c, "dlogp", f->T);
    close_arr("dlogp", name, g, want, f->T, &worst_grad);
    free(want);
    if (!idoc_json_is(need(c, "dentropy"), IDOC_JSON_NULL)) {
      want = darr(c, "dentropy", f->T);
      close_arr("dentropy", name, ge, want, f->T, &worst_grad);
      free(want);
    } else {
      bool zero = true;
      for (int64_t i = 0; i < f->T; i++)
        zero &= ge[i] == 0;
      T_CHECK(zero, "%s: dentropy must be 0 without an entropy bonus", name);
    }
  }
  printf("loss: %u fixture cases, %.1f us per loss+gradient (T=%lld)\n", lc->n,
         1e6 * t_total / lc->n, (long long)f->T);
  free(adv), free(keep), free(g), free(ge);
}

// ---- hand cases ------------------------------------------------------------------------------
static void test_zero_variance(void) {
  // 0.1 + 0.1 + 0.1 rounds up, so the group mean is an ulp above 0.1; the advantage of a
  // constant group must still be exactly 0 in every scaling mode, also with eps = 0 (where
  // rounding noise / 0 would be infinite).
  double r[6] = {0.1, 0.1, 0.1, 1.0, 2.0, 4.0}, adv[6];
  uint8_t keep[6];
  for (int sc = 0; sc < 3; sc++)
    for (int e = 0; e < 2; e++) {
      idoc_grpo_adv_opts o = {3, (idoc_adv_scale)sc, e ? 0.0 : 1e-4, false, 0};
      idoc_grpo_adv_stats st;
      T_CHECK(idoc_grpo_advantages(r, 6, &o, adv, keep, &st) == IDOC_OK, "%s", idoc_last_error());
      for (int i = 0; i < 3; i++)
        T_CHECK(adv[i] == 0.0, "scale %d eps %d: constant group advantage %g", sc, e, adv[i]);
      T_CHECK(adv[5] > 0 && adv[3] < 0, "scale %d: varied group", sc);
      T_CHECK(st.frac_zero_std == 0.5 && keep[0] == 1, "frac_zero_std %g", st.frac_zero_std);
    }
  // By hand for {1, 2, 4}: mean 7/3, unbiased variance (16 + 1 + 25) / 9 / 2 = 7/3.
  idoc_grpo_adv_opts o = {3, IDOC_ADV_SCALE_GROUP, 1e-4, true, 1e-3};
  idoc_grpo_adv_stats st;
  T_CHECK(idoc_grpo_advantages(r, 6, &o, adv, keep, &st) == IDOC_OK, "%s", idoc_last_error());
  T_CLOSE(adv[3], (1.0 - 7.0 / 3.0) / (sqrt(7.0 / 3.0) + 1e-4), 0, 1e-14);
  T_CLOSE(adv[5], (4.0 - 7.0 / 3.0) / (sqrt(7.0 / 3.0) + 1e-4), 0, 1e-14);
  T_CHECK(keep[0] == 0 && keep[2] == 0 && keep[3] == 1 && st.n_dropped == 1 &&
              st.dropped_frac == 0.5,
          "STD filter: constant group dropped, varied kept");
  // A group whose std equals tau exactly is dropped (keep iff std > tau).
  double r2[2] = {0.0, 1.0}, a2[2];
  uint8_t k2[2];
  idoc_grpo_adv_opts o2 = {2, IDOC_ADV_SCALE_GROUP, 1e-4, true, sqrt(0.5)};
  T_CHECK(idoc_grpo_advantages(r2, 2, &o2, a2, k2, NULL) == IDOC_OK && k2[0] == 0,
          "std == tau must be dropped");
}

// One token, old logp 0, logp v: ratio exp(v).
static void one_token(float v, double A, double *g, idoc_grpo_loss_stats *st) {
  int64_t off[2] = {0, 1};
  float old = 0.0f;
  idoc_grpo_batch b = {.n_seq = 1, .seq_off = off, .logp = &v, .old_logp = &old, .advantages = &A};
  idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
  o.beta = 0;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, st) == IDOC_OK, "%s", idoc_last_error());
}

static void test_clip_boundary(void) {
  // The largest f32 v with exp(v) <= 1 + eps_high is unclipped (gradient -A r); the next f32 up
  // is clipped (gradient 0, counted in clip_high). Mirror image at 1 - eps_low for A < 0.
  double hi = 1.0 + 0.28, lo = 1.0 - 0.2, g;
  idoc_grpo_loss_stats st;
  float v = (float)log(hi);
  while (exp((double)v) > hi)
    v = nextafterf(v, -INFINITY);
  while (exp((double)nextafterf(v, INFINITY)) <= hi)
    v = nextafterf(v, INFINITY);
  float v_out = nextafterf(v, INFINITY);
  one_token(v, 1.0, &g, &st);
  T_CLOSE(g, -exp((double)v), 0, 1e-15);
  T_CHECK(st.clip_high == 0 && st.clip_region == 0, "r = %.17g <= 1 + eps_high: not clipped",
          exp((double)v));
  one_token(v_out, 1.0, &g, &st);
  T_CHECK(g == 0 && st.clip_high == 1 && st.clip_low == 0 && st.clip_region == 1,
          "r = %.17g > 1 + eps_high: clipped (g %g)", exp((double)v_out), g);
  T_CLOSE(st.loss, -hi, 0, 1e-15); // -min(r A, (1 + eps_high) A)
  one_token(v_out, -1.0, &g, &st); // A < 0: the upper clip never binds
  T_CHECK(g == exp((double)v_out) && st.clip_region == 0, "A < 0 above 1 + eps_high: unclipped");

  v = (float)log(lo);
  while (exp((double)v) < lo)
    v = nextafterf(v, INFINITY);
  while (exp((double)nextafterf(v, -INFINITY)) >= lo)
    v = nextafterf(v, -INFINITY);
  v_out = nextafterf(v, -INFINITY);
  one_token(v, -1.0, &g, &st);
  T_CLOSE(g, exp((double)v), 0, 1e-15);
  T_CHECK(st.clip_low == 0, "r = %.17g >= 1 - eps_low: not clipped", exp((double)v));
  one_token(v_out, -1.0, &g, &st);
  T_CHECK(g == 0 && st.clip_low == 1 && st.clip_high == 0 && st.clip_region == 1,
          "r = %.17g < 1 - eps_low: clipped (g %g)", exp((double)v_out), g);
  T_CLOSE(st.loss, lo, 0, 1e-15);
  one_token(v_out, 1.0, &g, &st); // A > 0: the lower clip never binds
  T_CHECK(g == -exp((double)v_out) && st.clip_region == 0, "A > 0 below 1 - eps_low: unclipped");
  // num_iterations 1: the ratio is exactly 1, nothing clips, gradient -A.
  int64_t off[2] = {0, 1};
  float x = -1.25f;
  double A = 0.75;
  idoc_grpo_batch b = {.n_seq = 1, .seq_off = off, .logp = &x, .advantages = &A};
  idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
  o.beta = 0;
  T_CHECK(idoc_grpo_loss(&b, &o, &g, NULL, &st) == IDOC_OK && g == -0.75 && st.ratio_mean == 1 &&
              st.loss == -0.75,
          "num_iterations 1: g %g loss %g", g, st.loss);
}

// Splitting a step into micro-batches, each normalised by the step-wide denominator, and
// summing their losses and gradients reproduces the full-batch result.
static void test_microbatch(const fixture *f) {
  double *adv = idoc_xmalloc((size_t)f->B * sizeof *adv);
  idoc_grpo_adv_opts ao = {(int)f->G, IDOC_ADV_SCALE_GROUP, f->adv_eps, false, 0};
  T_CHECK(idoc_grpo_advantages(f->rewards, f->B, &ao, adv, NULL, NULL) == IDOC_OK, "adv");
  double *g = idoc_xmalloc((size_t)f->T * sizeof *g), *gs = idoc_xmalloc((size_t)f->T * sizeof *gs);
  for (int agg = 0; agg < 3; agg++) {
    idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
    o.agg = (idoc_grpo_agg)agg;
    o.max_completion_length = f->mcl;
    o.entropy_coef = 0.01;
    idoc_grpo_batch b = {f->B, f->off, f->logp, f->old, f->ref, f->ent, f->mask, adv, NULL};
    idoc_grpo_loss_stats full, part;
    T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, &full) == IDOC_OK, "%s", idoc_last_error());
    o.denom = agg == IDOC_GRPO_AGG_TOKEN_MEAN ? (double)full.n_tokens : (double)full.n_seq;
    int64_t split = 5, off2[32];
    double sum = 0;
    for (int h = 0; h < 2; h++) {
      int64_t s0 = h ? split : 0, ns = h ? f->B - split : split;
      for (int64_t i = 0; i <= ns; i++)
        off2[i] = f->off[s0 + i] - f->off[s0];
      int64_t t0 = f->off[s0];
      idoc_grpo_batch m = {ns,          off2,         f->logp + t0, f->old + t0, f->ref + t0,
                           f->ent + t0, f->mask + t0, adv + s0,     NULL};
      T_CHECK(idoc_grpo_loss(&m, &o, gs + t0, NULL, &part) == IDOC_OK, "%s", idoc_last_error());
      sum += part.loss;
    }
    T_CLOSE(sum, full.loss, 1e-15, 1e-12);
    double err = 0;
    for (int64_t i = 0; i < f->T; i++)
      err = fmax(err, fabs(gs[i] - g[i]));
    T_CHECK(err <= 1e-15, "%s micro-batch gradients differ by %g", idoc_grpo_agg_name(o.agg), err);
  }
  free(adv), free(g), free(gs);
}

static void test_gate_ties_and_empty(void) {
  // Entropies {1, 2, 2, 2, 3}, rho 0.5: the 0.5 quantile is exactly 2, and every token at the
  // threshold keeps its gradient (H >= threshold): 4 of 5.
  int64_t off[2] = {0, 5};
  float lp[5] = {-1, -1, -1, -1, -1}, h[5] = {2, 1, 3, 2, 2};
  double A = 1.0, g[5];
  idoc_grpo_batch b = {.n_seq = 1, .seq_off = off, .logp = lp, .entropy = h, .advantages = &A};
  idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
  o.beta = 0;
  o.entropy_top_rho = 0.5;
  idoc_grpo_loss_stats st;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, &st) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(st.entropy_threshold == 2.0 && st.gate_frac == 0.8, "threshold %g gate_frac %g",
          st.entropy_threshold, st.gate_frac);
  T_CHECK(g[1] == 0 && g[0] == -0.2 && g[2] == -0.2 && g[4] == -0.2, "gated gradients");
  // Every sequence dropped: loss 0, zero gradients, nothing counted.
  uint8_t keep = 0;
  b.seq_keep = &keep;
  g[0] = 7;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, &st) == IDOC_OK && st.loss == 0 && st.n_seq == 0 &&
              st.n_tokens == 0 && g[0] == 0,
          "empty batch");
}

static bool err_has(const char *s) { return strstr(idoc_last_error(), s) != NULL; }

static void test_errors(void) {
  int64_t off[2] = {0, 2};
  float lp[2] = {-1, NAN}, old[2] = {-1, -1};
  uint8_t mask[2] = {1, 0};
  double A = 1, g[2], r[3] = {1, 2, 3}, adv[3];
  idoc_grpo_batch b = {
      .n_seq = 1, .seq_off = off, .logp = lp, .old_logp = old, .mask = mask, .advantages = &A};
  idoc_grpo_loss_opts o = idoc_grpo_loss_defaults();
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("ref_logp"),
          "beta without ref: %s", idoc_last_error());
  o.beta = 0;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_OK, "NaN on a masked token is ignored");
  mask[1] = 1;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("logp[1]"), "NaN logp: %s",
          idoc_last_error());
  mask[1] = 0;
  o.entropy_top_rho = 0.2;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("entropies"),
          "gating without entropy: %s", idoc_last_error());
  o.entropy_top_rho = 0;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("entropy_top_rho"),
          "rho 0: %s", idoc_last_error());
  o.entropy_top_rho = 1;
  o.agg = IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("max_completion_length"),
          "dr_grpo without length: %s", idoc_last_error());
  o.agg = IDOC_GRPO_AGG_TOKEN_MEAN;
  o.eps_low = -0.1;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("eps_low"), "eps_low");
  o.eps_low = 0.2;
  A = NAN;
  T_CHECK(idoc_grpo_loss(&b, &o, g, NULL, NULL) == IDOC_ERR && err_has("advantage 0"),
          "NaN advantage: %s", idoc_last_error());
  idoc_grpo_adv_opts ao = {2, IDOC_ADV_SCALE_GROUP, 1e-4, false, 0};
  T_CHECK(idoc_grpo_advantages(r, 3, &ao, adv, NULL, NULL) == IDOC_ERR && err_has("multiple"),
          "n %% G: %s", idoc_last_error());
  ao.group_size = 1;
  T_CHECK(idoc_grpo_advantages(r, 3, &ao, adv, NULL, NULL) == IDOC_ERR && err_has(">= 2"),
          "G = 1: %s", idoc_last_error());
  ao.group_size = 3;
  r[1] = INFINITY;
  T_CHECK(idoc_grpo_advantages(r, 3, &ao, adv, NULL, NULL) == IDOC_ERR && err_has("reward 1"),
          "inf reward: %s", idoc_last_error());
  r[1] = 2;
  ao.std_filter = true;
  T_CHECK(idoc_grpo_advantages(r, 3, &ao, adv, NULL, NULL) == IDOC_ERR && err_has("keep"),
          "filter without keep: %s", idoc_last_error());
  idoc_grpo_agg a;
  T_CHECK(idoc_grpo_agg_parse("dapo", &a) == IDOC_OK && a == IDOC_GRPO_AGG_TOKEN_MEAN, "dapo");
  T_CHECK(idoc_grpo_agg_parse("dr_grpo", &a) == IDOC_OK &&
              a == IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM,
          "dr_grpo");
  T_CHECK(idoc_grpo_agg_parse("sequence", &a) == IDOC_ERR && err_has("'sequence'"), "unknown");
}

// ---- autograd node ---------------------------------------------------------------------------
enum { GB = 4, GL = 5, GV = 11 };
static int64_t g_off[GB + 1] = {0, 5, 10, 15, 20};
static uint8_t g_mask[GB * GL];
static float g_old[GB * GL], g_ref[GB * GL];
static double g_adv[GB] = {1.2, -0.4, -0.8, 0.6};
static idoc_grpo_loss_opts g_opts;

static idoc_grpo_batch gbatch(void) {
  idoc_grpo_batch b = {.n_seq = GB,
                       .seq_off = g_off,
                       .old_logp = g_old,
                       .ref_logp = g_ref,
                       .mask = g_mask,
                       .advantages = g_adv};
  return b;
}
static idoc_tensor *f_loss(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_grpo_batch b = gbatch();
  idoc_tensor *l = idoc_grpo_loss_op(c, in[0], in[1], &b, &g_opts, NULL);
  IDOC_CHECK(l, "%s", idoc_last_error());
  return l;
}
static idoc_tensor *f_chain(idoc_ctx *c, idoc_tensor **in, void *ud) {
  idoc_tensor *ent, *lp = idoc_token_logprobs(c, in[0], in[1], &ent);
  idoc_grpo_batch b = gbatch();
  idoc_tensor *l = idoc_grpo_loss_op(c, lp, ent, &b, &g_opts, NULL);
  IDOC_CHECK(l, "%s", idoc_last_error());
  return l;
}

static void test_op(void) {
  idoc_arena *A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng R;
  idoc_rng_seed(&R, 11);
  int64_t T = GB * GL;
  idoc_tensor *lp = idoc_tensor_1d(A, IDOC_F32, T), *en = idoc_tensor_1d(A, IDOC_F32, T);
  for (int64_t t = 0; t < T; t++) {
    g_mask[t] = (t % GL) < 4 || t < GL; // sequence 0 full length, the others 4 of 5
    IDOC_F(lp)[t] = (float)(-0.2 - 3.0 * idoc_rng_uniform(&R));
    // Ratios 0.05 or 0.45 away in log space: well inside or outside the clip, never within a
    // finite-difference step of its edges.
    g_old[t] = IDOC_F(lp)[t] + (float)((t % 3 == 0 ? 0.45 : 0.05) * (t % 2 ? 1 : -1));
    g_ref[t] = IDOC_F(lp)[t] + (float)(0.5 * idoc_rng_normal(&R));
    IDOC_F(en)[t] = (float)(0.1 + 0.13 * (double)((t * 7) % T)); // distinct, 0.13 apart
  }
  lp->requires_grad = en->requires_grad = true;
  for (int agg = 0; agg < 3; agg++) {
    g_opts = idoc_grpo_loss_defaults();
    g_opts.agg = (idoc_grpo_agg)agg;
    g_opts.max_completion_length = 8;
    g_opts.eps_high = 0.28;
    g_opts.entropy_coef = 0.05;
    g_opts.entropy_top_rho = 0.6;
    idoc_tensor *in[2] = {lp, en};
    char name[64];
    snprintf(name, sizeof name, "grpo_loss %s", idoc_grpo_agg_name(g_opts.agg));
    GC_EXPECT(name, f_loss, NULL, in, 2);
    // The node's value and gradient are the host function's.
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
    idoc_grpo_loss_stats st, st2;
    idoc_grpo_batch b = gbatch();
    idoc_tensor *l = idoc_grpo_loss_op(c, lp, en, &b, &g_opts, &st);
    idoc_backward(c, l);
    double g[GB * GL];
    b.logp = IDOC_F(lp);
    b.entropy = IDOC_F(en);
    T_CHECK(idoc_grpo_loss(&b, &g_opts, g, NULL, &st2) == IDOC_OK, "host loss");
    T_CHECK(idoc_tensor_get(l, 0) == (float)st2.loss && st.loss == st2.loss, "op value");
    double err = 0;
    for (int64_t t = 0; t < T; t++)
      err = fmax(err, fabs(IDOC_F(lp->grad)[t] - (float)g[t]));
    T_CHECK(err == 0, "op gradient differs from the host gradient by %g", err);
    lp->grad = en->grad = NULL;
    idoc_ctx_free(c);
  }
  // Chained after the log-prob op: gradient with respect to the logits themselves.
  idoc_tensor *logits = gc_input(A, &R, 2, (int64_t[]){T, GV}, -2, 2, true);
  idoc_tensor *tg = idoc_tensor_1d(A, IDOC_I32, T);
  for (int64_t t = 0; t < T; t++)
    IDOC_I(tg)[t] = (int32_t)idoc_rng_below(&R, GV);
  { // old/ref near the logits' own log-probs, so ratios sit inside and outside the clip
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 20);
    bool prev = idoc_no_grad_begin(c);
    idoc_tensor *l0 = idoc_token_logprobs(c, logits, tg, NULL);
    for (int64_t t = 0; t < T; t++) {
      g_old[t] = IDOC_F(l0)[t] + (float)((t % 3 == 0 ? 0.45 : 0.05) * (t % 2 ? 1 : -1));
      g_ref[t] = IDOC_F(l0)[t] + 0.3f;
    }
    idoc_grad_restore(c, prev);
    idoc_ctx_free(c);
  }
  g_opts = idoc_grpo_loss_defaults();
  g_opts.entropy_coef = 0.05;
  idoc_tensor *in[2] = {logits, tg};
  GC_EXPECT("token_logprobs -> grpo_loss", f_chain, NULL, in, 2);
  idoc_arena_free(A);
}

int main(void) {
  idoc_json_doc *doc = idoc_json_parse_file(FIXTURE, NULL);
  T_CHECK(doc, "%s", idoc_last_error());
  if (doc) {
    const idoc_json *root = idoc_json_root(doc);
    fixture f;
    load(root, &f);
    test_quantiles(root);
    test_advantages(root, &f);
    test_loss_cases(root, &f);
    test_microbatch(&f);
    printf("worst error vs torch: values %.3g relative (%.3g absolute), gradients %.3g, "
           "advantages %.3g\n",
           worst_val, worst_val_abs, worst_grad, worst_adv);
    free(f.rewards), free(f.mask), free(f.logp), free(f.old), free(f.ref), free(f.ent);
    free(f.off);
    idoc_json_free(doc);
  }
  test_zero_variance();
  test_clip_boundary();
  test_gate_ties_and_empty();
  test_errors();
  test_op();
  return t_summary("test_grpo_loss");
}
