// The synthetic RichHF-like generator (see synth.h for the rules).
#include "data/synth.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "data/boxes.h"
#include "data/imagedoctor_text.h"
#include "nn/util.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define N_SHAPES 6
#define N_COLOURS 10
#define MAX_OBJ 3
#define MAX_ART 3

static const char *const shape_names[N_SHAPES] = {"circle", "square",  "triangle",
                                                  "star",   "diamond", "ring"};
static const struct {
  const char *name;
  uint8_t rgb[3];
} colours[N_COLOURS] = {
    {"red", {220, 40, 40}},     {"green", {40, 170, 60}},   {"blue", {40, 80, 220}},
    {"yellow", {235, 210, 40}}, {"orange", {240, 140, 30}}, {"purple", {140, 60, 180}},
    {"white", {245, 245, 245}}, {"black", {25, 25, 25}},    {"pink", {240, 130, 180}},
    {"brown", {130, 80, 40}},
};
enum { BG_PLAIN, BG_GRADIENT, BG_STRIPED, BG_CHECKERED, BG_NOISY, N_BG };
static const char *const bg_names[N_BG] = {"plain", "gradient", "striped", "checkered", "noisy"};
static const double bg_clutter[N_BG] = {0.0, 0.1, 0.35, 0.45, 0.5};
static const char *const size_words[3] = {"small", "", "large"};
enum { ART_BLUR, ART_NOISE, ART_WARP, ART_SMEAR, N_ART };
static const char *const art_text[N_ART] = {"an unnaturally blurred patch", "grainy noise",
                                            "a warped, swirled area", "a smeared streak"};

typedef struct {
  int shape, colour, size;     // as named in the prompt
  int draw_shape, draw_colour; // as drawn
  int drawn;                   // 0 when missing
  double cx, cy, r, angle;     // pixels, radians
} object;

typedef struct {
  int type;
  double cx, cy, r, q, angle;
} artifact;

idoc_synth_opts idoc_synth_opts_default(void) {
  idoc_synth_opts o = {
      .size = 512, .misalign_prob = 0.5, .artifact_prob = 0.6, .label_noise = 0.02};
  return o;
}

static uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t idoc_synth_sample_seed(uint64_t seed, int split, uint64_t index) {
  return splitmix(splitmix(seed ^ splitmix((uint64_t)split + 1)) ^ index);
}

static double unif(idoc_rng *r, double a, double b) { return a + (b - a) * idoc_rng_uniform(r); }
static int pick(idoc_rng *r, int n) { return (int)idoc_rng_below(r, (uint64_t)n); }
static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }
static uint8_t to_u8(double v) { return (uint8_t)(v <= 0 ? 0 : (v >= 255 ? 255 : v + 0.5)); }

