// Score correlations, RichHF heatmap metrics and the test-set accumulator (see metrics.h).
#include "stage/metrics.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>

#include "data/imagedoctor_text.h"
#include "nn/json.h"

_Static_assert((int)IDOC_EVAL_N_DIMS == (int)IDOC_N_SCORES &&
                   (int)IDOC_EVAL_ALIGNMENT == (int)IDOC_SCORE_SEMANTIC &&
                   (int)IDOC_EVAL_AESTHETICS == (int)IDOC_SCORE_AESTHETIC &&
                   (int)IDOC_EVAL_PLAUSIBILITY == (int)IDOC_SCORE_PLAUSIBILITY &&
                   (int)IDOC_EVAL_OVERALL == (int)IDOC_SCORE_OVERALL,
               "score dimensions must follow the response parser's order");

const char *const idoc_hm_metric_keys[IDOC_HM_N_METRICS] = {"cc", "kld", "sim", "nss", "auc_judd"};
const char *const idoc_eval_dim_keys[IDOC_EVAL_N_DIMS] = {"alignment", "aesthetics", "plausibility",
                                                          "overall"};
const char *const idoc_eval_map_keys[IDOC_EVAL_N_MAPS] = {"artifact", "misalignment"};

// ---- score correlations -------------------------------------------------------------------
static bool all_equal(const double *x, size_t n) {
  for (size_t i = 1; i < n; i++)
    if (x[i] != x[0]) return false;
  return true;
}

double idoc_plcc(const double *x, const double *y, size_t n) {
  if (n < 2) return NAN;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i]) || !isfinite(y[i])) return NAN;
  // scipy tests constancy by exact equality, before any arithmetic could blur it.
  if (all_equal(x, n) || all_equal(y, n)) return NAN;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= (double)n;
  my /= (double)n;
  // Deviations are scaled by their largest magnitude (as scipy does) so that squaring neither
  // overflows nor underflows for extreme inputs.
  double ax = 0, ay = 0;
  for (size_t i = 0; i < n; i++) {
    ax = fmax(ax, fabs(x[i] - mx));
    ay = fmax(ay, fabs(y[i] - my));
  }
  if (ax == 0 || ay == 0) return NAN;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; i++) {
    double dx = (x[i] - mx) / ax, dy = (y[i] - my) / ay;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  double r = sxy / (sqrt(sxx) * sqrt(syy));
  return r > 1 ? 1 : r < -1 ? -1 : r;
}

typedef struct {
  double v;
  size_t i;
} rank_item;

static int rank_cmp(const void *a, const void *b) {
  const rank_item *p = a, *q = b;
  if (p->v < q->v) return -1;
  if (p->v > q->v) return 1;
  return p->i < q->i ? -1 : p->i > q->i; // a total order keeps qsort's result well defined
}

void idoc_rankdata(const double *x, size_t n, double *ranks) {
  for (size_t i = 0; i < n; i++) {
    if (isnan(x[i])) {
      for (size_t j = 0; j < n; j++)
        ranks[j] = NAN;
      return;
    }
  }
  if (n == 0) return;
  rank_item *it = idoc_xmalloc(n * sizeof *it);
  for (size_t i = 0; i < n; i++)
    it[i] = (rank_item){x[i], i};
  qsort(it, n, sizeof *it, rank_cmp);
  for (size_t lo = 0; lo < n;) {
    size_t hi = lo + 1;
    while (hi < n && it[hi].v == it[lo].v)
      hi++;
    // Positions lo..hi-1 hold ranks lo+1..hi; their mean is (lo + 1 + hi) / 2.
    double r = 0.5 * ((double)lo + 1.0 + (double)hi);
    for (size_t k = lo; k < hi; k++)
      ranks[it[k].i] = r;
    lo = hi;
  }
  free(it);
}

