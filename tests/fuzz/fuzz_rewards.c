// libFuzzer target for the GRPO rewards: the first two bytes pick the ground truth, which
// predicted maps exist (and their size) and the config variants; the rest is the completion
// text. Every reward must be finite and inside its range, compute_one must agree with the
// batch, and where PCRE2 is available the format reward must agree with PCRE2's fullmatch of the
// reference's pattern.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/json.h"
#include "nn/util.h"
#include "rl/rewards.h"
#ifdef IDOC_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

// Target 1 is the reference's geometry (a 512 x 512 uint8 map resized to 288, boxes scaled
// 288 / 512); the others use a 72 x 72 grid (scale 72 / 512) so that the full-map passes, which
// dominate the cost under the sanitizers, leave room for more inputs per second.
enum { S = 288, SMALL = 72, NGT = 4 };

static idoc_reward_config cfg[NGT];
static idoc_reward_target targets[NGT];
static float pred_grid[2][S * S], pred100[2][100 * 100];

static void setup(void) {
  static float zero[SMALL * SMALL], grad[SMALL * SMALL];
  static uint8_t u512[512 * 512], u100[100 * 130];
  for (int y = 0; y < SMALL; y++)
    for (int x = 0; x < SMALL; x++)
      grad[y * SMALL + x] = (float)((x + y) % 37) / 36.0f;
  for (int y = 100; y < 300; y++)
    memset(u512 + y * 512 + 50, 200, 300);
  for (int y = 10; y < 40; y++)
    memset(u100 + y * 130 + 20, 255, 60);
  const idoc_reward_gt gts[NGT] = {
      {.map_h = SMALL, .map_w = SMALL, .misalignment_f32 = zero, .artifact_f32 = zero},
      {.map_h = 512, .map_w = 512, .misalignment_u8 = u512, .artifact_u8 = u512},
      {.map_h = SMALL, .map_w = SMALL, .misalignment_f32 = grad, .artifact_f32 = zero},
      {.map_h = 100, .map_w = 130, .misalignment_u8 = u100, .artifact_u8 = u100},
  };
  for (int g = 0; g < NGT; g++) {
    idoc_reward_config_default(&cfg[g]);
    for (int i = 0; i < IDOC_N_REWARDS; i++)
      cfg[g].enabled[i] = true;
    cfg[g].map_size = g == 1 ? S : SMALL;
    idoc_reward_gt gt = gts[g];
    for (int k = 0; k < 4; k++)
      gt.scores[k] = (float)(g + k) / 8.0f;
    IDOC_CHECK(idoc_reward_target_init(&targets[g], &cfg[g], &gt) == 0, "%s", idoc_last_error());
  }
  for (int i = 0; i < S * S; i++) {
    pred_grid[0][i] = (float)(i % 7) / 6.0f;
    pred_grid[1][i] = 0.25f;
  }
  for (int i = 0; i < 100 * 100; i++)
    pred100[0][i] = pred100[1][i] = (float)(i % 3) / 2.0f;
}

// First occurrence of needle in t[0..n), or NULL.
static const char *find(const char *t, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++)
    if (!memcmp(t + i, needle, m)) return t + i;
  return NULL;
}

