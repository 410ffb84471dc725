// GRPO rewards against values worked out by hand from the spec's formulas (imagedoctor.md 5.4-5.5)
// and the reference's quirks; the arithmetic is in the comments. Maps are on the 288 x 288 grid
// (N = 82944 pixels) unless said otherwise; box coordinates are in the 512 frame, scaled by
// 288 / 512 = 0.5625.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/json.h"
#include "nn/util.h"
#include "rl/rewards.h"
#include "tests/test.h"

enum { S = 288 };
#define NPIX (S * S)

static float *map_new(void) { return idoc_xcalloc(NPIX, sizeof(float)); }

// map[y][x] = v for y in [y0, y1), x in [x0, x1)
static void rect(float *m, int x0, int y0, int x1, int y1, float v) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      m[y * S + x] = v;
}

// The maps used below.
typedef struct {
  float *mis, *art;
} gtmaps;

static idoc_reward_config cfg_default(void) {
  idoc_reward_config c;
  idoc_reward_config_default(&c);
  return c;
}

static int make_target(idoc_reward_target *t, const idoc_reward_config *c, gtmaps g,
                       const float sc[4]) {
  idoc_reward_gt gt = {.map_h = S, .map_w = S, .misalignment_f32 = g.mis, .artifact_f32 = g.art};
  memcpy(gt.scores, sc, sizeof gt.scores);
  return idoc_reward_target_init(t, c, &gt);
}

static const float SC0[4] = {0.625f, 0.5f, 0.25f, 1.0f};

// Reward `id` for text + predicted maps (NaN on error, which fails every T_CLOSE).
static double rw(const idoc_reward_config *c, const idoc_reward_target *t, const char *text,
                 const float *pm, const float *pa, int ph, int pw, idoc_reward_id id) {
  idoc_reward_completion comp = {text, text ? strlen(text) : 0, pm, pa, ph, pw};
  double v;
  if (idoc_reward_compute_one(c, t, &comp, id, &v)) {
    fprintf(stderr, "reward error: %s\n", idoc_last_error());
    return NAN;
  }
  return v;
}
#define RW(c, t, text, id) rw(c, t, text, NULL, NULL, 0, 0, id)

static const int BOXR[6] = {IDOC_RW_MIS_BOX_IOU,      IDOC_RW_ART_BOX_IOU,
                            IDOC_RW_MIS_BOX_AVEPIXEL, IDOC_RW_ART_BOX_AVEPIXEL,
                            IDOC_RW_MIS_BOX_UNION,    IDOC_RW_ART_BOX_UNION};

// ---- grounding ------------------------------------------------------------------------------

