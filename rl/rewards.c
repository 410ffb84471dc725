// GRPO rewards (see rewards.h for the formulas, the reference's quirks and the deviations).
#include "rl/rewards.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/imagedoctor_text.h"
#include "nn/util.h"

const char *const idoc_reward_names[IDOC_N_REWARDS] = {
    "misalignment_location_heatmap",
    "artifact_location_heatmap",
    "semantic_score",
    "aesthetic_score",
    "plausibility_score",
    "overall_score",
    "misalignment_boundingbox_iou",
    "artifact_boundingbox_iou",
    "artifact_boundingbox_avepixel",
    "misalignment_boundingbox_avepixel",
    "artifact_boundingbox_union",
    "misalignment_boundingbox_union",
    "format",
    "semantic_score_gaussian",
    "aesthetic_score_gaussian",
    "plausibility_score_gaussian",
    "overall_score_gaussian",
};

enum { MAP_MIS = 0, MAP_ART = 1 };

#define SCORE_CODE_K 3.0
#define HEATMAP_CODE_K_MIS 80.0
#define HEATMAP_CODE_K_ART 40.0
#define SCORE_LIMIT 1e6  // parsed scores beyond this read as this (keeps rewards finite)
#define WEIGHT_LIMIT 1e6 // |weight| bound, so the weighted total cannot overflow
#define UNION_EPS 1e-8   // the reference's denominator guard

int idoc_reward_find(const char *name) {
  if (!name) return -1;
  for (int i = 0; i < IDOC_N_REWARDS; i++)
    if (!strcmp(idoc_reward_names[i], name)) return i;
  return -1;
}

void idoc_reward_config_default(idoc_reward_config *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < IDOC_N_REWARDS; i++) {
    c->enabled[i] = i < IDOC_N_REFERENCE_REWARDS;
    c->weight[i] = 1.0;
  }
  c->score_variant = IDOC_RW_VARIANT_CODE;
  c->heatmap_variant = IDOC_RW_VARIANT_CODE;
  c->gaussian_sigma = 0.2;
  c->format_variant = IDOC_RW_FORMAT_REFERENCE;
  c->map_size = 288;
  c->box_frame = 512;
}

static bool parse_num(const char *v, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(x)) return false;
  *out = x;
  return true;
}

static bool parse_int(const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi) return false;
  *out = (int)x;
  return true;
}

// Matches one of two names; returns 0 / 1, or -1.
static int parse_choice(const char *v, const char *a, const char *b) {
  return !strcmp(v, a) ? 0 : !strcmp(v, b) ? 1 : -1;
}

