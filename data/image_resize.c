// Resampling: PIL's ImagingResample re-implemented for bit-exact 8-bit output, and OpenCV's
// INTER_LINEAR for float maps. The PIL arithmetic (double filter weights normalised per output
// pixel, then rounded to 22-bit fixed point; integer accumulation starting at 0.5; a horizontal
// pass over only the needed source rows, then a vertical pass) must not be "simplified": any
// change in evaluation order can move a pixel by one level.
#include "data/image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

#define PIL_PRECISION_BITS (32 - 8 - 2)

static double filter_bilinear(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

static double filter_bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static double sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * 3.14159265358979323846; // M_PI (not in strict C11)
  return sin(x) / x;
}

static double filter_lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
  return 0.0;
}

typedef struct {
  double (*fn)(double);
  double support;
} filter_def;

static int filter_lookup(idoc_resample f, filter_def *out) {
  switch (f) {
  case IDOC_RESAMPLE_BILINEAR: *out = (filter_def){filter_bilinear, 1.0}; return IDOC_OK;
  case IDOC_RESAMPLE_BICUBIC: *out = (filter_def){filter_bicubic, 2.0}; return IDOC_OK;
  case IDOC_RESAMPLE_LANCZOS: *out = (filter_def){filter_lanczos, 3.0}; return IDOC_OK;
  }
  return idoc_set_error("resize: unknown filter %d", (int)f);
}

// Per output index: first source index, tap count, and ksize fixed-point weights.
typedef struct {
  int ksize;
  int *bounds; // [out][2] = {min, count}
  int32_t *k;  // [out][ksize]
} coeffs;

static void coeffs_free(coeffs *c) {
  free(c->bounds);
  free(c->k);
}

// PIL precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size).
static void precompute(int in_size, int out_size, const filter_def *f, coeffs *c) {
  float in0 = 0.0f, in1 = (float)in_size;
  double scale = (double)(in1 - in0) / out_size, filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  double support = f->support * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  c->ksize = ksize;
  c->bounds = idoc_xmalloc(sizeof(int) * 2 * (size_t)out_size);
  c->k = idoc_xcalloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
  double *w = idoc_xmalloc(sizeof(double) * (size_t)ksize);
  for (int xx = 0; xx < out_size; xx++) {
    double center = in0 + (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      double v = f->fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    int32_t *k = c->k + (size_t)xx * ksize;
    for (int x = 0; x < xmax; x++) {
      double v = ww != 0.0 ? w[x] / ww : w[x];
      k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PRECISION_BITS))
                   : (int32_t)(0.5 + v * (1 << PIL_PRECISION_BITS));
    }
    c->bounds[2 * xx] = xmin;
    c->bounds[2 * xx + 1] = xmax;
  }
  free(w);
}