static void test_grounding(void) {
  idoc_reward_config c = cfg_default();
  idoc_reward_target t;
  const double E = 1e-9;

  // Empty GT (both maps all zero): no boxes -> 1 for all six; any box -> 0 for all six.
  gtmaps empty = {map_new(), map_new()};
  T_CHECK(make_target(&t, &c, empty, SC0) == 0, "%s", idoc_last_error());
  const char *nobox = "<think>I need to focus on the bounding box area. Proposed regions (xyxy): "
                      "none.</think>\n\n<answer>Semantic Alignment score: 0.5;</answer>";
  const char *onebox = "<think>Proposed regions (xyxy): 1.[0,0,256,256];</think><answer></answer>";
  for (int i = 0; i < 6; i++) {
    T_CLOSE(RW(&c, &t, nobox, BOXR[i]), 1.0, 0, 0);
    T_CLOSE(RW(&c, &t, onebox, BOXR[i]), 0.0, 0, 0);
    T_CLOSE(RW(&c, &t, "", BOXR[i]), 1.0, 0, 0);   // empty completion: no boxes
    T_CLOSE(RW(&c, &t, NULL, BOXR[i]), 1.0, 0, 0); // NULL text, len 0
  }
  idoc_reward_target_free(&t);

  // GT A: misalignment = 1 on the top-left quadrant rows/cols [0, 144), artifact = 1 on the
  // top-right quadrant (rows [0, 144), cols [144, 288)). sum = 144 * 144 = 20736 each.
  gtmaps A = {map_new(), map_new()};
  rect(A.mis, 0, 0, 144, 144, 1);
  rect(A.art, 144, 0, 288, 144, 1);
  T_CHECK(make_target(&t, &c, A, SC0) == 0, "%s", idoc_last_error());
  // Non-empty GT without boxes -> 0 for all six.
  for (int i = 0; i < 6; i++)
    T_CLOSE(RW(&c, &t, nobox, BOXR[i]), 0.0, 0, 0);

  // One box [0,0,256,256] -> [0,0,144,144]: uniqueness 1 (no pairs, mean 0). The same box is
  // scored against both maps: compactness mis = mean(1 over the block) = 1, art = 0;
  // completeness mis = 20736 / (20736 + 1e-8), art = 0 / 20736 = 0.
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_MIS_BOX_IOU), 1.0, 0, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_ART_BOX_IOU), 1.0, 0, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_MIS_BOX_AVEPIXEL), 1.0, E, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_ART_BOX_AVEPIXEL), 0.0, E, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_MIS_BOX_UNION), 20736.0 / (20736.0 + 1e-8), 1e-15, 0);
  T_CHECK(RW(&c, &t, onebox, IDOC_RW_MIS_BOX_UNION) < 1.0, "the 1e-8 keeps full cover below 1");
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_ART_BOX_UNION), 0.0, 0, 0);

  // Overlapping boxes [0,0,256,256] and [128,128,384,384] -> [0,0,144,144], [72,72,216,216].
  //   IoU = 72*72 / (20736 + 20736 - 5184) = 5184 / 36288 = 1/7  -> uniqueness 6/7 (both maps)
  //   compactness mis: box1 1; box2 [72:216, 72:216] holds 72*72 = 5184 ones of 20736 -> 0.25;
  //                    mean (1 + 0.25) / 2 = 0.625
  //   compactness art: box1 0; box2 rows 72..143, cols 144..215 -> 5184 / 20736 = 0.25;
  //                    mean 0.125
  //   completeness mis: the union covers the whole block once (not 20736 + 5184) -> ~1
  //   completeness art: 5184 / 20736 = 0.25
  const char *two = "<think>1.[0,0,256,256];\n2.[128,128,384,384];</think><answer></answer>";
  T_CLOSE(RW(&c, &t, two, IDOC_RW_MIS_BOX_IOU), 6.0 / 7.0, 1e-7, 0);
  T_CLOSE(RW(&c, &t, two, IDOC_RW_ART_BOX_IOU), 6.0 / 7.0, 1e-7, 0);
  T_CLOSE(RW(&c, &t, two, IDOC_RW_MIS_BOX_AVEPIXEL), 0.625, E, 0);
  T_CLOSE(RW(&c, &t, two, IDOC_RW_ART_BOX_AVEPIXEL), 0.125, E, 0);
  T_CLOSE(RW(&c, &t, two, IDOC_RW_MIS_BOX_UNION), 1.0, 1e-12, 0);
  T_CLOSE(RW(&c, &t, two, IDOC_RW_ART_BOX_UNION), 0.25, 1e-12, 0);

  // Identical boxes, in the think block, the answer and the paper's "1:[..]" style, with spaces:
  // every box anywhere in the text counts -> 3 boxes, 3 pairs of IoU 1 -> uniqueness 0.
  // Near misses are not boxes: 3 numbers, 5 numbers, an exponent.
  const char *same = "<think>Proposed regions (xyxy): 1:[0,0,256,256]; 2:[ 0 , 0 ,256, 256 ]."
                     "[0,0,256] [0,0,256,256,3] [1e3,0,1,1]</think><answer>[0,0,256,256]</answer>";
  T_CLOSE(RW(&c, &t, same, IDOC_RW_MIS_BOX_IOU), 0.0, 1e-12, 0);
  T_CLOSE(RW(&c, &t, same, IDOC_RW_MIS_BOX_AVEPIXEL), 1.0, E, 0);

  // Out-of-image boxes. [-100,-50,600,100] -> [-56.25,-28.125,337.5,56.25] -> int() -56, -28,
  // 337, 56 -> clamped [0, 0, 288, 56]: 56 rows x 288 cols; mis ones in cols < 144 -> 0.5, art
  // the other half -> 0.5; completeness 56*144 / 20736 = 8064 / 20736 = 7/18 for both maps.
  // [600,600,700,700] -> [337.5,337.5,393.75,393.75] -> x1 = 337 (only clamped below),
  // x2 = min(288, 393) = 288 <= x1: skipped by compactness and completeness, but it still
  // counts for uniqueness, where it overlaps nothing (IoU 0). [300,0,100,100] (x2 < x1) ->
  // [168.75,0,56.25,56.25]: invalid, area clamped to 0, IoU 0 with both.
  // -> uniqueness 1 - 0 = 1, compactness 0.5 (mean over the one valid box), completeness 7/18.
  const char *out = "<think>1.[-100,-50,600,100];\n2.[600,600,700,700];\n3.[300,0,100,100];"
                    "</think><answer></answer>";
  T_CLOSE(RW(&c, &t, out, IDOC_RW_MIS_BOX_IOU), 1.0, 0, 0);
  T_CLOSE(RW(&c, &t, out, IDOC_RW_MIS_BOX_AVEPIXEL), 0.5, E, 0);
  T_CLOSE(RW(&c, &t, out, IDOC_RW_ART_BOX_AVEPIXEL), 0.5, E, 0);
  T_CLOSE(RW(&c, &t, out, IDOC_RW_MIS_BOX_UNION), 7.0 / 18.0, 1e-12, 0);
  T_CLOSE(RW(&c, &t, out, IDOC_RW_ART_BOX_UNION), 7.0 / 18.0, 1e-12, 0);
  // Only the outside box: the gate passes (a box exists) but no box is valid -> 0 and 0.
  const char *outside = "<think>[600,600,700,700]</think>";
  T_CLOSE(RW(&c, &t, outside, IDOC_RW_MIS_BOX_AVEPIXEL), 0.0, 0, 0);
  T_CLOSE(RW(&c, &t, outside, IDOC_RW_MIS_BOX_UNION), 0.0, 0, 0);
  T_CLOSE(RW(&c, &t, outside, IDOC_RW_MIS_BOX_IOU), 1.0, 0, 0);

  // IoU uses the raw scaled coordinates, not the clamped ones: [-512,0,512,512] -> [-288,0,288,
  // 288] and [0,0,512,512] -> [0,0,288,288]: inter 288*288 = 82944, areas 576*288 = 165888 and
  // 82944, union 165888 -> IoU 0.5 -> uniqueness 0.5 (clamped boxes would give 0).
  // Both clamp to the full map: compactness mis = 20736 / 82944 = 0.25 for each -> 0.25.
  const char *wide = "<think>[-512,0,512,512] [0,0,512,512]</think>";
  T_CLOSE(RW(&c, &t, wide, IDOC_RW_MIS_BOX_IOU), 0.5, 1e-7, 0);
  T_CLOSE(RW(&c, &t, wide, IDOC_RW_MIS_BOX_AVEPIXEL), 0.25, E, 0);
  T_CLOSE(RW(&c, &t, wide, IDOC_RW_MIS_BOX_UNION), 1.0, 1e-12, 0);

  // A coordinate past float32 (1e40 * 0.5625 -> inf): IoU with [0,0,288,288] is
  // inter 82944 / union inf = 0 -> uniqueness 1. (The reference's int() would raise here;
  // we clamp: x2 -> 288, so the box is the full map, compactness 0.25 as above.)
  const char *huge = "<think>[0,0,10000000000000000000000000000000000000000,512] [0,0,512,512]"
                     "</think>";
  T_CLOSE(RW(&c, &t, huge, IDOC_RW_MIS_BOX_IOU), 1.0, 0, 0);
  T_CLOSE(RW(&c, &t, huge, IDOC_RW_MIS_BOX_AVEPIXEL), 0.25, E, 0);
  // Both infinite: inter = inf * 288 and areas inf -> union inf + inf - inf = NaN -> IoU 0.
  const char *huge2 = "<think>[0,0,1"
                      "0000000000000000000000000000000000000000,512] "
                      "[0,0,1"
                      "0000000000000000000000000000000000000000,512]</think>";
  T_CLOSE(RW(&c, &t, huge2, IDOC_RW_MIS_BOX_IOU), 1.0, 0, 0);
  idoc_reward_target_free(&t);

  // Truncation after the float32 rounding. Misalignment = 1 on column 287 only (288 ones);
  // artifact = 1 on column 0 only.
  gtmaps col = {map_new(), map_new()};
  rect(col.mis, 287, 0, 288, 288, 1);
  rect(col.art, 0, 0, 1, 288, 1);
  T_CHECK(make_target(&t, &c, col, SC0) == 0, "%s", idoc_last_error());
  // [504,0,511.9999999,512]: x1 = 283.5 -> 283; x2 = 287.99999994375 rounds to float32 288.0
  // -> int 288, so cols 283..287 (5): mean = 288 / (5 * 288) = 0.2. (Truncating the double
  // would give 287 and a mean of 0.)
  const char *edge = "<think>[504,0,511.9999999,512]</think>";
  T_CLOSE(RW(&c, &t, edge, IDOC_RW_MIS_BOX_AVEPIXEL), 0.2, E, 0);
  T_CLOSE(RW(&c, &t, edge, IDOC_RW_MIS_BOX_UNION), 1.0, 1e-10, 0);
  // [0.5,0,1.5,512] -> x 0.28125 .. 0.84375 -> int 0 .. 0: empty, skipped -> 0 and 0.
  // [1,1,2,2] -> [0.5625,0.5625,1.125,1.125] -> [0,0,1,1]: one pixel, art[0][0] = 1 -> 1;
  // completeness art 1 / 288.
  T_CLOSE(RW(&c, &t, "[0.5,0,1.5,512]", IDOC_RW_ART_BOX_AVEPIXEL), 0.0, 0, 0);
  T_CLOSE(RW(&c, &t, "[1,1,2,2]", IDOC_RW_ART_BOX_AVEPIXEL), 1.0, E, 0);
  T_CLOSE(RW(&c, &t, "[1,1,2,2]", IDOC_RW_ART_BOX_UNION), 1.0 / 288.0, 1e-12, 0);
  idoc_reward_target_free(&t);

  // The GT as the dataset stores it: uint8 512 x 512, 255 on rows/cols [0, 256). cv2's
  // INTER_LINEAR to 288 samples x = (dx + 0.5) * 512/288 - 0.5: dx = 143 -> 254.61 (columns
  // 254, 255, both 1), dx = 144 -> 256.39 (columns 256, 257, both 0). So the map becomes exactly
  // the [0, 144) block of GT A: compactness and completeness of [0,0,256,256] are 1.
  uint8_t *u8 = idoc_xcalloc(512 * 512, 1);
  for (int y = 0; y < 256; y++)
    memset(u8 + y * 512, 255, 256);
  idoc_reward_gt g8 = {.map_h = 512, .map_w = 512, .misalignment_u8 = u8, .artifact_u8 = u8};
  memcpy(g8.scores, SC0, sizeof g8.scores);
  T_CHECK(idoc_reward_target_init(&t, &c, &g8) == 0, "%s", idoc_last_error());
  T_CLOSE(t.sum[0], 20736.0, 1e-3, 0);
  T_CLOSE(t.map[0][143 * S + 143], 1.0, 1e-6, 0);
  T_CLOSE(t.map[0][144 * S + 143], 0.0, 0, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_MIS_BOX_AVEPIXEL), 1.0, 1e-6, 0);
  T_CLOSE(RW(&c, &t, onebox, IDOC_RW_ART_BOX_UNION), 1.0, 1e-6, 0);
  idoc_reward_target_free(&t);
  free(u8);

  // Another frame / grid: box_frame 256, map_size 288 -> scale 1.125: [0,0,128,128] ->
  // [0,0,144,144], the mis block of GT A -> compactness 1.
  idoc_reward_config c2 = cfg_default();
  T_CHECK(idoc_reward_config_set(&c2, "box_frame", "256") == 0, "%s", idoc_last_error());
  T_CHECK(make_target(&t, &c2, A, SC0) == 0, "%s", idoc_last_error());
  T_CLOSE(RW(&c2, &t, "[0,0,128,128]", IDOC_RW_MIS_BOX_AVEPIXEL), 1.0, E, 0);
  idoc_reward_target_free(&t);

  free(empty.mis), free(empty.art), free(A.mis), free(A.art), free(col.mis), free(col.art);
}