int idoc_reward_config_set(idoc_reward_config *c, const char *key, const char *value) {
  if (!key || !value) return idoc_set_error("reward config: NULL key or value");
  if (!strncmp(key, "reward.", 7)) key += 7;
  const char *v = value;
  double x;
  int k;
  if (!strcmp(key, "score_variant") || !strcmp(key, "heatmap_variant")) {
    if ((k = parse_choice(v, "code", "paper")) < 0)
      return idoc_set_error("reward.%s: expected code or paper, got '%s'", key, v);
    *(key[0] == 's' ? &c->score_variant : &c->heatmap_variant) = (idoc_reward_variant)k;
  } else if (!strcmp(key, "format_variant")) {
    if ((k = parse_choice(v, "reference", "strict")) < 0)
      return idoc_set_error("reward.%s: expected reference or strict, got '%s'", key, v);
    c->format_variant = (idoc_format_variant)k;
  } else if (!strcmp(key, "score_missing")) {
    if ((k = parse_choice(v, "value_zero", "reward_zero")) < 0)
      return idoc_set_error("reward.%s: expected value_zero or reward_zero, got '%s'", key, v);
    c->score_missing_reward_zero = k == 1;
  } else if (!strcmp(key, "heatmap_missing")) {
    if ((k = parse_choice(v, "both_zero", "per_map")) < 0)
      return idoc_set_error("reward.%s: expected both_zero or per_map, got '%s'", key, v);
    c->heatmap_missing_per_map = k == 1;
  } else if (!strcmp(key, "score_clamp")) {
    if (!idoc_parse_bool(v, &c->score_clamp))
      return idoc_set_error("reward.%s: expected true or false, got '%s'", key, v);
  } else if (!strcmp(key, "gaussian_sigma")) {
    if (!parse_num(v, &x) || !(x > 0))
      return idoc_set_error("reward.%s: expected a number > 0, got '%s'", key, v);
    c->gaussian_sigma = x;
  } else if (!strcmp(key, "map_size")) {
    if (!parse_int(v, 1, 4096, &c->map_size))
      return idoc_set_error("reward.%s: expected an integer in [1, 4096], got '%s'", key, v);
  } else if (!strcmp(key, "box_frame")) {
    if (!parse_int(v, 1, 65536, &c->box_frame))
      return idoc_set_error("reward.%s: expected an integer in [1, 65536], got '%s'", key, v);
  } else {
    // NAME, NAME.weight or NAME.enabled
    const char *dot = strrchr(key, '.');
    size_t L = dot ? (size_t)(dot - key) : strlen(key);
    const char *field = dot ? dot + 1 : "weight";
    int id = -1;
    for (int i = 0; i < IDOC_N_REWARDS; i++)
      if (strlen(idoc_reward_names[i]) == L && !strncmp(idoc_reward_names[i], key, L)) id = i;
    if (id < 0 || (strcmp(field, "weight") && strcmp(field, "enabled")))
      return idoc_set_error("reward.%s: unknown reward key (rewards: %s, ..., %s; fields: weight, "
                            "enabled; options: score_variant, heatmap_variant, format_variant, "
                            "score_missing, heatmap_missing, score_clamp, gaussian_sigma, "
                            "map_size, box_frame)",
                            key, idoc_reward_names[0], idoc_reward_names[IDOC_N_REWARDS - 1]);
    if (!strcmp(field, "enabled")) {
      if (!idoc_parse_bool(v, &c->enabled[id]))
        return idoc_set_error("reward.%s: expected true or false, got '%s'", key, v);
    } else {
      if (!parse_num(v, &x) || fabs(x) > WEIGHT_LIMIT)
        return idoc_set_error("reward.%s: expected a number in [-1e6, 1e6], got '%s'", key, v);
      c->weight[id] = x;
    }
  }
  return IDOC_OK;
}

int idoc_reward_config_validate(const idoc_reward_config *c) {
  for (int i = 0; i < IDOC_N_REWARDS; i++)
    if (!isfinite(c->weight[i]) || fabs(c->weight[i]) > WEIGHT_LIMIT)
      return idoc_set_error("reward.%s.weight: %g is not a finite number in [-1e6, 1e6]",
                            idoc_reward_names[i], c->weight[i]);
  if (!(c->gaussian_sigma > 0) || !isfinite(c->gaussian_sigma))
    return idoc_set_error("reward.gaussian_sigma: %g is not a finite number > 0",
                          c->gaussian_sigma);
  if ((unsigned)c->score_variant > 1 || (unsigned)c->heatmap_variant > 1 ||
      (unsigned)c->format_variant > 1)
    return idoc_set_error("reward config: unknown variant");
  if (c->map_size < 1 || c->map_size > 4096)
    return idoc_set_error("reward.map_size: %d is not in [1, 4096]", c->map_size);
  if (c->box_frame < 1 || c->box_frame > 65536)
    return idoc_set_error("reward.box_frame: %d is not in [1, 65536]", c->box_frame);
  return IDOC_OK;
}

// ---- ground truth -------------------------------------------------------------------------

