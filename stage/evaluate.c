// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "stage/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/imagedoctor_text.h"
#include "nn/comm.h"
#include "nn/generate.h"
#include "nn/ops.h"
#include "nn/util.h"
#include "stage/baselines.h"
#include "stage/stage.h"

void idoc_judged_free(idoc_judged *j) {
  free(j->text);
  free(j->map[0]);
  free(j->map[1]);
  idoc_parsed_response_free(&j->parsed);
  memset(j, 0, sizeof *j);
}

int idoc_judge(idoc_ctx *c, idoc_model_bundle *mb, idoc_qwen_cache *kv, const idoc_sft_example *ex,
               const int32_t *prefix, int n_prefix, int max_new, idoc_judged *out) {
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
  if (rc) idoc_judged_free(out);
  return rc;
}

int32_t *idoc_fast_prefix(idoc_tokenizer *tok, bool fast, int *n) {
  int32_t *ids = NULL;
  size_t k = 0;
  *n = 0;
  if (!fast) return NULL;
  if (idoc_tokenize(tok, IDOC_FAST_PREFIX, strlen(IDOC_FAST_PREFIX), &ids, &k)) return NULL;
  *n = (int)k;
  return ids;
}

// One judged sample as it travels to rank 0: the header, then (when has_maps) the predicted
// artifact and misalignment maps and the ground truths, h*w floats each.
typedef struct {
  double pred[4], gt[4];
  int32_t parsed[4];
  int32_t valid; // 0: a padding repeat of the sharded order (not counted)
  int32_t has_maps, map_h, map_w, n_tokens, pad;
} eval_rec;

// The record of one sample (malloc'ed; *n bytes).
static void *make_record(const idoc_model_bundle *mb, const idoc_sft_example *ex,
                         const idoc_judged *j, bool valid, size_t *n) {
  eval_rec h = {0};
  for (int d = 0; d < 4; d++) {
    h.gt[d] = ex->scores[d];
    h.pred[d] = j->parsed.score[d];
    h.parsed[d] = j->parsed.score_valid[d] && isfinite(j->parsed.score[d]);
  }
  h.valid = valid;
  h.n_tokens = j->n_tokens;
  h.has_maps = mb->m.dec && ex->gt_mis && ex->gt_art;
  h.map_h = ex->map_h;
  h.map_w = ex->map_w;
  size_t np = h.has_maps ? (size_t)ex->map_h * ex->map_w : 0;
  *n = sizeof h + 4 * np * sizeof(float);
  char *r = idoc_xmalloc(*n);
  memcpy(r, &h, sizeof h);
  if (np) {
    float *m = (float *)(r + sizeof h);
    // Maps: a missing task token predicts an all-zero map (the reference's fallback).
    const float *pr[2] = {j->map[1], j->map[0]}, *gt[2] = {ex->gt_art, ex->gt_mis};
    for (int k = 0; k < 2; k++) {
      if (pr[k] && j->map_h == ex->map_h && j->map_w == ex->map_w)
        memcpy(m + (size_t)k * np, pr[k], np * sizeof(float));
      else
        memset(m + (size_t)k * np, 0, np * sizeof(float));
      memcpy(m + (size_t)(2 + k) * np, gt[k], np * sizeof(float));
    }
  }
  return r;
}

// Adds one record (in the global order) to the accumulator.
static int add_record(idoc_eval_acc *acc, const char *r, double *gen_tokens, double zero_mse[2],
                      int64_t zero_n[2]) {
  eval_rec h;
  memcpy(&h, r, sizeof h);
  if (!h.valid) return IDOC_OK;
  *gen_tokens += h.n_tokens;
  idoc_eval_sample s = {0};
  for (int d = 0; d < 4; d++) {
    s.gt[d] = h.gt[d];
    s.pred[d] = h.pred[d];
    s.parsed[d] = h.parsed[d];
  }
  if (h.has_maps) {
    size_t np = (size_t)h.map_h * h.map_w;
    const float *m = (const float *)(r + sizeof h);
    for (int k = 0; k < 2; k++) {
      s.pred_map[k] = m + (size_t)k * np;
      s.gt_map[k] = m + (size_t)(2 + k) * np;
      s.map_h[k] = h.map_h;
      s.map_w[k] = h.map_w;
      double z = 0;
      for (size_t p = 0; p < np; p++)
        z += (double)s.gt_map[k][p] * s.gt_map[k][p];
      zero_mse[k] += z / (double)np;
      zero_n[k]++;
    }
  }
  return idoc_eval_acc_add(acc, &s);
}