// ---- scores ---------------------------------------------------------------------------------

static void test_scores(void) {
  idoc_reward_config c = cfg_default();
  idoc_reward_target t;
  // GT scores {0.625, 0.5, 0.25, 1.0} (exact in binary, so the arithmetic below is exact).
  T_CHECK(make_target(&t, &c, (gtmaps){NULL, NULL}, SC0) != 0, "maps needed by default");
  idoc_reward_config cs = cfg_default(); // scores only: no maps needed
  for (int i = 0; i < IDOC_N_REWARDS; i++)
    cs.enabled[i] = i >= IDOC_RW_SEMANTIC && i <= IDOC_RW_OVERALL;
  T_CHECK(make_target(&t, &cs, (gtmaps){NULL, NULL}, SC0) == 0, "%s", idoc_last_error());
  idoc_reward_completion cx = {"x", 1, NULL, NULL, 0, 0};
  double vx;
  T_CHECK(idoc_reward_compute_one(&cs, &t, &cx, IDOC_RW_MIS_BOX_IOU, &vx) != 0 &&
              strstr(idoc_last_error(), "misalignment_boundingbox_iou"),
          "a map reward without its map errs: %s", idoc_last_error());

  const char *s1 = "<think>r</think>\n\n<answer>Semantic Alignment score: 0.5;\nMisalignment "
                   "Locations: \nAesthetic score: 0.75;\nPlausibility score: 0.25;\nArtifact "
                   "Locations: \nOverall Impression score: 0.875</answer>";
  // code 1 - 3|p - g|: 1 - 3*0.125 = 0.625; 1 - 3*0.25 = 0.25; 1 - 0 = 1; 1 - 3*0.125 = 0.625
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_SEMANTIC), 0.625, 0, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_AESTHETIC), 0.25, 0, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_PLAUSIBILITY), 1.0, 0, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_OVERALL), 0.625, 0, 0);
  // paper 1 - |p - g|: 0.875, 0.75, 1, 0.875
  idoc_reward_config cp = cs;
  T_CHECK(idoc_reward_config_set(&cp, "score_variant", "paper") == 0, "%s", idoc_last_error());
  T_CLOSE(RW(&cp, &t, s1, IDOC_RW_SEMANTIC), 0.875, 0, 0);
  T_CLOSE(RW(&cp, &t, s1, IDOC_RW_AESTHETIC), 0.75, 0, 0);
  T_CLOSE(RW(&cp, &t, s1, IDOC_RW_OVERALL), 0.875, 0, 0);
  // Gaussian, sigma 0.2 (2 sigma^2 = 0.08): d = 0.125 -> exp(-0.015625 / 0.08)
  // = exp(-0.1953125) = 0.8225775624; d = 0.25 -> exp(-0.0625 / 0.08) = exp(-0.78125)
  // = 0.4578333618; d = 0 -> 1.
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_SEMANTIC_GAUSS), 0.8225775624, 1e-10, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_AESTHETIC_GAUSS), 0.4578333618, 1e-10, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_PLAUSIBILITY_GAUSS), 1.0, 0, 0);
  T_CLOSE(RW(&cs, &t, s1, IDOC_RW_OVERALL_GAUSS), 0.8225775624, 1e-10, 0);
  // sigma 0.5 (2 sigma^2 = 0.5): d = 0.25 -> exp(-0.125) = 0.8824969026
  idoc_reward_config cg = cs;
  T_CHECK(idoc_reward_config_set(&cg, "gaussian_sigma", "0.5") == 0, "%s", idoc_last_error());
  T_CLOSE(RW(&cg, &t, s1, IDOC_RW_AESTHETIC_GAUSS), 0.8824969026, 1e-10, 0);

  // Missing ';' fails the first three regexes (p reads 0); Overall needs none, and "0.875;"
  // still reads 0.875. "0.75 ;" fails too (the ';' must follow the digits).
  //   semantic 1 - 3*0.625 = -0.875; aesthetic 1 - 3*0.5 = -0.5; plausibility 1;
  //   overall 0.625
  const char *s2 = "<answer>Semantic Alignment score: 0.5\nAesthetic score: 0.75 ;\n"
                   "Plausibility score: 0.25;\nOverall Impression score: 0.875;</answer>";
  T_CLOSE(RW(&cs, &t, s2, IDOC_RW_SEMANTIC), -0.875, 0, 0);
  T_CLOSE(RW(&cs, &t, s2, IDOC_RW_AESTHETIC), -0.5, 0, 0);
  T_CLOSE(RW(&cs, &t, s2, IDOC_RW_PLAUSIBILITY), 1.0, 0, 0);
  T_CLOSE(RW(&cs, &t, s2, IDOC_RW_OVERALL), 0.625, 0, 0);
  // Gaussian with the reference's p = 0: exp(-0.625^2 / 0.08) = exp(-4.8828125) = 0.0075756774
  T_CLOSE(RW(&cs, &t, s2, IDOC_RW_SEMANTIC_GAUSS), 0.0075756774, 1e-10, 0);
  // score_missing = reward_zero: unread scores give 0 instead.
  idoc_reward_config cz = cs;
  T_CHECK(idoc_reward_config_set(&cz, "score_missing", "reward_zero") == 0, "%s",
          idoc_last_error());
  T_CLOSE(RW(&cz, &t, s2, IDOC_RW_SEMANTIC), 0.0, 0, 0);
  T_CLOSE(RW(&cz, &t, s2, IDOC_RW_AESTHETIC), 0.0, 0, 0);
  T_CLOSE(RW(&cz, &t, s2, IDOC_RW_SEMANTIC_GAUSS), 0.0, 0, 0);
  T_CLOSE(RW(&cz, &t, s2, IDOC_RW_OVERALL), 0.625, 0, 0);

  // Malformed numbers: "0.5.5" and "." fail float() -> 0; "1." -> 1.0; ".5" -> 0.5.
  //   semantic -0.875; aesthetic 1 - 3*0.5 = -0.5; plausibility 1 - 3*0.75 = -1.25;
  //   overall 1 - 3*0.5 = -0.5
  const char *s3 = "<answer>Semantic Alignment score: 0.5.5;Aesthetic score: .;"
                   "Plausibility score: 1.;Overall Impression score: .5</answer>";
  T_CLOSE(RW(&cs, &t, s3, IDOC_RW_SEMANTIC), -0.875, 0, 0);
  T_CLOSE(RW(&cs, &t, s3, IDOC_RW_AESTHETIC), -0.5, 0, 0);
  T_CLOSE(RW(&cs, &t, s3, IDOC_RW_PLAUSIBILITY), -1.25, 0, 0);
  T_CLOSE(RW(&cs, &t, s3, IDOC_RW_OVERALL), -0.5, 0, 0);

  // No <answer> block, or an unclosed one: every score reward (and Gaussian) is 0, even with
  // well-formed scores elsewhere.
  const char *noans[] = {"<think>Semantic Alignment score: 0.625;</think>",
                         "<answer>Semantic Alignment score: 0.625; Overall Impression score: 1",
                         "Semantic Alignment score: 0.625;</answer>", ""};
  for (int i = 0; i < 4; i++)
    for (int id = IDOC_RW_SEMANTIC; id <= IDOC_RW_OVERALL; id++) {
      T_CLOSE(RW(&cs, &t, noans[i], (idoc_reward_id)id), 0.0, 0, 0);
      T_CLOSE(
          RW(&cs, &t, noans[i], (idoc_reward_id)(id + IDOC_RW_SEMANTIC_GAUSS - IDOC_RW_SEMANTIC)),
          0.0, 0, 0);
    }
  T_CLOSE(RW(&cs, &t, NULL, IDOC_RW_SEMANTIC), 0.0, 0, 0);
  // An empty answer: the block exists, the regexes fail -> p = 0 -> 1 - 3g.
  T_CLOSE(RW(&cs, &t, "<answer></answer>", IDOC_RW_SEMANTIC), 1 - 3 * 0.625, 0, 0);
  T_CLOSE(RW(&cs, &t, "<answer></answer>", IDOC_RW_OVERALL), 1 - 3 * 1.0, 0, 0);
  // Only the first answer block counts; inside it the first place where the whole pattern
  // matches wins (the "0.1 ;" occurrence does not match, the later 0.625 does -> 1).
  T_CLOSE(RW(&cs, &t,
             "<answer>Semantic Alignment score: 0.1 ; Semantic Alignment score: 0.625;</answer>"
             "<answer>Semantic Alignment score: 0.0;</answer>",
             IDOC_RW_SEMANTIC),
          1.0, 0, 0);
  // Scores outside [0, 1] are not clipped: 7.5 -> 1 - 3*6.875 = -19.625; paper 1 - 6.875 =
  // -5.875; with score_clamp p = 1 -> 1 - 3*0.375 = -0.125. Overall 12 -> 1 - 3*11 = -32.
  // Gaussian: exp(-6.875^2 / 0.08) = exp(-590.8203125) = 2.5703868e-257.
  const char *s7 = "<answer>Semantic Alignment score: 7.5; Overall Impression score: 12</answer>";
  T_CLOSE(RW(&cs, &t, s7, IDOC_RW_SEMANTIC), -19.625, 0, 0);
  T_CLOSE(RW(&cp, &t, s7, IDOC_RW_SEMANTIC), -5.875, 0, 0);
  T_CLOSE(RW(&cs, &t, s7, IDOC_RW_OVERALL), -32.0, 0, 0);
  T_CLOSE(RW(&cs, &t, s7, IDOC_RW_SEMANTIC_GAUSS), 2.5703868e-257, 0, 1e-6);
  idoc_reward_config cc = cs;
  T_CHECK(idoc_reward_config_set(&cc, "score_clamp", "true") == 0, "%s", idoc_last_error());
  T_CLOSE(RW(&cc, &t, s7, IDOC_RW_SEMANTIC), -0.125, 0, 0);
  T_CLOSE(RW(&cc, &t, s7, IDOC_RW_OVERALL), 1.0, 0, 0);
  // 400 nines: float() gives inf (the reference's reward would be -inf); read as 1e6 here:
  // 1 - 3*(1e6 - 0.625) = -2999997.125.
  char big[600] = "<answer>Semantic Alignment score: ";
  size_t bl = strlen(big);
  memset(big + bl, '9', 400);
  strcpy(big + bl + 400, ";</answer>");
  T_CLOSE(RW(&cs, &t, big, IDOC_RW_SEMANTIC), -2999997.125, 0, 0);
  T_CLOSE(RW(&cs, &t, big, IDOC_RW_SEMANTIC_GAUSS), 0.0, 0, 0);
  idoc_reward_target_free(&t);
}

