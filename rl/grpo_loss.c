// GRPO advantages and loss (see grpo_loss.h for the formulas and their sources).
#include "rl/grpo_loss.h"

#include <math.h>

#include "kernels/ops.h"

idoc_grpo_adv_opts idoc_grpo_adv_defaults(void) {
  idoc_grpo_adv_opts o = {.group_size = 8,
                          .scale = IDOC_ADV_SCALE_GROUP,
                          .eps = 1e-4,
                          .std_filter = false,
                          .std_tau = 1e-3};
  return o;
}

idoc_grpo_loss_opts idoc_grpo_loss_defaults(void) {
  idoc_grpo_loss_opts o = {.eps_low = 0.2,
                           .eps_high = 0.2,
                           .beta = 0.04,
                           .agg = IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN,
                           .max_completion_length = 0,
                           .denom = 0,
                           .entropy_coef = 0,
                           .entropy_top_rho = 1.0};
  return o;
}

int idoc_grpo_agg_parse(const char *name, idoc_grpo_agg *out) {
  static const struct {
    const char *name;
    idoc_grpo_agg agg;
  } names[] = {{"grpo", IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN},
               {"seq_mean_token_mean", IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN},
               {"bnpo", IDOC_GRPO_AGG_TOKEN_MEAN},
               {"dapo", IDOC_GRPO_AGG_TOKEN_MEAN},
               {"token_mean", IDOC_GRPO_AGG_TOKEN_MEAN},
               {"dr_grpo", IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM},
               {"seq_mean_token_sum_norm", IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM}};
  for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i].name) == 0) {
      *out = names[i].agg;
      return IDOC_OK;
    }
  return idoc_set_error("loss aggregation '%s' is not one of grpo (seq_mean_token_mean), "
                        "bnpo/dapo (token_mean), dr_grpo (seq_mean_token_sum_norm)",
                        name ? name : "(null)");
}

const char *idoc_grpo_agg_name(idoc_grpo_agg a) {
  switch (a) {
  case IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN: return "seq_mean_token_mean";
  case IDOC_GRPO_AGG_TOKEN_MEAN: return "token_mean";
  case IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM: return "seq_mean_token_sum_norm";
  }
  return "?";
}

// ---- advantages ------------------------------------------------------------------------------

// Mean and unbiased std of x[0..n) (n >= 2), two-pass in double.
static void mean_std(const double *x, int64_t n, double *mean, double *std) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += x[i];
  double m = s / (double)n, v = 0;
  for (int64_t i = 0; i < n; i++)
    v += (x[i] - m) * (x[i] - m);
  *mean = m;
  *std = sqrt(v / (double)(n - 1));
}

