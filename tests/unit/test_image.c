// Image pipeline without codecs: smart_resize (spec examples + a table from transformers), PIL
// resize bit-exactness, cv2 INTER_LINEAR float resize, alpha-over-white arithmetic, and the whole
// Qwen2-VL processor against transformers' pixel_values / image_grid_thw.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "data/image.h"
#include "image_fixture_util.h"
#include "nn/util.h"
#include "tests/test.h"

static idoc_resample filter_named(const char *s) {
  return !strcmp(s, "bicubic")    ? IDOC_RESAMPLE_BICUBIC
         : !strcmp(s, "bilinear") ? IDOC_RESAMPLE_BILINEAR
                                  : IDOC_RESAMPLE_LANCZOS;
}

static void test_smart_resize_spec(void) {
  struct {
    int h, w, eh, ew;
  } ex[] = {{480, 640, 476, 644}, {1080, 1920, 1092, 1932}, {720, 1280, 728, 1288},
            {224, 224, 224, 224}, {70, 70, 56, 56}, // 70/28 = 2.5 rounds to 2 (banker's)
            {42, 42, 56, 56},                       // 1.5 rounds to 2
            {98, 126, 112, 112}};                   // 3.5 -> 4, 4.5 -> 4
  for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
    int h = 0, w = 0;
    int rc =
        idoc_smart_resize(ex[i].h, ex[i].w, 28, IDOC_QWEN_MIN_PIXELS, IDOC_QWEN_MAX_PIXELS, &h, &w);
    T_CHECK(rc == IDOC_OK && h == ex[i].eh && w == ex[i].ew, "%dx%d -> %dx%d, want %dx%d", ex[i].h,
            ex[i].w, h, w, ex[i].eh, ex[i].ew);
  }
  // Token counts of the spec's examples (grid/4).
  int h, w;
  idoc_smart_resize(480, 640, 28, IDOC_QWEN_MIN_PIXELS, IDOC_QWEN_MAX_PIXELS, &h, &w);
  T_CHECK((h / 14) * (w / 14) / 4 == 391, "480x640 tokens %d", (h / 14) * (w / 14) / 4);
  idoc_smart_resize(1080, 1920, 28, IDOC_QWEN_MIN_PIXELS, IDOC_QWEN_MAX_PIXELS, &h, &w);
  T_CHECK((h / 14) * (w / 14) / 4 == 2691, "1080x1920 tokens %d", (h / 14) * (w / 14) / 4);

  // Errors: aspect ratio > 200 (exactly 200 is allowed), a side below 28, empty sizes.
  T_CHECK(idoc_smart_resize(28, 5600, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_OK, "200:1");
  T_CHECK(idoc_smart_resize(28, 5629, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_ERR, ">200");
  T_CHECK(strstr(idoc_last_error(), "aspect ratio") && strstr(idoc_last_error(), "28x5629"), "%s",
          idoc_last_error());
  T_CHECK(idoc_smart_resize(5629, 28, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_ERR, ">200");
  T_CHECK(idoc_smart_resize(27, 100, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_ERR, "<28");
  T_CHECK(strstr(idoc_last_error(), "at least 28") && strstr(idoc_last_error(), "27x100"), "%s",
          idoc_last_error());
  T_CHECK(idoc_smart_resize(100, 27, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_ERR, "<28");
  T_CHECK(idoc_smart_resize(0, 100, 28, 3136, IDOC_QWEN_MAX_PIXELS, &h, &w) == IDOC_ERR, "0");
  T_CHECK(idoc_smart_resize(100, 100, 28, 5000, 4000, &h, &w) == IDOC_ERR, "min > max");
}

static void test_patchify_closed_form(void) {
  // pixel[c][y = (2*i2+dy)*14+py][x = (2*j2+dx)*14+px] at row (i2, j2, dy, dx), col (c, t, py, px).
  idoc_image im = {56, 84, idoc_xmalloc(56 * 84 * 3)};
  idoc_rng r;
  idoc_rng_seed(&r, 7);
  for (int i = 0; i < 56 * 84 * 3; i++)
    im.rgb[i] = (uint8_t)idoc_rng_below(&r, 256);
  int P = 56 * 84 / 196;
  float *pv = idoc_xmalloc(sizeof(float) * P * 1176);
  idoc_qwen_patchify(&im, pv);
  int bad = 0, wb_n = 84 / 28;
  for (int row = 0; row < P; row++)
    for (int col = 0; col < 1176; col++) {
      int dx = row % 2, dy = (row / 2) % 2, j2 = (row / 4) % wb_n, i2 = row / 4 / wb_n;
      int px = col % 14, py = (col / 14) % 14, c = col / 392;
      int y = (2 * i2 + dy) * 14 + py, x = (2 * j2 + dx) * 14 + px;
      float want = idoc_qwen_normalize(im.rgb[(y * 84 + x) * 3 + c], c);
      bad += pv[(size_t)row * 1176 + col] != want;
    }
  T_CHECK(bad == 0, "%d patch elements out of place", bad);
  free(pv);
  idoc_image_free(&im);
}

static void test_area_size(void) {
  // inference.py: r = (512*512 / (w*h)) ** 0.5; int(w*r), int(h*r) (values from Python).
  int h, w;
  idoc_image_area_size(768, 1024, 512, &h, &w);
  T_CHECK(h == 443 && w == 591, "768x1024 -> %dx%d", h, w);
  idoc_image_area_size(512, 512, 512, &h, &w);
  T_CHECK(h == 512 && w == 512, "512x512 -> %dx%d", h, w);
  idoc_image_area_size(100, 3000, 512, &h, &w);
  T_CHECK(h == 93 && w == 2804, "100x3000 -> %dx%d", h, w);
}

static void case_smart(const t_case *c) {
  int h = atoi(c->tok[1]), w = atoi(c->tok[2]), eh = atoi(c->tok[5]), ew = atoi(c->tok[6]);
  int64_t lo = atoll(c->tok[3]), hi = atoll(c->tok[4]);
  int gh = 0, gw = 0;
  int rc = idoc_smart_resize(h, w, 28, lo, hi, &gh, &gw);
  T_CHECK(rc == IDOC_OK && gh == eh && gw == ew,
          "smart_resize(%d, %d, [%lld, %lld]) = %dx%d, "
          "transformers %dx%d",
          h, w, (long long)lo, (long long)hi, gh, gw, eh, ew);
}

static void case_resize(const t_case *c, int *exact_cases) {
  t_npy src, ref;
  if (t_npy_load(c->tok[1], &src) || t_npy_load(c->tok[5], &ref)) {
    T_CHECK(0, "fixture %s missing", c->tok[5]);
    return;
  }
  int oh = atoi(c->tok[3]), ow = atoi(c->tok[4]);
  uint8_t *out = idoc_xmalloc((size_t)oh * ow * 3);
  idoc_pass_order order =
      !strcmp(c->tok[6], "hfirst") ? IDOC_PASS_ORDER_H_FIRST : IDOC_PASS_ORDER_PIL13;
  int rc = idoc_resample_u8_order(src.data, (int)src.shape[0], (int)src.shape[1], 3, out, oh, ow,
                                  filter_named(c->tok[2]), order);
  T_CHECK(rc == IDOC_OK && ref.count == (size_t)oh * ow * 3, "%s", c->tok[5]);
  int diff = 0, maxd = 0;
  for (size_t i = 0; rc == IDOC_OK && i < ref.count; i++) {
    int d = abs((int)out[i] - (int)((uint8_t *)ref.data)[i]);
    diff += d != 0;
    if (d > maxd) maxd = d;
  }
  T_CHECK(diff == 0, "%s: %d of %zu samples differ from PIL (max %d)", c->tok[5], diff, ref.count,
          maxd);
  *exact_cases += diff == 0;
  free(out);
  t_npy_free(&src);
  t_npy_free(&ref);
}

static void case_linear(const t_case *c, double max_err[2]) {
  int oh = atoi(c->tok[2]), ow = atoi(c->tok[3]), step = atoi(c->tok[5]);
  t_npy src = {0}, ref;
  float *gen = NULL;
  const float *in;
  int h, w;
  if (!strcmp(c->tok[1], "gen:hash512")) {
    // Same integer hash as the fixture script, /255 in float32.
    h = w = 512;
    gen = idoc_xmalloc(sizeof(float) * 512 * 512);
    for (uint32_t y = 0; y < 512; y++)
      for (uint32_t x = 0; x < 512; x++)
        gen[y * 512 + x] = (float)(((x * 2654435761u) ^ (y * 40503u) ^ (x * y)) & 255u) / 255.0f;
    in = gen;
  } else {
    if (t_npy_load(c->tok[1], &src)) return;
    h = (int)src.shape[0];
    w = (int)src.shape[1];
    in = src.data;
  }
  if (t_npy_load(c->tok[4], &ref)) {
    T_CHECK(0, "fixture %s missing", c->tok[4]);
    free(gen);
    t_npy_free(&src);
    return;
  }
  float *out = idoc_xmalloc(sizeof(float) * oh * ow);
  int ipp = strcmp(c->tok[6], "noipp") != 0;
  T_CHECK(idoc_resize_linear_f32_mode(in, h, w, out, oh, ow,
                                      ipp ? IDOC_CV_LINEAR_IPP : IDOC_CV_LINEAR_NO_IPP) == IDOC_OK,
          "linear %s", c->tok[4]);
  double m = 0;
  const float *rf = ref.data;
  size_t k = 0;
  for (int y = 0; y < oh; y += step)
    for (int x = 0; x < ow; x++, k++)
      m = fmax(m, fabs((double)out[y * ow + x] - rf[k]));
  T_CHECK(k == ref.count, "%s: %zu values, fixture has %zu", c->tok[4], k, ref.count);
  // Values are in [0, 1]: 2.5e-7 is two float ulps at 1 (the IPP kernel's own rounding order
  // is unknown); OpenCV's kernel is matched to one ulp.
  T_CHECK(m <= (ipp ? 2.5e-7 : 6e-8), "%s: max abs err %.3g vs cv2", c->tok[4], m);
  if (m > max_err[!ipp]) max_err[!ipp] = m;
  free(out);
  free(gen);
  t_npy_free(&src);
  t_npy_free(&ref);
}

static void case_blend(const t_case *c) {
  t_npy ref;
  if (t_npy_load(c->tok[1], &ref)) {
    T_CHECK(0, "fixture %s missing", c->tok[1]);
    return;
  }
  int bad = 0;
  const uint8_t *t = ref.data; // [alpha][value]
  for (int a = 0; a < 256; a++)
    for (int v = 0; v < 256; v++)
      bad += idoc_image_blend_white((uint8_t)v, (uint8_t)a) != t[a * 256 + v];
  T_CHECK(bad == 0, "%d of 65536 (value, alpha) pairs differ from PIL paste", bad);
  t_npy_free(&ref);
}

static void case_qwen(const t_case *c, double *max_err) {
  t_npy src, pv, grid;
  if (t_npy_load(c->tok[1], &src) || t_npy_load(c->tok[4], &pv) || t_npy_load(c->tok[5], &grid)) {
    T_CHECK(0, "fixture for %s missing", c->tok[1]);
    return;
  }
  idoc_image im = {(int)src.shape[0], (int)src.shape[1], src.data};
  idoc_qwen_image_opts o;
  idoc_qwen_image_opts_default(&o);
  o.min_pixels = atoll(c->tok[2]);
  o.max_pixels = atoll(c->tok[3]);
  float *out = NULL;
  int64_t np = 0, g[3] = {0};
  int rc = idoc_qwen_preprocess(&im, &o, c->tok[1], &out, &np, g);
  const int64_t *gr = grid.data;
  T_CHECK(rc == IDOC_OK && g[0] == gr[0] && g[1] == gr[1] && g[2] == gr[2],
          "%s: grid (%lld,%lld,%lld), HF (%lld,%lld,%lld)", c->tok[1], (long long)g[0],
          (long long)g[1], (long long)g[2], (long long)gr[0], (long long)gr[1], (long long)gr[2]);
  if (rc == IDOC_OK && (size_t)np * 1176 == pv.count) {
    double m = 0;
    const float *r = pv.data;
    for (size_t i = 0; i < pv.count; i++)
      m = fmax(m, fabs((double)out[i] - r[i]));
    T_CHECK(m == 0, "%s: pixel_values max abs err %.3g vs transformers", c->tok[1], m);
    if (m > *max_err) *max_err = m;
  } else {
    T_CHECK(0, "%s: %lld patches, HF has %zu values", c->tok[1], (long long)np, pv.count);
  }
  free(out);
  t_npy_free(&src);
  t_npy_free(&pv);
  t_npy_free(&grid);
}

int main(void) {
  test_smart_resize_spec();
  test_patchify_closed_form();
  test_area_size();

  t_case *cases;
  int n = t_manifest_load(&cases);
  T_CHECK(n > 0, "no manifest in " IMG_FIX);
  int n_resize = 0, exact = 0, n_smart = 0, n_qwen = 0;
  double lin_err[2] = {0, 0}, pv_err = 0;
  for (int i = 0; i < n; i++) {
    const t_case *c = &cases[i];
    if (!strcmp(c->tok[0], "smart")) {
      case_smart(c);
      n_smart++;
    } else if (!strcmp(c->tok[0], "resize")) {
      case_resize(c, &exact);
      n_resize++;
    } else if (!strcmp(c->tok[0], "linear")) {
      case_linear(c, lin_err);
    } else if (!strcmp(c->tok[0], "blend")) {
      case_blend(c);
    } else if (!strcmp(c->tok[0], "qwen")) {
      case_qwen(c, &pv_err);
      n_qwen++;
    }
  }
  free(cases);
  printf("smart_resize: %d table cases; PIL resize: %d/%d cases bit-exact; cv2 INTER_LINEAR max "
         "abs err %.3g (IPP) / %.3g (no IPP); qwen pixel_values (%d images) max abs err %.3g\n",
         n_smart, exact, n_resize, lin_err[0], lin_err[1], n_qwen, pv_err);
  return t_summary("test_image");
}
