// Incremental decoding for Qwen2.5-VL: a preallocated per-layer KV cache, prefill of packed
// prompts (with their images) and one-token decode steps for many sequences at once.
//
// The decoder layer repeats idoc_qwen_forward's op sequence exactly, so a prefill reproduces the
// full forward's hidden states bit for bit and a decode step differs from it only by the
// rounding of the smaller matrix products.
//
// A decode step runs the new tokens of all sequences as one batch. Their keys are the cache rows
// of each slot; the slots are not adjacent in the cache tensor, so the attention call gets extra
// segments with no queries that cover the rows between them (they are never read).
#include <math.h>

#include "kernels/ops.h"
#include "nn/ops.h"
#include "nn/qwen_model.h"

idoc_qwen_cache *idoc_qwen_cache_new(const idoc_qwen *m, int n_slots, int max_len) {
  const idoc_qwen_config *cfg = &m->cfg;
  if (n_slots < 1 || max_len < 1)
    return idoc_set_error("kv cache: n_slots (%d) and max_len (%d) must be positive", n_slots,
                          max_len),
           NULL;
  if ((int64_t)n_slots * max_len > INT32_MAX)
    return idoc_set_error("kv cache: %d slots x %d tokens do not fit int32 row indices", n_slots,
                          max_len),
           NULL;
  idoc_qwen_cache *kv = idoc_xcalloc(1, sizeof *kv);
  kv->n_slots = n_slots;
  kv->max_len = max_len;
  kv->n_layers = cfg->num_hidden_layers;
  kv->kv_dim = cfg->num_key_value_heads * idoc_qwen_head_dim(cfg);
  idoc_dtype dt = m->embed->dtype;
  int64_t rows = (int64_t)n_slots * max_len;
  size_t one = ((size_t)rows * kv->kv_dim * idoc_dtype_size(dt) + 255) / 256 * 256;
  size_t total = one * 2 * (size_t)(kv->n_layers > 0 ? kv->n_layers : 1);
  kv->arena = idoc_arena_new("kv cache", m->embed->dev, total); // one block: one allocation
  kv->k = idoc_xcalloc((size_t)kv->n_layers + 1, sizeof *kv->k);
  kv->v = idoc_xcalloc((size_t)kv->n_layers + 1, sizeof *kv->v);
  for (int l = 0; l < kv->n_layers; l++) {
    kv->k[l] = idoc_tensor_2d(kv->arena, dt, rows, kv->kv_dim);
    kv->v[l] = idoc_tensor_2d(kv->arena, dt, rows, kv->kv_dim);
  }
  size_t ns = (size_t)n_slots, half = (size_t)idoc_qwen_head_dim(cfg) / 2;
  kv->len = idoc_arena_alloc_host(kv->arena, ns * sizeof *kv->len);
  kv->rope_delta = idoc_arena_alloc_host(kv->arena, ns * sizeof *kv->rope_delta);
  // segments of a decode step: n real ones, at most n_slots + 1 gap pieces
  kv->cu_q = idoc_arena_alloc_host(kv->arena, (3 * ns + 3) * sizeof *kv->cu_q);
  kv->cu_k = idoc_arena_alloc_host(kv->arena, (3 * ns + 3) * sizeof *kv->cu_k);
  kv->rows = idoc_arena_alloc_host(kv->arena, ns * sizeof *kv->rows);
  kv->pos = idoc_arena_alloc_host(kv->arena, ns * sizeof *kv->pos);
  kv->cosv = idoc_arena_alloc_host(kv->arena, ns * half * sizeof *kv->cosv);
  kv->sinv = idoc_arena_alloc_host(kv->arena, ns * half * sizeof *kv->sinv);
  return kv;
}

void idoc_qwen_cache_free(idoc_qwen_cache *kv) {
  if (!kv) return;
  idoc_arena_free(kv->arena);
  free(kv->k);
  free(kv->v);
  free(kv);
}

void idoc_qwen_cache_clear(idoc_qwen_cache *kv) {
  memset(kv->len, 0, (size_t)kv->n_slots * sizeof *kv->len);
  memset(kv->rope_delta, 0, (size_t)kv->n_slots * sizeof *kv->rope_delta);
}

