// GRPO reward functions for ImageDoctor completions (spec imagedoctor.md 5.4-5.5, rl_options.md
// 4.1, OmniQuality-R 3.2).
//
// The first twelve are the reference's (VLM-R1 fork, grpo_jsonl_np.py), in its launch order,
// each weighted 1 and summed by default. They are computed from
//   * the completion text, decoded with special tokens skipped as the reference's
//     batch_decode(skip_special_tokens=True) does (so no <|im_end|> at the end);
//   * the decoder's predicted maps, or NULL when the task token was not generated (the
//     reference looks for the tokens in generated[1:], so one that is the very first completion
//     token counts as not generated; that is the caller's decision);
//   * the ground truth: the four scores in [0, 1] and the two heatmaps (uint8 0..255 or float).
//
// Scale conventions. Scores are [0, 1] on both sides: the prompt asks for "a score between 0-1"
// and our dataset stores [0, 1] (RichHF's 1-5 Likert files are mapped by (s - 1) / 4 when
// converted). No rescaling happens here. Heatmaps are compared in [0, 1] (uint8 maps / 255) on
// the map_size^2 grid (288, the decoder's output); GT maps of another size are resized to it
// as cv2.resize(INTER_LINEAR) does, and so are predicted maps of another size. Box coordinates
// in the text are pixels of the box_frame^2 image (512) and are scaled by map_size / box_frame.
// The Gaussian width sigma is on the [0, 1] scale: OmniQuality-R's sigma = 0.8 on 1-5 scores is
// 0.2 here (the default).
//
// Reference semantics kept on purpose (quirks included):
//   * score rewards: 1 - 3|p - g|, unclipped (range [-2, 1] for p in [0, 1]); no <answer> block
//     -> 0; a score whose regex fails (e.g. no ';' after the first three) or whose digits
//     float() rejects ("1.2.3") reads as p = 0. Scores above 1 are not clipped ("7.5" -> 1 - 3*6.5
//     for g = 1).
//   * heatmap rewards: 1 - clip(k * mean((P - G)^2), 0, 1), k = 80 misalignment, 40 artifact;
//     if EITHER predicted map is missing both are taken as all-zero.
//   * grounding rewards: every [a,b,c,d] in the whole completion (think and answer) is a box; the
//     same box list is scored against both GT maps; gate: empty GT and no boxes -> 1, empty GT
//     with boxes -> 0, non-empty GT without boxes -> 0 (empty = sum of the map is 0, no
//     threshold). Then
//       *_boundingbox_iou       1 - mean IoU over unordered pairs of boxes (1 box: 1);
//       *_boundingbox_avepixel  mean over boxes of mean(G[y1:y2, x1:x2]), coordinates scaled,
//                               rounded to float32 (as the reference's np.float32 array), then
//                               truncated toward zero by int(), clamped to [0, size]; boxes with
//                               x2 <= x1 or y2 <= y1 are skipped; no valid box -> 0;
//       *_boundingbox_union     sum(G * U) / (sum(G) + 1e-8), U the union of those boxes.
//     IoU uses the float32 coordinates as they are (no truncation, no clamping).
// Deviations, where the reference would crash or poison the group's advantages:
//   * a box coordinate that overflows float32 (a 40-digit number) makes the reference's int()
//     raise; here it is clamped like any out-of-image coordinate (IoU already treats such a box
//     as overlapping nothing, as the reference's arithmetic does);
//   * a parsed score beyond +-1e6 (only from absurd digit strings; float() gives inf past 309
//     digits and the reward -inf) is read as 1e6, so every reward is finite;
//   * non-finite or out-of-[0, 1] maps are an input error rather than a NaN reward.
// The scores a dataset stores are float32: 1 - 3|0.58 - float32(0.58)| differs from the
// reference's text-parsed 0.58 by ~5e-8.
//
// Paper variants (selectable): score 1 - |p - g| (k = 1, unclipped); heatmap 1 - mean((P - G)^2)
// (the paper writes ||H - H~||_2^2; summed over 288^2 pixels it would reach 8e4, so it is read as
// the per-pixel mean, the k = 1 case of the code's formula without clipping). The paper's
// grounding rewards (appendix D) are the code's three, with the same gate, so they have no
// variant. Extra rewards, off by default: `format` (the reference's registered but unused
// fullmatch of `<think>.*?</think>\s*<answer>.*?</answer>`, DOTALL; `strict` also needs the four
// scores parsed and in [0, 1]) and the Gaussian score rewards exp(-(p - g)^2 / (2 sigma^2)).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  IDOC_RW_MIS_HEATMAP,        // misalignment_location_heatmap
  IDOC_RW_ART_HEATMAP,        // artifact_location_heatmap
  IDOC_RW_SEMANTIC,           // semantic_score
  IDOC_RW_AESTHETIC,          // aesthetic_score
  IDOC_RW_PLAUSIBILITY,       // plausibility_score
  IDOC_RW_OVERALL,            // overall_score
  IDOC_RW_MIS_BOX_IOU,        // misalignment_boundingbox_iou      (uniqueness)
  IDOC_RW_ART_BOX_IOU,        // artifact_boundingbox_iou
  IDOC_RW_ART_BOX_AVEPIXEL,   // artifact_boundingbox_avepixel     (compactness)
  IDOC_RW_MIS_BOX_AVEPIXEL,   // misalignment_boundingbox_avepixel
  IDOC_RW_ART_BOX_UNION,      // artifact_boundingbox_union        (completeness)
  IDOC_RW_MIS_BOX_UNION,      // misalignment_boundingbox_union
  IDOC_RW_FORMAT,             // format
  IDOC_RW_SEMANTIC_GAUSS,     // semantic_score_gaussian
  IDOC_RW_AESTHETIC_GAUSS,    // aesthetic_score_gaussian
  IDOC_RW_PLAUSIBILITY_GAUSS, // plausibility_score_gaussian
  IDOC_RW_OVERALL_GAUSS,      // overall_score_gaussian
  IDOC_N_REWARDS
} idoc_reward_id;

