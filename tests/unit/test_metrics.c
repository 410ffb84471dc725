// Evaluation metrics against scipy/numpy references (scripts/make_metric_fixtures.py): PLCC,
// SRCC and ranks from scipy.stats; MSE/CC/KLD/SIM/NSS/AUC-Judd from a numpy transcription of
// the MIT saliency MATLAB code (with and without seeded jitter); the test-set accumulator's
// aggregates under both unparsed-score policies; its JSON and table output; hand-made edge
// cases; and the time per 512x512 map.
#include <float.h>
#include <string.h>

#include "nn/json.h"
#include "nn/safetensors.h"
#include "stage/metrics.h"
#include "tests/test.h"

#define DIR "tests/fixtures/metrics/"
#define RTOL 1e-6
#define ATOL 1e-9

// A reference value: null in the fixture means NaN (undefined) is expected.
static void check_val(double got, const idoc_json *want, const char *what) {
  if (idoc_json_is(want, IDOC_JSON_NULL)) {
    T_CHECK(isnan(got), "%s = %.17g, want NaN", what, got);
    return;
  }
  IDOC_CHECK(idoc_json_is(want, IDOC_JSON_NUMBER), "fixture: %s is not a number", what);
  double w = want->num;
  T_CHECK(fabs(got - w) <= ATOL + RTOL * fabs(w), "%s = %.17g, want %.17g", what, got, w);
}

static const idoc_json *req(const idoc_json *obj, const char *key) {
  const idoc_json *v = idoc_json_get(obj, key);
  IDOC_CHECK(v, "fixture: key \"%s\" missing", key);
  return v;
}

static double num(const idoc_json *obj, const char *key) {
  double v;
  IDOC_CHECK(idoc_json_as_double(req(obj, key), &v) == IDOC_OK, "fixture %s: %s", key,
             idoc_last_error());
  return v;
}

static int64_t inum(const idoc_json *obj, const char *key) {
  int64_t v;
  IDOC_CHECK(idoc_json_as_int64(req(obj, key), 0, INT64_MAX, &v) == IDOC_OK, "fixture %s: %s", key,
             idoc_last_error());
  return v;
}

// Array of numbers (null -> NaN), malloc'ed.
static double *num_array(const idoc_json *a, size_t *n) {
  IDOC_CHECK(idoc_json_is(a, IDOC_JSON_ARRAY), "fixture: expected an array");
  double *v = idoc_xmalloc((a->n ? a->n : 1) * sizeof *v);
  for (uint32_t i = 0; i < a->n; i++)
    v[i] = idoc_json_is(&a->kids[i], IDOC_JSON_NULL) ? NAN : a->kids[i].num;
  *n = a->n;
  return v;
}

typedef struct {
  const float *p, *g;
  int h, w;
} map_pair;

static float *load_map(idoc_st_file *f, const char *name, int *h, int *w) {
  const idoc_st_tensor *t = idoc_st_find(f, name);
  IDOC_CHECK(t && !strcmp(t->st_dtype, "F32") && t->ndim == 2,
             "fixture map %s missing or not F32 2-D", name);
  float *m = idoc_xmalloc((size_t)t->numel * sizeof *m);
  memcpy(m, t->data, (size_t)t->numel * sizeof *m);
  *h = (int)t->shape[0];
  *w = (int)t->shape[1];
  return m;
}

// Maps of every heatmap case, in fixture order (kept for the accumulator runs).
static map_pair *g_cases;
static size_t g_ncases;
static float **g_owned;
static size_t g_nowned;

static const float *map_by_name(idoc_st_file *f, const char *name, int *h, int *w) {
  float *m = load_map(f, name, h, w);
  g_owned = idoc_xrealloc(g_owned, (g_nowned + 1) * sizeof *g_owned);
  g_owned[g_nowned++] = m;
  return m;
}