// ---- the decoder layer, split around attention
// ---------------------------------------------------
static void layer_qkv(idoc_ctx *c, const idoc_qwen_config *cfg, const idoc_qwen_layer *L,
                      idoc_tensor *h, idoc_tensor *cos, idoc_tensor *sin, idoc_tensor **q,
                      idoc_tensor **k, idoc_tensor **v) {
  idoc_tensor *n = idoc_rmsnorm(c, h, L->in_norm, cfg->rms_norm_eps);
  *q = idoc_rotary(c, idoc_linear(c, n, L->q_w, L->q_b), cos, sin, cfg->num_attention_heads);
  *k = idoc_rotary(c, idoc_linear(c, n, L->k_w, L->k_b), cos, sin, cfg->num_key_value_heads);
  *v = idoc_linear(c, n, L->v_w, L->v_b);
}

static idoc_tensor *layer_out(idoc_ctx *c, const idoc_qwen_config *cfg, const idoc_qwen_layer *L,
                              idoc_tensor *h, idoc_tensor *a) {
  h = idoc_add(c, h, idoc_linear(c, a, L->o_w, NULL));
  idoc_tensor *mm = idoc_rmsnorm(c, h, L->post_norm, cfg->rms_norm_eps);
  idoc_tensor *f =
      idoc_swiglu(c, idoc_linear(c, mm, L->gate_w, NULL), idoc_linear(c, mm, L->up_w, NULL));
  return idoc_add(c, h, idoc_linear(c, f, L->down_w, NULL));
}

static float att_scale(const idoc_qwen_config *cfg) {
  return 1.0f / sqrtf((float)idoc_qwen_head_dim(cfg));
}

// Rotary tables in the model dtype from host f32 tables (converted as the full forward does).
static void upload_tables(idoc_ctx *c, idoc_dtype dt, const float *cosv, const float *sinv,
                          int64_t T, int64_t half, idoc_tensor **cos, idoc_tensor **sin) {
  int64_t shape[2] = {T, half};
  *cos = idoc_tensor_new(c->act, dt, 2, shape);
  *sin = idoc_tensor_new(c->act, dt, 2, shape);
  idoc_tensor_convert(*cos,
                      idoc_tensor_wrap(c->act, (void *)cosv, IDOC_F32, IDOC_DEV_CPU, 2, shape));
  idoc_tensor_convert(*sin,
                      idoc_tensor_wrap(c->act, (void *)sinv, IDOC_F32, IDOC_DEV_CPU, 2, shape));
}

static idoc_tensor *rows_view(idoc_ctx *c, idoc_tensor *t, int64_t start, int64_t len) {
  return idoc_tensor_rows(c->act, t, start, len);
}

