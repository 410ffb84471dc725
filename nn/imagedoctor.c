#include "nn/imagedoctor.h"

#include <math.h>

#include "nn/json.h"
#include "nn/ops.h"
#include "nn/safetensors.h"

// First position p in [s0, s1) with ids[p] == tok; -1 if none (or if it is the first token,
// which has no preceding state).
static int find_token(const int32_t *ids, int s0, int s1, int tok) {
  for (int p = s0 + 1; p < s1; p++)
    if (ids[p] == tok) return p;
  return -1;
}

// The row whose hidden state predicts task token `kind` (0 <|mis|>, 1 <|art|>) in [s0, s1), or
// -1: with learned queries ("w/o task token") the decoder ignores the LLM row, any row will do.
static int task_row(const idoc_imagedoctor *m, const int32_t *ids, int s0, int s1, int kind) {
  if (m->dec->cfg.learned_query) return s0 + 1 < s1 ? s0 + 1 : -1;
  return find_token(ids, s0, s1, kind ? m->art_token_id : m->mis_token_id);
}

void idoc_imagedoctor_count(const idoc_imagedoctor *m, const int32_t *ids, const int32_t *labels,
                            int len, const float *gt_mis, const float *gt_art, idoc_id_norm *n) {
  for (int t = 1; t < len; t++)
    n->tokens += labels[t] != -100;
  if (!m->dec) return;
  if (gt_mis && task_row(m, ids, 0, len, 0) >= 0) n->n_mis++;
  if (gt_art && task_row(m, ids, 0, len, 1) >= 0) n->n_art++;
}