static void test_heatmap_cases(const idoc_json *root, idoc_st_file *f) {
  const idoc_json *cases = req(root, "heatmap_cases");
  g_ncases = cases->n;
  g_cases = idoc_xcalloc(g_ncases, sizeof *g_cases);
  double worst = 0;
  for (size_t i = 0; i < g_ncases; i++) {
    const idoc_json *c = &cases->kids[i];
    const char *pn = idoc_json_string(req(c, "pred")), *gn = idoc_json_string(req(c, "gt"));
    int ph, pw, gh, gw;
    const float *p = map_by_name(f, pn, &ph, &pw), *g = map_by_name(f, gn, &gh, &gw);
    IDOC_CHECK(ph == gh && pw == gw, "fixture case %zu: sizes differ", i);
    g_cases[i] = (map_pair){p, g, gh, gw};
    size_t n = (size_t)gh * (size_t)gw;
    char what[128];
    double got[6] = {idoc_map_mse(p, g, n), idoc_map_cc(p, g, n),
                     idoc_map_kld(p, g, n), idoc_map_sim(p, g, n),
                     idoc_map_nss(p, g, n), idoc_map_auc_judd(p, g, n, NULL)};
    static const char *const keys[6] = {"mse", "cc", "kld", "sim", "nss", "auc_judd"};
    for (int k = 0; k < 6; k++) {
      snprintf(what, sizeof what, "case %zu (%s vs %s) %s", i, pn, gn, keys[k]);
      const idoc_json *want = req(c, keys[k]);
      check_val(got[k], want, what);
      if (idoc_json_is(want, IDOC_JSON_NUMBER))
        worst = fmax(worst, fabs(got[k] - want->num) / fmax(fabs(want->num), 1e-3));
    }
    bool empty;
    IDOC_CHECK(idoc_json_as_bool(req(c, "empty"), &empty) == IDOC_OK, "fixture empty");
    T_CHECK(idoc_map_empty(g, n) == empty, "case %zu empty flag", i);
  }
  printf("heatmap cases: %zu, worst relative error %.3g\n", g_ncases, worst);

  const idoc_json *jc = req(root, "jitter_cases");
  for (uint32_t i = 0; i < jc->n; i++) {
    const idoc_json *c = &jc->kids[i];
    int h, w, gh, gw;
    const float *p = map_by_name(f, idoc_json_string(req(c, "pred")), &h, &w);
    const float *g = map_by_name(f, idoc_json_string(req(c, "gt")), &gh, &gw);
    idoc_rng r;
    idoc_rng_seed(&r, (uint64_t)inum(c, "seed"));
    char what[64];
    snprintf(what, sizeof what, "jitter case %u auc_judd", i);
    check_val(idoc_map_auc_judd(p, g, (size_t)h * (size_t)w, &r), req(c, "auc_judd"), what);
  }
}

static void test_score_sets(const idoc_json *root) {
  const idoc_json *sets = req(root, "score_sets");
  double worst = 0;
  for (uint32_t i = 0; i < sets->n; i++) {
    const idoc_json *s = &sets->kids[i];
    const char *name = idoc_json_string(req(s, "name"));
    size_t n, ny, nrx, nry;
    double *x = num_array(req(s, "x"), &n), *y = num_array(req(s, "y"), &ny);
    double *rx = num_array(req(s, "rank_x"), &nrx), *ry = num_array(req(s, "rank_y"), &nry);
    IDOC_CHECK(n == ny && n == nrx && n == nry, "fixture %s: lengths", name);
    char what[96];
    snprintf(what, sizeof what, "%s plcc", name);
    double pl = idoc_plcc(x, y, n), sr = idoc_srcc(x, y, n);
    check_val(pl, req(s, "plcc"), what);
    snprintf(what, sizeof what, "%s srcc", name);
    check_val(sr, req(s, "srcc"), what);
    if (isfinite(pl)) worst = fmax(worst, fabs(pl - num(s, "plcc")));
    if (isfinite(sr)) worst = fmax(worst, fabs(sr - num(s, "srcc")));
    double *r = idoc_xmalloc((n ? n : 1) * sizeof *r);
    idoc_rankdata(x, n, r);
    for (size_t k = 0; k < n; k++)
      T_CHECK(r[k] == rx[k], "%s rank_x[%zu] = %g, want %g", name, k, r[k], rx[k]);
    idoc_rankdata(y, n, r);
    for (size_t k = 0; k < n; k++)
      T_CHECK(r[k] == ry[k], "%s rank_y[%zu] = %g, want %g", name, k, r[k], ry[k]);
    free(r);
    free(x);
    free(y);
    free(rx);
    free(ry);
  }
  printf("score sets: %u, worst absolute error %.3g\n", sets->n, worst);
}