double idoc_srcc(const double *x, const double *y, size_t n) {
  if (n < 2) return NAN;
  for (size_t i = 0; i < n; i++)
    if (isnan(x[i]) || isnan(y[i])) return NAN;
  double *rx = idoc_xmalloc(2 * n * sizeof *rx), *ry = rx + n;
  idoc_rankdata(x, n, rx);
  idoc_rankdata(y, n, ry);
  double r = idoc_plcc(rx, ry, n);
  free(rx);
  return r;
}

// ---- per-image heatmap metrics ------------------------------------------------------------
bool idoc_map_empty(const float *g, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (g[i] > 0) return false;
  return true;
}

static bool any_nonzero(const float *m, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (m[i] != 0) return true;
  return false;
}

static double mean_of(const float *m, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += m[i];
  return s / (double)n;
}

double idoc_map_mse(const float *p, const float *g, size_t n) {
  if (n == 0) return NAN;
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)p[i] - (double)g[i];
    s += d * d;
  }
  return s / (double)n;
}

double idoc_map_cc(const float *p, const float *g, size_t n) {
  if (n == 0) return NAN;
  double mp = mean_of(p, n), mg = mean_of(g, n);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; i++) {
    double dp = p[i] - mp, dg = g[i] - mg;
    sxy += dp * dg;
    sxx += dp * dp;
    syy += dg * dg;
  }
  // A constant map has std 0: MATLAB's standardization divides 0 by 0.
  if (sxx == 0 || syy == 0) return NAN;
  return sxy / sqrt(sxx * syy);
}

double idoc_map_kld(const float *p, const float *g, size_t n) {
  if (n == 0) return NAN;
  const double eps = DBL_EPSILON;
  bool np = any_nonzero(p, n), ng = any_nonzero(g, n);
  double sp = 0, sg = 0;
  for (size_t i = 0; i < n; i++) {
    sp += p[i];
    sg += g[i];
  }
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double pi = np ? p[i] / sp : p[i], gi = ng ? g[i] / sg : g[i];
    s += gi * log(eps + gi / (pi + eps));
  }
  return s;
}

// MATLAB's similarity.m normalization of one map: min-max to [0, 1], then to sum 1, unless the
// map is all zero. Returns false when the result is all NaN (a constant non-zero map).
typedef struct {
  bool scale;
  double lo, range, sum;
} sim_norm;

static bool sim_norm_init(const float *m, size_t n, sim_norm *s) {
  *s = (sim_norm){.scale = any_nonzero(m, n)};
  if (!s->scale) return true;
  double lo = m[0], hi = m[0];
  for (size_t i = 1; i < n; i++) {
    lo = fmin(lo, m[i]);
    hi = fmax(hi, m[i]);
  }
  if (hi == lo) return false;
  s->lo = lo;
  s->range = hi - lo;
  for (size_t i = 0; i < n; i++)
    s->sum += (m[i] - lo) / s->range;
  return true;
}

static inline double sim_norm_at(const sim_norm *s, float v) {
  return s->scale ? ((v - s->lo) / s->range) / s->sum : v;
}

double idoc_map_sim(const float *p, const float *g, size_t n) {
  if (n == 0) return NAN;
  sim_norm np, ng;
  if (!sim_norm_init(p, n, &np) || !sim_norm_init(g, n, &ng)) return NAN;
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += fmin(sim_norm_at(&np, p[i]), sim_norm_at(&ng, g[i]));
  return s;
}

double idoc_map_nss(const float *p, const float *g, size_t n) {
  if (n < 2) return NAN; // MATLAB's std of one value is 0
  double m = mean_of(p, n), ss = 0;
  for (size_t i = 0; i < n; i++) {
    double d = p[i] - m;
    ss += d * d;
  }
  double sd = sqrt(ss / (double)(n - 1));
  if (sd == 0) return NAN;
  double s = 0;
  size_t nf = 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] > 0) {
      s += (p[i] - m) / sd;
      nf++;
    }
  }
  return nf ? s / (double)nf : NAN;
}