idoc_id_loss idoc_imagedoctor_loss_dev(idoc_ctx *c, idoc_imagedoctor *m, const idoc_id_batch *b) {
  idoc_id_loss out = {0};
  out.ce = out.mse_mis = out.mse_art = NAN;
  const idoc_qwen_batch *qb0 = &b->qb;
  int64_t T = idoc_numel(qb0->ids);
  // The task-token rows come from the ids on the host: device ids are read back once here and
  // the forward gets the host copy (it uploads it), so nothing is read twice.
  const int32_t *ids = idoc_ctx_host_view(c, qb0->ids);
  idoc_qwen_batch qh = *qb0;
  if (qb0->ids->dev.kind != IDOC_CPU)
    qh.ids = idoc_tensor_wrap(c->act, (void *)ids, IDOC_I32, IDOC_DEV_CPU, 1, &T);
  const idoc_qwen_batch *qb = &qh;
  idoc_tensor *feats = NULL;
  idoc_tensor *hidden = idoc_qwen_forward_hidden(c, m->qwen, qb, &feats);

  // Targets on the host (in the step arena, alive for backward): counted and uploaded once.
  int32_t *tgt = idoc_arena_alloc_host(c->act, (size_t)T * sizeof *tgt);
  idoc_qwen_shift_labels(b->labels, qb->cu_seq, qb->n_seq, tgt, -100);
  for (int64_t t = 0; t < T; t++)
    out.n_tokens += tgt[t] != -100;
  idoc_tensor *tt = idoc_tensor_wrap(c->act, tgt, IDOC_I32, IDOC_DEV_CPU, 1, &T);
  idoc_tensor *ce =
      idoc_head_cross_entropy(c, hidden, m->qwen->lm_head, tt, -100, m->qwen->head_chunk);
  out.ce_t = ce;
  out.loss = ce;
  if (b->norm) // this batch's share of the step's token mean
    out.loss = idoc_scale(
        c, ce, b->norm->tokens > 0 ? (float)((double)out.n_tokens / b->norm->tokens) : 0.0f);
  if (!m->dec) return out;

  const int ms = m->qwen->cfg.spatial_merge_size;
  idoc_tensor *sum_mis = NULL, *sum_art = NULL;
  int64_t feat_row = 0;
  for (int s = 0; s < qb->n_seq; s++) {
    IDOC_CHECK(s < qb->n_images, "imagedoctor: sequence %d has no image for the decoder", s);
    const int32_t *g = qb->grid_thw + 3 * s;
    int Hm = g[1] / ms, Wm = g[2] / ms, n_feat = g[0] * Hm * Wm;
    int s0 = qb->cu_seq[s], s1 = qb->cu_seq[s + 1];
    int pos[2] = {task_row(m, ids, s0, s1, 0), task_row(m, ids, s0, s1, 1)};
    const float *gts[2] = {b->gt_mis ? b->gt_mis[s] : NULL, b->gt_art ? b->gt_art[s] : NULL};
    int32_t rows[2], kinds[2], nq = 0;
    for (int k = 0; k < 2; k++)
      if (pos[k] >= 0 && gts[k]) {
        rows[nq] = pos[k] - 1; // the state that predicts the task token
        kinds[nq++] = k;
      }
    if (nq > 0) {
      // The sample's image features, once per query.
      int32_t *fr = idoc_xmalloc((size_t)nq * n_feat * sizeof *fr);
      for (int q = 0; q < nq; q++)
        for (int i = 0; i < n_feat; i++)
          fr[q * n_feat + i] = (int32_t)(feat_row + i);
      idoc_tensor *qf = idoc_gather_rows(c, feats, idoc_ctx_upload_i32(c, fr, nq * n_feat));
      free(fr);
      idoc_tensor *tok = idoc_gather_rows(c, hidden, idoc_ctx_upload_i32(c, rows, nq));
      qf = idoc_cast(c, qf, IDOC_F32); // a bf16 LLM feeds the f32 decoder
      tok = idoc_cast(c, tok, IDOC_F32);
      int kk[2] = {kinds[0], nq > 1 ? kinds[1] : 0};
      idoc_tensor *pred = idoc_decoder_forward(c, m->dec, qf, tok, kk, nq, Hm, Wm);
      int64_t oh = pred->shape[1], ow = pred->shape[2];
      for (int q = 0; q < nq; q++) {
        idoc_tensor *gt = idoc_ctx_upload(c, gts[kinds[q]], IDOC_F32, 2, (int64_t[]){oh, ow});
        idoc_tensor *p = idoc_reshape(c, idoc_slice(c, pred, 0, q, 1), 2, (int64_t[]){oh, ow});
        idoc_tensor *mse = idoc_mse(c, p, gt);
        idoc_tensor **acc = kinds[q] == 0 ? &sum_mis : &sum_art;
        *acc = *acc ? idoc_add(c, *acc, mse) : mse;
        if (kinds[q] == 0)
          out.n_mis++;
        else
          out.n_art++;
      }
    }
    feat_row += n_feat;
  }
  // Mean over the samples that have each map (or over the step's maps: `norm`), then weighted
  // into the total.
  if (sum_mis) {
    idoc_tensor *mm = idoc_scale(c, sum_mis, 1.0f / (float)out.n_mis);
    out.mse_mis_t = mm;
    if (b->norm) mm = idoc_scale(c, sum_mis, (float)(1.0 / b->norm->n_mis));
    out.loss = idoc_add(c, out.loss, idoc_scale(c, mm, m->heatmap_weight));
  }
  if (sum_art) {
    idoc_tensor *ma = idoc_scale(c, sum_art, 1.0f / (float)out.n_art);
    out.mse_art_t = ma;
    if (b->norm) ma = idoc_scale(c, sum_art, (float)(1.0 / b->norm->n_art));
    out.loss = idoc_add(c, out.loss, idoc_scale(c, ma, m->heatmap_weight));
  }
  return out;
}

idoc_id_loss idoc_imagedoctor_loss(idoc_ctx *c, idoc_imagedoctor *m, const idoc_id_batch *b) {
  idoc_id_loss out = idoc_imagedoctor_loss_dev(c, m, b);
  // The components for logging: one scalar read each (a copy on the CPU).
  out.ce = idoc_tensor_get(out.ce_t, 0);
  out.mse_mis = out.mse_mis_t ? idoc_tensor_get(out.mse_mis_t, 0) : -1;
  out.mse_art = out.mse_art_t ? idoc_tensor_get(out.mse_art_t, 0) : -1;
  return out;
}