static void fill_sample(const idoc_json *js, idoc_eval_sample *s) {
  memset(s, 0, sizeof *s);
  size_t n;
  double *pred = num_array(req(js, "pred"), &n);
  IDOC_CHECK(n == IDOC_EVAL_N_DIMS, "fixture sample pred");
  double *gt = num_array(req(js, "gt"), &n);
  IDOC_CHECK(n == IDOC_EVAL_N_DIMS, "fixture sample gt");
  const idoc_json *parsed = req(js, "parsed");
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    s->pred[d] = pred[d];
    s->gt[d] = gt[d];
    IDOC_CHECK(idoc_json_as_bool(idoc_json_at(parsed, (size_t)d), &s->parsed[d]) == IDOC_OK,
               "fixture parsed");
  }
  free(pred);
  free(gt);
  const idoc_json *maps = req(js, "maps");
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const idoc_json *c = req(maps, idoc_eval_map_keys[k]);
    if (idoc_json_is(c, IDOC_JSON_NULL)) continue;
    int64_t ci;
    IDOC_CHECK(idoc_json_as_int64(c, 0, (int64_t)g_ncases - 1, &ci) == IDOC_OK, "fixture map");
    s->pred_map[k] = g_cases[ci].p;
    s->gt_map[k] = g_cases[ci].g;
    s->map_h[k] = g_cases[ci].h;
    s->map_w[k] = g_cases[ci].w;
  }
}

static void check_result(const idoc_eval_result *r, const idoc_json *e, const char *run) {
  char what[160];
  T_CHECK(r->n_samples == inum(e, "n_samples"), "%s n_samples", run);
  T_CHECK(r->n_samples_unparsed == inum(e, "n_samples_unparsed"), "%s n_samples_unparsed", run);
  const idoc_json *sc = req(e, "scores");
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    const idoc_json *o = req(sc, idoc_eval_dim_keys[d]);
    snprintf(what, sizeof what, "%s %s plcc", run, idoc_eval_dim_keys[d]);
    check_val(r->score[d].plcc, req(o, "plcc"), what);
    snprintf(what, sizeof what, "%s %s srcc", run, idoc_eval_dim_keys[d]);
    check_val(r->score[d].srcc, req(o, "srcc"), what);
    T_CHECK(r->score[d].n == inum(o, "n"), "%s %s n", run, idoc_eval_dim_keys[d]);
    T_CHECK(r->score[d].n_unparsed == inum(o, "n_unparsed"), "%s %s n_unparsed", run,
            idoc_eval_dim_keys[d]);
  }
  const idoc_json *avg = req(sc, "average");
  snprintf(what, sizeof what, "%s average plcc", run);
  check_val(r->plcc_avg, req(avg, "plcc"), what);
  snprintf(what, sizeof what, "%s average srcc", run);
  check_val(r->srcc_avg, req(avg, "srcc"), what);
  const idoc_json *hm = req(e, "heatmaps");
  for (int k = 0; k < IDOC_EVAL_N_MAPS; k++) {
    const char *kind = idoc_eval_map_keys[k];
    const idoc_json *o = req(hm, kind);
    const idoc_eval_map_result *m = &r->map[k];
    T_CHECK(m->n == inum(o, "n"), "%s %s n", run, kind);
    T_CHECK(m->n_gt_zero == inum(o, "n_gt_zero"), "%s %s n_gt_zero", run, kind);
    T_CHECK(m->n_gt_nonempty == inum(o, "n_gt_nonempty"), "%s %s n_gt_nonempty", run, kind);
    snprintf(what, sizeof what, "%s %s mse_all", run, kind);
    check_val(m->mse_all, req(o, "mse_all"), what);
    snprintf(what, sizeof what, "%s %s mse_gt_zero", run, kind);
    check_val(m->mse_gt_zero, req(o, "mse_gt_zero"), what);
    const idoc_json *und = req(o, "n_undefined");
    for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
      snprintf(what, sizeof what, "%s %s %s", run, kind, idoc_hm_metric_keys[j]);
      check_val(m->metric[j], req(o, idoc_hm_metric_keys[j]), what);
      T_CHECK(m->n_undefined[j] == inum(und, idoc_hm_metric_keys[j]), "%s n_undefined", what);
    }
  }
}