static inline uint64_t dbl_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static inline double bits_dbl(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

// LSD radix sort of 64-bit keys, one byte per pass; passes where every key has the same byte
// are skipped. On a 512x512 map about 5x faster than qsort.
static void radix_sort_u64(uint64_t *a, uint64_t *tmp, size_t n) {
  static const int passes = 8;
  size_t cnt[8][256];
  memset(cnt, 0, sizeof cnt);
  for (size_t i = 0; i < n; i++)
    for (int b = 0; b < passes; b++)
      cnt[b][(a[i] >> (8 * b)) & 255]++;
  uint64_t *src = a, *dst = tmp;
  for (int b = 0; b < passes; b++) {
    if (cnt[b][(src[0] >> (8 * b)) & 255] == n) continue;
    size_t off = 0;
    for (int d = 0; d < 256; d++) {
      size_t c = cnt[b][d];
      cnt[b][d] = off;
      off += c;
    }
    for (size_t i = 0; i < n; i++)
      dst[cnt[b][(src[i] >> (8 * b)) & 255]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != a) memcpy(a, src, n * sizeof *a);
}

// AUC-Judd with caller scratch ws[2n]. One sort of all pixels replaces the MATLAB loop's
// count of #{S >= thr} per threshold: walking the sorted values from the top, the count for a
// threshold is the number of pixels down to the end of its tie group.
static double auc_judd_ws(const float *p, const float *g, size_t n, idoc_rng *jitter,
                          uint64_t *ws) {
  size_t nf = 0;
  for (size_t i = 0; i < n; i++)
    nf += g[i] > 0;
  if (nf == 0) return NAN;
  uint64_t *keys = ws, *tmp = ws + n;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double v = p[i];
    if (jitter) v += idoc_rng_uniform(jitter) / 1e7;
    lo = fmin(lo, v);
    hi = fmax(hi, v);
    keys[i] = dbl_bits(v);
  }
  if (hi == lo) return NAN; // min-max normalization divides by zero
  if (nf == n) return NAN;  // FPR = x / 0
  double range = hi - lo;
  for (size_t i = 0; i < n; i++) {
    // S in [0, 1] is a non-negative double (x - x is +0), so its bit pattern sorts like its
    // value and bit 63 is clear; the fixation flag rides in the freed low bit, which only
    // reorders pixels inside a tie group.
    double s = (bits_dbl(keys[i]) - lo) / range;
    keys[i] = (dbl_bits(s) << 1) | (uint64_t)(g[i] > 0);
  }
  radix_sort_u64(keys, tmp, n);
  const double neg = (double)(n - nf);
  double area = 0, tp0 = 0, fp0 = 0;
  size_t seen = 0; // fixations with value >= the current threshold, i.e. MATLAB's i
  for (size_t end = n; end > 0;) {
    uint64_t v = keys[end - 1] >> 1;
    size_t start = end, kf = 0;
    while (start > 0 && (keys[start - 1] >> 1) == v) {
      start--;
      kf += keys[start] & 1;
    }
    double above = (double)(n - start); // #{S >= v}
    for (size_t k = 0; k < kf; k++) {
      seen++;
      double tp = (double)seen / (double)nf, fp = (above - (double)seen) / neg;
      area += (fp - fp0) * (tp + tp0) / 2;
      tp0 = tp;
      fp0 = fp;
    }
    end = start;
  }
  area += (1 - fp0) * (1 + tp0) / 2;
  return area;
}

double idoc_map_auc_judd(const float *p, const float *g, size_t n, idoc_rng *jitter) {
  if (n == 0) return NAN;
  uint64_t *ws = idoc_xmalloc(2 * n * sizeof *ws);
  double r = auc_judd_ws(p, g, n, jitter, ws);
  free(ws);
  return r;
}

// ---- accumulator --------------------------------------------------------------------------
typedef struct {
  int64_t n, n_gt_zero, n_gt_nonempty;
  double mse_sum, mse_gt_zero_sum;
  double sum[IDOC_HM_N_METRICS];
  int64_t n_def[IDOC_HM_N_METRICS], n_undef[IDOC_HM_N_METRICS];
} map_acc;

struct idoc_eval_acc {
  idoc_eval_opts opts;
  idoc_rng rng;
  int64_t n_samples, n_samples_unparsed;
  double *pred[IDOC_EVAL_N_DIMS], *gt[IDOC_EVAL_N_DIMS];
  size_t n[IDOC_EVAL_N_DIMS], cap[IDOC_EVAL_N_DIMS];
  int64_t n_unparsed[IDOC_EVAL_N_DIMS];
  map_acc map[IDOC_EVAL_N_MAPS];
  uint64_t *ws; // AUC scratch, 2 x the largest map
  size_t ws_pixels;
};

idoc_eval_opts idoc_eval_opts_default(void) {
  return (idoc_eval_opts){.unparsed = IDOC_EVAL_UNPARSED_EXCLUDE, .auc_jitter = false};
}

idoc_eval_acc *idoc_eval_acc_new(const idoc_eval_opts *opts) {
  idoc_eval_acc *a = idoc_xcalloc(1, sizeof *a);
  a->opts = opts ? *opts : idoc_eval_opts_default();
  idoc_rng_seed(&a->rng, a->opts.jitter_seed);
  return a;
}

void idoc_eval_acc_free(idoc_eval_acc *a) {
  if (!a) return;
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    free(a->pred[d]);
    free(a->gt[d]);
  }
  free(a->ws);
  free(a);
}