static bool needs_map(const idoc_reward_config *c, int m) {
  static const int mis[] = {IDOC_RW_MIS_HEATMAP, IDOC_RW_MIS_BOX_IOU, IDOC_RW_MIS_BOX_AVEPIXEL,
                            IDOC_RW_MIS_BOX_UNION};
  static const int art[] = {IDOC_RW_ART_HEATMAP, IDOC_RW_ART_BOX_IOU, IDOC_RW_ART_BOX_AVEPIXEL,
                            IDOC_RW_ART_BOX_UNION};
  for (int i = 0; i < 4; i++)
    if (c->enabled[m == MAP_MIS ? mis[i] : art[i]]) return true;
  return false;
}

static int reward_map(int id) {
  switch (id) {
  case IDOC_RW_MIS_HEATMAP:
  case IDOC_RW_MIS_BOX_IOU:
  case IDOC_RW_MIS_BOX_AVEPIXEL:
  case IDOC_RW_MIS_BOX_UNION: return MAP_MIS;
  case IDOC_RW_ART_HEATMAP:
  case IDOC_RW_ART_BOX_IOU:
  case IDOC_RW_ART_BOX_AVEPIXEL:
  case IDOC_RW_ART_BOX_UNION: return MAP_ART;
  default: return -1;
  }
}

static const char *const map_field[2] = {"misalignment", "artifact"};

void idoc_reward_target_free(idoc_reward_target *t) {
  for (int m = 0; m < 2; m++) {
    free(t->map[m]);
    free(t->integ[m]);
  }
  memset(t, 0, sizeof *t);
}

int idoc_reward_target_init(idoc_reward_target *t, const idoc_reward_config *c,
                            const idoc_reward_gt *gt) {
  memset(t, 0, sizeof *t);
  if (idoc_reward_config_validate(c)) return IDOC_ERR;
  for (int k = 0; k < 4; k++) {
    if (!(gt->scores[k] >= 0 && gt->scores[k] <= 1))
      return idoc_set_error("reward ground truth: scores[%d] = %g is not in [0, 1]", k,
                            (double)gt->scores[k]);
    t->scores[k] = gt->scores[k];
  }
  const int S = c->map_size;
  t->size = S;
  const uint8_t *u8[2] = {gt->misalignment_u8, gt->artifact_u8};
  const float *f32[2] = {gt->misalignment_f32, gt->artifact_f32};
  for (int m = 0; m < 2; m++) {
    if (u8[m] && f32[m]) {
      idoc_reward_target_free(t);
      return idoc_set_error("reward ground truth: %s map given both as uint8 and as float",
                            map_field[m]);
    }
    if (!u8[m] && !f32[m]) {
      if (!needs_map(c, m)) continue;
      idoc_reward_target_free(t);
      return idoc_set_error("reward ground truth: no %s map, but an enabled reward reads it",
                            map_field[m]);
    }
    if (gt->map_h < 1 || gt->map_w < 1 || gt->map_h > 16384 || gt->map_w > 16384) {
      idoc_reward_target_free(t);
      return idoc_set_error("reward ground truth: map size %dx%d is not in [1, 16384]", gt->map_h,
                            gt->map_w);
    }
    size_t n = (size_t)gt->map_h * (size_t)gt->map_w;
    float *src = idoc_xmalloc(n * sizeof *src);
    for (size_t i = 0; i < n; i++) {
      if (u8[m]) {
        src[i] = (float)(u8[m][i] / 255.0);
      } else if (!(f32[m][i] >= 0 && f32[m][i] <= 1)) { // NaN fails too
        idoc_reward_target_free(t);
        int y = (int)(i / (size_t)gt->map_w), x = (int)(i % (size_t)gt->map_w);
        double bad = f32[m][i];
        free(src);
        return idoc_set_error("reward ground truth: %s map[%d][%d] = %g is not in [0, 1]",
                              map_field[m], y, x, bad);
      } else {
        src[i] = f32[m][i];
      }
    }
    t->map[m] = idoc_xmalloc((size_t)S * S * sizeof(float));
    int rc = idoc_resize_linear_f32(src, gt->map_h, gt->map_w, t->map[m], S, S);
    free(src);
    if (rc) {
      idoc_reward_target_free(t);
      return idoc_wrap_error("reward ground truth: %s map", map_field[m]);
    }
    // Summed-area table: integ[y * (S + 1) + x] = sum of map[0:y, 0:x].
    double *I = idoc_xcalloc((size_t)(S + 1) * (S + 1), sizeof(double));
    double sum = 0, sq = 0;
    for (int y = 0; y < S; y++) {
      double row = 0;
      for (int x = 0; x < S; x++) {
        double v = t->map[m][(size_t)y * S + x];
        row += v;
        sq += v * v;
        I[(size_t)(y + 1) * (S + 1) + x + 1] = I[(size_t)y * (S + 1) + x + 1] + row;
      }
      sum += row;
    }
    t->integ[m] = I;
    t->sum[m] = sum;
    t->sq_mean[m] = sq / ((double)S * S);
  }
  return IDOC_OK;
}