int idoc_grpo_advantages(const double *rewards, int64_t n, const idoc_grpo_adv_opts *o, double *adv,
                         uint8_t *keep, idoc_grpo_adv_stats *st) {
  if (!o) return idoc_set_error("grpo advantages: options are NULL");
  int64_t g = o->group_size;
  if (g < 2)
    return idoc_set_error("grpo advantages: group_size must be >= 2, got %lld", (long long)g);
  if (n < 0 || n % g != 0)
    return idoc_set_error("grpo advantages: %lld rewards is not a multiple of group_size %lld",
                          (long long)n, (long long)g);
  if (!(o->eps >= 0 && isfinite(o->eps)))
    return idoc_set_error("grpo advantages: eps must be finite and >= 0, got %g", o->eps);
  if (o->scale != IDOC_ADV_SCALE_GROUP && o->scale != IDOC_ADV_SCALE_BATCH &&
      o->scale != IDOC_ADV_SCALE_NONE)
    return idoc_set_error("grpo advantages: unknown scale mode %d", (int)o->scale);
  if (o->std_filter && !(o->std_tau >= 0 && isfinite(o->std_tau)))
    return idoc_set_error("grpo advantages: std_tau must be finite and >= 0, got %g", o->std_tau);
  if (o->std_filter && !keep)
    return idoc_set_error("grpo advantages: the STD filter needs a keep array");
  if (n > 0 && (!rewards || !adv)) return idoc_set_error("grpo advantages: rewards/adv are NULL");
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(rewards[i]))
      return idoc_set_error("grpo advantages: reward %lld is %g", (long long)i, rewards[i]);

  int64_t ng = n / g, n_drop = 0, n_zero = 0, n_kept = 0;
  double sum_std = 0, sum_r = 0, sum_kept = 0;
  // Pass 1: group statistics and the filter.
  for (int64_t k = 0; k < ng; k++) {
    const double *r = rewards + k * g;
    double m, s;
    mean_std(r, g, &m, &s);
    sum_std += s;
    n_zero += s <= 1e-8;
    bool kept = !o->std_filter || s > o->std_tau;
    n_drop += !kept;
    for (int64_t j = 0; j < g; j++) {
      sum_r += r[j];
      if (keep) keep[k * g + j] = kept;
      if (kept) sum_kept += r[j], n_kept++;
    }
  }
  double batch_std = 0; // over kept completions (all of them without the filter)
  if (o->scale == IDOC_ADV_SCALE_BATCH && n_kept >= 2) {
    double m = sum_kept / (double)n_kept, v = 0;
    for (int64_t i = 0; i < n; i++)
      if (!keep || keep[i]) v += (rewards[i] - m) * (rewards[i] - m);
    batch_std = sqrt(v / (double)(n_kept - 1));
  }
  // Pass 2: advantages.
  for (int64_t k = 0; k < ng; k++) {
    const double *r = rewards + k * g;
    double m, s;
    mean_std(r, g, &m, &s);
    bool all_equal = true;
    for (int64_t j = 1; j < g; j++)
      all_equal &= r[j] == r[0];
    double den = o->scale == IDOC_ADV_SCALE_GROUP   ? s + o->eps
                 : o->scale == IDOC_ADV_SCALE_BATCH ? batch_std + o->eps
                                                    : 1.0;
    for (int64_t j = 0; j < g; j++)
      // A constant group has no signal: exactly 0 rather than rounding noise / eps. den is 0
      // only for a dropped group under BATCH scaling with eps 0.
      adv[k * g + j] = all_equal || den == 0 ? 0.0 : (r[j] - m) / den;
  }
  if (st) {
    memset(st, 0, sizeof *st);
    st->n_groups = ng;
    st->n_dropped = n_drop;
    st->dropped_frac = ng ? (double)n_drop / (double)ng : 0;
    st->frac_zero_std = ng ? (double)n_zero / (double)ng : 0;
    st->reward_mean = n ? sum_r / (double)n : 0;
    st->reward_std = ng ? sum_std / (double)ng : 0;
    double s = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
      if (!keep || keep[i]) s += adv[i], mn = fmin(mn, adv[i]), mx = fmax(mx, adv[i]);
    if (n_kept > 0) {
      double m = s / (double)n_kept, v = 0;
      for (int64_t i = 0; i < n; i++)
        if (!keep || keep[i]) v += (adv[i] - m) * (adv[i] - m);
      st->adv_mean = m;
      st->adv_std = n_kept >= 2 ? sqrt(v / (double)(n_kept - 1)) : 0;
      st->adv_min = mn;
      st->adv_max = mx;
    }
  }
  return IDOC_OK;
}

// ---- quantile --------------------------------------------------------------------------------
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Sorts x in place and interpolates as torch.quantile does (rank q (n - 1), torch.lerp's two
// formulas on either side of weight 0.5), so thresholds agree bit for bit.
static double quantile_sorted_inplace(double *x, int64_t n, double q) {
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  double rank = q * (double)(n - 1);
  int64_t lo = (int64_t)rank, hi = (int64_t)ceil(rank);
  if (hi > n - 1) hi = n - 1;
  double w = rank - (double)lo, a = x[lo], b = x[hi];
  return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w);
}

double idoc_quantile_linear(const double *x, int64_t n, double q) {
  IDOC_CHECK(n >= 1 && q >= 0 && q <= 1, "quantile: need n >= 1 and q in [0, 1]");
  double *s = idoc_xmalloc((size_t)n * sizeof *s);
  memcpy(s, x, (size_t)n * sizeof *s);
  double v = quantile_sorted_inplace(s, n, q);
  free(s);
  return v;
}