// ---- prefill -----------------------------------------------------------------------------------
int idoc_qwen_prefill(idoc_ctx *c, idoc_qwen *m, idoc_qwen_cache *kv, const idoc_qwen_batch *b,
                      const int32_t *slots, const int32_t *n_logits, idoc_tensor **logits,
                      idoc_tensor **hidden, idoc_tensor **image_feats) {
  const idoc_qwen_config *cfg = &m->cfg;
  int64_t T = idoc_numel(b->ids);
  int ns = b->n_seq, ms = cfg->spatial_merge_size;
  if (ns < 1 || b->cu_seq[0] != 0 || b->cu_seq[ns] != T)
    return idoc_set_error("prefill: cu_seq does not cover the %lld tokens", (long long)T);
  if (b->n_images > 0 && !b->pixel_values)
    return idoc_set_error("prefill: %d image(s) but no pixel_values", b->n_images);
  int64_t n_patches = 0;
  for (int i = 0; i < b->n_images; i++) {
    const int32_t *g = b->grid_thw + 3 * i;
    if (g[0] < 1 || g[1] < 1 || g[2] < 1 || g[1] % ms || g[2] % ms)
      return idoc_set_error("prefill: image %d grid (%d,%d,%d) is not a positive multiple of the "
                            "merge size %d",
                            i, g[0], g[1], g[2], ms);
    n_patches += (int64_t)g[0] * g[1] * g[2];
  }
  if (b->n_images > 0 && (b->pixel_values->ndim != 2 || b->pixel_values->shape[0] != n_patches ||
                          b->pixel_values->shape[1] != idoc_qwen_patch_dim(cfg)))
    return idoc_set_error("prefill: pixel_values has %lld rows of %lld, the grids need %lld of %d",
                          (long long)b->pixel_values->shape[0],
                          (long long)(b->pixel_values->ndim == 2 ? b->pixel_values->shape[1] : 0),
                          (long long)n_patches, idoc_qwen_patch_dim(cfg));
  int64_t n_rows = 0;
  for (int s = 0; s < ns; s++) {
    int32_t len = b->cu_seq[s + 1] - b->cu_seq[s], nl = n_logits ? n_logits[s] : 1;
    if (slots[s] < 0 || slots[s] >= kv->n_slots)
      return idoc_set_error("prefill: sequence %d: slot %d outside [0, %d)", s, slots[s],
                            kv->n_slots);
    for (int r = 0; r < s; r++)
      if (slots[r] == slots[s])
        return idoc_set_error("prefill: sequences %d and %d both go to slot %d", r, s, slots[s]);
    if (len < 1 || len > kv->max_len)
      return idoc_set_error("prefill: sequence %d has %d tokens, the cache holds 1..%d per slot", s,
                            len, kv->max_len);
    if (nl < 1 || nl > len)
      return idoc_set_error("prefill: sequence %d: n_logits %d outside [1, %d]", s, nl, len);
    n_rows += nl;
  }
  bool prev = idoc_no_grad_begin(c);
  idoc_arena_mark entry = idoc_arena_get_mark(c->act);
  int rc = IDOC_OK;
  idoc_dtype dt = m->embed->dtype;
  int64_t H = cfg->hidden_size, half = idoc_qwen_head_dim(cfg) / 2;

  // Host work first: ids, positions, rotary tables, image rows, logit rows. Host ids are used
  // in place (uploaded below for the embedding); device ids are read back once.
  const int32_t *ids = idoc_ctx_host_view(c, b->ids);
  for (int64_t t = 0; t < T && rc == IDOC_OK; t++)
    if (ids[t] < 0 || ids[t] >= cfg->vocab_size)
      rc = idoc_set_error("prefill: token %lld has id %d outside the vocabulary [0, %d)",
                          (long long)t, ids[t], cfg->vocab_size);
  int32_t *pos = idoc_arena_alloc_host(c->act, (size_t)3 * T * sizeof *pos);
  int32_t *sp = idoc_arena_alloc_host(c->act, (size_t)3 * T * sizeof *sp);
  int32_t *delta = idoc_arena_alloc_host(c->act, (size_t)ns * sizeof *delta);
  int img_off = 0;
  for (int s = 0; s < ns && rc == IDOC_OK; s++) {
    int32_t s0 = b->cu_seq[s], n = b->cu_seq[s + 1] - s0;
    int used = 0, d = 0;
    if (idoc_qwen_rope_index(cfg, ids + s0, n, b->grid_thw ? b->grid_thw + 3 * img_off : NULL,
                             b->n_images - img_off, sp, &used, &d)) {
      rc = idoc_wrap_error("prefill: sequence %d", s);
      break;
    }
    for (int a = 0; a < 3; a++)
      memcpy(pos + a * T + s0, sp + a * n, (size_t)n * sizeof *pos);
    delta[s] = d;
    img_off += used;
  }
  if (rc == IDOC_OK && img_off != b->n_images)
    rc = idoc_set_error("prefill: %d image(s) given, the sequences have placeholders for %d",
                        b->n_images, img_off);
  if (rc) goto fail;
  float *cosv = idoc_arena_alloc_host(c->act, (size_t)(T * half) * sizeof *cosv);
  float *sinv = idoc_arena_alloc_host(c->act, (size_t)(T * half) * sizeof *sinv);
  idoc_qwen_mrope_tables(cfg, pos, T, T, cosv, sinv);
  idoc_tensor *cosT, *sinT;
  upload_tables(c, dt, cosv, sinv, T, half, &cosT, &sinT);
  int64_t n_img_rows = 0;
  for (int64_t t = 0; t < T; t++)
    n_img_rows += ids[t] == cfg->image_token_id;
  int32_t *img_rows = idoc_arena_alloc_host(c->act, (size_t)(n_img_rows + 1) * sizeof *img_rows);
  for (int64_t t = 0, k = 0; t < T; t++)
    if (ids[t] == cfg->image_token_id) img_rows[k++] = (int32_t)t;
  int32_t *lrows = idoc_arena_alloc_host(c->act, (size_t)n_rows * sizeof *lrows);
  for (int s = 0, k = 0; s < ns; s++) {
    int32_t nl = n_logits ? n_logits[s] : 1;
    for (int32_t j = b->cu_seq[s + 1] - nl; j < b->cu_seq[s + 1]; j++)
      lrows[k++] = j;
  }

  // Buffers that outlive the per-stage resets.
  idoc_tensor *hbuf[2] = {idoc_tensor_2d(c->act, dt, T, H), idoc_tensor_2d(c->act, dt, T, H)};
  idoc_tensor *feats = NULL;
  if (b->n_images > 0) {
    feats = idoc_tensor_2d(c->act, dt, n_patches / (ms * ms), cfg->v_out_hidden);
    if (feats->shape[0] != n_img_rows) {
      rc = idoc_set_error("prefill: %lld image tokens in the text but %lld image features",
                          (long long)n_img_rows, (long long)feats->shape[0]);
      goto fail;
    }
  }
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  if (feats) {
    idoc_tensor *f = idoc_qwen_vision(c, m, b->pixel_values, b->grid_thw, b->n_images);
    IDOC_CHECK(idoc_same_shape(f, feats), "prefill: vision features have an unexpected shape");
    idoc_tensor_copy(feats, f);
    idoc_arena_reset_to(c->act, mark);
  }
  idoc_tensor *h = idoc_embedding(c, m->embed, idoc_ctx_on_device(c, b->ids));
  if (feats) h = idoc_scatter_rows(c, h, feats, idoc_ctx_upload_i32(c, img_rows, n_img_rows));
  idoc_tensor_copy(hbuf[0], h);
  idoc_arena_reset_to(c->act, mark);

  // One upload of the offsets for all layers (below the per-layer mark, so it survives).
  idoc_segments seg = idoc_segments_new(c, b->cu_seq, ns);
  mark = idoc_arena_get_mark(c->act);
  float scale = att_scale(cfg);
  for (int l = 0; l < cfg->num_hidden_layers; l++) {
    idoc_qwen_layer *L = &m->layers[l];
    idoc_tensor *q, *k, *v, *x = hbuf[l & 1];
    layer_qkv(c, cfg, L, x, cosT, sinT, &q, &k, &v);
    for (int s = 0; s < ns; s++) {
      int64_t s0 = b->cu_seq[s], n = b->cu_seq[s + 1] - s0, r0 = (int64_t)slots[s] * kv->max_len;
      idoc_tensor_copy(rows_view(c, kv->k[l], r0, n), rows_view(c, k, s0, n));
      idoc_tensor_copy(rows_view(c, kv->v[l], r0, n), rows_view(c, v, s0, n));
    }
    idoc_tensor *a = idoc_attention(c, q, k, v, &seg, &seg, cfg->num_attention_heads,
                                    cfg->num_key_value_heads, true, scale);
    idoc_tensor_copy(hbuf[(l + 1) & 1], layer_out(c, cfg, L, x, a));
    idoc_arena_reset_to(c->act, mark);
  }
  idoc_tensor *hn =
      idoc_rmsnorm(c, hbuf[cfg->num_hidden_layers & 1], m->final_norm, cfg->rms_norm_eps);
  idoc_tensor *li = idoc_ctx_upload_i32(c, lrows, n_rows);
  *logits = idoc_linear(c, idoc_gather_rows(c, hn, li), m->lm_head, NULL);
  if (hidden) *hidden = hn;
  if (image_feats) *image_feats = feats;
  for (int s = 0; s < ns; s++) {
    kv->len[slots[s]] = b->cu_seq[s + 1] - b->cu_seq[s];
    kv->rope_delta[slots[s]] = delta[s];
  }
  idoc_grad_restore(c, prev);
  return IDOC_OK;
fail:
  idoc_arena_reset_to(c->act, entry);
  idoc_grad_restore(c, prev);
  return rc;
}