// ---- one completion -----------------------------------------------------------------------

typedef struct {
  idoc_parsed_response pr;
  size_t nb;
  float (*fb)[4];       // coordinates * map_size / box_frame, rounded to float32
  int (*ib)[4];         // int()-truncated and clamped to the grid
  bool *valid;          // x2 > x1 and y2 > y1 after truncation and clamping
  const float *pred[2]; // predicted maps on the grid after the missing-token rule (NULL: zeros)
  float *owned[2];
} cstate;

static void cstate_free(cstate *s) {
  idoc_parsed_response_free(&s->pr);
  free(s->fb);
  free(s->ib);
  free(s->valid);
  free(s->owned[0]);
  free(s->owned[1]);
}

// Python's int() of a float32 (toward zero), then the reference's one-sided clamps:
// x1 = max(0, x1), x2 = min(W, x2). Values are first bounded to [-2, S + 2], which does not
// change either clamp's outcome and keeps the conversion defined for huge or infinite values.
static int trunc_coord(float v, int S) {
  double d = v;
  if (d < -2) d = -2;
  if (d > S + 2) d = S + 2;
  return (int)d; // C truncates toward zero, like int()
}

static int cstate_init(cstate *s, const idoc_reward_config *c, const idoc_reward_target *t,
                       const idoc_reward_completion *comp, bool want_boxes, bool want_pred) {
  memset(s, 0, sizeof *s);
  const char *text = comp->text ? comp->text : "";
  size_t len = comp->text ? comp->len : 0;
  idoc_parse_response(text, len, NULL, &s->pr);
  const int S = c->map_size;
  if (want_boxes) {
    s->nb = s->pr.n_boxes;
    if (s->nb) {
      s->fb = idoc_xmalloc(s->nb * sizeof *s->fb);
      s->ib = idoc_xmalloc(s->nb * sizeof *s->ib);
      s->valid = idoc_xmalloc(s->nb * sizeof *s->valid);
    }
    double scale = (double)S / c->box_frame; // 288 / 512 = 0.5625, as target / orig in Python
    for (size_t i = 0; i < s->nb; i++) {
      const idoc_box *b = &s->pr.boxes[i];
      double v[4] = {b->x1, b->y1, b->x2, b->y2};
      for (int k = 0; k < 4; k++)
        s->fb[i][k] = (float)(v[k] * scale); // np.array(..., dtype=np.float32)
      int x1 = trunc_coord(s->fb[i][0], S), y1 = trunc_coord(s->fb[i][1], S);
      int x2 = trunc_coord(s->fb[i][2], S), y2 = trunc_coord(s->fb[i][3], S);
      if (x1 < 0) x1 = 0;
      if (y1 < 0) y1 = 0;
      if (x2 > S) x2 = S;
      if (y2 > S) y2 = S;
      s->ib[i][0] = x1, s->ib[i][1] = y1, s->ib[i][2] = x2, s->ib[i][3] = y2;
      s->valid[i] = x2 > x1 && y2 > y1;
    }
  }
  if (want_pred) {
    const float *p[2] = {comp->pred_misalignment, comp->pred_artifact};
    bool any_missing = !p[0] || !p[1];
    for (int m = 0; m < 2; m++) {
      if (!p[m] || (any_missing && !c->heatmap_missing_per_map)) continue;
      if (comp->pred_h < 1 || comp->pred_w < 1 || comp->pred_h > 16384 || comp->pred_w > 16384) {
        cstate_free(s);
        return idoc_set_error("reward completion: predicted map size %dx%d is not in [1, 16384]",
                              comp->pred_h, comp->pred_w);
      }
      size_t n = (size_t)comp->pred_h * (size_t)comp->pred_w;
      for (size_t i = 0; i < n; i++)
        if (!(p[m][i] >= 0 && p[m][i] <= 1)) {
          double bad = p[m][i];
          cstate_free(s);
          return idoc_set_error("reward completion: predicted %s map[%zu][%zu] = %g is not in "
                                "[0, 1]",
                                map_field[m], i / (size_t)comp->pred_w, i % (size_t)comp->pred_w,
                                bad);
        }
      if (comp->pred_h == S && comp->pred_w == S) {
        s->pred[m] = p[m];
      } else { // the reference resizes a non-288 prediction with cv2 INTER_LINEAR
        s->owned[m] = idoc_xmalloc((size_t)S * S * sizeof(float));
        if (idoc_resize_linear_f32(p[m], comp->pred_h, comp->pred_w, s->owned[m], S, S)) {
          cstate_free(s);
          return idoc_wrap_error("reward completion: predicted %s map", map_field[m]);
        }
        s->pred[m] = s->owned[m];
      }
    }
  }
  return IDOC_OK;
}