// The eval sheet (stage/stage.h) of the first records: each sample's image read back from the
// split. Problems are warnings: the sheet is a picture, the metrics do not depend on it.
#define SHEET_ROWS 6
static void eval_sheet(const char *split, const char *out_dir, const char *tag, char **recs,
                       int n) {
  idoc_dataset *ds = idoc_dataset_open(split);
  idoc_sheet_row rows[SHEET_ROWS];
  idoc_sample s[SHEET_ROWS];
  int k = 0, rc = ds ? IDOC_OK : IDOC_ERR;
  for (int i = 0; i < n && rc == IDOC_OK; i++) {
    eval_rec h;
    memcpy(&h, recs[i], sizeof h);
    if (idoc_dataset_read(ds, (size_t)i, true, &s[k])) {
      rc = IDOC_ERR;
      break;
    }
    idoc_sheet_row *r = &rows[k];
    memset(r, 0, sizeof *r);
    r->index = i;
    r->image = s[k].image, r->img_h = s[k].img_h, r->img_w = s[k].img_w;
    for (int d = 0; d < 4; d++)
      r->gt[d] = h.gt[d], r->pred[d] = h.pred[d], r->parsed[d] = h.parsed[d];
    if (h.has_maps) {
      size_t np = (size_t)h.map_h * h.map_w;
      const float *m = (const float *)(recs[i] + sizeof h);
      r->pred_map[0] = m, r->pred_map[1] = m + np;
      r->gt_map[0] = m + 2 * np, r->gt_map[1] = m + 3 * np;
      r->map_h = h.map_h, r->map_w = h.map_w;
    }
    k++;
  }
  if (rc == IDOC_OK) rc = idoc_eval_sheet(out_dir, tag, rows, k);
  if (rc) fprintf(stderr, "warning: eval sheet: %s\n", idoc_last_error());
  for (int i = 0; i < k; i++)
    idoc_sample_free(&s[i]);
  if (ds) idoc_dataset_close_reader(ds);
}

