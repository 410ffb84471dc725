// What a split allows before any model is trained: the ceiling (the PLCC of the labels against
// the noise-free rule scores a synthetic set stores in /rule_scores: no model can predict the
// label noise, so none correlates better on average) and simple baselines: a constant (0.5) and
// the per-dimension training mean (both have no correlation, PLCC undefined; their MAE is the
// number to beat), and a linear probe on image statistics (per-channel mean and standard
// deviation, luma gradient and Laplacian energy, block contrast; ridge least squares fit on the
// training split, scored on the held-out one).
// idoc-requires: hdf5
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define IDOC_PROBE_FEATURES 9

typedef struct {
  int64_t n_test, n_train;
  bool has_rule; // the test split has /rule_scores
  double ceiling[4], ceiling_avg;
  double const_mae[4], mean_mae[4];
  double probe_plcc[4], probe_avg, probe_mae[4];
} idoc_split_baselines;

// Over the first max_test samples of `test` (0: all) and the first max_train of `train` (0: all).
// Errors name the file.
int idoc_split_baselines_compute(const char *train, const char *test, int64_t max_test,
                                 int64_t max_train, idoc_split_baselines *out);
// The printed lines (malloc'ed) and a JSON object (malloc'ed).
char *idoc_split_baselines_text(const idoc_split_baselines *b);
char *idoc_split_baselines_json(const idoc_split_baselines *b);
// The probe's features of one RGB image (uint8 h x w x 3), for tests.
void idoc_image_stat_features(const uint8_t *rgb, int h, int w, double f[IDOC_PROBE_FEATURES]);