// ---- the formulas -------------------------------------------------------------------------

// The predicted value of score k as the reward reads it; false when the reward is 0 outright.
static bool read_score(const idoc_reward_config *c, const cstate *s, int k, double *p) {
  if (!s->pr.has_answer) return false; // the reference returns 0 without an <answer> block
  if (!s->pr.score_valid[k] && c->score_missing_reward_zero) return false;
  double v = s->pr.score_valid[k] ? s->pr.score[k] : 0.0; // the reference's fallback
  if (!(v <= SCORE_LIMIT)) v = SCORE_LIMIT; // [0-9.]+ is never negative; inf -> the limit
  if (c->score_clamp && v > 1) v = 1;
  *p = v;
  return true;
}

static double score_reward(const idoc_reward_config *c, const idoc_reward_target *t,
                           const cstate *s, int k) {
  double p;
  if (!read_score(c, s, k, &p)) return 0.0;
  double k_mae = c->score_variant == IDOC_RW_VARIANT_PAPER ? 1.0 : SCORE_CODE_K;
  return 1.0 - k_mae * fabs(p - (double)t->scores[k]);
}

static double gaussian_reward(const idoc_reward_config *c, const idoc_reward_target *t,
                              const cstate *s, int k) {
  double p;
  if (!read_score(c, s, k, &p)) return 0.0;
  double d = p - (double)t->scores[k], sg = c->gaussian_sigma;
  return exp(-(d * d) / (2.0 * sg * sg));
}

static double heatmap_reward(const idoc_reward_config *c, const idoc_reward_target *t,
                             const cstate *s, int m) {
  const int S = t->size;
  const size_t n = (size_t)S * S;
  double mse;
  const float *P = s->pred[m], *G = t->map[m];
  if (!P) {
    mse = t->sq_mean[m];
  } else {
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
      double d = (double)P[i] - (double)G[i];
      acc += d * d;
    }
    mse = acc / (double)n;
  }
  if (c->heatmap_variant == IDOC_RW_VARIANT_PAPER) return 1.0 - mse;
  double x = mse * (m == MAP_MIS ? HEATMAP_CODE_K_MIS : HEATMAP_CODE_K_ART);
  return 1.0 - (x < 0 ? 0 : x > 1 ? 1 : x);
}