// ---- heatmaps -------------------------------------------------------------------------------

static void test_heatmaps(void) {
  idoc_reward_config c = cfg_default(), cp = cfg_default(), cm = cfg_default();
  T_CHECK(idoc_reward_config_set(&cp, "heatmap_variant", "paper") == 0, "%s", idoc_last_error());
  T_CHECK(idoc_reward_config_set(&cm, "heatmap_missing", "per_map") == 0, "%s", idoc_last_error());
  idoc_reward_target t;
  float *p01 = map_new(), *p25 = map_new();
  rect(p01, 0, 0, S, S, 0.1f);
  rect(p25, 0, 0, S, S, 0.25f);

  // Empty GT, constant prediction 0.1: MSE = 0.01 (float 0.1 is 0.1 + 1.5e-9).
  //   code mis 1 - clip(80 * 0.01) = 0.2; art 1 - clip(40 * 0.01) = 0.6; paper 1 - 0.01 = 0.99
  // Constant 0.25: MSE 0.0625 -> mis clip(5) = 1 -> 0; art clip(2.5) -> 0; paper 0.9375.
  gtmaps empty = {map_new(), map_new()};
  T_CHECK(make_target(&t, &c, empty, SC0) == 0, "%s", idoc_last_error());
  T_CLOSE(rw(&c, &t, "", p01, p01, S, S, IDOC_RW_MIS_HEATMAP), 0.2, 1e-6, 0);
  T_CLOSE(rw(&c, &t, "", p01, p01, S, S, IDOC_RW_ART_HEATMAP), 0.6, 1e-6, 0);
  T_CLOSE(rw(&cp, &t, "", p01, p01, S, S, IDOC_RW_MIS_HEATMAP), 0.99, 1e-7, 0);
  T_CLOSE(rw(&c, &t, "", p25, p25, S, S, IDOC_RW_MIS_HEATMAP), 0.0, 0, 0);
  T_CLOSE(rw(&c, &t, "", p25, p25, S, S, IDOC_RW_ART_HEATMAP), 0.0, 0, 0);
  T_CLOSE(rw(&cp, &t, "", p25, p25, S, S, IDOC_RW_ART_HEATMAP), 0.9375, 0, 0);
  // Missing task tokens with an empty GT: P = 0 = G -> 1 (the reference's reward for saying
  // nothing about an unflawed image).
  T_CLOSE(rw(&c, &t, "", NULL, NULL, 0, 0, IDOC_RW_MIS_HEATMAP), 1.0, 0, 0);
  T_CLOSE(rw(&c, &t, "", NULL, NULL, 0, 0, IDOC_RW_ART_HEATMAP), 1.0, 0, 0);
  // A prediction of another size is resized to 288 first: a constant 144 x 144 map of 0.1 stays
  // 0.1 -> 0.2 and 0.6 as above.
  float *small = idoc_xmalloc(144 * 144 * sizeof(float));
  for (int i = 0; i < 144 * 144; i++)
    small[i] = 0.1f;
  T_CLOSE(rw(&c, &t, "", small, small, 144, 144, IDOC_RW_MIS_HEATMAP), 0.2, 1e-6, 0);
  T_CLOSE(rw(&c, &t, "", small, small, 144, 144, IDOC_RW_ART_HEATMAP), 0.6, 1e-6, 0);
  free(small);
  idoc_reward_target_free(&t);

  // GT B: misalignment 0.5 and artifact 1 on rows/cols [0, 36) (1296 pixels).
  //   mean(G_mis^2) = 1296 * 0.25 / 82944 = 0.00390625; mean(G_art^2) = 1296 / 82944 = 0.015625
  //   no task tokens (P = 0): mis 1 - 80 * 0.00390625 = 0.6875; art 1 - 40 * 0.015625 = 0.375
  //   paper: 1 - 0.00390625 = 0.99609375 and 1 - 0.015625 = 0.984375
  gtmaps B = {map_new(), map_new()};
  rect(B.mis, 0, 0, 36, 36, 0.5f);
  rect(B.art, 0, 0, 36, 36, 1.0f);
  T_CHECK(make_target(&t, &c, B, SC0) == 0, "%s", idoc_last_error());
  T_CLOSE(rw(&c, &t, "", NULL, NULL, 0, 0, IDOC_RW_MIS_HEATMAP), 0.6875, 1e-12, 0);
  T_CLOSE(rw(&c, &t, "", NULL, NULL, 0, 0, IDOC_RW_ART_HEATMAP), 0.375, 1e-12, 0);
  T_CLOSE(rw(&cp, &t, "", NULL, NULL, 0, 0, IDOC_RW_MIS_HEATMAP), 0.99609375, 1e-12, 0);
  T_CLOSE(rw(&cp, &t, "", NULL, NULL, 0, 0, IDOC_RW_ART_HEATMAP), 0.984375, 1e-12, 0);
  // Perfect predictions -> 1 and 1.
  T_CLOSE(rw(&c, &t, "", B.mis, B.art, S, S, IDOC_RW_MIS_HEATMAP), 1.0, 0, 0);
  T_CLOSE(rw(&c, &t, "", B.mis, B.art, S, S, IDOC_RW_ART_HEATMAP), 1.0, 0, 0);
  // Only the misalignment token missing, artifact predicted perfectly: the reference zeroes
  // BOTH predictions -> art 0.375 (not 1); per_map keeps the artifact map -> 1.
  T_CLOSE(rw(&c, &t, "", NULL, B.art, S, S, IDOC_RW_ART_HEATMAP), 0.375, 1e-12, 0);
  T_CLOSE(rw(&c, &t, "", NULL, B.art, S, S, IDOC_RW_MIS_HEATMAP), 0.6875, 1e-12, 0);
  T_CLOSE(rw(&cm, &t, "", NULL, B.art, S, S, IDOC_RW_ART_HEATMAP), 1.0, 0, 0);
  T_CLOSE(rw(&cm, &t, "", NULL, B.art, S, S, IDOC_RW_MIS_HEATMAP), 0.6875, 1e-12, 0);
  // Half the artifact block predicted (rows [0, 18)): 648 pixels off by 1 -> MSE 648 / 82944
  // = 0.0078125 -> art 1 - 40 * 0.0078125 = 0.6875.
  float *half = map_new();
  rect(half, 0, 0, 36, 18, 1.0f);
  T_CLOSE(rw(&c, &t, "", B.mis, half, S, S, IDOC_RW_ART_HEATMAP), 0.6875, 1e-12, 0);
  free(half);
  idoc_reward_target_free(&t);

  // uint8 GT: 51 everywhere is 0.2; P = 0 -> MSE 0.04 -> code 0 (80 * 0.04 = 3.2 and
  // 40 * 0.04 = 1.6 both clip to 1); paper 1 - 0.04 = 0.96.
  uint8_t *u8 = idoc_xmalloc(S * S);
  memset(u8, 51, S * S);
  idoc_reward_gt g8 = {.map_h = S, .map_w = S, .misalignment_u8 = u8, .artifact_u8 = u8};
  memcpy(g8.scores, SC0, sizeof g8.scores);
  T_CHECK(idoc_reward_target_init(&t, &cp, &g8) == 0, "%s", idoc_last_error());
  T_CLOSE(rw(&c, &t, "", NULL, NULL, 0, 0, IDOC_RW_MIS_HEATMAP), 0.0, 0, 0);
  T_CLOSE(rw(&cp, &t, "", NULL, NULL, 0, 0, IDOC_RW_ART_HEATMAP), 0.96, 1e-7, 0);
  idoc_reward_target_free(&t);
  free(u8);

  free(p01), free(p25), free(empty.mis), free(empty.art), free(B.mis), free(B.art);
}