// ---- loss ------------------------------------------------------------------------------------
static int check_opts(const idoc_grpo_batch *b, const idoc_grpo_loss_opts *o) {
  if (!b || !o) return idoc_set_error("grpo loss: batch/options are NULL");
  if (!(o->eps_low >= 0 && o->eps_low <= 1))
    return idoc_set_error("grpo loss: eps_low must be in [0, 1], got %g", o->eps_low);
  if (!(o->eps_high >= 0 && isfinite(o->eps_high)))
    return idoc_set_error("grpo loss: eps_high must be finite and >= 0, got %g", o->eps_high);
  if (!(o->beta >= 0 && isfinite(o->beta)))
    return idoc_set_error("grpo loss: beta must be finite and >= 0, got %g", o->beta);
  if (o->agg != IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN && o->agg != IDOC_GRPO_AGG_TOKEN_MEAN &&
      o->agg != IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM)
    return idoc_set_error("grpo loss: unknown aggregation mode %d", (int)o->agg);
  if (o->agg == IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM && o->max_completion_length <= 0)
    return idoc_set_error("grpo loss: dr_grpo aggregation needs max_completion_length > 0");
  if (!(o->denom >= 0 && isfinite(o->denom)))
    return idoc_set_error("grpo loss: denom must be finite and >= 0, got %g", o->denom);
  if (!isfinite(o->entropy_coef))
    return idoc_set_error("grpo loss: entropy_coef must be finite, got %g", o->entropy_coef);
  if (!(o->entropy_top_rho > 0 && o->entropy_top_rho <= 1))
    return idoc_set_error("grpo loss: entropy_top_rho must be in (0, 1] (1 = no gating), got %g",
                          o->entropy_top_rho);
  if (b->n_seq < 0) return idoc_set_error("grpo loss: n_seq is negative");
  if (!b->seq_off) return idoc_set_error("grpo loss: seq_off is NULL");
  if (b->seq_off[0] != 0) return idoc_set_error("grpo loss: seq_off[0] must be 0");
  for (int64_t i = 0; i < b->n_seq; i++)
    if (b->seq_off[i + 1] < b->seq_off[i])
      return idoc_set_error("grpo loss: seq_off decreases at sequence %lld", (long long)i);
  if (b->n_seq > 0 && (!b->advantages || !b->logp))
    return idoc_set_error("grpo loss: logp/advantages are NULL");
  if (o->beta != 0 && !b->ref_logp)
    return idoc_set_error("grpo loss: beta = %g needs the reference model's ref_logp", o->beta);
  if ((o->entropy_top_rho < 1 || o->entropy_coef != 0) && !b->entropy)
    return idoc_set_error("grpo loss: entropy gating / entropy_coef need per-token entropies");
  return IDOC_OK;
}

static bool tok_valid(const idoc_grpo_batch *b, int64_t t) { return !b->mask || b->mask[t]; }
static bool seq_kept(const idoc_grpo_batch *b, int64_t i) { return !b->seq_keep || b->seq_keep[i]; }

static int check_finite(const float *x, const char *name, const idoc_grpo_batch *b) {
  if (!x) return IDOC_OK;
  for (int64_t i = 0; i < b->n_seq; i++) {
    if (!seq_kept(b, i)) continue;
    for (int64_t t = b->seq_off[i]; t < b->seq_off[i + 1]; t++)
      if (tok_valid(b, t) && !isfinite(x[t]))
        return idoc_set_error("grpo loss: %s[%lld] (sequence %lld) is %g", name, (long long)t,
                              (long long)i, (double)x[t]);
  }
  return IDOC_OK;
}