int idoc_imagedoctor_completion_maps(idoc_ctx *c, idoc_imagedoctor *m, idoc_tensor *hidden,
                                     int n_prompt, const int32_t *tokens, int n,
                                     idoc_tensor *image_feats, int Hm, int Wm, float *maps[2]) {
  maps[0] = maps[1] = NULL;
  if (!m->dec) return idoc_set_error("this model has no heatmap decoder");
  bool lq = m->dec->cfg.learned_query; // the LLM row is ignored then: any row will do
  int32_t tid[2] = {m->mis_token_id, m->art_token_id};
  bool prev = idoc_no_grad_begin(c);
  for (int k = 0; k < 2; k++) {
    int j = 0;
    while (j < n && tokens[j] != tid[k])
      j++;
    if (j == n && !lq) continue;
    int32_t row = n_prompt + (j == n ? 0 : j) - 1;
    idoc_tensor *tok =
        idoc_cast(c, idoc_gather_rows(c, hidden, idoc_ctx_upload_i32(c, &row, 1)), IDOC_F32);
    idoc_tensor *pred =
        idoc_decoder_forward(c, m->dec, idoc_cast(c, image_feats, IDOC_F32), tok, &k, 1, Hm, Wm);
    maps[k] = idoc_xmalloc(idoc_nbytes(pred));
    idoc_tensor_to_host(pred, maps[k]);
  }
  idoc_grad_restore(c, prev);
  return IDOC_OK;
}

// ---- checkpoints --------------------------------------------------------------------------------
// ImageDoctor keys of config.json, with the reference's values as defaults.
static int read_id_config(const char *path, idoc_imagedoctor *m, idoc_decoder_config *dc,
                          bool *has_layout) {
  idoc_json_doc *doc = idoc_json_parse_file(path, NULL);
  if (!doc) return IDOC_ERR;
  const idoc_json *r = idoc_json_root(doc);
  int64_t mis, art;
  double w;
  int rc = IDOC_OK;
  if (idoc_json_get_int64(r, "misalignment_token_id", 0, INT32_MAX, 151665, &mis) ||
      idoc_json_get_int64(r, "artifact_token_id", 0, INT32_MAX, 151666, &art) ||
      idoc_json_get_double(r, "heatmap_weight", 1.0, &w)) {
    rc = idoc_wrap_error("%s", path);
    goto out;
  }
  m->mis_token_id = (int)mis;
  m->art_token_id = (int)art;
  m->heatmap_weight = (float)w; // checked as the float it is used as
  if (!isfinite(m->heatmap_weight) || m->heatmap_weight < 0) {
    rc = idoc_set_error("%s: heatmap_weight: %g is not a finite, non-negative 32-bit float", path,
                        w);
    goto out;
  }
  const idoc_json *hd = idoc_json_get(r, "heatmap_decoder");
  *has_layout = hd != NULL;
  if (hd) {
    int64_t v[8];
    const char *keys[] = {"dim", "heads", "depth", "mlp_dim", "downsample", "c1", "c2", "c3"};
    for (int i = 0; i < 8; i++)
      if (idoc_json_get_int64(hd, keys[i], 1, 1 << 20, 0, &v[i]) || v[i] == 0) {
        rc = idoc_set_error("%s: heatmap_decoder.%s: missing or not a positive integer", path,
                            keys[i]);
        goto out;
      }
    bool lq = false;
    if (idoc_json_get_bool(hd, "learned_query", false, &lq)) {
      rc = idoc_wrap_error("%s: heatmap_decoder", path);
      goto out;
    }
    *dc = (idoc_decoder_config){.llm_hidden = dc->llm_hidden,
                                .dim = (int)v[0],
                                .heads = (int)v[1],
                                .depth = (int)v[2],
                                .mlp_dim = (int)v[3],
                                .downsample = (int)v[4],
                                .c1 = (int)v[5],
                                .c2 = (int)v[6],
                                .c3 = (int)v[7],
                                .learned_query = lq};
  }
out:
  idoc_json_free(doc);
  return rc;
}

int idoc_imagedoctor_layout(const char *dir, idoc_qwen_config *qc, idoc_decoder_config *dc,
                            bool *has_decoder) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (idoc_qwen_config_load(path, qc)) return IDOC_ERR;
  *dc = idoc_decoder_config_release();
  dc->llm_hidden = qc->hidden_size;
  idoc_imagedoctor m;
  if (read_id_config(path, &m, dc, has_decoder)) return IDOC_ERR;
  if (*has_decoder) return IDOC_OK;
  idoc_ckpt *ck;
  if (idoc_ckpt_open(&ck, dir)) return IDOC_ERR;
  for (int i = 0; i < idoc_ckpt_count(ck) && !*has_decoder; i++)
    *has_decoder = idoc_decoder_owns(idoc_ckpt_name_at(ck, i));
  idoc_ckpt_close(ck);
  return IDOC_OK;
}