// The JSON text parses and carries the struct's values (to %.9g), null where NaN.
static void check_json_output(const idoc_eval_result *r) {
  char *js = idoc_eval_result_json(r);
  idoc_json_doc *doc = idoc_json_parse(js, strlen(js), "eval json", NULL);
  T_CHECK(doc != NULL, "eval JSON does not parse: %s", doc ? "" : idoc_last_error());
  if (!doc) {
    free(js);
    return;
  }
  const idoc_json *root = idoc_json_root(doc);
  T_CHECK(inum(root, "n_samples") == r->n_samples, "json n_samples");
  const idoc_json *sc = req(root, "scores");
  for (int d = 0; d < IDOC_EVAL_N_DIMS; d++) {
    const idoc_json *o = req(sc, idoc_eval_dim_keys[d]);
    const idoc_json *pl = req(o, "plcc");
    if (isfinite(r->score[d].plcc))
      T_CLOSE(pl->num, r->score[d].plcc, 0, 1e-8);
    else
      T_CHECK(idoc_json_is(pl, IDOC_JSON_NULL), "json plcc null");
    T_CHECK(inum(o, "n_unparsed") == r->score[d].n_unparsed, "json n_unparsed");
  }
  T_CLOSE(num(req(sc, "average"), "srcc"), r->srcc_avg, 0, 1e-8);
  const idoc_json *hm = req(req(root, "heatmaps"), "misalignment");
  for (int j = 0; j < IDOC_HM_N_METRICS; j++) {
    const idoc_json *v = req(hm, idoc_hm_metric_keys[j]);
    double want = r->map[IDOC_EVAL_MAP_MISALIGNMENT].metric[j];
    if (isfinite(want))
      T_CLOSE(v->num, want, 0, 1e-8);
    else
      T_CHECK(idoc_json_is(v, IDOC_JSON_NULL), "json %s null", idoc_hm_metric_keys[j]);
  }
  T_CHECK(inum(req(hm, "n_undefined"), "auc_judd") ==
              r->map[IDOC_EVAL_MAP_MISALIGNMENT].n_undefined[IDOC_HM_AUC_JUDD],
          "json n_undefined");
  const idoc_json *opt = req(root, "options");
  T_CHECK(!strcmp(idoc_json_string(req(opt, "unparsed")),
                  r->opts.unparsed == IDOC_EVAL_UNPARSED_ZERO ? "zero" : "exclude"),
          "json options.unparsed");
  idoc_json_free(doc);
  free(js);
}