#define IDOC_N_REFERENCE_REWARDS 12

// Names for logging and config keys (the reference's reward_funcs names for the first twelve).
extern const char *const idoc_reward_names[IDOC_N_REWARDS];
// The id of a name, or -1.
int idoc_reward_find(const char *name);

typedef enum { IDOC_RW_VARIANT_CODE = 0, IDOC_RW_VARIANT_PAPER = 1 } idoc_reward_variant;
typedef enum { IDOC_RW_FORMAT_REFERENCE = 0, IDOC_RW_FORMAT_STRICT = 1 } idoc_format_variant;

typedef struct {
  bool enabled[IDOC_N_REWARDS];
  double weight[IDOC_N_REWARDS];       // finite, |w| <= 1e6
  idoc_reward_variant score_variant;   // code: 1 - 3|p - g|; paper: 1 - |p - g|
  idoc_reward_variant heatmap_variant; // code: 1 - clip(k MSE, 0, 1); paper: 1 - MSE
  bool score_missing_reward_zero;      // a score not read from the answer gives reward 0 (score and
                                       // Gaussian rewards); false: the reference's p = 0
  bool score_clamp;      // clamp parsed scores to [0, 1] first (as DenseFlow's score reader); off
  double gaussian_sigma; // > 0; default 0.2
  bool heatmap_missing_per_map; // a NULL map zeroes only itself; false: the reference (both)
  idoc_format_variant format_variant;
  int map_size;  // heatmap grid side, default 288
  int box_frame; // image side the box coordinates refer to, default 512
} idoc_reward_config;

// The reference: the twelve enabled with weight 1, the rest off (weight 1 when enabled), code
// variants, sigma 0.2, 288 / 512.
void idoc_reward_config_default(idoc_reward_config *c);
// One setting from text (a YAML value under `reward:`). Keys (a leading "reward." is accepted):
//   NAME.weight | NAME (number), NAME.enabled (true/false), with NAME from idoc_reward_names;
//   score_variant, heatmap_variant (code | paper); format_variant (reference | strict);
//   score_missing (value_zero | reward_zero); heatmap_missing (both_zero | per_map);
//   score_clamp (bool); gaussian_sigma (> 0); map_size (1..4096); box_frame (1..65536).
// IDOC_ERR names the key and the value.
int idoc_reward_config_set(idoc_reward_config *c, const char *key, const char *value);
int idoc_reward_config_validate(const idoc_reward_config *c);

// Ground truth of one prompt.
typedef struct {
  float scores[4]; // semantic alignment, aesthetics, plausibility, overall, in [0, 1]
  int map_h, map_w;
  // Each map as uint8 (0..255, divided by 255) or float ([0, 1]); exactly one of each pair,
  // both NULL only when no enabled reward reads that map.
  const uint8_t *misalignment_u8, *artifact_u8;
  const float *misalignment_f32, *artifact_f32;
} idoc_reward_gt;

// The GT prepared once per prompt and shared by its completions: maps on the map_size grid,
// their sums and integral images.
typedef struct {
  int size;
  float *map[2];     // [0] misalignment, [1] artifact (NULL when not given)
  double *integ[2];  // (size + 1)^2 summed-area tables
  double sum[2];     // sum of each map
  double sq_mean[2]; // mean of squares (the heatmap reward of an all-zero prediction)
  float scores[4];
} idoc_reward_target;

int idoc_reward_target_init(idoc_reward_target *t, const idoc_reward_config *c,
                            const idoc_reward_gt *gt);
void idoc_reward_target_free(idoc_reward_target *t);

// One completion.
typedef struct {
  const char *text; // any bytes; NULL with len 0 is an empty completion
  size_t len;
  const float *pred_misalignment, *pred_artifact; // pred_h x pred_w in [0, 1], or NULL
  int pred_h, pred_w;
} idoc_reward_completion;

// All rewards of one completion: out[i] is reward i (0 for disabled ones), *total the weighted
// sum of the enabled ones (total may be NULL). Every value is finite. IDOC_ERR on bad input
// (maps out of range, sizes), naming the field.
int idoc_rewards_compute(const idoc_reward_config *c, const idoc_reward_target *t,
                         const idoc_reward_completion *comp, double out[IDOC_N_REWARDS],
                         double *total);
// One reward, whether enabled or not.
int idoc_reward_compute_one(const idoc_reward_config *c, const idoc_reward_target *t,
                            const idoc_reward_completion *comp, idoc_reward_id id, double *out);
