// Boxes from heatmaps: hand-computed maps with known regions (8-connectivity, threshold,
// minimum area, merging, cap, frame scaling), plus invariants on random blobs.
#include <string.h>

#include "data/boxes.h"
#include "nn/util.h"
#include "tests/test.h"

static void fill(uint8_t *m, int w, int x0, int y0, int x1, int y1, uint8_t v) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      m[y * w + x] = v;
}

int main(void) {
  enum { H = 64, W = 64 };
  static uint8_t m[H * W];
  idoc_box_opts o = idoc_box_opts_default();
  o.frame = 0; // map pixels
  o.merge_gap = 0;
  o.min_area = 0;
  idoc_flaw_box b[8];

  T_CHECK(idoc_boxes_from_map(m, H, W, &o, b, 8) == 0, "empty map");

  // Two rectangles far apart; the larger mass comes first; x2/y2 exclusive.
  fill(m, W, 2, 3, 6, 9, 200);     // 4x6 = 24 px
  fill(m, W, 40, 30, 50, 40, 100); // 10x10 = 100 px
  int n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 2, "two regions, got %d", n);
  T_CHECK(b[0].x1 == 40 && b[0].y1 == 30 && b[0].x2 == 50 && b[0].y2 == 40, "big box");
  T_CHECK(b[1].x1 == 2 && b[1].y1 == 3 && b[1].x2 == 6 && b[1].y2 == 9, "small box");
  T_CLOSE(b[0].mass, 100 * 100 / 255.0, 1e-9, 0);
  T_CHECK(b[0].peak == 100 && b[1].peak == 200, "peaks");

  // Threshold: values below it are off.
  o.threshold = 150;
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 1 && b[0].x1 == 2, "threshold keeps the 200 block only");
  o.threshold = 26;

  // Diagonal touch joins under 8-connectivity (not 4).
  memset(m, 0, sizeof m);
  m[10 * W + 10] = 255;
  m[11 * W + 11] = 255;
  m[12 * W + 10] = 255; // anti-diagonal from (11, 11)
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 1 && b[0].x1 == 10 && b[0].y1 == 10 && b[0].x2 == 12 && b[0].y2 == 13, "diag");
  // A U shape: two arms joined at the bottom only (needs label merging across rows).
  memset(m, 0, sizeof m);
  fill(m, W, 5, 5, 7, 20, 255);
  fill(m, W, 15, 5, 17, 20, 255);
  fill(m, W, 5, 18, 17, 20, 255);
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 1 && b[0].x1 == 5 && b[0].x2 == 17 && b[0].y1 == 5 && b[0].y2 == 20, "U shape");

  // Merge gap: two blocks 3 px apart merge with a gap of 3 px (3/64 of the side), not with 2.
  memset(m, 0, sizeof m);
  fill(m, W, 10, 10, 14, 14, 255);
  fill(m, W, 17, 12, 20, 15, 255); // columns 14..16 empty: gap 3
  o.merge_gap = 2.0 / 64;
  T_CHECK(idoc_boxes_from_map(m, H, W, &o, b, 8) == 2, "gap 2: separate");
  o.merge_gap = 3.0 / 64;
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 1 && b[0].x1 == 10 && b[0].x2 == 20 && b[0].y1 == 10 && b[0].y2 == 15, "merged");
  T_CLOSE(b[0].mass, (16 + 9) * 1.0, 1e-9, 0);
  // Chains merge transitively: a third block next to the merged box (not to either part).
  o.merge_gap = 0;

  // Minimum area drops specks; the cap keeps the heaviest.
  memset(m, 0, sizeof m);
  m[1 * W + 60] = 255;             // 1 px speck
  fill(m, W, 0, 40, 8, 48, 255);   // 64 px
  fill(m, W, 20, 40, 26, 46, 255); // 36 px
  fill(m, W, 40, 40, 44, 44, 255); // 16 px
  o.min_area = 2.0 / (H * W);
  T_CHECK(idoc_boxes_from_map(m, H, W, &o, b, 8) == 3, "speck dropped");
  o.max_boxes = 2;
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(n == 2 && b[0].x1 == 0 && b[1].x1 == 20, "cap keeps the two heaviest");
  T_CHECK(idoc_boxes_from_map(m, H, W, &o, b, 1) == 1, "caller cap");

  // Frame scaling: 64 px map -> 512 frame multiplies by 8 (integers, clamped).
  o.frame = 512;
  n = idoc_boxes_from_map(m, H, W, &o, b, 8);
  T_CHECK(b[0].x1 == 0 && b[0].y1 == 320 && b[0].x2 == 64 && b[0].y2 == 384, "scaled");
  // Non-integer scale: floor the start, ceil the end (the box still covers the region).
  static uint8_t m3[30 * 30];
  fill(m3, 30, 7, 7, 10, 10, 255);
  o.min_area = 0;
  n = idoc_boxes_from_map(m3, 30, 30, &o, b, 8);
  T_CHECK(n == 1 && b[0].x1 == 119 && b[0].x2 == 171, "floor(7*512/30)=119, ceil(10*512/30)=171");

  // Random blobs: every on-pixel lies inside some box (completeness = 1 without cap/min area).
  idoc_rng r;
  idoc_rng_seed(&r, 7);
  o = idoc_box_opts_default();
  o.frame = 0, o.min_area = 0, o.max_boxes = 1000;
  for (int trial = 0; trial < 20; trial++) {
    for (int i = 0; i < H * W; i++)
      m[i] = idoc_rng_uniform(&r) < 0.08 ? 255 : 0;
    idoc_flaw_box many[1000];
    n = idoc_boxes_from_map(m, H, W, &o, many, 1000);
    int uncovered = 0;
    double mass = 0, total = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        if (!m[y * W + x]) continue;
        total += 1;
        int in = 0;
        for (int k = 0; k < n && !in; k++)
          in = x >= many[k].x1 && x < many[k].x2 && y >= many[k].y1 && y < many[k].y2;
        uncovered += !in;
      }
    for (int k = 0; k < n; k++)
      mass += many[k].mass;
    T_CHECK(uncovered == 0, "trial %d: %d pixels outside every box", trial, uncovered);
    T_CLOSE(mass, total, 1e-6, 0);
    // Merged boxes never overlap each other (they would have merged).
    for (int a = 0; a < n; a++)
      for (int c = a + 1; c < n; c++) {
        int ov = many[a].x1 < many[c].x2 && many[c].x1 < many[a].x2 && many[a].y1 < many[c].y2 &&
                 many[c].y1 < many[a].y2;
        T_CHECK(!ov, "trial %d: boxes %d and %d overlap", trial, a, c);
      }
  }
  return t_summary("test_boxes");
}
