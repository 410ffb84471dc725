// Boxes from heatmaps: union-find labelling, bounding boxes, greedy merging, cap.
#include "data/boxes.h"

#include <math.h>
#include <stdlib.h>

#include "nn/util.h"

idoc_box_opts idoc_box_opts_default(void) {
  idoc_box_opts o = {
      .threshold = 26, .min_area = 1.0 / 4096, .merge_gap = 0.02, .max_boxes = 4, .frame = 512};
  return o;
}

static int32_t uf_find(int32_t *p, int32_t i) {
  while (p[i] != i) {
    p[i] = p[p[i]];
    i = p[i];
  }
  return i;
}
static void uf_union(int32_t *p, int32_t a, int32_t b) {
  a = uf_find(p, a);
  b = uf_find(p, b);
  if (a < b)
    p[b] = a;
  else if (b < a)
    p[a] = b;
}

typedef struct {
  int c0, r0, c1, r1; // inclusive pixel bounds
  double mass;
  int peak, area;
  int alive;
} region;

static int near(const region *a, const region *b, double gap) {
  int gx = a->c0 > b->c1 ? a->c0 - b->c1 - 1 : (b->c0 > a->c1 ? b->c0 - a->c1 - 1 : 0);
  int gy = a->r0 > b->r1 ? a->r0 - b->r1 - 1 : (b->r0 > a->r1 ? b->r0 - a->r1 - 1 : 0);
  return gx <= gap && gy <= gap;
}

static int cmp_region(const void *pa, const void *pb) {
  const region *a = pa, *b = pb;
  if (a->mass != b->mass) return a->mass > b->mass ? -1 : 1;
  if (a->r0 != b->r0) return a->r0 < b->r0 ? -1 : 1;
  return (a->c0 > b->c0) - (a->c0 < b->c0);
}

int idoc_boxes_from_map(const uint8_t *map, int h, int w, const idoc_box_opts *opts,
                        idoc_flaw_box *out, int cap) {
  idoc_box_opts o = opts ? *opts : idoc_box_opts_default();
  if (h < 1 || w < 1 || cap < 1 || o.max_boxes < 1) return 0;
  int thr = o.threshold < 1 ? 1 : o.threshold; // value 0 is never "on"
  size_t n = (size_t)h * w;
  int32_t *par = idoc_xmalloc(n * sizeof *par);
  for (size_t i = 0; i < n; i++)
    par[i] = map[i] >= thr ? (int32_t)i : -1;
  // One pass, union with the already-visited neighbours (W, NW, N, NE).
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      int32_t i = (int32_t)((size_t)r * w + c);
      if (par[i] < 0) continue;
      if (c > 0 && par[i - 1] >= 0) uf_union(par, i, i - 1);
      if (r > 0) {
        int32_t up = i - w;
        if (c > 0 && par[up - 1] >= 0) uf_union(par, i, up - 1);
        if (par[up] >= 0) uf_union(par, i, up);
        if (c + 1 < w && par[up + 1] >= 0) uf_union(par, i, up + 1);
      }
    }
  // Regions indexed by their root; roots are the smallest index (first in raster order).
  int nreg = 0, rcap = 16;
  region *reg = idoc_xmalloc((size_t)rcap * sizeof *reg);
  int32_t *slot = idoc_xmalloc(n * sizeof *slot);
  for (size_t i = 0; i < n; i++) {
    if (par[i] < 0) continue;
    int32_t root = uf_find(par, (int32_t)i);
    int r = (int)(i / w), c = (int)(i % w);
    if (root == (int32_t)i) {
      if (nreg == rcap) reg = idoc_xrealloc(reg, (size_t)(rcap *= 2) * sizeof *reg);
      reg[nreg] = (region){c, r, c, r, 0, 0, 0, 1};
      slot[i] = nreg++;
    }
    region *g = &reg[slot[root]];
    if (c < g->c0) g->c0 = c;
    if (c > g->c1) g->c1 = c;
    if (r > g->r1) g->r1 = r;
    g->mass += map[i] / 255.0;
    g->area++;
    if (map[i] > g->peak) g->peak = map[i];
  }
  free(par);
  free(slot);
  double min_px = o.min_area * (double)n;
  for (int i = 0; i < nreg; i++)
    if (reg[i].area < min_px) reg[i].alive = 0;
  // Merge until stable: a merged box can reach new neighbours.
  double gap = o.merge_gap * (h > w ? h : w);
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < nreg; i++) {
      if (!reg[i].alive) continue;
      for (int j = i + 1; j < nreg; j++) {
        if (!reg[j].alive || !near(&reg[i], &reg[j], gap)) continue;
        region *a = &reg[i], *b = &reg[j];
        if (b->c0 < a->c0) a->c0 = b->c0;
        if (b->r0 < a->r0) a->r0 = b->r0;
        if (b->c1 > a->c1) a->c1 = b->c1;
        if (b->r1 > a->r1) a->r1 = b->r1;
        a->mass += b->mass;
        a->area += b->area;
        if (b->peak > a->peak) a->peak = b->peak;
        b->alive = 0;
        changed = 1;
      }
    }
  }
  int k = 0;
  for (int i = 0; i < nreg; i++)
    if (reg[i].alive) reg[k++] = reg[i];
  qsort(reg, (size_t)k, sizeof *reg, cmp_region);
  if (k > o.max_boxes) k = o.max_boxes;
  if (k > cap) k = cap;
  double sx = o.frame > 0 ? o.frame / w : 1, sy = o.frame > 0 ? o.frame / h : 1;
  double fx = o.frame > 0 ? o.frame : w, fy = o.frame > 0 ? o.frame : h;
  for (int i = 0; i < k; i++) {
    out[i].x1 = (float)floor(reg[i].c0 * sx);
    out[i].y1 = (float)floor(reg[i].r0 * sy);
    out[i].x2 = (float)fmin(fx, ceil((reg[i].c1 + 1) * sx));
    out[i].y2 = (float)fmin(fy, ceil((reg[i].r1 + 1) * sy));
    out[i].mass = reg[i].mass;
    out[i].peak = (uint8_t)reg[i].peak;
  }
  free(reg);
  return k;
}