// Per-pixel hash noise in [-1, 1) (independent of evaluation order).
static double hnoise(uint64_t salt, int x, int y) {
  uint64_t h = splitmix(salt ^ ((uint64_t)(uint32_t)x << 32 | (uint32_t)y));
  return (double)(h >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

// ---- shapes as signed distances (pixels; negative inside), in the object's frame ----
static double sd_box(double x, double y, double b) {
  double qx = fabs(x) - b, qy = fabs(y) - b;
  double ox = qx > 0 ? qx : 0, oy = qy > 0 ? qy : 0;
  double in = qx > qy ? qx : qy;
  return sqrt(ox * ox + oy * oy) + (in < 0 ? in : 0);
}
static double sd_triangle(double x, double y, double r) { // equilateral, half side r, y up
  const double k = sqrt(3.0);
  x = fabs(x) - r;
  y = y + r / k;
  if (x + k * y > 0) {
    double nx = (x - k * y) / 2, ny = (-k * x - y) / 2;
    x = nx, y = ny;
  }
  x -= x < -2 * r ? -2 * r : (x > 0 ? 0 : x);
  double l = sqrt(x * x + y * y);
  return y < 0 ? l : -l;
}
static double sd_star5(double x, double y, double r, double rf) { // y up
  const double k1x = 0.809016994375, k1y = -0.587785252292, k2x = -k1x, k2y = k1y;
  x = fabs(x);
  double d1 = k1x * x + k1y * y;
  if (d1 > 0) x -= 2 * d1 * k1x, y -= 2 * d1 * k1y;
  double d2 = k2x * x + k2y * y;
  if (d2 > 0) x -= 2 * d2 * k2x, y -= 2 * d2 * k2y;
  x = fabs(x);
  y -= r;
  double bax = rf * -k1y, bay = rf * k1x - 1;
  double h = (x * bax + y * bay) / (bax * bax + bay * bay);
  h = h < 0 ? 0 : (h > r ? r : h);
  double dx = x - bax * h, dy = y - bay * h;
  double l = sqrt(dx * dx + dy * dy);
  return (y * bax - x * bay) < 0 ? -l : l;
}
static double sd_shape(int shape, double x, double y, double r) {
  switch (shape) {
  case 0: return sqrt(x * x + y * y) - r;
  case 1: return sd_box(x, y, 0.8 * r);
  case 2: return sd_triangle(x, -y + 0.25 * r, 0.95 * r);
  case 3: return sd_star5(x, -y, r, 0.45);
  case 4: { // rhombus with half-diagonals a (x) and b (y)
    double a = 0.75 * r, b = r;
    return (fabs(x) * b + fabs(y) * a - a * b) / sqrt(a * a + b * b);
  }
  default: return fabs(sqrt(x * x + y * y) - 0.72 * r) - 0.28 * r;
  }
}

// ---- background -------------------------------------------------------------------------------
static void random_colour(idoc_rng *r, double c[3]) {
  for (int k = 0; k < 3; k++)
    c[k] = unif(r, 40, 215);
}

static void draw_background(uint8_t *img, int S, int kind, idoc_rng *r) {
  double c0[3], c1[3];
  random_colour(r, c0);
  random_colour(r, c1);
  double ang = unif(r, 0, M_PI), dx = cos(ang), dy = sin(ang);
  double period = unif(r, 0.06, 0.14) * S;
  double grid[9][9];
  for (int i = 0; i < 9; i++)
    for (int j = 0; j < 9; j++)
      grid[i][j] = idoc_rng_uniform(r);
  uint64_t salt = idoc_rng_u64(r);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      double t = 0, px = x + 0.5, py = y + 0.5, extra = 0;
      switch (kind) {
      case BG_PLAIN: t = 0; break;
      case BG_GRADIENT: t = clamp01(((px - S / 2.0) * dx + (py - S / 2.0) * dy) / S + 0.5); break;
      case BG_STRIPED: t = fmod(fabs(px * dx + py * dy) / period, 1.0) < 0.5; break;
      case BG_CHECKERED: t = ((int)floor(px / period) + (int)floor(py / period)) & 1; break;
      default: { // smooth value noise on an 8x8 grid plus fine grain
        double gx = px / S * 8, gy = py / S * 8;
        int ix = (int)gx, iy = (int)gy;
        double fx = gx - ix, fy = gy - iy;
        fx = fx * fx * (3 - 2 * fx), fy = fy * fy * (3 - 2 * fy);
        t = (grid[iy][ix] * (1 - fx) + grid[iy][ix + 1] * fx) * (1 - fy) +
            (grid[iy + 1][ix] * (1 - fx) + grid[iy + 1][ix + 1] * fx) * fy;
        extra = 14 * hnoise(salt, x, y);
      }
      }
      uint8_t *p = img + ((size_t)y * S + x) * 3;
      for (int k = 0; k < 3; k++)
        p[k] = to_u8(c0[k] + (c1[k] - c0[k]) * t + extra);
    }
}

static void draw_object(uint8_t *img, int S, const object *o) {
  double ca = cos(o->angle), sa = sin(o->angle);
  int x0 = (int)floor(o->cx - o->r - 2), x1 = (int)ceil(o->cx + o->r + 2);
  int y0 = (int)floor(o->cy - o->r - 2), y1 = (int)ceil(o->cy + o->r + 2);
  const uint8_t *c = colours[o->draw_colour].rgb;
  for (int y = y0 < 0 ? 0 : y0; y < S && y <= y1; y++)
    for (int x = x0 < 0 ? 0 : x0; x < S && x <= x1; x++) {
      double px = x + 0.5 - o->cx, py = y + 0.5 - o->cy;
      double lx = ca * px + sa * py, ly = -sa * px + ca * py;
      double a = clamp01(0.5 - sd_shape(o->draw_shape, lx, ly, o->r));
      if (a <= 0) continue;
      uint8_t *p = img + ((size_t)y * S + x) * 3;
      for (int k = 0; k < 3; k++)
        p[k] = to_u8(p[k] + (c[k] - p[k]) * a);
    }
}

// A soft bump (1 - (d/R)^2)^2 scaled by q, accumulated into the map with max().
static void stamp(uint8_t *map, int S, double cx, double cy, double R, double q) {
  for (int y = (int)fmax(0, floor(cy - R)); y < S && y <= cy + R; y++)
    for (int x = (int)fmax(0, floor(cx - R)); x < S && x <= cx + R; x++) {
      double dx = x + 0.5 - cx, dy = y + 0.5 - cy, u = (dx * dx + dy * dy) / (R * R);
      if (u >= 1) continue;
      uint8_t v = to_u8(255 * q * (1 - u) * (1 - u));
      if (v > map[(size_t)y * S + x]) map[(size_t)y * S + x] = v;
    }
}

static void sample_bilinear(const uint8_t *src, int S, double x, double y, double out[3]) {
  x -= 0.5, y -= 0.5;
  x = x < 0 ? 0 : (x > S - 1 ? S - 1 : x);
  y = y < 0 ? 0 : (y > S - 1 ? S - 1 : y);
  int ix = (int)x, iy = (int)y;
  int jx = ix + 1 < S ? ix + 1 : ix, jy = iy + 1 < S ? iy + 1 : iy;
  double fx = x - ix, fy = y - iy;
  for (int k = 0; k < 3; k++) {
    double a = src[((size_t)iy * S + ix) * 3 + k], b = src[((size_t)iy * S + jx) * 3 + k];
    double c = src[((size_t)jy * S + ix) * 3 + k], d = src[((size_t)jy * S + jx) * 3 + k];
    out[k] = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy;
  }
}

// Applies one artifact, blending the distorted pixel by w = min(1, 1.5 * bump).
static void apply_artifact(uint8_t *img, uint8_t *src, int S, const artifact *a, uint64_t salt) {
  memcpy(src, img, (size_t)S * S * 3);
  int k = (int)fmax(1, round(0.012 * S));
  double len = 0.05 * S, ux = cos(a->angle), uy = sin(a->angle);
  for (int y = (int)fmax(0, floor(a->cy - a->r)); y < S && y <= a->cy + a->r; y++)
    for (int x = (int)fmax(0, floor(a->cx - a->r)); x < S && x <= a->cx + a->r; x++) {
      double dx = x + 0.5 - a->cx, dy = y + 0.5 - a->cy, u = (dx * dx + dy * dy) / (a->r * a->r);
      if (u >= 1) continue;
      double w = fmin(1, 1.5 * a->q * (1 - u) * (1 - u)), v[3] = {0, 0, 0};
      uint8_t *p = img + ((size_t)y * S + x) * 3;
      switch (a->type) {
      case ART_BLUR: {
        int cnt = 0;
        for (int yy = y - k; yy <= y + k; yy++)
          for (int xx = x - k; xx <= x + k; xx++) {
            if (xx < 0 || yy < 0 || xx >= S || yy >= S) continue;
            for (int c = 0; c < 3; c++)
              v[c] += src[((size_t)yy * S + xx) * 3 + c];
            cnt++;
          }
        for (int c = 0; c < 3; c++)
          v[c] /= cnt;
        break;
      }
      case ART_NOISE:
        for (int c = 0; c < 3; c++)
          v[c] = p[c] + 70 * hnoise(salt + (uint64_t)c, x, y);
        break;
      case ART_WARP: {
        double th = 2.5 * w, ct = cos(th), st = sin(th);
        sample_bilinear(src, S, a->cx + ct * dx - st * dy, a->cy + st * dx + ct * dy, v);
        break;
      }
      default: { // smear: average of 9 taps along a direction
        for (int t = 0; t < 9; t++) {
          double o = (t - 4) / 4.0 * len, s[3];
          sample_bilinear(src, S, x + 0.5 + ux * o, y + 0.5 + uy * o, s);
          for (int c = 0; c < 3; c++)
            v[c] += s[c] / 9;
        }
      }
      }
      for (int c = 0; c < 3; c++)
        p[c] = to_u8(p[c] + (v[c] - p[c]) * w);
    }
}

static double lum(const double c[3]) { return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255; }

// ---- text -------------------------------------------------------------------------------------
typedef struct {
  char *s;
  size_t n, cap;
} sbuf;
static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->n + (size_t)m + 1 > b->cap) {
    b->cap = 2 * (b->n + (size_t)m + 1);
    b->s = idoc_xrealloc(b->s, b->cap);
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)m + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)m;
}

