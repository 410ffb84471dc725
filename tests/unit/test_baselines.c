// The split reference (stage/baselines.h): synthetic sets store their noise-free rule scores,
// the ceiling is the PLCC of the labels against them (near 1 without label noise, lower with
// more), files without /rule_scores say so, the probe's features react to what they measure.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/synth.h"
#include "nn/util.h"
#include "stage/baselines.h"
#include "stage/metrics.h"
#include "tests/test.h"

#define DIR "test_baselines.tmp"

static int synth(const char *out, const char *noise) {
  char *a[] = {"data",   "synth", "--out",         (char *)out,  "--train", "150",
               "--val",  "0",     "--test",        "120",        "--size",  "48",
               "--seed", "3",     "--label-noise", (char *)noise};
  return idoc_cmd_data(16, a);
}

int main(void) {
  if (system("rm -rf " DIR) != 0) return 1;
  idoc_mkdir_p(DIR);
  T_CHECK(synth(DIR "/n02", "0.02") == 0 && synth(DIR "/n00", "0") == 0 &&
              synth(DIR "/n30", "0.3") == 0,
          "synth: %s", idoc_last_error());

  // The stored rule scores are the generator's clean scores, and the ceiling is their PLCC.
  idoc_dataset *ds = idoc_dataset_open(DIR "/n02/test.h5");
  T_CHECK(ds != NULL, "%s", idoc_last_error());
  size_t n = ds ? idoc_dataset_len(ds) : 0;
  double *lab = calloc(4 * n + 1, sizeof(double)), *rule = calloc(4 * n + 1, sizeof(double));
  int same = 0;
  for (size_t i = 0; i < n; i++) {
    const float *r = idoc_dataset_rule_scores(ds, i), *l = idoc_dataset_scores(ds, i);
    idoc_sample s;
    idoc_synth_truth tr;
    idoc_synth_opts o = idoc_synth_opts_default();
    o.size = 48;
    idoc_synth_sample(&o, 3, 2, i, &s, &tr);
    for (int d = 0; d < 4 && r; d++) {
      lab[d * n + i] = l[d], rule[d * n + i] = r[d];
      same += r[d] == (float)tr.clean_scores[d];
    }
    idoc_sample_free(&s);
  }
  T_CHECK(same == (int)(4 * n) && n == 120, "rule scores = clean scores: %d of %zu", same, 4 * n);
  if (ds) idoc_dataset_close_reader(ds);

  idoc_split_baselines b02, b00, b30;
  T_CHECK(idoc_split_baselines_compute(DIR "/n02/train.h5", DIR "/n02/test.h5", 0, 0, &b02) == 0,
          "%s", idoc_last_error());
  T_CHECK(b02.has_rule && b02.n_test == 120 && b02.n_train == 150, "counts %lld %lld",
          (long long)b02.n_test, (long long)b02.n_train);
  for (int d = 0; d < 4; d++)
    T_CLOSE(b02.ceiling[d], idoc_plcc(rule + d * n, lab + d * n, n), 1e-12, 0);
  T_CHECK(idoc_split_baselines_compute(DIR "/n00/train.h5", DIR "/n00/test.h5", 0, 0, &b00) == 0 &&
              idoc_split_baselines_compute(DIR "/n30/train.h5", DIR "/n30/test.h5", 0, 0, &b30) ==
                  0,
          "%s", idoc_last_error());
  // Without label noise only the 2-decimal rounding separates labels from rules.
  for (int d = 0; d < 4; d++)
    T_CHECK(b00.ceiling[d] > 0.99, "noise-free ceiling %d = %g", d, b00.ceiling[d]);
  T_CHECK(b00.ceiling_avg > b02.ceiling_avg && b02.ceiling_avg > b30.ceiling_avg &&
              b30.ceiling_avg < 0.9,
          "ceilings %g %g %g", b00.ceiling_avg, b02.ceiling_avg, b30.ceiling_avg);
  // Baselines: MAEs are means of |error| <= 1, the probe's PLCC a correlation.
  for (int d = 0; d < 4; d++)
    T_CHECK(b02.const_mae[d] >= 0 && b02.const_mae[d] <= 0.5 && b02.mean_mae[d] >= 0 &&
                b02.mean_mae[d] <= 1 && fabs(b02.probe_plcc[d]) <= 1 && b02.probe_mae[d] >= 0,
            "dimension %d: %g %g %g", d, b02.const_mae[d], b02.mean_mae[d], b02.probe_plcc[d]);
  char *t = idoc_split_baselines_text(&b02), *j = idoc_split_baselines_json(&b02);
  T_CHECK(strstr(t, "ceiling: PLCC of the labels") && strstr(t, "linear probe"), "%s", t);
  T_CHECK(strstr(j, "\"ceiling_plcc\": {\"plausibility\": ") && strstr(j, "\"probe_plcc_avg\""),
          "%s", j);
  printf("%s", t);
  free(t), free(j);

  // A split without rule scores (written from samples that have none): the ceiling is unknown.
  idoc_dataset *src = idoc_dataset_open(DIR "/n02/test.h5");
  idoc_dataset_info info;
  idoc_dataset_get_info(src, &info);
  idoc_dataset_writer *w = idoc_dataset_create(DIR "/plain.h5", &info);
  T_CHECK(w != NULL, "%s", idoc_last_error());
  for (size_t i = 0; w && i < 10; i++) {
    idoc_sample s;
    idoc_dataset_read(src, i, true, &s);
    s.has_rule_scores = 0;
    T_CHECK(idoc_dataset_append(w, &s) == 0, "%s", idoc_last_error());
    idoc_sample_free(&s);
  }
  if (w) T_CHECK(idoc_dataset_close(w) == 0, "%s", idoc_last_error());
  idoc_dataset_close_reader(src);
  idoc_split_baselines bp;
  T_CHECK(idoc_split_baselines_compute(DIR "/n02/train.h5", DIR "/plain.h5", 0, 0, &bp) == 0 &&
              !bp.has_rule && isnan(bp.ceiling_avg),
          "plain split: %s", idoc_last_error());
  t = idoc_split_baselines_text(&bp);
  T_CHECK(strstr(t, "ceiling: unknown (no /rule_scores"), "%s", t);
  free(t);
  ds = idoc_dataset_open(DIR "/plain.h5");
  T_CHECK(ds && idoc_dataset_rule_scores(ds, 0) == NULL, "plain split has no rule scores");
  if (ds) idoc_dataset_close_reader(ds);

  // A missing split is an error naming it.
  T_CHECK(idoc_split_baselines_compute(DIR "/n02/train.h5", DIR "/nope.h5", 0, 0, &bp) != 0 &&
              strstr(idoc_last_error(), "nope.h5"),
          "%s", idoc_last_error());

  // Features: a flat image has no spread, gradient or block contrast; noise raises the
  // Laplacian energy, a left/right split the block contrast.
  enum { S = 32 };
  static uint8_t img[S * S * 3];
  double f[IDOC_PROBE_FEATURES], g[IDOC_PROBE_FEATURES];
  memset(img, 128, sizeof img);
  idoc_image_stat_features(img, S, S, f);
  T_CLOSE(f[0], 128 / 255.0, 1e-12, 0);
  T_CHECK(f[3] < 1e-6 && f[6] < 1e-12 && f[7] < 1e-12 && f[8] < 1e-6, "flat: %g %g %g %g", f[3],
          f[6], f[7], f[8]);
  for (int i = 0; i < S * S * 3; i++)
    img[i] = (uint8_t)(128 + ((i * 2654435761u) >> 28) * 4);
  idoc_image_stat_features(img, S, S, g);
  T_CHECK(g[7] > 0.01 && g[3] > 0, "noise: laplacian %g", g[7]);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int c = 0; c < 3; c++)
        img[3 * (y * S + x) + c] = x < S / 2 ? 0 : 255;
  idoc_image_stat_features(img, S, S, g);
  T_CLOSE(g[8], 0.5, 1e-9, 0);
  free(lab), free(rule);
  if (system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_baselines");
}
