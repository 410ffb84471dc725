// idoc-requires: png jpeg
// PNG/JPEG decoding against PIL (+ transformers' convert_to_rgb), the whole processor from image
// files against transformers, the PNG writer, and bad input: truncated, corrupt, oversized and
// missing files must give an error naming the file, never a crash.
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "image_fixture_util.h"
#include "nn/util.h"
#include "tests/test.h"

static int read_fixture(const char *name, char **data, size_t *n) {
  char path[512];
  snprintf(path, sizeof path, IMG_FIX "%s", name);
  return idoc_read_file(path, data, n);
}

static void case_decode(const t_case *c, int *jpeg_max_diff) {
  char path[512];
  snprintf(path, sizeof path, IMG_FIX "%s", c->tok[1]);
  idoc_image im;
  t_npy ref;
  if (t_npy_load(c->tok[2], &ref)) {
    T_CHECK(0, "fixture %s missing", c->tok[2]);
    return;
  }
  int rc = idoc_image_load(path, &im);
  T_CHECK(rc == IDOC_OK, "%s: %s", path, idoc_last_error());
  if (rc == IDOC_OK) {
    T_CHECK(im.h == ref.shape[0] && im.w == ref.shape[1] && ref.shape[2] == 3,
            "%s: %dx%d, PIL %lldx%lld", path, im.h, im.w, (long long)ref.shape[0],
            (long long)ref.shape[1]);
    int maxd = 0, diff = 0;
    for (size_t i = 0; im.h == ref.shape[0] && im.w == ref.shape[1] && i < ref.count; i++) {
      int d = abs((int)im.rgb[i] - (int)((uint8_t *)ref.data)[i]);
      diff += d != 0;
      if (d > maxd) maxd = d;
    }
    T_CHECK(diff == 0, "%s: %d samples differ from PIL (max %d)", path, diff, maxd);
    if (strstr(path, ".jpg") && maxd > *jpeg_max_diff) *jpeg_max_diff = maxd;
  }
  idoc_image_free(&im);
  t_npy_free(&ref);
}

static void case_qwenfile(const t_case *c, double *max_err) {
  char path[512];
  snprintf(path, sizeof path, IMG_FIX "%s", c->tok[1]);
  t_npy pv, grid;
  if (t_npy_load(c->tok[4], &pv) || t_npy_load(c->tok[5], &grid)) {
    T_CHECK(0, "fixture for %s missing", path);
    return;
  }
  idoc_image im;
  T_CHECK(idoc_image_load(path, &im) == IDOC_OK, "%s", idoc_last_error());
  idoc_qwen_image_opts o;
  idoc_qwen_image_opts_default(&o);
  o.min_pixels = atoll(c->tok[2]);
  o.max_pixels = atoll(c->tok[3]);
  float *out = NULL;
  int64_t np = 0, g[3] = {0};
  int rc = idoc_qwen_preprocess(&im, &o, path, &out, &np, g);
  const int64_t *gr = grid.data;
  T_CHECK(rc == IDOC_OK && g[0] == gr[0] && g[1] == gr[1] && g[2] == gr[2] &&
              (size_t)np * 1176 == pv.count,
          "%s: grid (%lld,%lld,%lld) vs HF (%lld,%lld,%lld)", path, (long long)g[0],
          (long long)g[1], (long long)g[2], (long long)gr[0], (long long)gr[1], (long long)gr[2]);
  if (rc == IDOC_OK && (size_t)np * 1176 == pv.count) {
    double m = 0;
    for (size_t i = 0; i < pv.count; i++)
      m = fmax(m, fabs((double)out[i] - ((float *)pv.data)[i]));
    T_CHECK(m == 0, "%s: pixel_values max abs err %.3g vs transformers", path, m);
    if (m > *max_err) *max_err = m;
  }
  free(out);
  idoc_image_free(&im);
  t_npy_free(&pv);
  t_npy_free(&grid);
}