// The shared gate; returns true with *r set when it decides the reward.
static bool box_gate(const idoc_reward_target *t, const cstate *s, int m, double *r) {
  bool empty = t->sum[m] == 0;
  if (empty && s->nb == 0) return *r = 1.0, true;
  if (empty || s->nb == 0) return *r = 0.0, true;
  return false;
}

// Python's max(0, x): the first argument wins unless x > 0, so NaN gives 0.
static float pymax0(float x) { return x > 0 ? x : 0.0f; }

// The reference's box_iou on float32 coordinates, in float32 arithmetic as numpy does.
static float box_iou(const float a[4], const float b[4]) {
  float xA = a[0] > b[0] ? a[0] : b[0], yA = a[1] > b[1] ? a[1] : b[1];
  float xB = a[2] < b[2] ? a[2] : b[2], yB = a[3] < b[3] ? a[3] : b[3];
  float inter = pymax0(xB - xA) * pymax0(yB - yA);
  float areaA = pymax0(a[2] - a[0]) * pymax0(a[3] - a[1]);
  float areaB = pymax0(b[2] - b[0]) * pymax0(b[3] - b[1]);
  float uni = areaA + areaB - inter;
  return uni > 0 ? inter / uni : 0.0f; // NaN union (inf - inf) fails the test: 0
}

static double iou_reward(const idoc_reward_target *t, const cstate *s, int m) {
  double r;
  if (box_gate(t, s, m, &r)) return r;
  double sum = 0, pairs = 0;
  for (size_t i = 0; i < s->nb; i++)
    for (size_t j = i + 1; j < s->nb; j++) {
      sum += box_iou(s->fb[i], s->fb[j]);
      pairs += 1;
    }
  return 1.0 - (pairs > 0 ? sum / pairs : 0.0);
}

static double avepixel_reward(const idoc_reward_target *t, const cstate *s, int m) {
  double r;
  if (box_gate(t, s, m, &r)) return r;
  const int S1 = t->size + 1;
  const double *I = t->integ[m];
  double sum = 0;
  size_t n = 0;
  for (size_t i = 0; i < s->nb; i++) {
    if (!s->valid[i]) continue;
    int x1 = s->ib[i][0], y1 = s->ib[i][1], x2 = s->ib[i][2], y2 = s->ib[i][3];
    double box = I[(size_t)y2 * S1 + x2] - I[(size_t)y1 * S1 + x2] - I[(size_t)y2 * S1 + x1] +
                 I[(size_t)y1 * S1 + x1];
    sum += box / ((double)(x2 - x1) * (y2 - y1));
    n++;
  }
  return n ? sum / (double)n : 0.0;
}

static double union_reward(const idoc_reward_target *t, const cstate *s, int m) {
  double r;
  if (box_gate(t, s, m, &r)) return r;
  const int S = t->size, S1 = S + 1;
  // Coverage counts by a 2-D difference array: O(boxes + S^2) whatever the box sizes.
  int32_t *d = idoc_xcalloc((size_t)S1 * S1, sizeof *d);
  for (size_t i = 0; i < s->nb; i++) {
    if (!s->valid[i]) continue;
    int x1 = s->ib[i][0], y1 = s->ib[i][1], x2 = s->ib[i][2], y2 = s->ib[i][3];
    d[(size_t)y1 * S1 + x1]++;
    d[(size_t)y1 * S1 + x2]--;
    d[(size_t)y2 * S1 + x1]--;
    d[(size_t)y2 * S1 + x2]++;
  }
  const float *G = t->map[m];
  double covered = 0;
  for (int y = 0; y < S; y++) {
    int32_t *row = d + (size_t)y * S1;
    if (y > 0) // running sums down the columns
      for (int x = 0; x <= S; x++)
        row[x] += row[x - S1];
    int32_t run = 0;
    for (int x = 0; x < S; x++) {
      run += row[x];
      if (run > 0) covered += G[(size_t)y * S + x];
    }
  }
  free(d);
  return covered / (t->sum[m] + UNION_EPS);
}