static void test_accumulator(const idoc_json *root) {
  const idoc_json *samples = req(root, "samples"), *runs = req(root, "accumulator_runs");
  for (uint32_t ri = 0; ri < runs->n; ri++) {
    const idoc_json *run = &runs->kids[ri];
    idoc_eval_opts o = idoc_eval_opts_default();
    const char *unp = idoc_json_string(req(run, "unparsed"));
    o.unparsed = !strcmp(unp, "zero") ? IDOC_EVAL_UNPARSED_ZERO : IDOC_EVAL_UNPARSED_EXCLUDE;
    IDOC_CHECK(idoc_json_as_bool(req(run, "auc_jitter"), &o.auc_jitter) == IDOC_OK, "fixture");
    o.jitter_seed = (uint64_t)inum(run, "jitter_seed");
    idoc_eval_acc *a = idoc_eval_acc_new(&o);
    char name[64];
    snprintf(name, sizeof name, "run %u (%s%s)", ri, unp, o.auc_jitter ? ", jitter" : "");
    for (int pass = 0; pass < 2; pass++) { // the second pass checks that reset starts afresh
      for (uint32_t i = 0; i < samples->n; i++) {
        idoc_eval_sample s;
        fill_sample(&samples->kids[i], &s);
        T_CHECK(idoc_eval_acc_add(a, &s) == IDOC_OK, "%s add %u: %s", name, i, idoc_last_error());
      }
      idoc_eval_result r;
      idoc_eval_acc_finalize(a, &r);
      check_result(&r, req(run, "expected"), name);
      idoc_eval_result r2;
      idoc_eval_acc_finalize(a, &r2); // finalize leaves the state alone
      T_CHECK(r2.score[2].srcc == r.score[2].srcc && r2.map[1].metric[4] == r.map[1].metric[4],
              "%s finalize twice", name);
      if (pass == 0) {
        check_json_output(&r);
        char *tab = idoc_eval_result_table(&r);
        T_CHECK(strstr(tab, "Plausibility") && strstr(tab, "Semantic Alignment") &&
                    strstr(tab, "Average") && strstr(tab, "AUC-Judd") &&
                    strstr(tab, "Misalignment"),
                "table rows/columns:\n%s", tab);
        // Rows in the paper's order: Plausibility before Aesthetics before Semantic Alignment.
        T_CHECK(strstr(tab, "Plausibility") < strstr(tab, "Aesthetics") &&
                    strstr(tab, "Aesthetics") < strstr(tab, "Semantic Alignment"),
                "table row order");
        char cellbuf[32];
        snprintf(cellbuf, sizeof cellbuf, "%.3f", r.score[IDOC_EVAL_ALIGNMENT].plcc);
        T_CHECK(strstr(tab, cellbuf) != NULL, "table shows alignment PLCC %s", cellbuf);
        if (ri == 0) printf("%s", tab);
        free(tab);
        idoc_eval_acc_reset(a);
        T_CHECK(idoc_eval_acc_count(a) == 0, "reset count");
      }
    }
    idoc_eval_acc_free(a);
  }
}

static void test_edge_scores(void) {
  double x[6] = {1, 2, 3, 4, 5, 6}, y[6], z[6], c[6] = {2, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; i++) {
    y[i] = 3 * x[i] - 1;
    z[i] = exp(-x[i]); // monotone decreasing, not linear
  }
  T_CLOSE(idoc_plcc(x, y, 6), 1.0, 1e-15, 0);
  T_CLOSE(idoc_srcc(x, y, 6), 1.0, 1e-15, 0);
  T_CLOSE(idoc_srcc(x, z, 6), -1.0, 1e-15, 0);
  T_CHECK(idoc_plcc(x, z, 6) > -1 + 1e-3, "PLCC of a nonlinear decreasing map is not -1");
  T_CHECK(isnan(idoc_plcc(x, c, 6)) && isnan(idoc_srcc(c, x, 6)), "constant side gives NaN");
  T_CHECK(isnan(idoc_plcc(x, y, 1)) && isnan(idoc_srcc(x, y, 1)), "n = 1 gives NaN");
  T_CHECK(isnan(idoc_plcc(x, y, 0)) && isnan(idoc_srcc(x, y, 0)), "n = 0 gives NaN");
  double xn[3] = {1, NAN, 2}, y3[3] = {1, 2, 3};
  T_CHECK(isnan(idoc_plcc(xn, y3, 3)) && isnan(idoc_srcc(xn, y3, 3)), "NaN input gives NaN");
  double t[5] = {3, 1, 3, 2, 3}, r[5];
  idoc_rankdata(t, 5, r);
  T_CHECK(r[0] == 4 && r[1] == 1 && r[2] == 4 && r[3] == 2 && r[4] == 4, "average ranks");
  // Shift and scale invariance at a large offset (a naive one-pass formula loses it).
  double u[4] = {1e9 + 1, 1e9 + 2, 1e9 + 4, 1e9 + 3}, v[4] = {1, 2, 4, 3};
  T_CLOSE(idoc_plcc(u, v, 4), 1.0, 1e-12, 0);
}

