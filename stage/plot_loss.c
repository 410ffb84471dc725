// training_loss.png from trainer_log.jsonl (raw and smoothed, as LLaMA-Factory's plot_loss).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "nn/util.h"
#include "stage/stage.h"

static void put_px(uint8_t *img, int W, int H, int x, int y, const uint8_t col[3]) {
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  memcpy(img + ((size_t)y * W + x) * 3, col, 3);
}

static void line(uint8_t *img, int W, int H, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put_px(img, W, H, x0, y0, c);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

int idoc_plot_loss(const char *output_dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", output_dir);
  char *data;
  size_t n;
  if (idoc_read_file(p, &data, &n)) return IDOC_ERR;
  int cap = 1024, k = 0;
  double *xs = idoc_xmalloc((size_t)cap * sizeof(double)),
         *ys = idoc_xmalloc((size_t)cap * sizeof(double));
  for (char *s = data; s && s < data + n;) {
    char *nl = memchr(s, '\n', (size_t)(data + n - s));
    if (nl) *nl = 0;
    char *a = strstr(s, "\"current_steps\": "), *b = strstr(s, "\"loss\": ");
    if (a && b) {
      if (k == cap) {
        cap *= 2;
        xs = idoc_xrealloc(xs, (size_t)cap * sizeof(double));
        ys = idoc_xrealloc(ys, (size_t)cap * sizeof(double));
      }
      xs[k] = strtod(a + 17, NULL);
      ys[k] = strtod(b + 8, NULL);
      if (isfinite(ys[k])) k++;
    }
    s = nl ? nl + 1 : NULL;
  }
  free(data);
  int rc = IDOC_OK;
  if (k >= 2) {
    enum { W = 640, H = 400, M = 40 };
    uint8_t *img = idoc_xmalloc((size_t)W * H * 3);
    memset(img, 255, (size_t)W * H * 3);
    double x0 = xs[0], x1 = xs[k - 1], y0 = ys[0], y1 = ys[0];
    for (int i = 0; i < k; i++)
      y0 = fmin(y0, ys[i]), y1 = fmax(y1, ys[i]);
    if (y1 - y0 < 1e-12) y1 = y0 + 1;
    if (x1 - x0 < 1e-12) x1 = x0 + 1;
    static const uint8_t axis[3] = {0, 0, 0}, raw[3] = {150, 180, 230}, sm[3] = {20, 60, 200};
    line(img, W, H, M, H - M, W - M, H - M, axis);
    line(img, W, H, M, M, M, H - M, axis);
#define PX(x) (M + (int)((x - x0) / (x1 - x0) * (W - 2 * M)))
#define PY(y) (H - M - (int)((y - y0) / (y1 - y0) * (H - 2 * M)))
    double ema = ys[0];
    int ppx = PX(xs[0]), ppy = PY(ys[0]), spy = ppy;
    for (int i = 1; i < k; i++) {
      int px = PX(xs[i]), py = PY(ys[i]);
      line(img, W, H, ppx, ppy, px, py, raw);
      ema = 0.9 * ema + 0.1 * ys[i]; // the smoothing LLaMA-Factory's plot uses
      int sy = PY(ema);
      line(img, W, H, ppx, spy, px, sy, sm);
      ppx = px, ppy = py, spy = sy;
    }
#undef PX
#undef PY
    snprintf(p, sizeof p, "%s/training_loss.png", output_dir);
    rc = idoc_image_write_png(p, img, H, W, 3);
    free(img);
  }
  free(xs);
  free(ys);
  return rc;
}
