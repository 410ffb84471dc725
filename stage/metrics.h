// Evaluation metrics for ImageDoctor (used by `idoc eval` and by periodic eval during training):
// score correlations (PLCC, SRCC) and the RichHF-18K heatmap metrics (spec anchors.md C4: MSE,
// CC, KLD, SIM, NSS, AUC-Judd), plus an accumulator over a test set that reports them the way
// the ImageDoctor paper's Tables 1 and 2 do. Only libc/libm; everything is computed in double.
//
// Score metrics follow scipy.stats: PLCC = pearsonr, SRCC = spearmanr (Pearson of the average
// ranks of rankdata(method='average')). Both are NaN when n < 2 (scipy raises instead), when
// either side is constant (scipy warns and returns NaN) or when an input is NaN.
//
// Heatmap metrics follow the MIT saliency benchmark code (cvzoya/saliency, code_forMetrics/*.m)
// line by line; P is the prediction, G the ground truth, both float maps with the same n pixels
// (the caller resizes P to G), values in [0, 1]. Pixel order does not matter. Undefined values
// are NaN, exactly where the MATLAB code yields NaN:
//   MSE   mean (P - G)^2.
//   CC    Pearson correlation of P and G over pixels; NaN when either map is constant.
//   KLD   each map divided by its sum unless it is all zero (a zero map stays zero);
//         sum G * log(eps + G / (P + eps)), eps = DBL_EPSILON = 2.220446e-16 (MATLAB eps).
//         KL(G || P): lower is better. An empty G gives 0.
//   SIM   each map min-max normalized then divided by its sum, unless it is all zero (stays
//         zero); sum min(P, G). NaN when a map is constant but not zero (MATLAB's 0/0).
//   NSS   P standardized with MATLAB's std (n - 1 denominator); mean over fixation pixels,
//         fixations = G > 0. NaN when G is empty or P is constant.
//   AUC-Judd  fixations = G > 0 (NaN when none); optional jitter P += U(0,1) / 1e7; P min-max
//         normalized (NaN when constant); thresholds = P at the N_f fixations sorted descending;
//         TPR_i = i / N_f, FPR_i = (#{P >= thr_i} - i) / (N_pix - N_f); (0,0) and (1,1) added;
//         trapezoid rule. Ties are counted exactly as the MATLAB code counts them. NaN when every
//         pixel is a fixation (no negatives: the FPR has no denominator).
// MATLAB's AUC_Judd jitters by default; here jitter is off unless a generator is passed, so
// results are deterministic and equal to the unjittered definition (with jitter a constant
// prediction gets an AUC near 0.5 instead of NaN). Caution: without jitter, ties among the
// prediction's values at fixations (exact zeros from a ReLU output, quantized maps) make
// MATLAB's FPR count the tied fixations as false positives, so the curve runs back and forth
// and the "area" can leave [0, 1], even go negative (fixture: a binary prediction scores -1.28).
// For maps with ties, turn jitter on (idoc_eval_opts.auc_jitter), as the MIT code does.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/util.h"

// ---- score correlations -------------------------------------------------------------------
double idoc_plcc(const double *x, const double *y, size_t n);
double idoc_srcc(const double *x, const double *y, size_t n);
// 1-based ranks, ties get the average of the ranks they span (scipy rankdata 'average'). Any NaN
// in x makes every rank NaN (scipy's 'propagate').
void idoc_rankdata(const double *x, size_t n, double *ranks);

// ---- per-image heatmap metrics ------------------------------------------------------------
double idoc_map_mse(const float *p, const float *g, size_t n);
double idoc_map_cc(const float *p, const float *g, size_t n);
double idoc_map_kld(const float *p, const float *g, size_t n);
double idoc_map_sim(const float *p, const float *g, size_t n);
double idoc_map_nss(const float *p, const float *g, size_t n);
// `jitter` NULL: no jitter. Otherwise n uniforms are drawn from it, one per pixel in order, but
// only when G has a fixation. Allocates O(n) scratch.
double idoc_map_auc_judd(const float *p, const float *g, size_t n, idoc_rng *jitter);
// True when no pixel of g is > 0 (the "GT = 0" samples and the empty-fixation case).
bool idoc_map_empty(const float *g, size_t n);

enum { IDOC_HM_CC, IDOC_HM_KLD, IDOC_HM_SIM, IDOC_HM_NSS, IDOC_HM_AUC_JUDD, IDOC_HM_N_METRICS };
extern const char *const idoc_hm_metric_keys[IDOC_HM_N_METRICS]; // "cc", "kld", ... "auc_judd"

// ---- accumulator over a test set ----------------------------------------------------------
// Score dimensions in the order of data/imagedoctor_text.h (IDOC_SCORE_SEMANTIC, ...).
enum {
  IDOC_EVAL_ALIGNMENT,
  IDOC_EVAL_AESTHETICS,
  IDOC_EVAL_PLAUSIBILITY,
  IDOC_EVAL_OVERALL,
  IDOC_EVAL_N_DIMS
};
extern const char *const idoc_eval_dim_keys[IDOC_EVAL_N_DIMS]; // "alignment", ...
enum { IDOC_EVAL_MAP_ARTIFACT, IDOC_EVAL_MAP_MISALIGNMENT, IDOC_EVAL_N_MAPS };
extern const char *const idoc_eval_map_keys[IDOC_EVAL_N_MAPS]; // "artifact", "misalignment"