static void test_edge_maps(void) {
  enum { H = 6, W = 5, N = H * W };
  float g[N], p[N], zero[N], cst[N], full[N];
  for (int i = 0; i < N; i++) {
    g[i] = (i % 7 == 0) ? 0.5f + 0.01f * (float)i : 0.0f;
    p[i] = (float)i / N;
    zero[i] = 0;
    cst[i] = 0.25f;
    full[i] = 0.1f + 0.02f * (float)(i % 3);
  }
  // Identical maps.
  T_CHECK(idoc_map_mse(g, g, N) == 0, "MSE of identical maps");
  T_CLOSE(idoc_map_cc(g, g, N), 1.0, 1e-12, 0);
  T_CLOSE(idoc_map_sim(g, g, N), 1.0, 1e-12, 0);
  T_CLOSE(idoc_map_kld(g, g, N), 0.0, 1e-12, 0);
  // Constant prediction.
  T_CHECK(isnan(idoc_map_cc(cst, g, N)) && isnan(idoc_map_nss(cst, g, N)), "constant P: CC/NSS");
  T_CHECK(isnan(idoc_map_sim(cst, g, N)), "constant non-zero P: SIM NaN (MATLAB 0/0)");
  T_CHECK(idoc_map_sim(zero, g, N) == 0, "zero P stays zero: SIM 0");
  T_CHECK(isnan(idoc_map_auc_judd(cst, g, N, NULL)), "constant P: AUC NaN without jitter");
  idoc_rng rng;
  idoc_rng_seed(&rng, 5);
  double aj = idoc_map_auc_judd(cst, g, N, &rng);
  T_CHECK(aj >= 0 && aj <= 1, "constant P with jitter: AUC %g in [0, 1]", aj);
  // KLD of a zero prediction: sum G log(G / eps) with G normalized.
  double sg = 0, want = 0;
  for (int i = 0; i < N; i++)
    sg += g[i];
  for (int i = 0; i < N; i++)
    want += g[i] / sg * log(DBL_EPSILON + (g[i] / sg) / DBL_EPSILON);
  T_CLOSE(idoc_map_kld(zero, g, N), want, 0, 1e-12);
  // Empty ground truth.
  T_CHECK(idoc_map_empty(zero, N) && !idoc_map_empty(g, N), "empty flag");
  T_CHECK(isnan(idoc_map_auc_judd(p, zero, N, NULL)), "empty GT: AUC NaN");
  T_CHECK(isnan(idoc_map_nss(p, zero, N)), "empty GT: NSS NaN");
  T_CHECK(idoc_map_kld(p, zero, N) == 0, "empty GT: KLD 0");
  T_CHECK(isnan(idoc_map_cc(p, zero, N)), "empty GT: CC NaN");
  // Every pixel a fixation: no negatives, AUC undefined.
  T_CHECK(isnan(idoc_map_auc_judd(p, full, N, NULL)), "all-fixation GT: AUC NaN");
  // Perfect and reversed rankings with distinct values: AUC 1, and 1 / (2 N_f) reversed (the
  // first threshold already passes every negative).
  float fix[N], up[N], down[N];
  int nf = 0;
  for (int i = 0; i < N; i++) {
    fix[i] = (i % 4 == 1) ? 1.0f : 0.0f;
    nf += fix[i] > 0;
    up[i] = (float)i / (4 * N) + (fix[i] > 0 ? 0.5f : 0.0f);
    down[i] = (float)i / (4 * N) + (fix[i] > 0 ? 0.0f : 0.5f);
  }
  T_CLOSE(idoc_map_auc_judd(up, fix, N, NULL), 1.0, 1e-15, 0);
  T_CLOSE(idoc_map_auc_judd(down, fix, N, NULL), 1.0 / (2.0 * nf), 1e-15, 0);
  // NSS by hand: P = 0..N-1 scaled, one fixation at the max pixel.
  float one[N];
  memset(one, 0, sizeof one);
  one[N - 1] = 1;
  double m = 0, ss = 0;
  for (int i = 0; i < N; i++)
    m += p[i];
  m /= N;
  for (int i = 0; i < N; i++)
    ss += (p[i] - m) * (p[i] - m);
  T_CLOSE(idoc_map_nss(p, one, N), (p[N - 1] - m) / sqrt(ss / (N - 1)), 0, 1e-12);
  // A single pixel.
  float a1 = 0.5f, b1 = 0.25f;
  T_CLOSE(idoc_map_mse(&a1, &b1, 1), 0.0625, 0, 1e-15);
  T_CHECK(isnan(idoc_map_cc(&a1, &b1, 1)) && isnan(idoc_map_nss(&a1, &b1, 1)) &&
              isnan(idoc_map_auc_judd(&a1, &b1, 1, NULL)),
          "one pixel: CC/NSS/AUC undefined");
}

