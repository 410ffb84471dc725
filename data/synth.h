// The RichHF-like synthetic data set: procedural scenes with known ground truth (see
// docs/data_format.md, "Synthetic data"). Core C, no dependencies.
//
// A scene has 1-3 objects (circle, square, triangle, star, diamond, ring; ten colours; small,
// medium or large) on a plain, gradient, striped, checkered or noisy background. The prompt names
// the objects and the background ("a large red circle and a blue star on a striped background").
// Misalignment: one named object is missing, or drawn with a wrong colour or shape; the
// misalignment map marks where it should be / is, its words get label 0. Artifacts: blur, noise,
// swirl-warp or smear blobs; the artifact map marks them. Scores follow fixed rules:
//   plausibility = exp(-100 * artifact_mass)          (mass = sum(artifact_map/255) / pixels)
//   alignment    = 1 - penalty / n_objects            (missing 1.0, wrong shape 0.7, colour 0.6)
//   aesthetics   = 0.15 + 0.35 contrast + 0.25 balance + 0.25 (1 - background clutter)
//   overall      = 0.4 plausibility + 0.35 alignment + 0.25 aesthetics
// each plus N(0, label_noise^2), clamped to [0, 1] and rounded to 2 decimals. Boxes come from the
// maps (data/boxes.h, 512 frame), and the response is the reference look-think-predict text.
//
// Determinism: sample `index` of split `split` (0 train, 1 val, 2 test) depends only on
// (seed, split, index, opts): idoc_synth_sample_seed() seeds one RNG per sample, so any sample
// can be regenerated alone, in any order, on any thread.
#pragma once
#include <stdint.h>

#include "data/sample.h"

typedef struct {
  int size;             // image and map side in pixels (default 512)
  double misalign_prob; // probability of one misaligned object (default 0.5)
  double artifact_prob; // probability of 1-3 artifact blobs (default 0.6)
  double label_noise;   // std of the score noise (default 0.02)
} idoc_synth_opts;

idoc_synth_opts idoc_synth_opts_default(void);

enum { IDOC_MIS_NONE = 0, IDOC_MIS_MISSING, IDOC_MIS_COLOUR, IDOC_MIS_SHAPE };

// What the generator planted (for tests and reports).
typedef struct {
  int n_objects, n_drawn;
  int mis_kind;   // IDOC_MIS_*
  int mis_object; // index of the misaligned object (-1: none)
  int n_artifacts;
  double artifact_mass;   // before noise
  double clean_scores[4]; // before label noise and rounding
} idoc_synth_truth;

uint64_t idoc_synth_sample_seed(uint64_t seed, int split, uint64_t index);

// Fills *out (all fields allocated; free with idoc_sample_free). truth may be NULL.
// IDOC_ERR only for bad options (size < 16 or > 4096, probabilities outside [0, 1]).
int idoc_synth_sample(const idoc_synth_opts *opts, uint64_t seed, int split, uint64_t index,
                      idoc_sample *out, idoc_synth_truth *truth);
