// Training curves (stage/plots.c): from a trainer log, gnuplot draws training_loss.png (SFT)
// or training_rewards.png (GRPO) with the data and script beside it; without gnuplot on PATH
// the error names the package and the script is kept.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "nn/util.h"
#include "stage/stage.h"
#include "tests/test.h"

#define DIR "test_plots.tmp"

static void write_log(const char *dir, bool grpo) {
  char p[256];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", dir);
  FILE *f = fopen(p, "w");
  for (int s = 1; s <= 60; s++) {
    double x = s / 60.0, noise = 0.05 * sin(7.0 * s);
    if (grpo)
      fprintf(f,
              "{\"current_steps\": %d, \"loss\": 0.01, \"reward\": %.4f, \"kl\": %.5f, "
              "\"completion_length\": %.1f, \"completion_length_max\": %d, \"grad_norm\": 0.3}\n",
              s, 3 + x + noise, 0.01 * x, 200 - 50 * x, 320);
    else
      fprintf(f,
              "{\"current_steps\": %d, \"loss\": %.4f, \"ce\": %.4f, \"mse_art\": %.4f, "
              "\"mse_mis\": %s, \"lr\": 0.001}\n",
              s, 6 * exp(-3 * x) + 0.2 + noise, 6 * exp(-3 * x) + noise, 0.1 - 0.05 * x,
              s == 5 ? "null" : "0.05");
    if (s == 30) fprintf(f, "{\"eval\": \"step30\", \"result\": {\"n_samples\": 2}}\n");
  }
  fclose(f);
}

static bool png_ok(const char *path, int *h, int *w) {
  idoc_image im;
  if (idoc_image_load(path, &im)) return false;
  *h = im.h, *w = im.w;
  // Not a blank page: some dark pixels (axes, text, curves) and mostly white.
  int64_t dark = 0, n = (int64_t)*h * *w;
  for (int64_t i = 0; i < n; i++)
    dark += im.rgb[i * 3] < 100;
  idoc_image_free(&im);
  return dark > 500 && dark < n / 2;
}

int main(void) {
  if (system("rm -rf " DIR) != 0) return 1;
  idoc_mkdir_p(DIR "/sft");
  idoc_mkdir_p(DIR "/grpo");
  write_log(DIR "/sft", false);
  write_log(DIR "/grpo", true);
  char gp[4096];
  bool have = false;
  {
    const char *path = getenv("PATH");
    char buf[8192];
    snprintf(buf, sizeof buf, "%s", path ? path : "");
    for (char *d = strtok(buf, ":"); d && !have; d = strtok(NULL, ":")) {
      snprintf(gp, sizeof gp, "%s/gnuplot", d);
      have = access(gp, X_OK) == 0;
    }
  }
  if (have) {
    int h = 0, w = 0;
    T_CHECK(idoc_plot_training(DIR "/sft", false) == IDOC_OK, "%s", idoc_last_error());
    T_CHECK(png_ok(DIR "/sft/training_loss.png", &h, &w) && w == 1040 && h == 480,
            "sft plot %dx%d: %s", w, h, idoc_last_error());
    T_CHECK(idoc_plot_training(DIR "/grpo", true) == IDOC_OK, "%s", idoc_last_error());
    T_CHECK(png_ok(DIR "/grpo/training_rewards.png", &h, &w) && w == 1560, "grpo plot %dx%d", w, h);
    // The data file holds every logged step once (not the eval line), raw and smoothed.
    char *t;
    size_t n;
    T_CHECK(idoc_read_file(DIR "/sft/training_loss.tsv", &t, &n) == 0, "tsv");
    int lines = 0;
    for (size_t i = 0; i < n; i++)
      lines += t[i] == '\n';
    T_CHECK(lines == 61 && strstr(t, "ce_smoothed") && strstr(t, "\n5\t"), "%d lines", lines);
    free(t);
    // The eval sheet: two rows (one without predicted maps), 5 panels each.
    static uint8_t rgb[24 * 32 * 3];
    static float m[4][16 * 16];
    for (int i = 0; i < 24 * 32 * 3; i++)
      rgb[i] = (uint8_t)(i % 251);
    for (int i = 0; i < 256; i++)
      m[0][i] = (i % 16) / 15.0f, m[1][i] = 1 - m[0][i], m[2][i] = 0.5f, m[3][i] = 0;
    idoc_sheet_row rows[2] = {
        {0,
         rgb,
         24,
         32,
         {0.1, 0.2, 0.3, 0.4},
         {0.5, 0.5, 0.5, 0.5},
         {1, 1, 0, 1},
         {m[0], m[1]},
         {m[2], m[3]},
         16,
         16},
        {1, rgb, 24, 32, {0.9, 0.8, 0.7, 0.6}, {0}, {0}, {m[0], m[1]}, {NULL, NULL}, 16, 16}};
    T_CHECK(idoc_eval_sheet(DIR "/sft", "final", rows, 2) == IDOC_OK, "%s", idoc_last_error());
    T_CHECK(png_ok(DIR "/sft/eval_sheet_final.png", &h, &w) && w == 1050 && h == 530, "sheet %dx%d",
            w, h);
  } else {
    T_SKIP("gnuplot is not installed (scripts/install_deps.sh installs gnuplot-nox)");
  }
  // Without gnuplot: an error naming the package and the kept script, nothing drawn.
  remove(DIR "/sft/training_loss.png");
  char *old_path = idoc_xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
  setenv("PATH", "/nonexistent", 1);
  T_CHECK(idoc_plot_training(DIR "/sft", false) == IDOC_ERR &&
              strstr(idoc_last_error(), "gnuplot-nox") &&
              strstr(idoc_last_error(), "training_loss.gp"),
          "%s", idoc_last_error());
  T_CHECK(!idoc_file_exists(DIR "/sft/training_loss.png") &&
              idoc_file_exists(DIR "/sft/training_loss.gp"),
          "script kept, no picture");
  setenv("PATH", old_path, 1);
  free(old_path);
  // A missing log is an error naming it.
  T_CHECK(idoc_plot_training(DIR "/nope", false) == IDOC_ERR &&
              strstr(idoc_last_error(), "nope/trainer_log.jsonl"),
          "%s", idoc_last_error());
  if (!t_fail && system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_plots");
}