int idoc_grpo_loss(const idoc_grpo_batch *b, const idoc_grpo_loss_opts *o, double *dlogp,
                   double *dentropy, idoc_grpo_loss_stats *st) {
  if (check_opts(b, o)) return IDOC_ERR;
  int64_t T = b->seq_off[b->n_seq];
  if (dlogp) memset(dlogp, 0, (size_t)T * sizeof *dlogp);
  if (dentropy) memset(dentropy, 0, (size_t)T * sizeof *dentropy);
  idoc_grpo_loss_stats s = {0};
  if (st) *st = s;

  const char *names[4] = {"logp", "old_logp", "ref_logp", "entropy"};
  const float *arrays[4] = {b->logp, b->old_logp, o->beta != 0 ? b->ref_logp : NULL, b->entropy};
  for (int k = 0; k < 4; k++)
    if (check_finite(arrays[k], names[k], b)) return IDOC_ERR;
  int64_t n_seq = 0, n_tok = 0;
  for (int64_t i = 0; i < b->n_seq; i++) {
    if (!seq_kept(b, i)) continue;
    if (!isfinite(b->advantages[i]))
      return idoc_set_error("grpo loss: advantage %lld is %g", (long long)i, b->advantages[i]);
    n_seq++;
    for (int64_t t = b->seq_off[i]; t < b->seq_off[i + 1]; t++)
      n_tok += tok_valid(b, t);
  }
  s.n_seq = n_seq;
  s.n_tokens = n_tok;
  if (n_seq == 0) { // nothing to learn from (every group filtered out)
    if (st) *st = s;
    return IDOC_OK;
  }

  // Entropy gating threshold over the valid tokens of the batch.
  bool gating = o->entropy_top_rho < 1;
  double thr = 0;
  if (gating && o->has_entropy_threshold) {
    thr = o->entropy_threshold;
  } else if (gating && n_tok > 0) {
    double *h = idoc_xmalloc((size_t)n_tok * sizeof *h);
    int64_t k = 0;
    for (int64_t i = 0; i < b->n_seq; i++)
      for (int64_t t = b->seq_off[i]; seq_kept(b, i) && t < b->seq_off[i + 1]; t++)
        if (tok_valid(b, t)) h[k++] = b->entropy[t];
    thr = quantile_sorted_inplace(h, n_tok, 1.0 - o->entropy_top_rho);
    free(h);
  }

  double lo = 1.0 - o->eps_low, hi = 1.0 + o->eps_high, beta = o->beta;
  double seq_den = o->denom > 0 ? o->denom : (double)n_seq;
  double pg = 0, kl = 0, ent = 0; // aggregated terms
  double kl_sum = 0, ratio_sum = 0, ent_sum = 0;
  int64_t n_low = 0, n_high = 0, n_gate = 0;
  for (int64_t i = 0; i < b->n_seq; i++) {
    if (!seq_kept(b, i)) continue;
    int64_t t0 = b->seq_off[i], t1 = b->seq_off[i + 1], n_valid = 0;
    for (int64_t t = t0; t < t1; t++)
      n_valid += tok_valid(b, t);
    double w; // d AGG / d l_t for this sequence's tokens
    switch (o->agg) {
    case IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN:
      w = 1.0 / (seq_den * (double)(n_valid > 1 ? n_valid : 1));
      break;
    case IDOC_GRPO_AGG_TOKEN_MEAN:
      w = 1.0 / (o->denom > 0 ? o->denom : (double)(n_tok > 1 ? n_tok : 1));
      break;
    default: w = 1.0 / (seq_den * (double)o->max_completion_length); break;
    }
    double A = b->advantages[i], pg_i = 0, kl_i = 0, ent_i = 0;
    for (int64_t t = t0; t < t1; t++) {
      if (!tok_valid(b, t)) continue;
      double lp = b->logp[t], old = b->old_logp ? (double)b->old_logp[t] : lp;
      double r = exp(lp - old);
      bool clip_low = r < lo && A<0, clip_high = r> hi && A > 0;
      n_low += clip_low;
      n_high += clip_high;
      ratio_sum += r;
      // -min(r A, clip(r) A): the clipped branch is the smaller one exactly when clip_low or
      // clip_high holds, and it is constant in logp; otherwise the value is -r A (at the clip
      // boundaries both branches agree, and torch's clamp passes the gradient there).
      double rc = r < lo ? lo : r > hi ? hi : r;
      double l_pg = -fmin(r * A, rc * A), g = clip_low || clip_high ? 0.0 : -A * r;
      bool gate = !gating || b->entropy[t] >= thr;
      n_gate += gate;
      double g_t = 0;
      if (gate) {
        pg_i += l_pg;
        g_t += g;
      }
      if (b->ref_logp) {
        double dr = (double)b->ref_logp[t] - lp, e = exp(dr), k3 = e - dr - 1.0;
        kl_sum += k3;
        if (beta != 0) {
          kl_i += k3;
          g_t += beta * (1.0 - e);
        }
      }
      if (b->entropy) {
        ent_sum += b->entropy[t];
        ent_i += b->entropy[t];
        if (dentropy) dentropy[t] = -o->entropy_coef * w;
      }
      if (dlogp) dlogp[t] = w * g_t;
    }
    pg += w * pg_i;
    kl += w * kl_i;
    ent += w * ent_i;
  }
  s.pg_loss = pg;
  s.kl_loss = beta * kl;
  s.entropy_loss = o->entropy_coef != 0 ? -o->entropy_coef * ent : 0.0;
  s.loss = s.pg_loss + s.kl_loss + s.entropy_loss;
  if (n_tok > 0) {
    double nt = (double)n_tok;
    s.kl_mean = kl_sum / nt;
    s.ratio_mean = ratio_sum / nt;
    s.clip_low = (double)n_low / nt;
    s.clip_high = (double)n_high / nt;
    s.clip_region = (double)(n_low + n_high) / nt;
    s.entropy_mean = ent_sum / nt;
    s.gate_frac = (double)n_gate / nt;
  }
  s.entropy_threshold = gating ? thr : 0.0;
  if (st) *st = s;
  return IDOC_OK;
}