// Every prefix of a valid file (at a stride) must fail cleanly with the name in the message; a
// prefix may only succeed if it still holds the whole image (e.g. only IEND is cut off).
static void check_truncations(const char *fixture) {
  char *data;
  size_t n;
  if (read_fixture(fixture, &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  int errors = 0, ok = 0, unnamed = 0;
  size_t step = n / 97 + 1;
  for (size_t len = 0; len < n; len += (len < 64 ? 1 : step)) {
    idoc_image im;
    if (idoc_image_decode((const uint8_t *)data, len, fixture, &im) == IDOC_OK) {
      ok++;
      idoc_image_free(&im);
    } else {
      errors++;
      unnamed += strstr(idoc_last_error(), fixture) == NULL;
    }
  }
  T_CHECK(unnamed == 0, "%s: %d truncation errors do not name the file", fixture, unnamed);
  T_CHECK(errors > 0 && ok <= 2, "%s: truncated copies: %d errors, %d decoded", fixture, errors,
          ok);
  free(data);
}

// Flip bytes all over a valid file: decoding may fail or succeed, but must not crash (ASan/UBSan
// builds check the memory side).
static void check_corruptions(const char *fixture) {
  char *data;
  size_t n;
  if (read_fixture(fixture, &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  idoc_rng r;
  idoc_rng_seed(&r, 1234);
  int errors = 0;
  for (int trial = 0; trial < 300; trial++) {
    uint8_t *copy = idoc_xmalloc(n);
    memcpy(copy, data, n);
    int flips = 1 + (int)idoc_rng_below(&r, 4);
    for (int f = 0; f < flips; f++)
      copy[idoc_rng_below(&r, n)] ^= (uint8_t)(1 + idoc_rng_below(&r, 255));
    idoc_image im;
    if (idoc_image_decode(copy, n, fixture, &im) == IDOC_OK)
      idoc_image_free(&im);
    else
      errors += strstr(idoc_last_error(), fixture) != NULL;
    free(copy);
  }
  T_CHECK(errors > 0, "%s: no corrupted copy was rejected", fixture);
  free(data);
}

static void test_errors(void) {
  idoc_image im;
  T_CHECK(idoc_image_load("tests/fixtures/image/no_such_file.png", &im) == IDOC_ERR, "missing");
  T_CHECK(strstr(idoc_last_error(), "no_such_file.png") != NULL, "%s", idoc_last_error());

  const uint8_t junk[] = "GIF89a not an image we read";
  T_CHECK(idoc_image_decode(junk, sizeof junk, "junk.gif", &im) == IDOC_ERR, "gif accepted");
  T_CHECK(strstr(idoc_last_error(), "junk.gif") && strstr(idoc_last_error(), "not a PNG or JPEG"),
          "%s", idoc_last_error());
  T_CHECK(idoc_image_decode(junk, 0, "empty.png", &im) == IDOC_ERR, "empty accepted");

  check_truncations("rgb8.png");
  check_truncations("rgb8_interlaced.png");
  check_truncations("rgb_420.jpg");
  check_truncations("rgb_444_prog.jpg");
  check_corruptions("rgba8.png");
  check_corruptions("rgb_420.jpg");
  check_corruptions("palette4.png");

  // A truncated file on disk: the error names its path.
  char *data;
  size_t n;
  if (read_fixture("rgb_420.jpg", &data, &n) == IDOC_OK) {
    char tmp[] = "/tmp/idoc_trunc_XXXXXX";
    int fd = mkstemp(tmp);
    T_CHECK(fd >= 0 && write(fd, data, n / 2) == (ssize_t)(n / 2), "temp file");
    close(fd);
    T_CHECK(idoc_image_load(tmp, &im) == IDOC_ERR, "truncated jpeg decoded");
    T_CHECK(strstr(idoc_last_error(), tmp) != NULL, "%s", idoc_last_error());
    unlink(tmp);
    free(data);
  }

  // Pixel limit: checked from the header, before allocation.
  uint64_t old = idoc_image_get_max_pixels();
  idoc_image_set_max_pixels(1000);
  T_CHECK(idoc_image_load(IMG_FIX "rgb8.png", &im) == IDOC_ERR, "limit ignored (png)");
  T_CHECK(strstr(idoc_last_error(), "exceeds"), "%s", idoc_last_error());
  T_CHECK(idoc_image_load(IMG_FIX "rgb_420.jpg", &im) == IDOC_ERR, "limit ignored (jpeg)");
  idoc_image_set_max_pixels(old);
}

static void test_png_writer(void) {
  char dir[] = "/tmp/idoc_png_XXXXXX";
  T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char path[256];
  snprintf(path, sizeof path, "%s/out.png", dir);
  int h = 23, w = 37;
  uint8_t *pix = idoc_xmalloc((size_t)h * w * 4);
  idoc_rng r;
  idoc_rng_seed(&r, 99);
  for (int i = 0; i < h * w * 4; i++)
    pix[i] = (uint8_t)idoc_rng_below(&r, 256);
  for (int ch = 1; ch <= 4; ch++) {
    T_CHECK(idoc_image_write_png(path, pix, h, w, ch) == IDOC_OK, "%s", idoc_last_error());
    idoc_image im;
    T_CHECK(idoc_image_load(path, &im) == IDOC_OK, "%s", idoc_last_error());
    int bad = im.h != h || im.w != w;
    for (int i = 0; !bad && i < h * w; i++)
      for (int b = 0; b < 3; b++) {
        const uint8_t *p = pix + (size_t)i * ch;
        uint8_t want = ch == 1   ? p[0]
                       : ch == 2 ? idoc_image_blend_white(p[0], p[1])
                       : ch == 3 ? p[b]
                                 : idoc_image_blend_white(p[b], p[3]);
        bad += im.rgb[i * 3 + b] != want;
      }
    T_CHECK(bad == 0, "%d-channel PNG round trip: %d samples differ", ch, bad);
    idoc_image_free(&im);
  }
  // Atomic: nothing but the final file in the directory.
  char cmd[300];
  snprintf(cmd, sizeof cmd, "%s/out.png.tmp.%ld", dir, (long)getpid());
  T_CHECK(!idoc_file_exists(cmd), "temporary file left behind");
  // A directory that does not exist: error naming the path, no crash.
  T_CHECK(idoc_image_write_png("/nonexistent_dir_idoc/x.png", pix, h, w, 3) == IDOC_ERR, "bad dir");
  T_CHECK(strstr(idoc_last_error(), "/nonexistent_dir_idoc/x.png"), "%s", idoc_last_error());
  unlink(path);
  rmdir(dir);
  free(pix);
}

int main(void) {
  t_case *cases;
  int n = t_manifest_load(&cases);
  T_CHECK(n > 0, "no manifest in " IMG_FIX);
  int n_dec = 0, jpeg_max = 0, n_q = 0;
  double pv_err = 0;
  for (int i = 0; i < n; i++) {
    if (!strcmp(cases[i].tok[0], "decode")) {
      case_decode(&cases[i], &jpeg_max);
      n_dec++;
    } else if (!strcmp(cases[i].tok[0], "qwenfile")) {
      case_qwenfile(&cases[i], &pv_err);
      n_q++;
    }
  }
  free(cases);
  test_errors();
  test_png_writer();
  printf("decode: %d files vs PIL (JPEG max abs diff %d); processor from files: %d, pixel_values "
         "max abs err %.3g\n",
         n_dec, jpeg_max, n_q, pv_err);
  return t_summary("test_image_decode");
}