void idoc_eval_acc_reset(idoc_eval_acc *a) {
  idoc_rng_seed(&a->rng, a->opts.jitter_seed);
  a->n_samples = a->n_samples_unparsed = 0;
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++)
    a->n[d] = 0;
  memset(a->n_unparsed, 0, sizeof a->n_unparsed);
  memset(a->map, 0, sizeof a->map);
}

int64_t idoc_eval_acc_count(const idoc_eval_acc *a) { return a->n_samples; }

static void push_score(idoc_eval_acc *a, int d, double pred, double gt) {
  if (a->n[d] == a->cap[d]) {
    a->cap[d] = a->cap[d] ? 2 * a->cap[d] : 256;
    a->pred[d] = idoc_xrealloc(a->pred[d], a->cap[d] * sizeof(double));
    a->gt[d] = idoc_xrealloc(a->gt[d], a->cap[d] * sizeof(double));
  }
  a->pred[d][a->n[d]] = pred;
  a->gt[d][a->n[d]] = gt;
  a->n[d]++;
}

static int check_map(const float *m, int h, int w, long long sample, const char *kind,
                     const char *which) {
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      float v = m[(size_t)y * (size_t)w + (size_t)x];
      if (!isfinite(v))
        return idoc_set_error("eval sample %lld: %s %s map pixel (y=%d, x=%d) is not finite",
                              sample, kind, which, y, x);
      if (v < 0 || v > 1)
        return idoc_set_error(
            "eval sample %lld: %s %s map pixel (y=%d, x=%d) = %.9g is outside [0, 1]", sample, kind,
            which, y, x, (double)v);
    }
  }
  return IDOC_OK;
}

