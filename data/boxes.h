// Flaw boxes from a heatmap: the connected regions (8-connectivity) of pixels at or above a
// threshold, small ones dropped, boxes that overlap or nearly touch merged, the strongest kept.
// Used by the synthetic generator and the RichHF-18K converter. No dependencies.
//
// Box convention (as the rewards read them, spec imagedoctor.md 5.5): xyxy, x2/y2 exclusive
// pixel edges, in a frame of `frame` x `frame` pixels over the image (512 for ImageDoctor),
// integers: x1 = floor(col_min * s), x2 = ceil((col_max + 1) * s) with s = frame / map width.
#pragma once
#include <stdint.h>

typedef struct {
  float x1, y1, x2, y2; // in the output frame
  double mass;          // sum of map values / 255 inside the merged regions (map pixels)
  uint8_t peak;         // largest map value inside
} idoc_flaw_box;

typedef struct {
  int threshold;    // a pixel is "on" when value >= threshold (0..255), default 26 (~0.1)
  double min_area;  // regions with fewer pixels than min_area * h * w are dropped (1/4096)
  double merge_gap; // boxes whose gaps on both axes are <= merge_gap * max(h, w) merge (0.02)
  int max_boxes;    // keep this many, largest mass first (default 4)
  double frame;     // output frame (default 512); <= 0: map pixels
} idoc_box_opts;

idoc_box_opts idoc_box_opts_default(void);

// Writes up to min(cap, max_boxes) boxes to out, ordered by mass (largest first; ties by y1, x1),
// and returns how many. An all-zero map gives 0. Never fails for h, w >= 1 (returns 0 otherwise).
int idoc_boxes_from_map(const uint8_t *map, int h, int w, const idoc_box_opts *opts,
                        idoc_flaw_box *out, int cap);