static inline uint8_t clip8(int32_t acc) {
  int32_t v = acc >> PIL_PRECISION_BITS; // arithmetic shift, as PIL
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over source rows [y0, y0 + rows): dst is rows x out_w x ch.
static void pass_horizontal(const uint8_t *src, int w, int ch, int y0, int rows, uint8_t *dst,
                            int out_w, const coeffs *c) {
#pragma omp parallel for schedule(static) if ((int64_t)rows * out_w > 65536)
  for (int yy = 0; yy < rows; yy++) {
    const uint8_t *row = src + ((size_t)(y0 + yy) * w) * ch;
    uint8_t *o = dst + (size_t)yy * out_w * ch;
    for (int xx = 0; xx < out_w; xx++) {
      int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
      const int32_t *k = c->k + (size_t)xx * c->ksize;
      int32_t ss[4] = {1 << (PIL_PRECISION_BITS - 1), 1 << (PIL_PRECISION_BITS - 1),
                       1 << (PIL_PRECISION_BITS - 1), 1 << (PIL_PRECISION_BITS - 1)};
      for (int x = 0; x < xmax; x++) {
        const uint8_t *p = row + (size_t)(x + xmin) * ch;
        for (int b = 0; b < ch; b++)
          ss[b] += p[b] * k[x];
      }
      for (int b = 0; b < ch; b++)
        o[(size_t)xx * ch + b] = clip8(ss[b]);
    }
  }
}

// Vertical pass: src is w x ch wide; bounds are relative to src's first row.
static void pass_vertical(const uint8_t *src, int w, int ch, uint8_t *dst, int out_h,
                          const coeffs *c) {
  size_t stride = (size_t)w * ch;
#pragma omp parallel for schedule(static) if ((int64_t)out_h * w > 65536)
  for (int yy = 0; yy < out_h; yy++) {
    int ymin = c->bounds[2 * yy], ymax = c->bounds[2 * yy + 1];
    const int32_t *k = c->k + (size_t)yy * c->ksize;
    uint8_t *o = dst + (size_t)yy * stride;
    for (size_t i = 0; i < stride; i++) {
      int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
      for (int y = 0; y < ymax; y++)
        ss += src[(size_t)(y + ymin) * stride + i] * k[y];
      o[i] = clip8(ss);
    }
  }
}

int idoc_resample_u8_order(const uint8_t *src, int h, int w, int channels, uint8_t *dst, int dst_h,
                           int dst_w, idoc_resample filter, idoc_pass_order order) {
  filter_def f;
  if (filter_lookup(filter, &f)) return IDOC_ERR;
  if (h < 1 || w < 1 || dst_h < 1 || dst_w < 1 || channels < 1 || channels > 4)
    return idoc_set_error("resize: bad size %dx%dx%d -> %dx%d", h, w, channels, dst_h, dst_w);
  // PIL refuses sizes whose coefficient table would overflow an int; so do we.
  int64_t khx = ((int64_t)ceil(f.support * (w > dst_w ? (double)w / dst_w : 1.0)) * 2 + 1);
  int64_t khy = ((int64_t)ceil(f.support * (h > dst_h ? (double)h / dst_h : 1.0)) * 2 + 1);
  if ((int64_t)dst_w * khx > INT_MAX / 8 || (int64_t)dst_h * khy > INT_MAX / 8)
    return idoc_set_error("resize: %dx%d -> %dx%d is too large", h, w, dst_h, dst_w);
  int need_h = dst_w != w, need_v = dst_h != h;
  if (!need_h && !need_v) {
    memcpy(dst, src, (size_t)h * w * channels);
    return IDOC_OK;
  }
  if (!need_h || !need_v) { // one pass straight into dst
    coeffs c = {0};
    if (need_h) {
      precompute(w, dst_w, &f, &c);
      pass_horizontal(src, w, channels, 0, h, dst, dst_w, &c);
    } else {
      precompute(h, dst_h, &f, &c);
      pass_vertical(src, w, channels, dst, dst_h, &c);
    }
    coeffs_free(&c);
    return IDOC_OK;
  }
  // Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as
  // many pixels as the width; earlier versions always go horizontal first.
  int v_first = order == IDOC_PASS_ORDER_PIL13 && h - dst_h > 0 && h - dst_h > (w - dst_w) * 2;
  coeffs cv = {0}, ch = {0};
  precompute(h, dst_h, &f, &cv);
  precompute(w, dst_w, &f, &ch);
  uint8_t *tmp;
  if (v_first) {
    tmp = idoc_xmalloc((size_t)dst_h * w * channels);
    pass_vertical(src, w, channels, tmp, dst_h, &cv);
    pass_horizontal(tmp, w, channels, 0, dst_h, dst, dst_w, &ch);
  } else {
    // Only source rows that some output row reads go through the horizontal pass.
    int y_first = cv.bounds[0];
    int y_last = cv.bounds[2 * dst_h - 2] + cv.bounds[2 * dst_h - 1];
    for (int i = 0; i < dst_h; i++)
      cv.bounds[2 * i] -= y_first;
    tmp = idoc_xmalloc((size_t)(y_last - y_first) * dst_w * channels);
    pass_horizontal(src, w, channels, y_first, y_last - y_first, tmp, dst_w, &ch);
    pass_vertical(tmp, dst_w, channels, dst, dst_h, &cv);
  }
  free(tmp);
  coeffs_free(&cv);
  coeffs_free(&ch);
  return IDOC_OK;
}

int idoc_resample_u8(const uint8_t *src, int h, int w, int channels, uint8_t *dst, int dst_h,
                     int dst_w, idoc_resample filter) {
  return idoc_resample_u8_order(src, h, w, channels, dst, dst_h, dst_w, filter,
                                IDOC_PASS_ORDER_PIL13);
}

int idoc_image_resize_order(const idoc_image *src, int dst_h, int dst_w, idoc_resample filter,
                            idoc_pass_order order, idoc_image *out) {
  if (dst_h < 1 || dst_w < 1) return idoc_set_error("resize: bad target size %dx%d", dst_h, dst_w);
  uint8_t *buf = idoc_xmalloc((size_t)dst_h * dst_w * 3);
  if (idoc_resample_u8_order(src->rgb, src->h, src->w, 3, buf, dst_h, dst_w, filter, order)) {
    free(buf);
    return IDOC_ERR;
  }
  out->h = dst_h;
  out->w = dst_w;
  out->rgb = buf;
  return IDOC_OK;
}

int idoc_image_resize(const idoc_image *src, int dst_h, int dst_w, idoc_resample filter,
                      idoc_image *out) {
  return idoc_image_resize_order(src, dst_h, dst_w, filter, IDOC_PASS_ORDER_PIL13, out);
}

void idoc_image_area_size(int h, int w, int area, int *out_h, int *out_w) {
  double r = sqrt((double)area * area / ((double)w * h)); // Python: (512*512 / (w*h)) ** 0.5
  *out_w = (int)(w * r);
  *out_h = (int)(h * r);
}

// ---- OpenCV INTER_LINEAR, float32, one channel ----

// OpenCV's per-axis table: source index and the two float weights. Positions at or past the last
// pixel clamp to it with weights (1, 0); negative positions clamp to 0 with weights (1, 0).
// OpenCV's own code rounds the source position to float before taking its fraction; the IPP
// kernel that opencv-python uses by default on x86 takes the fraction in double, then rounds.
static void linear_table(int in_size, int out_size, int ipp, int *ofs, float *alpha) {
  double inv_scale = (double)out_size / in_size, scale = 1.0 / inv_scale;
  for (int dx = 0; dx < out_size; dx++) {
    double pos = (dx + 0.5) * scale - 0.5;
    int sx;
    float fx;
    if (ipp) {
      sx = (int)floor(pos);
      fx = (float)(pos - sx);
    } else {
      fx = (float)pos;
      sx = (int)floorf(fx);
      fx -= (float)sx;
    }
    if (sx < 0) fx = 0, sx = 0;
    if (sx >= in_size - 1) fx = 0, sx = in_size - 1;
    ofs[dx] = sx;
    alpha[2 * dx] = 1.f - fx;
    alpha[2 * dx + 1] = fx;
  }
}

int idoc_resize_linear_f32(const float *src, int h, int w, float *dst, int dst_h, int dst_w) {
  return idoc_resize_linear_f32_mode(src, h, w, dst, dst_h, dst_w, IDOC_CV_LINEAR_IPP);
}

int idoc_resize_linear_f32_mode(const float *src, int h, int w, float *dst, int dst_h, int dst_w,
                                idoc_cv_linear_mode mode) {
  if (h < 1 || w < 1 || dst_h < 1 || dst_w < 1)
    return idoc_set_error("resize_linear: bad size %dx%d -> %dx%d", h, w, dst_h, dst_w);
  if (h == dst_h && w == dst_w) {
    memcpy(dst, src, sizeof(float) * (size_t)h * w);
    return IDOC_OK;
  }
  int *xo = idoc_xmalloc(sizeof(int) * (size_t)dst_w), *yo = idoc_xmalloc(sizeof(int) * dst_h);
  float *xa = idoc_xmalloc(sizeof(float) * 2 * (size_t)dst_w);
  float *ya = idoc_xmalloc(sizeof(float) * 2 * (size_t)dst_h);
  linear_table(w, dst_w, mode == IDOC_CV_LINEAR_IPP, xo, xa);
  linear_table(h, dst_h, mode == IDOC_CV_LINEAR_IPP, yo, ya);
  // Horizontal pass for every source row, then the vertical blend of two of them, as OpenCV.
  float *tmp = idoc_xmalloc(sizeof(float) * (size_t)h * dst_w);
#pragma omp parallel for schedule(static) if ((int64_t)h * dst_w > 65536)
  for (int y = 0; y < h; y++) {
    const float *s = src + (size_t)y * w;
    float *t = tmp + (size_t)y * dst_w;
    for (int dx = 0; dx < dst_w; dx++) {
      int sx = xo[dx];
      float v = s[sx] * xa[2 * dx];
      if (sx + 1 < w) v += s[sx + 1] * xa[2 * dx + 1];
      t[dx] = v;
    }
  }
#pragma omp parallel for schedule(static) if ((int64_t)dst_h * dst_w > 65536)
  for (int dy = 0; dy < dst_h; dy++) {
    int sy = yo[dy], sy1 = sy + 1 < h ? sy + 1 : sy;
    const float *r0 = tmp + (size_t)sy * dst_w, *r1 = tmp + (size_t)sy1 * dst_w;
    float b0 = ya[2 * dy], b1 = ya[2 * dy + 1];
    float *d = dst + (size_t)dy * dst_w;
    for (int dx = 0; dx < dst_w; dx++)
      d[dx] = r0[dx] * b0 + r1[dx] * b1;
  }
  free(tmp);
  free(xo);
  free(yo);
  free(xa);
  free(ya);
  return IDOC_OK;
}