// Python's \s (str.isspace) at s[i] as UTF-8: returns the byte length, 0 if not a space.
static size_t py_space_len(const uint8_t *s, size_t n, size_t i) {
  uint8_t c = s[i];
  if (c < 0x80) return ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) ? 1 : 0;
  if (c == 0xC2 && i + 1 < n) return (s[i + 1] == 0x85 || s[i + 1] == 0xA0) ? 2 : 0;
  if (i + 2 >= n) return 0;
  uint8_t b = s[i + 1], e = s[i + 2];
  if (c == 0xE1 && b == 0x9A && e == 0x80) return 3; // U+1680
  if (c == 0xE2 && b == 0x80 && (e <= 0x8A || e == 0xA8 || e == 0xA9 || e == 0xAF))
    return e >= 0x80 ? 3 : 0;                        // U+2000..200A, 2028, 2029, 202F
  if (c == 0xE2 && b == 0x81 && e == 0x9F) return 3; // U+205F
  if (c == 0xE3 && b == 0x80 && e == 0x80) return 3; // U+3000
  return 0;
}

// re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL): the text opens
// with <think>, ends with </answer>, and some </think> after the opening tag is followed by
// optional whitespace and an <answer> that ends before the final </answer> starts.
static bool format_match(const char *text, size_t n) {
  const uint8_t *s = (const uint8_t *)text;
  static const char open[] = "<think>", close[] = "</think>", aopen[] = "<answer>",
                    aclose[] = "</answer>";
  if (n < 7 + 8 + 8 + 9 || memcmp(s, open, 7) || memcmp(s + n - 9, aclose, 9)) return false;
  const size_t last = n - 9; // the final </answer>
  for (size_t p = 7; p + 8 <= last; p++) {
    if (memcmp(s + p, close, 8)) continue;
    size_t q = p + 8, l;
    while (q < last && (l = py_space_len(s, n, q)) > 0)
      q += l;
    if (q + 8 <= last && !memcmp(s + q, aopen, 8)) return true;
  }
  return false;
}

static double format_reward(const idoc_reward_config *c, const idoc_reward_completion *comp,
                            const cstate *s) {
  if (!comp->text || !format_match(comp->text, comp->len)) return 0.0;
  if (c->format_variant == IDOC_RW_FORMAT_STRICT)
    for (int k = 0; k < IDOC_N_SCORES; k++)
      if (!s->pr.score_valid[k] || !(s->pr.score[k] >= 0 && s->pr.score[k] <= 1)) return 0.0;
  return 1.0;
}