// "large red circle" (no article); uses the named attributes.
static void phrase(sbuf *b, int size, int colour, int shape) {
  if (size != 1) sb_add(b, "%s ", size_words[size]);
  sb_add(b, "%s %s", colours[colour].name, shape_names[shape]);
}
static const char *article(int size, int colour) {
  const char *w = size != 1 ? size_words[size] : colours[colour].name;
  return strchr("aeiou", w[0]) ? "an" : "a";
}

static double round2(double x) { return round(x * 100) / 100; }

int idoc_synth_sample(const idoc_synth_opts *opts, uint64_t seed, int split, uint64_t index,
                      idoc_sample *out, idoc_synth_truth *truth) {
  idoc_synth_opts o = opts ? *opts : idoc_synth_opts_default();
  if (o.size < 16 || o.size > 4096 || !(o.misalign_prob >= 0 && o.misalign_prob <= 1) ||
      !(o.artifact_prob >= 0 && o.artifact_prob <= 1) || !(o.label_noise >= 0))
    return idoc_set_error("synth: bad options (size %d must be 16..4096, probabilities in [0, 1])",
                          o.size);
  const int S = o.size;
  idoc_rng rng;
  idoc_rng_seed(&rng, idoc_synth_sample_seed(seed, split, index));
  memset(out, 0, sizeof *out);
  idoc_synth_truth tr = {.mis_object = -1};

  // Scene layout.
  int bg = pick(&rng, N_BG);
  double u = idoc_rng_uniform(&rng);
  int n = u < 0.3 ? 1 : (u < 0.7 ? 2 : 3);
  object ob[MAX_OBJ];
  for (int i = 0; i < n; i++) {
    object *b = &ob[i];
    b->shape = pick(&rng, N_SHAPES);
    b->colour = pick(&rng, N_COLOURS);
    b->size = pick(&rng, 3);
    static const double rmin[3] = {0.07, 0.11, 0.16}, rmax[3] = {0.10, 0.15, 0.21};
    b->r = unif(&rng, rmin[b->size], rmax[b->size]) * S;
    b->angle = b->shape == 0 ? 0 : unif(&rng, -0.3, 0.3);
    b->draw_shape = b->shape, b->draw_colour = b->colour, b->drawn = 1;
    for (int tries = 0;; tries++) { // keep objects apart; shrink after many misses
      double m = b->r + 0.02 * S;
      b->cx = unif(&rng, m, S - m), b->cy = unif(&rng, m, S - m);
      int ok = 1;
      for (int j = 0; j < i && ok; j++)
        ok = hypot(b->cx - ob[j].cx, b->cy - ob[j].cy) >= 1.05 * (b->r + ob[j].r);
      if (ok || tries >= 60) break;
      if (tries % 20 == 19) b->r *= 0.85;
    }
  }
  // Misalignment: one named object is missing or drawn wrong.
  if (idoc_rng_uniform(&rng) < o.misalign_prob) {
    int j = pick(&rng, n);
    double v = idoc_rng_uniform(&rng);
    tr.mis_object = j;
    if (v < 0.4) {
      tr.mis_kind = IDOC_MIS_MISSING;
      ob[j].drawn = 0;
    } else if (v < 0.7) {
      tr.mis_kind = IDOC_MIS_COLOUR;
      ob[j].draw_colour = (ob[j].colour + 1 + pick(&rng, N_COLOURS - 1)) % N_COLOURS;
    } else {
      tr.mis_kind = IDOC_MIS_SHAPE;
      ob[j].draw_shape = (ob[j].shape + 1 + pick(&rng, N_SHAPES - 1)) % N_SHAPES;
    }
  }
  int n_art = 0;
  artifact ar[MAX_ART];
  if (idoc_rng_uniform(&rng) < o.artifact_prob) {
    double v = idoc_rng_uniform(&rng);
    n_art = v < 0.5 ? 1 : (v < 0.85 ? 2 : 3);
    for (int i = 0; i < n_art; i++) {
      artifact *a = &ar[i];
      a->type = pick(&rng, N_ART);
      a->r = unif(&rng, 0.04, 0.09) * S;
      a->q = unif(&rng, 0.6, 1.0);
      a->angle = unif(&rng, 0, M_PI);
      int on = idoc_rng_uniform(&rng) < 0.6 ? pick(&rng, n) : -1;
      if (on >= 0 && ob[on].drawn) {
        a->cx = ob[on].cx + unif(&rng, -0.6, 0.6) * ob[on].r;
        a->cy = ob[on].cy + unif(&rng, -0.6, 0.6) * ob[on].r;
      } else {
        a->cx = unif(&rng, a->r, S - a->r), a->cy = unif(&rng, a->r, S - a->r);
      }
    }
  }
  uint64_t salt = idoc_rng_u64(&rng);

  // Pixels.
  size_t np = (size_t)S * S;
  uint8_t *img = idoc_xmalloc(np * 3), *amap = idoc_xcalloc(np, 1), *mmap = idoc_xcalloc(np, 1);
  draw_background(img, S, bg, &rng);
  double bgsum[3] = {0, 0, 0};
  for (size_t i = 0; i < np; i++)
    for (int k = 0; k < 3; k++)
      bgsum[k] += img[3 * i + k];
  for (int k = 0; k < 3; k++)
    bgsum[k] /= (double)np;
  for (int i = 0; i < n; i++)
    if (ob[i].drawn) draw_object(img, S, &ob[i]);
  if (tr.mis_object >= 0) {
    const object *b = &ob[tr.mis_object];
    stamp(mmap, S, b->cx, b->cy, 1.15 * b->r, unif(&rng, 0.7, 1.0));
  }
  uint8_t *scratch = n_art ? idoc_xmalloc(np * 3) : NULL;
  for (int i = 0; i < n_art; i++) {
    apply_artifact(img, scratch, S, &ar[i], salt + 16 * (uint64_t)i);
    stamp(amap, S, ar[i].cx, ar[i].cy, ar[i].r, ar[i].q);
  }
  free(scratch);

  // Scores by the fixed rules.
  double mass = 0;
  for (size_t i = 0; i < np; i++)
    mass += amap[i];
  mass /= 255.0 * (double)np;
  double plaus = exp(-100 * mass);
  static const double penalty[4] = {0, 1.0, 0.6, 0.7};
  double align = 1 - penalty[tr.mis_kind] / n;
  double contrast = 0, wsum = 0, mx = 0, my = 0;
  int n_drawn = 0;
  for (int i = 0; i < n; i++) {
    if (!ob[i].drawn) continue;
    double c[3];
    for (int k = 0; k < 3; k++)
      c[k] = colours[ob[i].draw_colour].rgb[k];
    contrast += fmin(1, fabs(lum(c) - lum(bgsum)) / 0.6);
    double w = ob[i].r * ob[i].r;
    mx += w * ob[i].cx, my += w * ob[i].cy, wsum += w;
    n_drawn++;
  }
  contrast = n_drawn ? contrast / n_drawn : 0.3;
  double balance =
      n_drawn ? 1 - fmin(1, hypot(mx / wsum - S / 2.0, my / wsum - S / 2.0) / (0.5 * S)) : 0.5;
  double aest = clamp01(0.15 + 0.35 * contrast + 0.25 * balance + 0.25 * (1 - bg_clutter[bg]));
  double overall = 0.4 * plaus + 0.35 * align + 0.25 * aest;
  double clean[4] = {align, aest, plaus, overall}, sc[4];
  for (int k = 0; k < 4; k++) {
    tr.clean_scores[k] = clean[k];
    out->rule_scores[k] = (float)clean[k];
    out->has_rule_scores = 1;
    sc[k] = round2(clamp01(clean[k] + o.label_noise * idoc_rng_normal(&rng)));
    out->scores[k] = (float)sc[k];
  }

  // Boxes: misalignment regions first, then artifacts, in the 512 frame.
  idoc_box_opts bo = idoc_box_opts_default();
  idoc_flaw_box fb[IDOC_DS_MAX_BOXES];
  int nm = idoc_boxes_from_map(mmap, S, S, &bo, fb, IDOC_DS_MAX_BOXES / 2);
  int na = idoc_boxes_from_map(amap, S, S, &bo, fb + nm, IDOC_DS_MAX_BOXES - nm);
  double bx[IDOC_DS_MAX_BOXES][4];
  for (int i = 0; i < nm + na; i++) {
    out->boxes[i][0] = fb[i].x1, out->boxes[i][1] = fb[i].y1;
    out->boxes[i][2] = fb[i].x2, out->boxes[i][3] = fb[i].y2;
    out->box_kind[i] = i < nm ? IDOC_BOX_MISALIGNMENT : IDOC_BOX_ARTIFACT;
    for (int k = 0; k < 4; k++)
      bx[i][k] = out->boxes[i][k];
  }
  out->n_boxes = nm + na;

  // Prompt and per-word labels.
  sbuf p = {0}, lab = {0}, why = {0};
  for (int i = 0; i < n; i++) {
    if (i) sb_add(&p, i == n - 1 ? " and " : ", ");
    sb_add(&p, "%s ", article(ob[i].size, ob[i].colour));
    phrase(&p, ob[i].size, ob[i].colour, ob[i].shape);
    int wrong[3] = {0, 0, 0}; // size, colour, shape word misaligned
    if (i == tr.mis_object) {
      wrong[0] = tr.mis_kind == IDOC_MIS_MISSING;
      wrong[1] = tr.mis_kind == IDOC_MIS_MISSING || tr.mis_kind == IDOC_MIS_COLOUR;
      wrong[2] = tr.mis_kind == IDOC_MIS_MISSING || tr.mis_kind == IDOC_MIS_SHAPE;
    }
    if (i && i == n - 1) sb_add(&lab, "1 "); // "and" (commas are not words)
    sb_add(&lab, "1");                       // article
    if (ob[i].size != 1) sb_add(&lab, " %d", !wrong[0]);
    sb_add(&lab, " %d %d ", !wrong[1], !wrong[2]);
  }
  sb_add(&p, " on a %s background", bg_names[bg]);
  sb_add(&lab, "1 1 1 1");

  // Reasoning, referring to the numbered regions.
  sb_add(&why, "The caption asks for ");
  for (int i = 0; i < n; i++) {
    if (i) sb_add(&why, i == n - 1 ? " and " : ", ");
    sb_add(&why, "%s ", article(ob[i].size, ob[i].colour));
    phrase(&why, ob[i].size, ob[i].colour, ob[i].shape);
  }
  sb_add(&why, " on a %s background. ", bg_names[bg]);
  for (int i = 0; i < n; i++) {
    const object *b = &ob[i];
    if (i != tr.mis_object) {
      sb_add(&why, "The %s %s is present and matches the caption. ", colours[b->colour].name,
             shape_names[b->shape]);
    } else if (tr.mis_kind == IDOC_MIS_MISSING) {
      sb_add(&why, "The %s %s is missing%s. ", colours[b->colour].name, shape_names[b->shape],
             nm ? "; it would belong in region 1" : "");
    } else if (tr.mis_kind == IDOC_MIS_COLOUR) {
      sb_add(&why, "The %s%s is %s instead of %s. ", shape_names[b->shape],
             nm ? " in region 1" : "", colours[b->draw_colour].name, colours[b->colour].name);
    } else {
      sb_add(&why, "%s a %s %s where the caption asks for a %s. ",
             nm ? "Region 1 shows" : "The image shows", colours[b->colour].name,
             shape_names[b->draw_shape], shape_names[b->shape]);
    }
  }
  for (int i = 0; i < na; i++) { // describe each artifact box by the blob at its centre
    const idoc_flaw_box *f = &fb[nm + i];
    int t = ar[0].type;
    double best = 1e300;
    for (int j = 0; j < n_art; j++) {
      double cx = ar[j].cx * 512.0 / S, cy = ar[j].cy * 512.0 / S;
      double d = hypot(cx - (f->x1 + f->x2) / 2, cy - (f->y1 + f->y2) / 2);
      if (d < best) best = d, t = ar[j].type;
    }
    sb_add(&why, "Region %d shows %s. ", nm + i + 1, art_text[t]);
  }
  if (!na) sb_add(&why, "There are no visible artifacts. ");
  sb_add(&why, "The %s background %s, and the composition is %s.", bg_names[bg],
         bg_clutter[bg] > 0.3 ? "is busy" : "is calm",
         sc[1] >= 0.7 ? "pleasing" : (sc[1] >= 0.5 ? "acceptable" : "weak"));

  idoc_response rs = {.n_boxes = (size_t)out->n_boxes, .reasoning = why.s};
  for (int k = 0; k < 4; k++)
    rs.scores[k] = sc[k];
  rs.boxes = (const double(*)[4])bx;
  idoc_response_opts ro = idoc_response_opts_default(2);
  out->response = idoc_build_response(&rs, &ro, NULL);
  free(why.s);
  out->response_kind = IDOC_RESPONSE_TEMPLATE;
  out->prompt = p.s;
  out->word_labels = lab.s;
  char id[64];
  static const char *const split_names[3] = {"train", "val", "test"};
  snprintf(id, sizeof id, "synth/%s/%llu", split >= 0 && split < 3 ? split_names[split] : "other",
           (unsigned long long)index);
  out->source_id = idoc_xstrdup(id);
  out->img_h = out->img_w = out->map_h = out->map_w = S;
  out->orig_h = out->orig_w = S;
  out->image = img, out->artifact_map = amap, out->misalignment_map = mmap;
  tr.n_objects = n, tr.n_drawn = n_drawn, tr.n_artifacts = n_art, tr.artifact_mass = mass;
  if (truth) *truth = tr;
  return IDOC_OK;
}