// ---- format ---------------------------------------------------------------------------------

static void test_format(void) {
  idoc_reward_config c = cfg_default(), cs = cfg_default();
  for (int i = 0; i < IDOC_N_REWARDS; i++)
    c.enabled[i] = cs.enabled[i] = false;
  T_CHECK(idoc_reward_config_set(&cs, "format_variant", "strict") == 0, "%s", idoc_last_error());
  idoc_reward_target t;
  T_CHECK(make_target(&t, &c, (gtmaps){NULL, NULL}, SC0) == 0, "%s", idoc_last_error());
  // re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL)
  struct {
    const char *text;
    double want;
  } cases[] = {
      {"<think>a</think><answer>b</answer>", 1},
      {"<think>a\nb</think>\n \t<answer>c\nd</answer>", 1},  // DOTALL; \s* takes \n, ' ', \t
      {"<think>a</think>\xc2\xa0<answer>b</answer>", 1},     // U+00A0 is \s for str patterns
      {"<think>a</think>\xe3\x80\x80<answer>b</answer>", 1}, // U+3000 too
      {"<think>a</think>\xe2\x80\x8b<answer>b</answer>", 0}, // U+200B is not whitespace
      {" <think>a</think><answer>b</answer>", 0},            // fullmatch: nothing before
      {"<think>a</think><answer>b</answer>\n", 0},           // ... nor after
      {"<think>a</think>x<answer>b</answer>", 0},            // only whitespace in between
      {"<think>a</think>x</think> <answer>b</answer>", 1},   // .*? backtracks to the 2nd </think>
      {"<think></think><answer></answer>", 1},               // empty parts are fine
      {"<think>a</think><answer>b</answer><answer>c</answer>", 1}, // .*? spans to the last
      {"<think>a</think>", 0},
      {"<answer>b</answer>", 0},
      {"<think>a</think><answer</answer>", 0},
      {"<think>a</think><answer>b</answer", 0},
      {"<think></think></answer>", 0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    T_CHECK(RW(&c, &t, cases[i].text, IDOC_RW_FORMAT) == cases[i].want, "format case %zu: %s", i,
            cases[i].text);
  // Strict: the fullmatch and the four scores read and in [0, 1].
  const char *ok = "<think>r</think>\n<answer>Semantic Alignment score: 0.5;\nAesthetic score: "
                   "0.75;\nPlausibility score: 0.25;\nOverall Impression score: 1.0</answer>";
  const char *nosemi = "<think>r</think><answer>Semantic Alignment score: 0.5\nAesthetic score: "
                       "0.75;\nPlausibility score: 0.25;\nOverall Impression score: 1.0</answer>";
  const char *range = "<think>r</think><answer>Semantic Alignment score: 0.5;\nAesthetic score: "
                      "7.5;\nPlausibility score: 0.25;\nOverall Impression score: 1.0</answer>";
  T_CHECK(RW(&cs, &t, ok, IDOC_RW_FORMAT) == 1 && RW(&c, &t, ok, IDOC_RW_FORMAT) == 1, "ok");
  T_CHECK(RW(&cs, &t, nosemi, IDOC_RW_FORMAT) == 0 && RW(&c, &t, nosemi, IDOC_RW_FORMAT) == 1,
          "strict needs every score");
  T_CHECK(RW(&cs, &t, range, IDOC_RW_FORMAT) == 0 && RW(&c, &t, range, IDOC_RW_FORMAT) == 1,
          "strict needs scores in [0, 1]");
  idoc_reward_target_free(&t);
}

// ---- config, weights, total -----------------------------------------------------------------

static void test_total(void) {
  idoc_reward_config c = cfg_default();
  int n_on = 0;
  for (int i = 0; i < IDOC_N_REWARDS; i++) {
    n_on += c.enabled[i];
    T_CHECK(c.weight[i] == 1.0, "default weight 1");
    T_CHECK(idoc_reward_find(idoc_reward_names[i]) == i, "name table round trip");
  }
  T_CHECK(n_on == 12 && !c.enabled[IDOC_RW_FORMAT], "the reference's 12 are on, %d", n_on);
  T_CHECK(!strcmp(idoc_reward_names[IDOC_RW_MIS_HEATMAP], "misalignment_location_heatmap") &&
              !strcmp(idoc_reward_names[IDOC_RW_MIS_BOX_UNION], "misalignment_boundingbox_union"),
          "reference names in launch order");
  T_CHECK(idoc_reward_find("nope") == -1 && idoc_reward_find(NULL) == -1, "unknown name");

  // GT B (above) with a completion that has the s1 scores and one box [0,0,64,64] ->
  // [0,0,36,36], no task tokens:
  //   heatmaps (P = 0): mis 0.6875, art 0.375
  //   scores: 0.625, 0.25, 1, 0.625
  //   uniqueness 1, 1; compactness art 1, mis 0.5 (the 0.5 block); completeness ~1, ~1
  //   total = 0.6875 + 0.375 + 0.625 + 0.25 + 1 + 0.625 + 1 + 1 + 1 + 0.5 + 1 + 1 = 9.0625
  gtmaps B = {map_new(), map_new()};
  rect(B.mis, 0, 0, 36, 36, 0.5f);
  rect(B.art, 0, 0, 36, 36, 1.0f);
  idoc_reward_target t;
  T_CHECK(make_target(&t, &c, B, SC0) == 0, "%s", idoc_last_error());
  const char *text = "<think>I need to focus on the bounding box area. Proposed regions (xyxy): "
                     "1.[0,0,64,64];</think>\n\n<answer>Semantic Alignment score: 0.5;\n"
                     "Misalignment Locations: \nAesthetic score: 0.75;\nPlausibility score: "
                     "0.25;\nArtifact Locations: \nOverall Impression score: 0.875</answer>";
  idoc_reward_completion comp = {text, strlen(text), NULL, NULL, 0, 0};
  double r[IDOC_N_REWARDS], total;
  T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) == 0, "%s", idoc_last_error());
  const double want[12] = {0.6875, 0.375, 0.625, 0.25, 1, 0.625, 1, 1, 1, 0.5, 1, 1};
  for (int i = 0; i < 12; i++)
    T_CLOSE(r[i], want[i], 1e-9, 0);
  for (int i = 12; i < IDOC_N_REWARDS; i++)
    T_CHECK(r[i] == 0, "disabled reward %s reads 0", idoc_reward_names[i]);
  T_CLOSE(total, 9.0625, 1e-9, 0);

  // semantic weight 0.5, artifact heatmap off, format on with weight 2 (the text matches),
  // semantic Gaussian on (0.8225775624):
  //   9.0625 - 0.3125 - 0.375 + 2 * 1 + 0.8225775624 = 11.1975775624
  T_CHECK(idoc_reward_config_set(&c, "semantic_score.weight", "0.5") == 0, "%s", idoc_last_error());
  T_CHECK(idoc_reward_config_set(&c, "artifact_location_heatmap.enabled", "false") == 0, "%s",
          idoc_last_error());
  T_CHECK(idoc_reward_config_set(&c, "format.enabled", "true") == 0, "%s", idoc_last_error());
  T_CHECK(idoc_reward_config_set(&c, "reward.format", "2") == 0, "%s", idoc_last_error());
  T_CHECK(idoc_reward_config_set(&c, "semantic_score_gaussian.enabled", "on") == 0, "%s",
          idoc_last_error());
  T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) == 0, "%s", idoc_last_error());
  T_CHECK(r[IDOC_RW_ART_HEATMAP] == 0, "off reads 0");
  T_CLOSE(r[IDOC_RW_SEMANTIC], 0.625, 0, 0); // the value is unweighted
  T_CLOSE(r[IDOC_RW_FORMAT], 1.0, 0, 0);
  T_CLOSE(total, 11.1975775624, 1e-9, 0);
  // compute_one still evaluates a disabled reward.
  double v;
  T_CHECK(idoc_reward_compute_one(&c, &t, &comp, IDOC_RW_ART_HEATMAP, &v) == 0 && v == 0.375,
          "compute_one on a disabled reward: %g", v);
  // A zero weight keeps the value but drops it from the total: 11.1975775624 - 2.
  T_CHECK(idoc_reward_config_set(&c, "format.weight", "0") == 0, "%s", idoc_last_error());
  T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) == 0, "%s", idoc_last_error());
  T_CLOSE(r[IDOC_RW_FORMAT], 1.0, 0, 0);
  T_CLOSE(total, 9.1975775624, 1e-9, 0);
  idoc_reward_target_free(&t);

  // Config errors name the key and the value.
  idoc_reward_config e = cfg_default();
  struct {
    const char *k, *v;
  } bad[] = {{"nonexistent.weight", "1"},
             {"semantic_score.colour", "1"},
             {"semantic_score.weight", "abc"},
             {"semantic_score.weight", "1e9"},
             {"semantic_score.enabled", "maybe"},
             {"gaussian_sigma", "0"},
             {"gaussian_sigma", "nan"},
             {"score_variant", "papers"},
             {"map_size", "0"},
             {"box_frame", "12.5"},
             {"heatmap_missing", "x"},
             {"format_variant", ""}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    T_CHECK(idoc_reward_config_set(&e, bad[i].k, bad[i].v) != 0, "%s=%s accepted", bad[i].k,
            bad[i].v);
    T_CHECK(strstr(idoc_last_error(), bad[i].k) != NULL, "error names the key: %s",
            idoc_last_error());
  }
  e.weight[IDOC_RW_PLAUSIBILITY] = INFINITY;
  T_CHECK(idoc_reward_config_validate(&e) != 0 &&
              strstr(idoc_last_error(), "plausibility_score.weight"),
          "validate names the weight");

  // Ground-truth and prediction errors name the field.
  c = cfg_default();
  float sc_bad[4] = {0.5f, 1.5f, 0.5f, 0.5f};
  T_CHECK(make_target(&t, &c, B, sc_bad) != 0 && strstr(idoc_last_error(), "scores[1]"),
          "GT score out of range: %s", idoc_last_error());
  B.art[5 * S + 7] = 2.0f;
  T_CHECK(make_target(&t, &c, B, SC0) != 0 && strstr(idoc_last_error(), "artifact map[5][7]"),
          "GT map out of range: %s", idoc_last_error());
  B.art[5 * S + 7] = 1.0f;
  T_CHECK(make_target(&t, &c, B, SC0) == 0, "%s", idoc_last_error());
  float *nanmap = map_new();
  nanmap[S + 2] = NAN;
  comp.pred_misalignment = nanmap, comp.pred_artifact = B.art, comp.pred_h = comp.pred_w = S;
  T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) != 0 &&
              strstr(idoc_last_error(), "predicted misalignment map[1][2]"),
          "NaN prediction: %s", idoc_last_error());
  comp.pred_h = 0;
  nanmap[S + 2] = 0;
  T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) != 0, "pred size 0");
  idoc_reward_target_free(&t);
  free(nanmap), free(B.mis), free(B.art);
}