int idoc_qwen_cache_copy(idoc_ctx *c, idoc_qwen_cache *kv, int src, int dst) {
  if (src < 0 || src >= kv->n_slots || dst < 0 || dst >= kv->n_slots)
    return idoc_set_error("kv cache copy: slot %d -> %d outside [0, %d)", src, dst, kv->n_slots);
  if (src == dst) return IDOC_OK;
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  int64_t n = kv->len[src], ml = kv->max_len;
  if (n > 0)
    for (int l = 0; l < kv->n_layers; l++) {
      idoc_tensor_copy(rows_view(c, kv->k[l], dst * ml, n), rows_view(c, kv->k[l], src * ml, n));
      idoc_tensor_copy(rows_view(c, kv->v[l], dst * ml, n), rows_view(c, kv->v[l], src * ml, n));
    }
  idoc_arena_reset_to(c->act, mark);
  kv->len[dst] = kv->len[src];
  kv->rope_delta[dst] = kv->rope_delta[src];
  return IDOC_OK;
}

// ---- decode ------------------------------------------------------------------------------------
// Appends query-less segments covering key rows [from, to), at most max_len rows each (the CPU
// attention kernel sizes its score rows by the longest segment).
static int add_gap(idoc_qwen_cache *kv, int n_seg, int64_t from, int64_t to) {
  while (from < to) {
    int64_t next = to - from > kv->max_len ? from + kv->max_len : to;
    kv->cu_q[n_seg + 1] = kv->cu_q[n_seg];
    kv->cu_k[n_seg + 1] = (int32_t)next;
    n_seg++;
    from = next;
  }
  return n_seg;
}

