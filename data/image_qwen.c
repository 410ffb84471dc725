// The Qwen2-VL image processor: smart_resize, normalisation and merge-grouped patch flattening,
// computed with the same float steps as transformers so pixel_values match bit for bit.
#include <fenv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "nn/util.h"

// OpenAI CLIP statistics, as the checkpoint's preprocessor_config.json lists them.
static const double clip_mean[3] = {0.48145466, 0.4578275, 0.40821073};
static const double clip_std[3] = {0.26862954, 0.26130258, 0.27577711};

// Python's round(): half to even. nearbyint honours the current rounding mode, which is
// round-to-nearest-even unless someone changed it; say so loudly rather than round wrongly.
static double py_round(double x) {
  IDOC_CHECK(fegetround() == FE_TONEAREST, "smart_resize needs FE_TONEAREST rounding");
  return nearbyint(x);
}

int idoc_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                      int *out_w) {
  if (h <= 0 || w <= 0) return idoc_set_error("smart_resize: image size %dx%d is empty", h, w);
  if (factor <= 0 || min_pixels < 0 || max_pixels <= 0 || min_pixels > max_pixels)
    return idoc_set_error("smart_resize: bad factor %d or pixel range [%lld, %lld]", factor,
                          (long long)min_pixels, (long long)max_pixels);
  int lo = h < w ? h : w, hi = h < w ? w : h;
  double ratio = (double)hi / (double)lo;
  if (ratio > IDOC_QWEN_MAX_RATIO)
    return idoc_set_error("smart_resize: image %dx%d: absolute aspect ratio must be smaller than "
                          "%d, got %g",
                          h, w, IDOC_QWEN_MAX_RATIO, ratio);
  if (h < factor || w < factor)
    return idoc_set_error("smart_resize: image %dx%d: height and width must be at least %d", h, w,
                          factor);
  double hb = py_round((double)h / factor) * factor, wb = py_round((double)w / factor) * factor;
  double area = (double)h * (double)w;
  if (hb * wb > (double)max_pixels) {
    double beta = sqrt(area / (double)max_pixels);
    hb = floor((double)h / beta / factor) * factor;
    wb = floor((double)w / beta / factor) * factor;
    if (hb < factor) hb = factor;
    if (wb < factor) wb = factor;
  } else if (hb * wb < (double)min_pixels) {
    double beta = sqrt((double)min_pixels / area);
    hb = ceil((double)h * beta / factor) * factor;
    wb = ceil((double)w * beta / factor) * factor;
  }
  if (hb > 1 << 30 || wb > 1 << 30)
    return idoc_set_error("smart_resize: image %dx%d: target %gx%g is too large", h, w, hb, wb);
  *out_h = (int)hb;
  *out_w = (int)wb;
  return IDOC_OK;
}

void idoc_qwen_image_opts_default(idoc_qwen_image_opts *o) {
  o->min_pixels = IDOC_QWEN_MIN_PIXELS;
  o->max_pixels = IDOC_QWEN_MAX_PIXELS;
  o->filter = IDOC_RESAMPLE_BICUBIC;
  o->order = IDOC_PASS_ORDER_PIL13;
}

// transformers: rescale = (v.astype(float64) * (1/255)).astype(float32); normalize casts mean and
// std to the image dtype (float32) and computes (x - mean) / std in float32.
float idoc_qwen_normalize(uint8_t v, int c) {
  float x = (float)((double)v * (1.0 / 255.0));
  float m = (float)clip_mean[c], s = (float)clip_std[c];
  return (x - m) / s;
}

void idoc_qwen_patchify(const idoc_image *im, float *out) {
  enum { P = IDOC_QWEN_PATCH, M = IDOC_QWEN_MERGE, T = IDOC_QWEN_TEMPORAL };
  IDOC_CHECK(im->h % (P * M) == 0 && im->w % (P * M) == 0, "patchify: %dx%d not a multiple of 28",
             im->h, im->w);
  float lut[3][256];
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++)
      lut[c][v] = idoc_qwen_normalize((uint8_t)v, c);
  int gh = im->h / P, gw = im->w / P, hb_n = gh / M, wb_n = gw / M;
  // Row (hb, wb, dy, dx); column (c, t, py, px) -> pixel[c][y = (M*hb+dy)*P+py][x =
  // (M*wb+dx)*P+px].
#pragma omp parallel for schedule(static) if ((int64_t)gh * gw > 256)
  for (int hb = 0; hb < hb_n; hb++) {
    for (int wb = 0; wb < wb_n; wb++) {
      for (int dy = 0; dy < M; dy++) {
        for (int dx = 0; dx < M; dx++) {
          size_t row = (((size_t)hb * wb_n + wb) * M + dy) * M + dx;
          float *o = out + row * IDOC_QWEN_PATCH_DIM;
          int y0 = (M * hb + dy) * P, x0 = (M * wb + dx) * P;
          for (int c = 0; c < 3; c++) {
            float *oc = o + (size_t)c * T * P * P;
            for (int py = 0; py < P; py++) {
              const uint8_t *src = im->rgb + ((size_t)(y0 + py) * im->w + x0) * 3 + c;
              for (int px = 0; px < P; px++)
                oc[py * P + px] = lut[c][src[3 * px]];
            }
            for (int t = 1; t < T; t++)
              memcpy(oc + t * P * P, oc, sizeof(float) * P * P);
          }
        }
      }
    }
  }
}

int idoc_qwen_preprocess(const idoc_image *im, const idoc_qwen_image_opts *opts, const char *name,
                         float **pixel_values, int64_t *n_patches, int64_t grid_thw[3]) {
  idoc_qwen_image_opts def;
  if (!opts) {
    idoc_qwen_image_opts_default(&def);
    opts = &def;
  }
  int th = 0, tw = 0;
  if (idoc_smart_resize(im->h, im->w, IDOC_QWEN_FACTOR, opts->min_pixels, opts->max_pixels, &th,
                        &tw))
    return name ? idoc_wrap_error("%s", name) : IDOC_ERR;
  idoc_image rs = {0};
  const idoc_image *src = im;
  if (th != im->h || tw != im->w) {
    if (idoc_image_resize_order(im, th, tw, opts->filter, opts->order, &rs))
      return name ? idoc_wrap_error("%s", name) : IDOC_ERR;
    src = &rs;
  }
  int64_t gh = th / IDOC_QWEN_PATCH, gw = tw / IDOC_QWEN_PATCH, np = gh * gw;
  float *pv = malloc(sizeof(float) * (size_t)np * IDOC_QWEN_PATCH_DIM);
  if (!pv) {
    idoc_image_free(&rs);
    return idoc_set_error("%s: %lld patches do not fit in memory", name ? name : "image",
                          (long long)np);
  }
  idoc_qwen_patchify(src, pv);
  idoc_image_free(&rs);
  *pixel_values = pv;
  *n_patches = np;
  grid_thw[0] = 1;
  grid_thw[1] = gh;
  grid_thw[2] = gw;
  return IDOC_OK;
}