// ---- the reference, run in Python -----------------------------------------------------------
// tests/fixtures/rewards/cases.jsonl (scripts/make_reward_fixtures.py): random completions and
// rectangle maps through the reference's own operations (re, float(), numpy float32, cv2).

static bool get_rects(const idoc_json *a, int h, int w, bool u8, uint8_t *m8, float *mf) {
  if (!idoc_json_is(a, IDOC_JSON_ARRAY)) return false;
  for (uint32_t i = 0; i < a->n; i++) {
    const idoc_json *r = idoc_json_at(a, i);
    if (!idoc_json_is(r, IDOC_JSON_ARRAY) || r->n != 5) return false;
    int x0 = (int)idoc_json_at(r, 0)->num, y0 = (int)idoc_json_at(r, 1)->num;
    int x1 = (int)idoc_json_at(r, 2)->num, y1 = (int)idoc_json_at(r, 3)->num;
    double v = idoc_json_at(r, 4)->num;
    if (x0 < 0 || y0 < 0 || x1 > w || y1 > h) return false;
    for (int y = y0; y < y1; y++)
      for (int x = x0; x < x1; x++) {
        if (u8)
          m8[y * w + x] = (uint8_t)v;
        else
          mf[y * w + x] = (float)v;
      }
  }
  return true;
}

