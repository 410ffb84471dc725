// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "train/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "data/imagedoctor_text.h"
#include "nn/ops.h"
#include "nn/util.h"
#include "rl/generate.h"
#include "train/commands.h"
#include "train/trainer.h"

// The paper's ImageDoctor-fast: the answer starts right away after an empty think block.
#define FAST_PREFIX "<think> </think> <answer>"

typedef struct {
  char *text;                  // completion (forced prefix included), special tokens kept
  float *map[2];               // [0] misalignment, [1] artifact at decoder resolution, or NULL
  int map_h, map_w, n_tokens;  // generated tokens
  idoc_parsed_response parsed; // of text
} judged;

static void judged_free(judged *j) {
  free(j->text);
  free(j->map[0]);
  free(j->map[1]);
  idoc_parsed_response_free(&j->parsed);
  memset(j, 0, sizeof *j);
}

// Greedy generation (rl/generate.h, KV cache) for one example, then the decoder on the hidden
// states that predicted the first <|mis|> and <|art|> (spec 5.4: the state one position before).
static int judge(idoc_ctx *c, idoc_model_bundle *mb, idoc_qwen_cache *kv,
                 const idoc_sft_example *ex, const int32_t *prefix, int n_prefix, int max_new,
                 judged *out) {
  memset(out, 0, sizeof *out);
  idoc_qwen *q = mb->m.qwen;
  idoc_ctx_reset(c);
  bool prev = idoc_no_grad_begin(c);
  idoc_tensor *pix = idoc_tensor_2d(c->act, IDOC_F32, ex->n_patches, 1176);
  idoc_tensor_from_host(pix, ex->pixels);
  idoc_gen_prompt gp = {ex->ids, ex->n, pix, ex->grid, 1, prefix, n_prefix, 0};
  int32_t stops[2];
  idoc_gen_opts go;
  idoc_gen_opts_default(&go);
  go.group_size = 1;
  go.max_new_tokens = max_new + n_prefix;
  go.do_sample = false;
  go.n_stop = idoc_gen_default_stops(&q->cfg, stops);
  go.stop_ids = stops;
  go.keep_hidden = mb->m.dec != NULL;
  go.keep_image_feats = mb->m.dec != NULL;
  go.cache = kv;
  idoc_gen_result gr;
  int rc = idoc_generate(c, q, &gp, 1, &go, &gr);
  if (rc) {
    idoc_grad_restore(c, prev);
    return rc;
  }
  idoc_gen_completion *co = &gr.c[0];
  out->n_tokens = co->n_tokens - co->n_forced;
  // The text the parser sees: forced prefix + generated tokens, without the stop token.
  int n = co->n_tokens - (co->finish == IDOC_FINISH_STOP ? 1 : 0);
  size_t len;
  rc = idoc_detokenize(mb->tok, co->tokens, (size_t)n, false, &out->text, &len);
  if (rc == IDOC_OK) idoc_parse_response(out->text, len, NULL, &out->parsed);
  int ms = q->cfg.spatial_merge_size, Hm = ex->grid[1] / ms, Wm = ex->grid[2] / ms;
  if (rc == IDOC_OK && mb->m.dec) {
    rc = idoc_imagedoctor_completion_maps(c, &mb->m, co->hidden, co->n_prompt, co->tokens,
                                          co->n_tokens, gr.image_feats[0], Hm, Wm, out->map);
    out->map_h = 16 * Hm;
    out->map_w = 16 * Wm;
  }
  idoc_gen_result_free(&gr);
  idoc_grad_restore(c, prev);
  if (rc) judged_free(out);
  return rc;
}

static int32_t *fast_prefix(idoc_tokenizer *tok, bool fast, int *n) {
  int32_t *ids = NULL;
  size_t k = 0;
  *n = 0;
  if (!fast) return NULL;
  if (idoc_tokenize(tok, FAST_PREFIX, strlen(FAST_PREFIX), &ids, &k)) return NULL;
  *n = (int)k;
  return ids;
}