static void test_acc_errors(void) {
  idoc_eval_acc *a = idoc_eval_acc_new(NULL);
  enum { H = 3, W = 4 };
  float p[H * W], g[H * W];
  for (int i = 0; i < H * W; i++) {
    p[i] = (float)i / (H * W);
    g[i] = (i == 5) ? 0.8f : 0.0f;
  }
  idoc_eval_sample s = {.pred = {0.5, 0.6, 0.7, 0.8},
                        .gt = {0.4, 0.6, 0.9, 0.7},
                        .parsed = {true, true, true, true},
                        .pred_map = {p, NULL},
                        .gt_map = {g, NULL},
                        .map_h = {H, 0},
                        .map_w = {W, 0}};
  T_CHECK(idoc_eval_acc_add(a, &s) == IDOC_OK, "good sample: %s", idoc_last_error());
  idoc_eval_result before;
  idoc_eval_acc_finalize(a, &before);

  idoc_eval_sample bad = s;
  bad.gt[1] = NAN;
  T_CHECK(idoc_eval_acc_add(a, &bad) == IDOC_ERR && strstr(idoc_last_error(), "sample 1") &&
              strstr(idoc_last_error(), "aesthetics"),
          "NaN GT score: %s", idoc_last_error());
  bad = s;
  bad.gt_map[0] = NULL;
  T_CHECK(idoc_eval_acc_add(a, &bad) == IDOC_ERR && strstr(idoc_last_error(), "artifact") &&
              strstr(idoc_last_error(), "without ground truth"),
          "pred map alone: %s", idoc_last_error());
  float q[H * W];
  memcpy(q, p, sizeof q);
  q[1 * W + 2] = 1.5f;
  bad = s;
  bad.pred_map[0] = q;
  T_CHECK(idoc_eval_acc_add(a, &bad) == IDOC_ERR && strstr(idoc_last_error(), "pixel (y=1, x=2)") &&
              strstr(idoc_last_error(), "outside [0, 1]"),
          "out-of-range pixel: %s", idoc_last_error());
  q[1 * W + 2] = NAN;
  bad.gt_map[0] = q;
  bad.pred_map[0] = p;
  T_CHECK(idoc_eval_acc_add(a, &bad) == IDOC_ERR && strstr(idoc_last_error(), "ground-truth") &&
              strstr(idoc_last_error(), "not finite"),
          "NaN GT pixel: %s", idoc_last_error());
  bad = s;
  bad.map_h[0] = 0;
  T_CHECK(idoc_eval_acc_add(a, &bad) == IDOC_ERR && strstr(idoc_last_error(), "bad size"),
          "bad size: %s", idoc_last_error());
  // Failed adds changed nothing.
  idoc_eval_result after;
  idoc_eval_acc_finalize(a, &after);
  T_CHECK(idoc_eval_acc_count(a) == 1 && after.map[0].n == 1 && after.score[0].n == 1 &&
              after.map[0].mse_all == before.map[0].mse_all,
          "state unchanged after errors");
  // One sample: correlations undefined, heatmap means are that sample's values.
  T_CHECK(isnan(after.score[0].plcc) && isnan(after.plcc_avg), "n = 1 correlations NaN");
  T_CLOSE(after.map[0].metric[IDOC_HM_CC], idoc_map_cc(p, g, H * W), 0, 1e-15);
  T_CHECK(after.map[1].n == 0 && isnan(after.map[1].mse_all), "no misalignment maps: NaN");
  char *js = idoc_eval_result_json(&after);
  T_CHECK(strstr(js, "\"misalignment\":{\"n\":0,\"mse_all\":null") != NULL, "NaN as null: %s", js);
  free(js);
  // An unparsed score is counted and excluded by default.
  s.parsed[3] = false;
  T_CHECK(idoc_eval_acc_add(a, &s) == IDOC_OK, "unparsed add");
  idoc_eval_acc_finalize(a, &after);
  T_CHECK(after.score[3].n == 1 && after.score[3].n_unparsed == 1 && after.score[0].n == 2 &&
              after.n_samples_unparsed == 1,
          "unparsed counted and excluded");
  idoc_eval_acc_free(a);
}