int idoc_qwen_decode(idoc_ctx *c, idoc_qwen *m, idoc_qwen_cache *kv, const int32_t *slots,
                     const int32_t *ids, int n, idoc_tensor **logits, idoc_tensor **hidden) {
  const idoc_qwen_config *cfg = &m->cfg;
  if (n < 1 || n > kv->n_slots)
    return idoc_set_error("decode: %d sequences, the cache has %d slots", n, kv->n_slots);
  int64_t ml = kv->max_len, total = (int64_t)kv->n_slots * ml;
  // Segments: [gap without queries] + [the slot's cached rows and the new one, 1 query] ...
  int n_seg = 0;
  int64_t cur = 0;
  kv->cu_q[0] = kv->cu_k[0] = 0;
  for (int i = 0; i < n; i++) {
    int32_t s = slots[i];
    if (s < 0 || s >= kv->n_slots || (i > 0 && s <= slots[i - 1]))
      return idoc_set_error("decode: slots must be strictly ascending in [0, %d) (entry %d is %d)",
                            kv->n_slots, i, s);
    if (kv->len[s] < 1 || kv->len[s] >= ml)
      return idoc_set_error("decode: slot %d holds %d tokens (needs a prefill and room below %d)",
                            s, kv->len[s], kv->max_len);
    if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
      return idoc_set_error("decode: token %d of slot %d outside the vocabulary [0, %d)", ids[i], s,
                            cfg->vocab_size);
    int64_t start = s * ml;
    n_seg = add_gap(kv, n_seg, cur, start);
    cur = start + kv->len[s] + 1;
    kv->cu_q[n_seg + 1] = kv->cu_q[n_seg] + 1;
    kv->cu_k[n_seg + 1] = (int32_t)cur;
    n_seg++;
    kv->rows[i] = (int32_t)(start + kv->len[s]);
    kv->pos[i] = kv->len[s] + kv->rope_delta[s];
  }
  n_seg = add_gap(kv, n_seg, cur, total);
  bool prev = idoc_no_grad_begin(c);
  idoc_dtype dt = m->embed->dtype;
  int64_t H = cfg->hidden_size, half = idoc_qwen_head_dim(cfg) / 2;
  idoc_qwen_mrope_tables(cfg, kv->pos, 0, n, kv->cosv, kv->sinv);
  idoc_tensor *cosT, *sinT;
  upload_tables(c, dt, kv->cosv, kv->sinv, n, half, &cosT, &sinT);
  idoc_tensor *idt = idoc_ctx_upload_i32(c, ids, n), *rows = idoc_ctx_upload_i32(c, kv->rows, n);
  idoc_tensor *hbuf[2] = {idoc_tensor_2d(c->act, dt, n, H), idoc_tensor_2d(c->act, dt, n, H)};
  // The step's segments, uploaded once for all layers.
  idoc_segments sq = idoc_segments_new(c, kv->cu_q, n_seg),
                sk = idoc_segments_new(c, kv->cu_k, n_seg);
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  idoc_tensor_copy(hbuf[0], idoc_embedding(c, m->embed, idt));
  idoc_arena_reset_to(c->act, mark);
  float scale = att_scale(cfg);
  for (int l = 0; l < cfg->num_hidden_layers; l++) {
    idoc_qwen_layer *L = &m->layers[l];
    idoc_tensor *q, *k, *v, *x = hbuf[l & 1];
    layer_qkv(c, cfg, L, x, cosT, sinT, &q, &k, &v);
    IDOC_K(c->dev, scatter_rows)(kv->k[l], k, rows, false);
    IDOC_K(c->dev, scatter_rows)(kv->v[l], v, rows, false);
    idoc_tensor *a = idoc_attention(c, q, kv->k[l], kv->v[l], &sq, &sk, cfg->num_attention_heads,
                                    cfg->num_key_value_heads, true, scale);
    idoc_tensor_copy(hbuf[(l + 1) & 1], layer_out(c, cfg, L, x, a));
    idoc_arena_reset_to(c->act, mark);
  }
  idoc_tensor *hn =
      idoc_rmsnorm(c, hbuf[cfg->num_hidden_layers & 1], m->final_norm, cfg->rms_norm_eps);
  *logits = idoc_linear(c, hn, m->lm_head, NULL);
  if (hidden) *hidden = hn;
  for (int i = 0; i < n; i++)
    kv->len[slots[i]]++;
  idoc_grad_restore(c, prev);
  return IDOC_OK;
}