int idoc_imagedoctor_open(const char *dir, idoc_params *ps, idoc_imagedoctor *m, bool fresh_decoder,
                          const idoc_decoder_config *dcfg, uint64_t seed) {
  return idoc_imagedoctor_open_as(dir, ps, m, fresh_decoder, dcfg, seed, IDOC_F32);
}

int idoc_imagedoctor_open_as(const char *dir, idoc_params *ps, idoc_imagedoctor *m,
                             bool fresh_decoder, const idoc_decoder_config *dcfg, uint64_t seed,
                             idoc_dtype llm_dtype) {
  memset(m, 0, sizeof *m);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  idoc_qwen_config qc;
  if (idoc_qwen_config_load(path, &qc)) return IDOC_ERR;
  idoc_decoder_config dc = idoc_decoder_config_release();
  dc.llm_hidden = qc.hidden_size;
  bool has_layout = false;
  if (read_id_config(path, m, &dc, &has_layout)) return IDOC_ERR;
  if (dcfg) dc = *dcfg;
  idoc_ckpt *ck;
  if (idoc_ckpt_open(&ck, dir)) return IDOC_ERR;
  // A checkpoint has the decoder when config.json declares it or any heatmap.* tensor is there;
  // then every tensor the decoder computes with is required (a partial decoder must never load
  // as a plain Qwen model, nor get a fresh random decoder attached).
  bool ck_has_decoder = has_layout;
  for (int i = 0; i < idoc_ckpt_count(ck) && !ck_has_decoder; i++)
    ck_has_decoder = idoc_decoder_owns(idoc_ckpt_name_at(ck, i));
  m->qwen = idoc_qwen_new(&qc, ps, llm_dtype);
  if (ck_has_decoder || fresh_decoder) m->dec = idoc_decoder_new(&dc, ps);
  int rc = IDOC_OK;
  for (int i = 0; i < ps->n && rc == IDOC_OK; i++) {
    idoc_tensor *w = ps->p[i].w;
    bool dec = idoc_decoder_owns(w->name);
    if (dec && !ck_has_decoder) continue; // initialized below
    if (!idoc_ckpt_find(ck, w->name)) {
      if (dec && idoc_decoder_unused(w->name)) { // SAM prompt pieces the decoder never reads
        idoc_tensor_zero(w);
        continue;
      }
      rc = dec ? idoc_set_error("%s: tensor '%s' is missing, but the checkpoint has the heatmap "
                                "decoder (%s): every decoder tensor is required",
                                dir, w->name,
                                has_layout ? "config.json declares it" : "it holds heatmap tensors")
               : idoc_set_error("%s: tensor '%s' is missing from the checkpoint", dir, w->name);
      break;
    }
    rc = idoc_ckpt_load(ck, w->name, w);
  }
  idoc_ckpt_close(ck);
  if (rc == IDOC_OK && m->dec && !ck_has_decoder) idoc_decoder_init(m->dec, seed);
  if (rc != IDOC_OK) idoc_imagedoctor_close(m);
  return rc;
}

int idoc_imagedoctor_save(const idoc_imagedoctor *m, const char *dir) {
  if (!m->dec) return idoc_qwen_save(m->qwen, dir, IDOC_F32); // a plain Qwen2.5-VL (stage 1)
  char extra[1024];
  int k = snprintf(extra, sizeof extra,
                   "\"misalignment_token_id\": %d,\n  \"artifact_token_id\": %d,\n"
                   "  \"heatmap_weight\": %.9g,\n  ",
                   m->mis_token_id, m->art_token_id, (double)m->heatmap_weight);
  {
    const idoc_decoder_config *d = &m->dec->cfg;
    snprintf(extra + k, sizeof extra - (size_t)k,
             "\"heatmap_decoder\": {\"dim\": %d, \"heads\": %d, \"depth\": %d, \"mlp_dim\": %d, "
             "\"downsample\": %d, \"c1\": %d, \"c2\": %d, \"c3\": %d, \"learned_query\": %s},\n  ",
             d->dim, d->heads, d->depth, d->mlp_dim, d->downsample, d->c1, d->c2, d->c3,
             d->learned_query ? "true" : "false");
  }
  return idoc_qwen_save_with(m->qwen, dir, IDOC_F32, extra);
}

void idoc_imagedoctor_close(idoc_imagedoctor *m) {
  idoc_decoder_free(m->dec);
  idoc_qwen_free(m->qwen);
  m->dec = NULL;
  m->qwen = NULL;
}