static void add_map(idoc_eval_acc *a, map_acc *m, const float *p, const float *g, size_t n) {
  double mse = idoc_map_mse(p, g, n);
  m->n++;
  m->mse_sum += mse;
  if (idoc_map_empty(g, n)) {
    m->n_gt_zero++;
    m->mse_gt_zero_sum += mse;
    return;
  }
  m->n_gt_nonempty++;
  if (a->ws_pixels < n) {
    free(a->ws);
    a->ws = idoc_xmalloc(2 * n * sizeof *a->ws);
    a->ws_pixels = n;
  }
  double v[IDOC_HM_N_METRICS];
  v[IDOC_HM_CC] = idoc_map_cc(p, g, n);
  v[IDOC_HM_KLD] = idoc_map_kld(p, g, n);
  v[IDOC_HM_SIM] = idoc_map_sim(p, g, n);
  v[IDOC_HM_NSS] = idoc_map_nss(p, g, n);
  v[IDOC_HM_AUC_JUDD] = auc_judd_ws(p, g, n, a->opts.auc_jitter ? &a->rng : NULL, a->ws);
  for (int k = 0; k < IDOC_HM_N_METRICS; k++) {
    if (isfinite(v[k])) {
      m->sum[k] += v[k];
      m->n_def[k]++;
    } else {
      m->n_undef[k]++;
    }
  }
}

int idoc_eval_acc_add(idoc_eval_acc *a, const idoc_eval_sample *s) {
  long long idx = (long long)a->n_samples;
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++)
    if (!isfinite(s->gt[d]))
      return idoc_set_error("eval sample %lld: ground-truth %s score is not finite (%g)", idx,
                            idoc_eval_dim_keys[d], s->gt[d]);
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const char *kind = idoc_eval_map_keys[k];
    if (!s->pred_map[k] && !s->gt_map[k]) continue;
    if (!s->pred_map[k] || !s->gt_map[k])
      return idoc_set_error("eval sample %lld: %s map: %s given without %s", idx, kind,
                            s->pred_map[k] ? "prediction" : "ground truth",
                            s->pred_map[k] ? "ground truth" : "prediction");
    if (s->map_h[k] <= 0 || s->map_w[k] <= 0)
      return idoc_set_error("eval sample %lld: %s map: bad size %dx%d", idx, kind, s->map_h[k],
                            s->map_w[k]);
    if (check_map(s->pred_map[k], s->map_h[k], s->map_w[k], idx, kind, "prediction") ||
        check_map(s->gt_map[k], s->map_h[k], s->map_w[k], idx, kind, "ground-truth"))
      return IDOC_ERR;
  }
  // Valid: from here on nothing fails.
  bool any_unparsed = false;
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    bool ok = s->parsed[d] && isfinite(s->pred[d]);
    if (ok) {
      push_score(a, d, s->pred[d], s->gt[d]);
      continue;
    }
    any_unparsed = true;
    a->n_unparsed[d]++;
    if (a->opts.unparsed == IDOC_EVAL_UNPARSED_ZERO) push_score(a, d, 0.0, s->gt[d]);
  }
  a->n_samples_unparsed += any_unparsed;
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++)
    if (s->pred_map[k])
      add_map(a, &a->map[k], s->pred_map[k], s->gt_map[k],
              (size_t)s->map_h[k] * (size_t)s->map_w[k]);
  a->n_samples++;
  return IDOC_OK;
}

static double mean_or_nan(double sum, int64_t n) { return n > 0 ? sum / (double)n : NAN; }

void idoc_eval_acc_finalize(const idoc_eval_acc *a, idoc_eval_result *r) {
  memset(r, 0, sizeof *r);
  r->opts = a->opts;
  r->n_samples = a->n_samples;
  r->n_samples_unparsed = a->n_samples_unparsed;
  r->plcc_avg = r->srcc_avg = 0;
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    idoc_eval_score_result *s = &r->score[d];
    s->n = (int64_t)a->n[d];
    s->n_unparsed = a->n_unparsed[d];
    s->plcc = idoc_plcc(a->pred[d], a->gt[d], a->n[d]);
    s->srcc = idoc_srcc(a->pred[d], a->gt[d], a->n[d]);
    r->plcc_avg += s->plcc;
    r->srcc_avg += s->srcc;
  }
  r->plcc_avg /= IDOC_EVAL_N_DIMS;
  r->srcc_avg /= IDOC_EVAL_N_DIMS;
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const map_acc *m = &a->map[k];
    idoc_eval_map_result *o = &r->map[k];
    o->n = m->n;
    o->mse_all = mean_or_nan(m->mse_sum, m->n);
    o->n_gt_zero = m->n_gt_zero;
    o->mse_gt_zero = mean_or_nan(m->mse_gt_zero_sum, m->n_gt_zero);
    o->n_gt_nonempty = m->n_gt_nonempty;
    for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
      o->metric[j] = mean_or_nan(m->sum[j], m->n_def[j]);
      o->n_undefined[j] = m->n_undef[j];
    }
  }
}

