// idoc-requires: hdf5
#include "stage/baselines.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "nn/util.h"
#include "stage/metrics.h"

void idoc_image_stat_features(const uint8_t *rgb, int h, int w, double f[IDOC_PROBE_FEATURES]) {
  double s[3] = {0, 0, 0}, q[3] = {0, 0, 0}, np = (double)h * w;
  for (int64_t i = 0; i < (int64_t)h * w; i++)
    for (int c = 0; c < 3; c++) {
      double v = rgb[3 * i + c] / 255.0;
      s[c] += v;
      q[c] += v * v;
    }
  for (int c = 0; c < 3; c++) {
    f[c] = s[c] / np;
    f[3 + c] = sqrt(fmax(0, q[c] / np - f[c] * f[c]));
  }
#define LUMA(y, x)                                                                                 \
  ((0.299 * rgb[3 * ((int64_t)(y)*w + (x))] + 0.587 * rgb[3 * ((int64_t)(y)*w + (x)) + 1] +        \
    0.114 * rgb[3 * ((int64_t)(y)*w + (x)) + 2]) /                                                 \
   255.0)
  double grad = 0, lap = 0;
  int64_t ng = 0;
  for (int y = 1; y + 1 < h; y++)
    for (int x = 1; x + 1 < w; x++) {
      double c = LUMA(y, x);
      grad += fabs(LUMA(y, x + 1) - c) + fabs(LUMA(y + 1, x) - c);
      lap += fabs(4 * c - LUMA(y, x - 1) - LUMA(y, x + 1) - LUMA(y - 1, x) - LUMA(y + 1, x));
      ng++;
    }
  f[6] = ng ? grad / ng : 0;
  f[7] = ng ? lap / ng : 0;
  // Block contrast: the std of the 8 x 8 block means of luma (layout and object contrast).
  int B = 8, bh = h / B, bw = w / B;
  double bs = 0, bq = 0;
  for (int by = 0; by < B && bh > 0 && bw > 0; by++)
    for (int bx = 0; bx < B; bx++) {
      double m = 0;
      for (int y = by * bh; y < (by + 1) * bh; y++)
        for (int x = bx * bw; x < (bx + 1) * bw; x++)
          m += LUMA(y, x);
      m /= (double)bh * bw;
      bs += m;
      bq += m * m;
    }
#undef LUMA
  double nb = B * B;
  f[8] = sqrt(fmax(0, bq / nb - (bs / nb) * (bs / nb)));
}

// Solves the k x k system a x = b in place (Gaussian elimination, partial pivoting); false when
// singular.
static bool solve(double *a, double *b, int k) {
  for (int c = 0; c < k; c++) {
    int p = c;
    for (int r = c + 1; r < k; r++)
      if (fabs(a[r * k + c]) > fabs(a[p * k + c])) p = r;
    if (fabs(a[p * k + c]) < 1e-300) return false;
    for (int j = 0; j < k; j++) {
      double t = a[c * k + j];
      a[c * k + j] = a[p * k + j];
      a[p * k + j] = t;
    }
    double t = b[c];
    b[c] = b[p];
    b[p] = t;
    for (int r = 0; r < k; r++)
      if (r != c) {
        double m = a[r * k + c] / a[c * k + c];
        for (int j = c; j < k; j++)
          a[r * k + j] -= m * a[c * k + j];
        b[r] -= m * b[c];
      }
  }
  for (int c = 0; c < k; c++)
    b[c] /= a[c * k + c];
  return true;
}

// Features and labels of the first n samples of a split.
static int read_split(const char *path, int64_t max, double **feat, double **lab, double **rule,
                      int64_t *n_out) {
  idoc_dataset *ds = idoc_dataset_open(path);
  if (!ds) return IDOC_ERR;
  int64_t n = (int64_t)idoc_dataset_len(ds);
  if (max > 0 && max < n) n = max;
  *feat = idoc_xmalloc((size_t)(n ? n : 1) * IDOC_PROBE_FEATURES * sizeof(double));
  *lab = idoc_xmalloc((size_t)(n ? n : 1) * 4 * sizeof(double));
  bool has_rule = n > 0 && idoc_dataset_rule_scores(ds, 0);
  if (rule) *rule = has_rule ? idoc_xmalloc((size_t)n * 4 * sizeof(double)) : NULL;
  for (int64_t i = 0; i < n; i++) {
    idoc_sample s;
    if (idoc_dataset_read(ds, (size_t)i, true, &s)) {
      idoc_dataset_close_reader(ds);
      return idoc_wrap_error("%s: sample %lld", path, (long long)i);
    }
    idoc_image_stat_features(s.image, s.img_h, s.img_w, *feat + i * IDOC_PROBE_FEATURES);
    for (int d = 0; d < 4; d++) {
      (*lab)[4 * i + d] = s.scores[d];
      if (rule && *rule) (*rule)[4 * i + d] = s.rule_scores[d];
    }
    idoc_sample_free(&s);
  }
  idoc_dataset_close_reader(ds);
  *n_out = n;
  return IDOC_OK;
}