#ifdef IDOC_HAVE_PCRE2
// The reference's re.fullmatch on texts where PCRE2 and Python agree: valid UTF-8 (Python sees
// decoded text) and no U+001C..U+001F or U+0085 (whitespace to Python's str.isspace, not to
// PCRE2's \s, which is tab, LF, VT, FF, CR and the Z categories).
static int pcre2_format(const uint8_t *t, size_t n) {
  static pcre2_code *re;
  static pcre2_match_data *md;
  if (!re) {
    int err;
    PCRE2_SIZE off;
    re = pcre2_compile((PCRE2_SPTR) "<think>.*?</think>\\s*<answer>.*?</answer>",
                       PCRE2_ZERO_TERMINATED, PCRE2_DOTALL | PCRE2_UTF | PCRE2_UCP, &err, &off,
                       NULL);
    IDOC_CHECK(re, "pcre2_compile");
    md = pcre2_match_data_create_from_pattern(re, NULL);
  }
  if (!idoc_json_utf8_valid((const char *)t, n)) return -1;
  for (size_t i = 0; i < n; i++)
    if ((t[i] >= 0x1C && t[i] <= 0x1F) || (t[i] == 0xC2 && i + 1 < n && t[i + 1] == 0x85))
      return -1;
  int rc = pcre2_match(re, t, n, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL);
  return rc > 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) setup(), ready = true;
  if (size < 2) return 0;
  uint8_t a = data[0], b = data[1];
  const char *text = size > 2 ? (const char *)data + 2 : NULL; // NULL exercises the empty case
  size_t len = size - 2;

  idoc_reward_config c = cfg[a & 3];
  c.score_variant = (a >> 5) & 1 ? IDOC_RW_VARIANT_PAPER : IDOC_RW_VARIANT_CODE;
  c.heatmap_variant = (a >> 6) & 1 ? IDOC_RW_VARIANT_PAPER : IDOC_RW_VARIANT_CODE;
  c.format_variant = (a >> 7) & 1 ? IDOC_RW_FORMAT_STRICT : IDOC_RW_FORMAT_REFERENCE;
  c.score_missing_reward_zero = b & 1;
  c.score_clamp = (b >> 1) & 1;
  c.heatmap_missing_per_map = (b >> 2) & 1;
  c.gaussian_sigma = 0.05 + (b >> 3) * 0.05;
  c.weight[IDOC_RW_FORMAT] = (b & 0x80) ? -2.5 : 1.0;
  const idoc_reward_target *t = &targets[a & 3];

  // Predictions on the grid, or 100 x 100 ones that get resized.
  bool other = (a >> 4) & 1;
  int ps = other ? 100 : c.map_size;
  idoc_reward_completion comp = {text, len, NULL, NULL, ps, ps};
  if ((a >> 2) & 1) comp.pred_misalignment = other ? pred100[0] : pred_grid[0];
  if ((a >> 3) & 1) comp.pred_artifact = other ? pred100[1] : pred_grid[1];

  double r[IDOC_N_REWARDS], total;
  IDOC_CHECK(idoc_rewards_compute(&c, t, &comp, r, &total) == 0, "%s", idoc_last_error());
  double sum = 0;
  for (int i = 0; i < IDOC_N_REWARDS; i++) {
    IDOC_CHECK(isfinite(r[i]), "%s not finite", idoc_reward_names[i]);
    bool unit = i != IDOC_RW_SEMANTIC && i != IDOC_RW_AESTHETIC && i != IDOC_RW_PLAUSIBILITY &&
                i != IDOC_RW_OVERALL;
    if (unit)
      IDOC_CHECK(r[i] >= 0 && r[i] <= 1, "%s = %g outside [0, 1]", idoc_reward_names[i], r[i]);
    else
      IDOC_CHECK(r[i] <= 1 && r[i] >= 1 - 3 * (1e6 + 1), "%s = %g", idoc_reward_names[i], r[i]);
    sum += c.weight[i] * r[i];
    // compute_one must agree; the four full-map passes (heatmaps, unions) are checked one per
    // input to keep the run rate up.
    static const int heavy[4] = {IDOC_RW_MIS_HEATMAP, IDOC_RW_ART_HEATMAP, IDOC_RW_MIS_BOX_UNION,
                                 IDOC_RW_ART_BOX_UNION};
    bool is_heavy = false;
    for (int h = 0; h < 4; h++)
      is_heavy |= heavy[h] == i;
    if (is_heavy && heavy[len % 4] != i) continue;
    double one;
    IDOC_CHECK(idoc_reward_compute_one(&c, t, &comp, (idoc_reward_id)i, &one) == 0 && one == r[i],
               "compute_one disagrees on %s", idoc_reward_names[i]);
  }
  IDOC_CHECK(isfinite(total) && fabs(total - sum) <= 1e-9 * (1 + fabs(sum)), "total");
  IDOC_CHECK(r[IDOC_RW_FORMAT] == 0 || r[IDOC_RW_FORMAT] == 1, "format is 0 or 1");
  // No <answer> block: every score reward is 0.
  bool has_answer = false;
  if (text) {
    const char *o = find(text, len, "<answer>");
    has_answer = o && find(o + 8, len - (size_t)(o + 8 - text), "</answer>");
  }
  if (!has_answer)
    for (int i = IDOC_RW_SEMANTIC; i <= IDOC_RW_OVERALL; i++)
      IDOC_CHECK(r[i] == 0 && r[i - IDOC_RW_SEMANTIC + IDOC_RW_SEMANTIC_GAUSS] == 0,
                 "score without an answer");
#ifdef IDOC_HAVE_PCRE2
  if (c.format_variant == IDOC_RW_FORMAT_REFERENCE && text) {
    int want = pcre2_format(data + 2, len);
    IDOC_CHECK(want < 0 || want == (int)r[IDOC_RW_FORMAT], "format %g, PCRE2 %d", r[IDOC_RW_FORMAT],
               want);
  }
#endif
  return 0;
}