// ---- output -------------------------------------------------------------------------------
static void json_num(idoc_json_buf *b, double v) {
  if (isfinite(v))
    idoc_json_buf_printf(b, "%.9g", v);
  else
    idoc_json_buf_puts(b, "null");
}

static void json_key(idoc_json_buf *b, const char *k) {
  idoc_json_buf_string(b, k, strlen(k));
  idoc_json_buf_puts(b, ":");
}

char *idoc_eval_result_json(const idoc_eval_result *r) {
  idoc_json_buf b = {0};
  idoc_json_buf_printf(&b, "{\"n_samples\":%" PRId64 ",\"n_samples_unparsed\":%" PRId64,
                       r->n_samples, r->n_samples_unparsed);
  idoc_json_buf_puts(&b, ",\"scores\":{");
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    const idoc_eval_score_result *s = &r->score[d];
    json_key(&b, idoc_eval_dim_keys[d]);
    idoc_json_buf_puts(&b, "{\"plcc\":");
    json_num(&b, s->plcc);
    idoc_json_buf_puts(&b, ",\"srcc\":");
    json_num(&b, s->srcc);
    idoc_json_buf_printf(&b, ",\"n\":%" PRId64 ",\"n_unparsed\":%" PRId64 "},", s->n,
                         s->n_unparsed);
  }
  idoc_json_buf_puts(&b, "\"average\":{\"plcc\":");
  json_num(&b, r->plcc_avg);
  idoc_json_buf_puts(&b, ",\"srcc\":");
  json_num(&b, r->srcc_avg);
  idoc_json_buf_puts(&b, "}},\"heatmaps\":{");
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const idoc_eval_map_result *m = &r->map[k];
    if (k) idoc_json_buf_puts(&b, ",");
    json_key(&b, idoc_eval_map_keys[k]);
    idoc_json_buf_printf(&b, "{\"n\":%" PRId64 ",\"mse_all\":", m->n);
    json_num(&b, m->mse_all);
    idoc_json_buf_printf(&b, ",\"n_gt_zero\":%" PRId64 ",\"mse_gt_zero\":", m->n_gt_zero);
    json_num(&b, m->mse_gt_zero);
    idoc_json_buf_printf(&b, ",\"n_gt_nonempty\":%" PRId64, m->n_gt_nonempty);
    for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
      idoc_json_buf_puts(&b, ",");
      json_key(&b, idoc_hm_metric_keys[j]);
      json_num(&b, m->metric[j]);
    }
    idoc_json_buf_puts(&b, ",\"n_undefined\":{");
    for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
      if (j) idoc_json_buf_puts(&b, ",");
      json_key(&b, idoc_hm_metric_keys[j]);
      idoc_json_buf_printf(&b, "%" PRId64, m->n_undefined[j]);
    }
    idoc_json_buf_puts(&b, "}}");
  }
  idoc_json_buf_printf(
      &b, "},\"options\":{\"unparsed\":\"%s\",\"auc_jitter\":%s,\"jitter_seed\":%" PRIu64 "}}",
      r->opts.unparsed == IDOC_EVAL_UNPARSED_ZERO ? "zero" : "exclude",
      r->opts.auc_jitter ? "true" : "false", r->opts.jitter_seed);
  return b.data;
}