int idoc_split_baselines_compute(const char *train, const char *test, int64_t max_test,
                                 int64_t max_train, idoc_split_baselines *out) {
  memset(out, 0, sizeof *out);
  double *ft = NULL, *lt = NULL, *rt = NULL, *fr = NULL, *lr = NULL;
  int64_t nt = 0, nr = 0;
  int rc = IDOC_ERR;
  if (read_split(test, max_test, &ft, &lt, &rt, &nt) ||
      read_split(train, max_train, &fr, &lr, NULL, &nr))
    goto out;
  if (nt < 2 || nr < 2) {
    rc = idoc_set_error("baselines: %s has %lld and %s %lld samples (2 each needed)", test,
                        (long long)nt, train, (long long)nr);
    goto out;
  }
  out->n_test = nt, out->n_train = nr, out->has_rule = rt != NULL;
  const int K = IDOC_PROBE_FEATURES + 1;
  double *x = idoc_xmalloc((size_t)nt * sizeof(double)),
         *y = idoc_xmalloc((size_t)nt * sizeof(double));
  // Feature standardisation from the training split.
  double mu[IDOC_PROBE_FEATURES], sd[IDOC_PROBE_FEATURES];
  for (int j = 0; j < IDOC_PROBE_FEATURES; j++) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < nr; i++)
      s += fr[i * IDOC_PROBE_FEATURES + j],
          q += fr[i * IDOC_PROBE_FEATURES + j] * fr[i * IDOC_PROBE_FEATURES + j];
    mu[j] = s / nr;
    sd[j] = sqrt(fmax(q / nr - mu[j] * mu[j], 0)) + 1e-12;
  }
  out->ceiling_avg = out->probe_avg = 0;
  for (int d = 0; d < 4; d++) {
    double mean = 0;
    for (int64_t i = 0; i < nr; i++)
      mean += lr[4 * i + d];
    mean /= nr;
    // ridge fit: [1, z] -> label, lambda = 1e-3 n on the feature weights
    double a[(IDOC_PROBE_FEATURES + 1) * (IDOC_PROBE_FEATURES + 1)] = {0},
                                                                b[IDOC_PROBE_FEATURES + 1] = {0};
    for (int64_t i = 0; i < nr; i++) {
      double z[IDOC_PROBE_FEATURES + 1] = {1};
      for (int j = 0; j < IDOC_PROBE_FEATURES; j++)
        z[j + 1] = (fr[i * IDOC_PROBE_FEATURES + j] - mu[j]) / sd[j];
      for (int r = 0; r < K; r++) {
        b[r] += z[r] * lr[4 * i + d];
        for (int c = 0; c < K; c++)
          a[r * K + c] += z[r] * z[c];
      }
    }
    for (int j = 1; j < K; j++)
      a[j * K + j] += 1e-3 * nr;
    if (!solve(a, b, K)) memset(b, 0, sizeof b), b[0] = mean;
    double ce = 0, me = 0, pe = 0;
    for (int64_t i = 0; i < nt; i++) {
      double g = lt[4 * i + d], p = b[0];
      for (int j = 0; j < IDOC_PROBE_FEATURES; j++)
        p += b[j + 1] * (ft[i * IDOC_PROBE_FEATURES + j] - mu[j]) / sd[j];
      x[i] = p, y[i] = g;
      ce += fabs(0.5 - g), me += fabs(mean - g), pe += fabs(p - g);
    }
    out->const_mae[d] = ce / nt, out->mean_mae[d] = me / nt, out->probe_mae[d] = pe / nt;
    out->probe_plcc[d] = idoc_plcc(x, y, (size_t)nt);
    out->probe_avg += out->probe_plcc[d] / 4;
    if (rt) {
      for (int64_t i = 0; i < nt; i++)
        x[i] = rt[4 * i + d];
      out->ceiling[d] = idoc_plcc(x, y, (size_t)nt);
      out->ceiling_avg += out->ceiling[d] / 4;
    } else {
      out->ceiling[d] = NAN;
    }
  }
  if (!rt) out->ceiling_avg = NAN;
  free(x), free(y);
  rc = IDOC_OK;