static void test_reference_fixture(void) {
  const char *path = "tests/fixtures/rewards/cases.jsonl";
  char *data;
  size_t n;
  if (idoc_read_file(path, &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  idoc_reward_config c = cfg_default();
  c.enabled[IDOC_RW_FORMAT] = true;
  double maxerr[IDOC_N_REWARDS] = {0};
  int cases = 0;
  for (char *line = data, *nl; line < data + n && *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (!nl) nl = data + n;
    idoc_json_doc *doc = idoc_json_parse(line, (size_t)(nl - line), path, NULL);
    T_CHECK(doc != NULL, "%s", idoc_last_error());
    if (!doc) break;
    const idoc_json *o = idoc_json_root(doc);
    const idoc_json *sz = idoc_json_get(o, "gt_size"), *sc = idoc_json_get(o, "scores");
    const idoc_json *text = idoc_json_get(o, "text"), *pred = idoc_json_get(o, "pred");
    const idoc_json *want = idoc_json_get(o, "want");
    int gh = (int)idoc_json_at(sz, 0)->num, gw = (int)idoc_json_at(sz, 1)->num;
    uint8_t *gm = idoc_xcalloc((size_t)gh * gw, 1), *ga = idoc_xcalloc((size_t)gh * gw, 1);
    T_CHECK(get_rects(idoc_json_get(o, "gt_mis"), gh, gw, true, gm, NULL) &&
                get_rects(idoc_json_get(o, "gt_art"), gh, gw, true, ga, NULL),
            "case %d: GT rectangles", cases);
    idoc_reward_gt gt = {.map_h = gh, .map_w = gw, .misalignment_u8 = gm, .artifact_u8 = ga};
    for (int k = 0; k < 4; k++)
      gt.scores[k] = (float)idoc_json_at(sc, (size_t)k)->num;
    idoc_reward_completion comp = {text->str, text->len, NULL, NULL, 0, 0};
    float *pm = NULL, *pa = NULL;
    if (idoc_json_is(pred, IDOC_JSON_OBJECT)) {
      const idoc_json *psz = idoc_json_get(pred, "size");
      int ph = (int)idoc_json_at(psz, 0)->num, pw = (int)idoc_json_at(psz, 1)->num;
      float base = (float)idoc_json_get(pred, "base")->num;
      pm = idoc_xmalloc(sizeof(float) * (size_t)ph * pw);
      pa = idoc_xmalloc(sizeof(float) * (size_t)ph * pw);
      for (int i = 0; i < ph * pw; i++)
        pm[i] = pa[i] = base;
      T_CHECK(get_rects(idoc_json_get(pred, "mis"), ph, pw, false, NULL, pm) &&
                  get_rects(idoc_json_get(pred, "art"), ph, pw, false, NULL, pa),
              "case %d: predicted rectangles", cases);
      const char *missing = idoc_json_string(idoc_json_get(pred, "missing"));
      comp.pred_misalignment = strcmp(missing, "mis") ? pm : NULL;
      comp.pred_artifact = strcmp(missing, "art") ? pa : NULL;
      comp.pred_h = ph, comp.pred_w = pw;
    }
    idoc_reward_target t;
    double r[IDOC_N_REWARDS], total;
    T_CHECK(idoc_reward_target_init(&t, &c, &gt) == 0, "%s", idoc_last_error());
    T_CHECK(idoc_rewards_compute(&c, &t, &comp, r, &total) == 0, "%s", idoc_last_error());
    for (int i = 0; i <= IDOC_RW_FORMAT; i++) {
      const idoc_json *w = idoc_json_get(want, idoc_reward_names[i]);
      double err = fabs(r[i] - w->num);
      if (err > maxerr[i]) maxerr[i] = err;
      // Scores, boxes and format are exact up to the float32 steps numpy takes; the heatmap
      // rewards carry the resize's float rounding times k = 80 or 40.
      double tol = i <= IDOC_RW_ART_HEATMAP ? 1e-6 : 3e-7;
      T_CHECK(err <= tol, "case %d %s: %.9g, reference %.9g", cases, idoc_reward_names[i], r[i],
              w->num);
    }
    idoc_reward_target_free(&t);
    free(gm), free(ga), free(pm), free(pa);
    idoc_json_free(doc);
    cases++;
    if (nl == data + n) break;
  }
  free(data);
  T_CHECK(cases >= 50, "fixture cases: %d", cases);
  printf("reference fixture: %d cases; max |C - reference| per reward:\n", cases);
  for (int i = 0; i <= IDOC_RW_FORMAT; i++)
    printf("  %-34s %.3g\n", idoc_reward_names[i], maxerr[i]);
}

int main(void) {
  test_reference_fixture();
  test_grounding();
  test_scores();
  test_heatmaps();
  test_format();
  test_total();
  return t_summary("test_rewards");
}