// A fixed-width cell: the number with `dec` decimals, or "-" when undefined.
static void cell(idoc_json_buf *b, int width, int dec, double v) {
  if (isfinite(v))
    idoc_json_buf_printf(b, " %*.*f", width, dec, v);
  else
    idoc_json_buf_printf(b, " %*s", width, "-");
}

char *idoc_eval_result_table(const idoc_eval_result *r) {
  // Paper Table 1 order, not the parser's.
  static const int rows[IDOC_EVAL_N_DIMS] = {IDOC_EVAL_PLAUSIBILITY, IDOC_EVAL_AESTHETICS,
                                             IDOC_EVAL_ALIGNMENT, IDOC_EVAL_OVERALL};
  static const char *const names[IDOC_EVAL_N_DIMS] = {"Semantic Alignment", "Aesthetics",
                                                      "Plausibility", "Overall"};
  idoc_json_buf b = {0};
  idoc_json_buf_printf(&b, "Scores (%" PRId64 " samples, %" PRId64 " with an unparsed score)\n",
                       r->n_samples, r->n_samples_unparsed);
  idoc_json_buf_printf(&b, "%-20s %8s %8s %8s %8s\n", "Dimension", "PLCC", "SRCC", "n", "unparsed");
  for (int i = 0; i < IDOC_EVAL_N_DIMS; i++) {
    const idoc_eval_score_result *s = &r->score[rows[i]];
    idoc_json_buf_printf(&b, "%-20s", names[rows[i]]);
    cell(&b, 8, 3, s->plcc);
    cell(&b, 8, 3, s->srcc);
    idoc_json_buf_printf(&b, " %8" PRId64 " %8" PRId64 "\n", s->n, s->n_unparsed);
  }
  idoc_json_buf_printf(&b, "%-20s", "Average");
  cell(&b, 8, 3, r->plcc_avg);
  cell(&b, 8, 3, r->srcc_avg);
  idoc_json_buf_puts(&b, "\n\n");

  idoc_json_buf_printf(&b, "%-13s %9s %9s %7s %7s %7s %7s %8s %6s %6s %6s\n", "Heatmaps", "MSE all",
                       "MSE GT=0", "CC", "KLD", "SIM", "NSS", "AUC-Judd", "n", "GT=0", "GT>0");
  static const char *const map_names[IDOC_EVAL_N_MAPS] = {"Artifact", "Misalignment"};
  bool any_undef = false;
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const idoc_eval_map_result *m = &r->map[k];
    idoc_json_buf_printf(&b, "%-13s", map_names[k]);
    cell(&b, 9, 5, m->mse_all);
    cell(&b, 9, 5, m->mse_gt_zero);
    for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
      cell(&b, j == IDOC_HM_AUC_JUDD ? 8 : 7, 3, m->metric[j]);
      any_undef |= m->n_undefined[j] > 0;
    }
    idoc_json_buf_printf(&b, " %6" PRId64 " %6" PRId64 " %6" PRId64 "\n", m->n, m->n_gt_zero,
                         m->n_gt_nonempty);
  }
  if (any_undef) {
    // Skipped samples bias the means; say how many so a reader can judge.
    for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
      const idoc_eval_map_result *m = &r->map[k];
      idoc_json_buf_printf(&b,
                           "%s: undefined (skipped) CC %" PRId64 ", KLD %" PRId64 ", SIM %" PRId64
                           ", NSS %" PRId64 ", AUC-Judd %" PRId64 "\n",
                           map_names[k], m->n_undefined[IDOC_HM_CC], m->n_undefined[IDOC_HM_KLD],
                           m->n_undefined[IDOC_HM_SIM], m->n_undefined[IDOC_HM_NSS],
                           m->n_undefined[IDOC_HM_AUC_JUDD]);
    }
  }
  return b.data;
}