// What happens to a predicted score that did not parse (parsed[d] false, or a non-finite
// value): it is always counted in n_unparsed. EXCLUDE leaves the sample out of that dimension's
// PLCC/SRCC; ZERO enters it as 0, the reference inference code's fallback value.
typedef enum { IDOC_EVAL_UNPARSED_EXCLUDE, IDOC_EVAL_UNPARSED_ZERO } idoc_eval_unparsed;

typedef struct {
  idoc_eval_unparsed unparsed;
  // AUC-Judd jitter (MATLAB's default): one generator seeded once, consuming h*w uniforms per
  // AUC evaluation in the order samples are added, artifact map before misalignment map.
  bool auc_jitter;
  uint64_t jitter_seed;
} idoc_eval_opts;

typedef struct {
  double pred[IDOC_EVAL_N_DIMS];
  double gt[IDOC_EVAL_N_DIMS]; // must be finite
  bool parsed[IDOC_EVAL_N_DIMS];
  // Per map kind: both NULL = no map for this sample; both set = evaluated (h*w floats each,
  // row-major, finite, in [0, 1]; the prediction already resized to the GT's size). The
  // accumulator does not keep the pointers.
  const float *pred_map[IDOC_EVAL_N_MAPS];
  const float *gt_map[IDOC_EVAL_N_MAPS];
  int map_h[IDOC_EVAL_N_MAPS], map_w[IDOC_EVAL_N_MAPS];
} idoc_eval_sample;

typedef struct {
  double plcc, srcc;
  int64_t n;          // samples in the correlation (parsed, plus unparsed ones under ZERO)
  int64_t n_unparsed; // predictions that did not parse
} idoc_eval_score_result;

typedef struct {
  int64_t n;         // samples with this map
  double mse_all;    // mean per-image MSE over all of them
  int64_t n_gt_zero; // samples whose GT map is empty
  double mse_gt_zero;
  int64_t n_gt_nonempty;
  // Means over the samples with non-empty GT where the metric is defined; n_undefined counts
  // the non-empty-GT samples that were skipped because the metric was NaN there (constant
  // prediction for CC/NSS/SIM/AUC, all-fixation GT for AUC). NaN when no sample is left.
  double metric[IDOC_HM_N_METRICS];
  int64_t n_undefined[IDOC_HM_N_METRICS];
} idoc_eval_map_result;

typedef struct {
  int64_t n_samples;
  int64_t n_samples_unparsed; // samples with at least one unparsed score
  idoc_eval_score_result score[IDOC_EVAL_N_DIMS];
  double plcc_avg, srcc_avg; // mean over the four dimensions (NaN if any is NaN), as Table 1
  idoc_eval_map_result map[IDOC_EVAL_N_MAPS];
  idoc_eval_opts opts;
} idoc_eval_result;

// Memory: the scores (16 doubles per sample at most), O(1) per heatmap metric (per-image values
// are summed as they come), and one scratch buffer the size of the largest map.
typedef struct idoc_eval_acc idoc_eval_acc;

idoc_eval_opts idoc_eval_opts_default(void);                  // EXCLUDE, no jitter
idoc_eval_acc *idoc_eval_acc_new(const idoc_eval_opts *opts); // opts NULL: defaults
void idoc_eval_acc_free(idoc_eval_acc *a);
void idoc_eval_acc_reset(idoc_eval_acc *a); // empty again, jitter generator reseeded
// Validates the whole sample before changing anything: on IDOC_ERR (a non-finite GT score, one
// map pointer without the other, a bad size, a pixel that is not finite or outside [0, 1]; the
// message names the sample index, the dimension or map and the pixel) the accumulator is as it
// was before the call.
int idoc_eval_acc_add(idoc_eval_acc *a, const idoc_eval_sample *s);
int64_t idoc_eval_acc_count(const idoc_eval_acc *a);
// Computes the results so far; may be called any number of times (the state is not changed).
void idoc_eval_acc_finalize(const idoc_eval_acc *a, idoc_eval_result *r);

// ---- output -------------------------------------------------------------------------------
// Compact JSON (malloc'ed, NUL-terminated): numbers as %.9g, NaN and infinities as null.
//   {"n_samples":N,"n_samples_unparsed":N,
//    "scores":{"alignment":{"plcc":x,"srcc":x,"n":N,"n_unparsed":N},...,
//              "average":{"plcc":x,"srcc":x}},
//    "heatmaps":{"artifact":{"n":N,"mse_all":x,"n_gt_zero":N,"mse_gt_zero":x,
//                "n_gt_nonempty":N,"cc":x,"kld":x,"sim":x,"nss":x,"auc_judd":x,
//                "n_undefined":{"cc":N,...}},"misalignment":{...}},
//    "options":{"unparsed":"exclude"|"zero","auc_jitter":b,"jitter_seed":N}}
char *idoc_eval_result_json(const idoc_eval_result *r);
// Two plain-text tables for a terminal, shaped like the paper's Tables 1 and 2: dimensions as
// rows (Plausibility, Aesthetics, Semantic Alignment, Overall, Average) with PLCC/SRCC columns;
// then artifact/misalignment rows with MSE all, MSE GT=0, CC, KLD, SIM, NSS, AUC-Judd (the
// reference table's order, NSS and AUC-Judd appended). Malloc'ed.
char *idoc_eval_result_table(const idoc_eval_result *r);
