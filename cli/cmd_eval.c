// `idoc eval` (metrics of a checkpoint on a split) and `idoc predict` (one image: reasoning,
// scores, heatmaps as PNG).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/image.h"
#include "data/imagedoctor_text.h"
#include "nn/comm.h"
#include "nn/util.h"
#include "stage/evaluate.h"
#include "stage/stage.h"

// ---- `idoc eval` ----------------------------------------------------------------------------
static int load_for_eval(const char *ckpt, int argc, char **argv, idoc_train_config *cfg,
                         idoc_model_bundle *mb, bool *cot) {
  idoc_config_defaults(cfg);
  free(cfg->model_name_or_path);
  cfg->model_name_or_path = idoc_xstrdup(ckpt);
  for (int i = 0; i < argc; i++)
    if (idoc_config_set(cfg, argv[i])) return IDOC_ERR;
  if (idoc_config_validate(cfg) || idoc_model_setup(cfg, false, mb)) return IDOC_ERR;
  *cot = mb->m.dec != NULL; // a model with the decoder answers in the stage-2 format
  return IDOC_OK;
}

int idoc_cmd_eval(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL, *out = NULL;
  char **over = idoc_xcalloc((size_t)argc + 1, sizeof(char *));
  int n_over = 0;
  bool fast = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc)
      ckpt = argv[++i];
    else if (!strcmp(argv[i], "--data") && i + 1 < argc)
      data = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--fast"))
      fast = true;
    else if (strchr(argv[i], '='))
      over[n_over++] = argv[i];
    else {
      printf("usage: idoc eval --checkpoint DIR --data SPLIT.h5 [--out DIR] [--fast] "
             "[key=value ...]\n"
             "Greedy answers for every sample (--fast: the answer right after an empty think\n"
             "block), PLCC/SRCC per score, heatmap MSE/CC/KLD/SIM/NSS/AUC-Judd. Keys as in\n"
             "`idoc train --help-keys` (eval_max_samples, max_new_tokens, image_size, ...).\n");
      free(over);
      return !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ? 0 : 2;
    }
  }
  if (!ckpt || !data) {
    fprintf(stderr, "idoc eval: --checkpoint and --data are required\n");
    free(over);
    return 2;
  }
  idoc_train_config cfg;
  idoc_config_defaults(&cfg);
  idoc_model_bundle mb = {0};
  bool cot = false;
  // Under a launcher (srun, mpirun, torchrun-style variables) the split is sharded over the
  // ranks and rank 0 writes the results.
  int rc = idoc_comm_init();
  if (rc == IDOC_OK) {
    idoc_config_free(&cfg);
    rc = load_for_eval(ckpt, n_over, over, &cfg, &mb, &cot);
  }
  if (rc == IDOC_OK) {
    free(cfg.eval_dataset);
    cfg.eval_dataset = idoc_xstrdup(data);
    cfg.eval_fast = cfg.eval_fast || fast;
    rc = idoc_comm_is_main() ? idoc_mkdir_p(out ? out : ckpt) : IDOC_OK;
  }
  if (!idoc_comm_any_failed(rc))
    rc = idoc_evaluate_model(&cfg, &mb, cot, out ? out : ckpt, "final", NULL, NULL);
  else
    rc = IDOC_ERR;
  if (rc) fprintf(stderr, "idoc eval: %s\n", idoc_last_error());
  idoc_model_bundle_free(&mb);
  idoc_config_free(&cfg);
  free(over);
  return rc ? 1 : 0;
}

// ---- `idoc predict` -------------------------------------------------------------------------
static int write_map_png(const char *path, const float *m, int h, int w) {
  uint8_t *g = idoc_xmalloc((size_t)h * w);
  for (int64_t i = 0; i < (int64_t)h * w; i++) {
    float v = m[i] < 0 ? 0 : m[i] > 1 ? 1 : m[i];
    g[i] = (uint8_t)lroundf(v * 255);
  }
  int rc = idoc_image_write_png(path, g, h, w, 1);
  free(g);
  return rc;
}