int idoc_evaluate_model(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                        const char *out_dir, const char *tag, FILE *logf,
                        idoc_eval_result *result) {
  idoc_example_ctx ectx = {mb->tok, idoc_sft_opts_from_config(cfg, cot, false), NULL};
  idoc_loader *L = idoc_example_loader_open(cfg->eval_dataset, &ectx, 0, false,
                                            (uint64_t)cfg->eval_max_samples, 0, 1);
  if (!L) return IDOC_ERR;
  uint64_t n = idoc_loader_epoch_len(L);
  int max_new = cfg->max_new_tokens;
  idoc_qwen_cache *kv = idoc_qwen_cache_new(mb->m.qwen, 1, cfg->cutoff_len + max_new + 64);
  if (!kv) {
    idoc_loader_close(L);
    return IDOC_ERR;
  }
  int n_prefix = 0;
  int32_t *prefix = fast_prefix(mb->tok, cfg->eval_fast, &n_prefix);
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, (size_t)16 << 20);
  // AUC-Judd with MATLAB's jitter (seeded): without it, tied prediction values at fixation
  // pixels (exact zeros after the decoder's ReLU) make the ROC area meaningless.
  idoc_eval_opts eo = idoc_eval_opts_default();
  eo.auc_jitter = true;
  eo.jitter_seed = 0;
  idoc_eval_acc *acc = idoc_eval_acc_new(&eo);
  double t0 = idoc_now(), gen_tokens = 0, zero_mse[2] = {0, 0};
  int64_t zero_n[2] = {0, 0};
  int rc = IDOC_OK;
  char *first_text = NULL;
  for (uint64_t i = 0; i < n && rc == IDOC_OK; i++) {
    idoc_loader_item it;
    if (idoc_loader_next(L, &it)) {
      rc = IDOC_ERR;
      break;
    }
    idoc_sft_example *ex = it.extra;
    judged j;
    rc = judge(c, mb, kv, ex, prefix, n_prefix, max_new, &j);
    if (rc == IDOC_OK) {
      gen_tokens += j.n_tokens;
      if (!first_text) first_text = idoc_xstrdup(j.text);
      idoc_eval_sample s = {0};
      for (int d = 0; d < 4; d++) {
        s.gt[d] = ex->scores[d];
        s.pred[d] = j.parsed.score[d];
        s.parsed[d] = j.parsed.score_valid[d] && isfinite(j.parsed.score[d]);
      }
      // Maps: a missing task token predicts an all-zero map (the reference's fallback).
      size_t np = (size_t)ex->map_h * ex->map_w;
      float *zero = NULL;
      if (mb->m.dec && ex->gt_mis && ex->gt_art) {
        const float *gt[2] = {ex->gt_art, ex->gt_mis};
        float *pr[2] = {j.map[1], j.map[0]};
        for (int k = 0; k < 2; k++) {
          if (!pr[k] || j.map_h != ex->map_h || j.map_w != ex->map_w) {
            if (!zero) zero = idoc_xcalloc(np, sizeof(float));
            pr[k] = zero;
          }
          s.pred_map[k] = pr[k];
          s.gt_map[k] = gt[k];
          s.map_h[k] = ex->map_h;
          s.map_w[k] = ex->map_w;
          double z = 0;
          for (size_t p = 0; p < np; p++)
            z += (double)gt[k][p] * gt[k][p];
          zero_mse[k] += z / (double)np;
          zero_n[k]++;
        }
      }
      rc = idoc_eval_acc_add(acc, &s);
      free(zero);
      judged_free(&j);
    }
    idoc_loader_item_free(&it);
    if (isatty(2)) {
      char extra[64];
      snprintf(extra, sizeof extra, "eval %s", tag);
      idoc_progress((int64_t)i + 1, (int64_t)n, idoc_now() - t0, extra);
    }
  }
  idoc_eval_result r;
  if (rc == IDOC_OK) {
    idoc_eval_acc_finalize(acc, &r);
    char *js = idoc_eval_result_json(&r), *tab = idoc_eval_result_table(&r);
    double secs = idoc_now() - t0;
    printf("eval %s on %s: %lld samples, %.1f s, %.0f generated tokens/s%s\n%s", tag,
           cfg->eval_dataset, (long long)r.n_samples, secs, gen_tokens / (secs + 1e-9),
           cfg->eval_fast ? " (fast mode)" : "", tab);
    if (zero_n[0])
      printf("all-zero-map baseline MSE: artifact %.5f, misalignment %.5f\n",
             zero_mse[0] / zero_n[0], zero_mse[1] / zero_n[1]);
    if (first_text) printf("first completion:\n%s\n", first_text);
    if (logf) {
      fprintf(logf, "{\"eval\": \"%s\", \"result\": %s}\n", tag, js);
      fflush(logf);
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/eval_%s.json", out_dir, tag);
    rc = idoc_write_file_atomic(p, js, strlen(js));
    if (rc == IDOC_OK && !strcmp(tag, "final")) {
      snprintf(p, sizeof p, "%s/eval_results.json", out_dir);
      rc = idoc_write_file_atomic(p, js, strlen(js));
    }
    free(js);
    free(tab);
    if (result) *result = r;
  }
  free(first_text);
  idoc_eval_acc_free(acc);
  idoc_ctx_free(c);
  free(prefix);
  idoc_qwen_cache_free(kv);
  idoc_loader_close(L);
  return rc;
}

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
  idoc_model_bundle mb = {0};
  bool cot = false;
  int rc = load_for_eval(ckpt, n_over, over, &cfg, &mb, &cot);
  if (rc == IDOC_OK) {
    free(cfg.eval_dataset);
    cfg.eval_dataset = idoc_xstrdup(data);
    cfg.eval_fast = cfg.eval_fast || fast;
    rc = idoc_mkdir_p(out ? out : ckpt);
    if (rc == IDOC_OK)
      rc = idoc_evaluate_model(&cfg, &mb, cot, out ? out : ckpt, "final", NULL, NULL);
  }
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
          "Prints the reasoning and the four scores; writes misalignment.png, artifact.png\n"
          "(decoder resolution) and overlay.png (the image, artifact red, misalignment blue).\n");
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
  judged j = {0};
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
    prefix = fast_prefix(mb.tok, fast || cfg.eval_fast, &n_prefix);
    c = idoc_ctx_new(IDOC_DEV_CPU, (size_t)16 << 20);
    kv = idoc_qwen_cache_new(mb.m.qwen, 1, ex.n + n_prefix + cfg.max_new_tokens + 16);
    rc = kv ? judge(c, &mb, kv, &ex, prefix, n_prefix, cfg.max_new_tokens, &j) : IDOC_ERR;
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
    char p[4200];
    const char *names[2] = {"misalignment", "artifact"};
    for (int k = 0; k < 2 && rc == IDOC_OK; k++) {
      snprintf(p, sizeof p, "%s/%s.png", out, names[k]);
      if (j.map[k])
        rc = write_map_png(p, j.map[k], j.map_h, j.map_w);
      else
        printf("no %s task token generated: no %s map\n", names[k], names[k]);
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
      }
      free(up[0]);
      free(up[1]);
    }
    if (rc == IDOC_OK) printf("wrote %s/{misalignment,artifact,overlay}.png\n", out);
  }
  if (rc) fprintf(stderr, "idoc predict: %s\n", idoc_last_error());
  judged_free(&j);
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