static void test_timing(void) {
  enum { S = 512 };
  size_t n = (size_t)S * S;
  float *p = idoc_xmalloc(n * sizeof *p), *g = idoc_xmalloc(n * sizeof *g);
  idoc_rng r;
  idoc_rng_seed(&r, 1);
  for (size_t i = 0; i < n; i++) {
    p[i] = (float)idoc_rng_uniform(&r);
    double y = (double)(i / S) - 200, x = (double)(i % S) - 300;
    double v = exp(-(x * x + y * y) / (2 * 40.0 * 40.0));
    g[i] = v > 0.05 ? (float)(round(v * 255) / 255) : 0.0f;
  }
  idoc_eval_acc *a = idoc_eval_acc_new(NULL);
  idoc_eval_sample s = {
      .gt = {0, 0, 0, 0}, .pred_map = {p, p}, .gt_map = {g, g}, .map_h = {S, S}, .map_w = {S, S}};
  int reps = 5;
  double t0 = idoc_now();
  for (int i = 0; i < reps; i++)
    T_CHECK(idoc_eval_acc_add(a, &s) == IDOC_OK, "timing add");
  double dt = (idoc_now() - t0) / (2.0 * reps);
  t0 = idoc_now();
  double auc = idoc_map_auc_judd(p, g, n, NULL);
  double dauc = idoc_now() - t0;
  T_CHECK(fabs(auc - 0.5) < 0.02, "random prediction AUC %g near 0.5", auc);
  printf("512x512: all six metrics + validation %.1f ms per map, AUC-Judd alone %.1f ms\n",
         dt * 1e3, dauc * 1e3);
  idoc_eval_acc_free(a);
  free(p);
  free(g);
}

int main(void) {
  idoc_json_doc *doc = idoc_json_parse_file(DIR "expected.json", NULL);
  IDOC_CHECK(doc, "%s", idoc_last_error());
  idoc_st_file *f;
  IDOC_CHECK(idoc_st_open(&f, DIR "maps.safetensors") == IDOC_OK, "%s", idoc_last_error());
  const idoc_json *root = idoc_json_root(doc);
  test_heatmap_cases(root, f);
  test_score_sets(root);
  test_accumulator(root);
  test_edge_scores();
  test_edge_maps();
  test_acc_errors();
  test_timing();
  for (size_t i = 0; i < g_nowned; i++)
    free(g_owned[i]);
  free(g_owned);
  free(g_cases);
  idoc_st_close(f);
  idoc_json_free(doc);
  return t_summary("test_metrics");
}