// ---- autograd node ---------------------------------------------------------------------------
static void grpo_bw(idoc_ctx *c, idoc_node *n) {
  float dout = idoc_tensor_get(n->out->grad, 0);
  for (int k = 0; k < 2; k++) {
    idoc_tensor *x = n->in[k], *g = n->saved[k];
    if (!x || !g) continue;
    idoc_tensor *dx = idoc_grad(c, x);
    if (dx) IDOC_K(dx->dev, axpy)(dx, g, dout);
  }
}

// Host copy of an f32 tensor (malloc'd; the caller frees).
static float *host_f32(const idoc_tensor *t) {
  float *h = idoc_xmalloc((size_t)idoc_numel(t) * sizeof *h + 1);
  idoc_tensor_to_host(t, h);
  return h;
}

idoc_tensor *idoc_grpo_loss_op(idoc_ctx *c, idoc_tensor *logp, idoc_tensor *entropy,
                               const idoc_grpo_batch *b, const idoc_grpo_loss_opts *o,
                               idoc_grpo_loss_stats *st) {
  IDOC_CHECK(b && b->seq_off && b->n_seq >= 0, "grpo_loss_op: no batch description");
  int64_t T = b->seq_off[b->n_seq];
  char d1[128], d2[128];
  IDOC_CHECK(logp->dtype == IDOC_F32 && idoc_numel(logp) == T,
             "grpo_loss_op: logp %s must be f32 with %lld elements",
             idoc_tensor_desc(logp, d1, sizeof d1), (long long)T);
  IDOC_CHECK(!entropy || (entropy->dtype == IDOC_F32 && idoc_numel(entropy) == T &&
                          idoc_dev_eq(entropy->dev, logp->dev)),
             "grpo_loss_op: entropy %s must be f32 with %lld elements, on logp's device",
             entropy ? idoc_tensor_desc(entropy, d2, sizeof d2) : "", (long long)T);
  idoc_grpo_batch hb = *b;
  float *lp = host_f32(logp), *en = entropy ? host_f32(entropy) : NULL;
  hb.logp = lp;
  hb.entropy = en;
  idoc_tensor *in[2] = {logp, entropy};
  bool rec = idoc_needs_grad(c, in, 2);
  bool want_ent = rec && entropy && entropy->requires_grad && o && o->entropy_coef != 0;
  double *g = idoc_xmalloc((size_t)(2 * T + 1) * sizeof *g);
  idoc_tensor *loss = NULL;
  idoc_grpo_loss_stats s;
  if (idoc_grpo_loss(&hb, o, g, want_ent ? g + T : NULL, &s)) goto done;
  if (st) *st = s;
  loss = idoc_tensor_new(c->act, IDOC_F32, 0, NULL);
  float lv = (float)s.loss;
  idoc_tensor_from_host(loss, &lv);
  if (rec) {
    idoc_node *nd = idoc_record(c, "grpo_loss", grpo_bw, loss, in, entropy ? 2 : 1);
    float *gf = (float *)lp; // reuse the host staging buffer for the f32 gradients
    for (int k = 0; k < 2; k++) {
      idoc_tensor *x = in[k];
      if (!x || !x->requires_grad || (k == 1 && !want_ent)) continue;
      for (int64_t t = 0; t < T; t++)
        gf[t] = (float)g[k * T + t];
      nd->saved[k] = idoc_tensor_new(c->act, IDOC_F32, x->ndim, x->shape);
      idoc_tensor_from_host(nd->saved[k], gf);
    }
  }
done:
  free(g);
  free(lp);
  free(en);
  return loss;
}