static double eval_one(const idoc_reward_config *c, const idoc_reward_target *t,
                       const idoc_reward_completion *comp, const cstate *s, int id) {
  switch (id) {
  case IDOC_RW_MIS_HEATMAP: return heatmap_reward(c, t, s, MAP_MIS);
  case IDOC_RW_ART_HEATMAP: return heatmap_reward(c, t, s, MAP_ART);
  case IDOC_RW_SEMANTIC: return score_reward(c, t, s, IDOC_SCORE_SEMANTIC);
  case IDOC_RW_AESTHETIC: return score_reward(c, t, s, IDOC_SCORE_AESTHETIC);
  case IDOC_RW_PLAUSIBILITY: return score_reward(c, t, s, IDOC_SCORE_PLAUSIBILITY);
  case IDOC_RW_OVERALL: return score_reward(c, t, s, IDOC_SCORE_OVERALL);
  case IDOC_RW_MIS_BOX_IOU: return iou_reward(t, s, MAP_MIS);
  case IDOC_RW_ART_BOX_IOU: return iou_reward(t, s, MAP_ART);
  case IDOC_RW_ART_BOX_AVEPIXEL: return avepixel_reward(t, s, MAP_ART);
  case IDOC_RW_MIS_BOX_AVEPIXEL: return avepixel_reward(t, s, MAP_MIS);
  case IDOC_RW_ART_BOX_UNION: return union_reward(t, s, MAP_ART);
  case IDOC_RW_MIS_BOX_UNION: return union_reward(t, s, MAP_MIS);
  case IDOC_RW_FORMAT: return format_reward(c, comp, s);
  case IDOC_RW_SEMANTIC_GAUSS: return gaussian_reward(c, t, s, IDOC_SCORE_SEMANTIC);
  case IDOC_RW_AESTHETIC_GAUSS: return gaussian_reward(c, t, s, IDOC_SCORE_AESTHETIC);
  case IDOC_RW_PLAUSIBILITY_GAUSS: return gaussian_reward(c, t, s, IDOC_SCORE_PLAUSIBILITY);
  case IDOC_RW_OVERALL_GAUSS: return gaussian_reward(c, t, s, IDOC_SCORE_OVERALL);
  default: idoc_die("reward id %d out of range", id);
  }
}

static bool is_heatmap(int id) { return id == IDOC_RW_MIS_HEATMAP || id == IDOC_RW_ART_HEATMAP; }

// Evaluates the rewards in want[] (NULL: the enabled ones).
static int evaluate(const idoc_reward_config *c, const idoc_reward_target *t,
                    const idoc_reward_completion *comp, const bool want[IDOC_N_REWARDS],
                    double out[IDOC_N_REWARDS], double *total) {
  if (idoc_reward_config_validate(c)) return IDOC_ERR;
  if (t->size != c->map_size)
    return idoc_set_error("rewards: target prepared for map_size %d, config says %d", t->size,
                          c->map_size);
  if (comp->text == NULL && comp->len != 0)
    return idoc_set_error("reward completion: text is NULL but len is %zu", comp->len);
  bool boxes = false, pred = false;
  for (int i = 0; i < IDOC_N_REWARDS; i++) {
    if (!want[i]) continue;
    int m = reward_map(i);
    if (m >= 0 && !t->map[m])
      return idoc_set_error("rewards: %s needs the ground-truth %s map, which was not given",
                            idoc_reward_names[i], map_field[m]);
    boxes |= m >= 0 && !is_heatmap(i);
    pred |= is_heatmap(i);
  }
  cstate s;
  if (cstate_init(&s, c, t, comp, boxes, pred)) return IDOC_ERR;
  double sum = 0;
  for (int i = 0; i < IDOC_N_REWARDS; i++) {
    out[i] = want[i] ? eval_one(c, t, comp, &s, i) : 0.0;
    IDOC_CHECK(isfinite(out[i]), "reward %s is not finite", idoc_reward_names[i]);
    if (want[i] && c->enabled[i]) sum += c->weight[i] * out[i];
  }
  cstate_free(&s);
  if (total) *total = sum;
  return IDOC_OK;
}

int idoc_rewards_compute(const idoc_reward_config *c, const idoc_reward_target *t,
                         const idoc_reward_completion *comp, double out[IDOC_N_REWARDS],
                         double *total) {
  return evaluate(c, t, comp, c->enabled, out, total);
}

int idoc_reward_compute_one(const idoc_reward_config *c, const idoc_reward_target *t,
                            const idoc_reward_completion *comp, idoc_reward_id id, double *out) {
  if ((unsigned)id >= IDOC_N_REWARDS) return idoc_set_error("reward id %d out of range", (int)id);
  bool want[IDOC_N_REWARDS] = {0};
  want[id] = true;
  double all[IDOC_N_REWARDS];
  if (evaluate(c, t, comp, want, all, NULL)) return IDOC_ERR;
  *out = all[id];
  return IDOC_OK;
}