out:
  free(ft), free(lt), free(rt), free(fr), free(lr);
  return rc;
}

// Score dimensions in the order of the eval table (plausibility, aesthetics, alignment, overall).
static const int k_order[4] = {2, 1, 0, 3};
static const char *const k_names[4] = {"plausibility", "aesthetics", "alignment", "overall"};

char *idoc_split_baselines_text(const idoc_split_baselines *b) {
  char *s = idoc_xmalloc(1024);
  int k = 0;
#define ADD(...) k += snprintf(s + k, (size_t)(k < 1024 ? 1024 - k : 0), __VA_ARGS__)
  ADD("split reference (%lld held-out samples; plausibility / aesthetics / alignment / overall, "
      "average):\n",
      (long long)b->n_test);
  if (b->has_rule) {
    ADD("  ceiling: PLCC of the labels vs the noise-free rule scores  ");
    for (int i = 0; i < 4; i++)
      ADD("%.3f%s", b->ceiling[k_order[i]], i < 3 ? " / " : "");
    ADD(", avg %.3f\n", b->ceiling_avg);
  } else {
    ADD("  ceiling: unknown (no /rule_scores in the split)\n");
  }
  ADD("  constant 0.5: PLCC undefined, MAE  ");
  for (int i = 0; i < 4; i++)
    ADD("%.3f%s", b->const_mae[k_order[i]], i < 3 ? " / " : "\n");
  ADD("  training mean: PLCC undefined, MAE  ");
  for (int i = 0; i < 4; i++)
    ADD("%.3f%s", b->mean_mae[k_order[i]], i < 3 ? " / " : "\n");
  ADD("  image-statistics linear probe (%d features, %lld training samples): PLCC  ",
      IDOC_PROBE_FEATURES, (long long)b->n_train);
  for (int i = 0; i < 4; i++)
    ADD("%.3f%s", b->probe_plcc[k_order[i]], i < 3 ? " / " : "");
  ADD(", avg %.3f; MAE  ", b->probe_avg);
  for (int i = 0; i < 4; i++)
    ADD("%.3f%s", b->probe_mae[k_order[i]], i < 3 ? " / " : "\n");
#undef ADD
  return s;
}

char *idoc_split_baselines_json(const idoc_split_baselines *b) {
  char *s = idoc_xmalloc(2048);
  int k = 0;
#define ADD(...) k += snprintf(s + k, (size_t)(k < 2048 ? 2048 - k : 0), __VA_ARGS__)
  ADD("{\"n_test\": %lld, \"n_train\": %lld", (long long)b->n_test, (long long)b->n_train);
  const char *grp[4] = {"ceiling_plcc", "constant_mae", "train_mean_mae", "probe_plcc"};
  const double *vals[4] = {b->ceiling, b->const_mae, b->mean_mae, b->probe_plcc};
  for (int g = 0; g < 4; g++) {
    ADD(", \"%s\": {", grp[g]);
    for (int i = 0; i < 4; i++) {
      double v = vals[g][k_order[i]];
      if (isfinite(v))
        ADD("%s\"%s\": %.6f", i ? ", " : "", k_names[i], v);
      else
        ADD("%s\"%s\": null", i ? ", " : "", k_names[i]);
    }
    ADD("}");
  }
  if (isfinite(b->ceiling_avg))
    ADD(", \"ceiling_plcc_avg\": %.6f", b->ceiling_avg);
  else
    ADD(", \"ceiling_plcc_avg\": null");
  if (isfinite(b->probe_avg))
    ADD(", \"probe_plcc_avg\": %.6f}", b->probe_avg);
  else
    ADD(", \"probe_plcc_avg\": null}");
#undef ADD
  return s;
}