int idoc_cmd_predict(int argc, char **argv) {
  const char *ckpt = NULL, *image = NULL, *prompt = NULL, *out = NULL;
  char **over = idoc_xcalloc((size_t)argc + 1, sizeof(char *));
  int n_over = 0;
  bool fast = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--checkpoint") && i + 1 < argc)
      ckpt = argv[++i];
    else if (!strcmp(argv[i], "--image") && i + 1 < argc)
      image = argv[++i];
    else if (!strcmp(argv[i], "--prompt") && i + 1 < argc)
      prompt = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--fast"))
      fast = true;
    else if (strchr(argv[i], '='))
      over[n_over++] = argv[i];
    else {
      printf(
          "usage: idoc predict --checkpoint DIR --image FILE --prompt TEXT --out DIR "
          "[--fast] [key=value ...]\n"
          "Prints the reasoning and the four scores; writes overlay.png (the image, artifact red,\n"
          "misalignment blue) and, for each task token the model generated, misalignment.png /\n"
          "artifact.png (decoder resolution); it lists the files it wrote.\n");
      free(over);
      return !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ? 0 : 2;
    }
  }
  if (!ckpt || !image || !prompt || !out) {
    fprintf(stderr, "idoc predict: --checkpoint, --image, --prompt and --out are required\n");
    free(over);
    return 2;
  }
  idoc_train_config cfg;
  idoc_model_bundle mb = {0};
  bool cot = false;
  idoc_image im = {0};
  idoc_sft_example ex = {0};
  idoc_judged j = {0};
  idoc_ctx *c = NULL;
  idoc_qwen_cache *kv = NULL;
  int32_t *prefix = NULL;
  int rc = load_for_eval(ckpt, n_over, over, &cfg, &mb, &cot);
  if (rc == IDOC_OK) rc = idoc_image_load(image, &im);
  if (rc == IDOC_OK) {
    idoc_sample s = {0};
    s.img_h = im.h;
    s.img_w = im.w;
    s.image = im.rgb;
    s.prompt = (char *)prompt;
    idoc_sft_opts o = idoc_sft_opts_from_config(&cfg, cot, false);
    o.with_maps = false;
    rc = idoc_sft_example_make(mb.tok, &s, &o, image, &ex);
    ex.map_h = ex.grid[1] / 2 * 16;
    ex.map_w = ex.grid[2] / 2 * 16;
  }
  if (rc == IDOC_OK) {
    int n_prefix = 0;
    prefix = idoc_fast_prefix(mb.tok, fast || cfg.eval_fast, &n_prefix);
    c = idoc_ctx_new(mb.dev, (size_t)16 << 20);
    kv = idoc_qwen_cache_new(mb.m.qwen, 1, ex.n + n_prefix + cfg.max_new_tokens + 16);
    rc = kv ? idoc_judge(c, &mb, kv, &ex, prefix, n_prefix, cfg.max_new_tokens, &j) : IDOC_ERR;
  }
  if (rc == IDOC_OK) rc = idoc_mkdir_p(out);
  if (rc == IDOC_OK) {
    printf("%s\n\n", j.text);
    for (int d = 0; d < 4; d++) {
      if (j.parsed.score_valid[d])
        printf("%-20s %.4f\n", idoc_score_names[d], j.parsed.score[d]);
      else
        printf("%-20s (not found)\n", idoc_score_names[d]);
    }
    char p[4200], wrote[128] = "";
    const char *names[2] = {"misalignment", "artifact"};
    for (int k = 0; k < 2 && rc == IDOC_OK; k++) {
      snprintf(p, sizeof p, "%s/%s.png", out, names[k]);
      if (j.map[k]) {
        rc = write_map_png(p, j.map[k], j.map_h, j.map_w);
        if (rc == IDOC_OK)
          snprintf(wrote + strlen(wrote), sizeof wrote - strlen(wrote), "%s%s.png",
                   *wrote ? ", " : "", names[k]);
      } else {
        // No task token, no map: and no stale map of an earlier prediction under that name.
        printf("no %s task token generated: no %s map\n", names[k], names[k]);
        if (remove(p) && errno != ENOENT)
          rc = idoc_set_error("%s: cannot remove the earlier map: %s", p, strerror(errno));
      }
    }
    if (rc == IDOC_OK) { // overlay at the image's size
      float *up[2] = {NULL, NULL};
      for (int k = 0; k < 2 && rc == IDOC_OK; k++)
        if (j.map[k]) {
          up[k] = idoc_xmalloc((size_t)im.h * im.w * sizeof(float));
          rc = idoc_resize_linear_f32(j.map[k], j.map_h, j.map_w, up[k], im.h, im.w);
        }
      for (int64_t i = 0; i < (int64_t)im.h * im.w && rc == IDOC_OK; i++) {
        uint8_t *px = im.rgb + i * 3;
        double a = up[1] ? 0.6 * fmin(fmax(up[1][i], 0), 1) : 0;
        double b = up[0] ? 0.6 * fmin(fmax(up[0][i], 0), 1) : 0;
        px[0] = (uint8_t)lround((px[0] * (1 - a) + 255 * a) * (1 - b));
        px[1] = (uint8_t)lround(px[1] * (1 - a) * (1 - b) + 64 * b);
        px[2] = (uint8_t)lround(px[2] * (1 - a) * (1 - b) + 255 * b);
      }
      if (rc == IDOC_OK) {
        snprintf(p, sizeof p, "%s/overlay.png", out);
        rc = idoc_image_write_png(p, im.rgb, im.h, im.w, 3);
        if (rc == IDOC_OK)
          snprintf(wrote + strlen(wrote), sizeof wrote - strlen(wrote), "%soverlay.png",
                   *wrote ? ", " : "");
      }
      free(up[0]);
      free(up[1]);
    }
    if (rc == IDOC_OK) printf("wrote in %s: %s\n", out, wrote);
  }
  if (rc) fprintf(stderr, "idoc predict: %s\n", idoc_last_error());
  idoc_judged_free(&j);
  if (kv) idoc_qwen_cache_free(kv);
  if (c) idoc_ctx_free(c);
  free(prefix);
  idoc_sft_example_free(&ex);
  idoc_image_free(&im);
  idoc_model_bundle_free(&mb);
  idoc_config_free(&cfg);
  free(over);
  return rc ? 1 : 0;
}