// Sharded over the job's ranks: rank r judges samples r, r + W, ... (the loader's order without
// shuffling), the records go to rank 0 round by round and are added in the global order, so
// the metrics (AUC-Judd's jitter stream included) are the one-rank metrics, bit for bit.
int idoc_evaluate_model(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                        const char *out_dir, const char *tag, FILE *logf,
                        idoc_eval_result *result) {
  const int R = idoc_comm_rank(), W = idoc_comm_world();
  bool main = R == 0;
  idoc_comm_set_phase("evaluation");
  idoc_example_ctx ectx = {mb->tok, idoc_sft_opts_from_config(cfg, cot, false), NULL};
  idoc_loader *L = idoc_example_loader_open(cfg->eval_dataset, &ectx, 0, false,
                                            (uint64_t)cfg->eval_max_samples, R, W);
  if (idoc_comm_any_failed(L ? IDOC_OK : IDOC_ERR)) {
    if (L) idoc_loader_close(L);
    return IDOC_ERR;
  }
  uint64_t n = idoc_loader_epoch_len(L), n_total = idoc_loader_get_cursor(L).n;
  int max_new = cfg->max_new_tokens;
  idoc_qwen_cache *kv = idoc_qwen_cache_new(mb->m.qwen, 1, cfg->cutoff_len + max_new + 64);
  if (idoc_comm_any_failed(kv ? IDOC_OK : IDOC_ERR)) {
    if (kv) idoc_qwen_cache_free(kv);
    idoc_loader_close(L);
    return IDOC_ERR;
  }
  int n_prefix = 0;
  int32_t *prefix = idoc_fast_prefix(mb->tok, cfg->eval_fast, &n_prefix);
  idoc_ctx *c = idoc_ctx_new(mb->dev, (size_t)16 << 20); // generation on the model's device
  // AUC-Judd with MATLAB's jitter (seeded): without it, tied prediction values at fixation
  // pixels (exact zeros after the decoder's ReLU) make the ROC area meaningless.
  idoc_eval_opts eo = idoc_eval_opts_default();
  eo.auc_jitter = true;
  eo.jitter_seed = 0;
  idoc_eval_acc *acc = main ? idoc_eval_acc_new(&eo) : NULL;
  double t0 = idoc_now(), gen_tokens = 0, zero_mse[2] = {0, 0};
  int64_t zero_n[2] = {0, 0};
  int rc = IDOC_OK;
  char *first_text = NULL;
  char *sheet[SHEET_ROWS] = {0};
  int n_sheet = 0;
  for (uint64_t i = 0; i < n; i++) {
    idoc_loader_item it;
    bool have = false;
    void *rec = NULL;
    size_t rn = 0;
    if (rc == IDOC_OK) rc = idoc_loader_next(L, &it);
    if (rc == IDOC_OK) {
      have = true;
      idoc_sft_example *ex = it.extra;
      idoc_judged j;
      rc = idoc_judge(c, mb, kv, ex, prefix, n_prefix, max_new, &j);
      if (rc == IDOC_OK) {
        if (!first_text && main) first_text = idoc_xstrdup(j.text);
        rec = make_record(mb, ex, &j, i * (uint64_t)W + (uint64_t)R < n_total, &rn);
        idoc_judged_free(&j);
      }
    }
    if (have) idoc_loader_item_free(&it);
    // A failing rank still takes part in the round (an empty record), then all stop together.
    if (idoc_comm_any_failed(rc)) {
      free(rec);
      rc = IDOC_ERR;
      break;
    }
    size_t *sizes = NULL;
    char *all = idoc_comm_gather_bytes(rec, rn, 0, &sizes);
    free(rec);
    if (main) {
      size_t o = 0;
      for (int r = 0; r < W && rc == IDOC_OK; r++) {
        uint64_t gi = i * (uint64_t)W + (uint64_t)r;
        if (gi == (uint64_t)n_sheet && n_sheet < SHEET_ROWS && gi < n_total) {
          sheet[n_sheet] = idoc_xmalloc(sizes[r]);
          memcpy(sheet[n_sheet++], all + o, sizes[r]);
        }
        rc = add_record(acc, all + o, &gen_tokens, zero_mse, zero_n);
        o += sizes[r];
      }
    }
    free(all);
    free(sizes);
    if (isatty(2) && main) {
      char extra[64];
      snprintf(extra, sizeof extra, "eval %s", tag);
      idoc_progress((int64_t)i + 1, (int64_t)n, idoc_now() - t0, extra);
    }
  }
  idoc_eval_result r;
  memset(&r, 0, sizeof r);
  if (rc == IDOC_OK && main) {
    idoc_eval_acc_finalize(acc, &r);
    char *js = idoc_eval_result_json(&r), *tab = idoc_eval_result_table(&r);
    double secs = idoc_now() - t0;
    printf("eval %s on %s: %lld samples%s, %.1f s, %.0f generated tokens/s%s\n%s", tag,
           cfg->eval_dataset, (long long)r.n_samples, W > 1 ? " (sharded over the ranks)" : "",
           secs, gen_tokens / (secs + 1e-9), cfg->eval_fast ? " (fast mode)" : "", tab);
    if (zero_n[0])
      printf("all-zero-map baseline MSE: artifact %.5f, misalignment %.5f\n",
             zero_mse[0] / zero_n[0], zero_mse[1] / zero_n[1]);
    if (cfg->dataset[0]) { // what the split allows: the ceiling and simple baselines
      idoc_split_baselines sb;
      if (idoc_split_baselines_compute(cfg->dataset, cfg->eval_dataset, r.n_samples, 1000, &sb)) {
        fprintf(stderr, "warning: no split reference: %s\n", idoc_last_error());
      } else {
        char *t = idoc_split_baselines_text(&sb), *j = idoc_split_baselines_json(&sb);
        printf("%s", t);
        char p[4200];
        snprintf(p, sizeof p, "%s/split_baselines.json", out_dir);
        rc = idoc_write_file_atomic(p, j, strlen(j));
        free(t);
        free(j);
      }
    }
    if (cfg->plot_loss) eval_sheet(cfg->eval_dataset, out_dir, tag, sheet, n_sheet);
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
  }
  if (idoc_comm_any_failed(rc)) rc = IDOC_ERR;
  idoc_comm_broadcast_bytes(&r, sizeof r, 0);
  if (rc == IDOC_OK && result) *result = r;
  free(first_text);
  for (int i = 0; i < n_sheet; i++)
    free(sheet[i]);
  if (acc) idoc_eval_acc_free(acc);
  idoc_ctx_free(c);
  free(prefix);
  idoc_qwen_cache_free(kv);
  idoc_loader_close(L);
  return rc;
}
