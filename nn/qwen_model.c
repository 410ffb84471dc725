#include "nn/qwen_model.h"
#include "nn/util.h"

#include <math.h>

#include "nn/ops.h"
#include "nn/safetensors.h"

// ---- parameters ---------------------------------------------------------------------------------
static idoc_tensor *P(idoc_params *ps, idoc_dtype dt, const char *name, int ndim, int64_t d0,
                      int64_t d1) {
  return idoc_param_new(ps, name, dt, ndim, (int64_t[]){d0, d1});
}

idoc_qwen *idoc_qwen_new(const idoc_qwen_config *cfg, idoc_params *ps, idoc_dtype dt) {
  idoc_qwen *m = idoc_xcalloc(1, sizeof *m);
  m->cfg = *cfg;
  m->ps = ps;
  const idoc_qwen_config *c = cfg;
  char n[160];
  int64_t V = c->v_hidden, VI = c->v_intermediate;
  int64_t M = V * c->spatial_merge_size * c->spatial_merge_size;
  m->patch_embed = idoc_param_new(
      ps, "visual.patch_embed.proj.weight", dt, 5,
      (int64_t[]){V, c->in_chans, c->temporal_patch_size, c->patch_size, c->patch_size});
  m->vblocks = idoc_xcalloc((size_t)c->v_depth, sizeof *m->vblocks);
  for (int b = 0; b < c->v_depth; b++) {
    idoc_qwen_vblock *B = &m->vblocks[b];
#define VB(field, suffix, nd, d0, d1)                                                              \
  snprintf(n, sizeof n, "visual.blocks.%d.%s", b, suffix);                                         \
  B->field = P(ps, dt, n, nd, d0, d1)
    VB(norm1, "norm1.weight", 1, V, 0);
    VB(norm2, "norm2.weight", 1, V, 0);
    VB(qkv_w, "attn.qkv.weight", 2, 3 * V, V);
    VB(qkv_b, "attn.qkv.bias", 1, 3 * V, 0);
    VB(proj_w, "attn.proj.weight", 2, V, V);
    VB(proj_b, "attn.proj.bias", 1, V, 0);
    VB(gate_w, "mlp.gate_proj.weight", 2, VI, V);
    VB(gate_b, "mlp.gate_proj.bias", 1, VI, 0);
    VB(up_w, "mlp.up_proj.weight", 2, VI, V);
    VB(up_b, "mlp.up_proj.bias", 1, VI, 0);
    VB(down_w, "mlp.down_proj.weight", 2, V, VI);
    VB(down_b, "mlp.down_proj.bias", 1, V, 0);
#undef VB
  }
  m->ln_q = P(ps, dt, "visual.merger.ln_q.weight", 1, V, 0);
  m->mlp0_w = P(ps, dt, "visual.merger.mlp.0.weight", 2, M, M);
  m->mlp0_b = P(ps, dt, "visual.merger.mlp.0.bias", 1, M, 0);
  m->mlp2_w = P(ps, dt, "visual.merger.mlp.2.weight", 2, c->v_out_hidden, M);
  m->mlp2_b = P(ps, dt, "visual.merger.mlp.2.bias", 1, c->v_out_hidden, 0);

  int64_t H = c->hidden_size, I = c->intermediate_size,
          KV = (int64_t)c->num_key_value_heads * idoc_qwen_head_dim(c);
  m->embed = P(ps, dt, "model.embed_tokens.weight", 2, c->vocab_size, H);
  m->layers = idoc_xcalloc((size_t)c->num_hidden_layers, sizeof *m->layers);
  for (int l = 0; l < c->num_hidden_layers; l++) {
    idoc_qwen_layer *L = &m->layers[l];
#define LW(field, suffix, nd, d0, d1)                                                              \
  snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);                                          \
  L->field = P(ps, dt, n, nd, d0, d1)
    LW(in_norm, "input_layernorm.weight", 1, H, 0);
    LW(q_w, "self_attn.q_proj.weight", 2, H, H);
    LW(q_b, "self_attn.q_proj.bias", 1, H, 0);
    LW(k_w, "self_attn.k_proj.weight", 2, KV, H);
    LW(k_b, "self_attn.k_proj.bias", 1, KV, 0);
    LW(v_w, "self_attn.v_proj.weight", 2, KV, H);
    LW(v_b, "self_attn.v_proj.bias", 1, KV, 0);
    LW(o_w, "self_attn.o_proj.weight", 2, H, H);
    LW(post_norm, "post_attention_layernorm.weight", 1, H, 0);
    LW(gate_w, "mlp.gate_proj.weight", 2, I, H);
    LW(up_w, "mlp.up_proj.weight", 2, I, H);
    LW(down_w, "mlp.down_proj.weight", 2, H, I);
#undef LW
  }
  m->final_norm = P(ps, dt, "model.norm.weight", 1, H, 0);
  m->lm_head = c->tie_word_embeddings ? m->embed : P(ps, dt, "lm_head.weight", 2, c->vocab_size, H);
  return m;
}

void idoc_qwen_free(idoc_qwen *m) {
  if (!m) return;
  free(m->vblocks);
  free(m->layers);
  free(m);
}

void idoc_qwen_init_random(idoc_qwen *m, uint64_t seed, float std) {
  idoc_rng r;
  idoc_rng_seed(&r, seed);
  for (int i = 0; i < m->ps->n; i++) {
    idoc_tensor *w = m->ps->p[i].w;
    const char *nm = w->name;
    size_t len = strlen(nm);
    if (strstr(nm, "norm") || strstr(nm, "ln_q"))
      idoc_tensor_fill(w, 1.0f);
    else if (len > 5 && !strcmp(nm + len - 5, ".bias"))
      idoc_tensor_zero(w);
    else
      idoc_tensor_normal(w, &r, 0.0f, std);
  }
}

int idoc_qwen_load(idoc_qwen *m, const char *path) {
  idoc_ckpt *ck;
  if (idoc_ckpt_open(&ck, path)) return IDOC_ERR;
  int rc = IDOC_OK;
  for (int i = 0; i < m->ps->n && rc == IDOC_OK; i++) {
    idoc_tensor *w = m->ps->p[i].w;
    if (!idoc_ckpt_find(ck, w->name)) {
      rc = idoc_set_error("%s: tensor '%s' is missing from the checkpoint", path, w->name);
      break;
    }
    rc = idoc_ckpt_load(ck, w->name, w);
  }
  idoc_ckpt_close(ck);
  return rc;
}

int idoc_qwen_save(const idoc_qwen *m, const char *dir, idoc_dtype dt) {
  return idoc_qwen_save_with(m, dir, dt, NULL);
}

int idoc_qwen_save_with(const idoc_qwen *m, const char *dir, idoc_dtype dt, const char *extra) {
  if (idoc_mkdir_p(dir)) return IDOC_ERR;
  idoc_st_item *items = idoc_xcalloc((size_t)m->ps->n, sizeof *items);
  int n = 0;
  for (int i = 0; i < m->ps->n; i++) {
    if (m->cfg.tie_word_embeddings && !strcmp(m->ps->p[i].w->name, "lm_head.weight")) continue;
    items[n++].t = m->ps->p[i].w;
  }
  idoc_st_save_opts opts = {.dtype = (int)dt, .max_shard_bytes = (uint64_t)4 << 30};
  int rc = idoc_st_save(dir, items, n, &opts);
  free(items);
  if (rc) return rc;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  return idoc_qwen_config_save_extra(&m->cfg, path, extra);
}

// ---- helpers ---------------------------------------------------------------------------------
// A differentiable view of a parameter with another shape: shares storage and gradient buffer.
static idoc_tensor *param_view(idoc_ctx *c, idoc_tensor *w, int ndim, const int64_t *shape) {
  idoc_tensor *v = idoc_tensor_view(c->act, w, ndim, shape);
  v->requires_grad = w->requires_grad;
  v->name = w->name; // a parameter still: idoc_grad refuses it a gradient in the step arena
  if (w->grad) v->grad = idoc_tensor_view(c->act, w->grad, ndim, shape);
  return v;
}

// A host f32 table on the context's device in the model's dtype (converted as it is copied).
static idoc_tensor *table_tensor(idoc_ctx *c, const float *v, int64_t rows, int64_t cols,
                                 idoc_dtype dt) {
  idoc_tensor *h =
      idoc_tensor_wrap(c->act, (void *)v, IDOC_F32, IDOC_DEV_CPU, 2, (int64_t[]){rows, cols});
  idoc_tensor *t = idoc_tensor_2d(c->act, dt, rows, cols);
  idoc_tensor_convert(t, h);
  return t;
}

// ---- vision tower ------------------------------------------------------------------------------
typedef struct {
  idoc_qwen *m;
  idoc_qwen_vblock *B;
  idoc_tensor *cos, *sin;
  idoc_segments seg; // windows or whole images (by value: read again by checkpoint backward)
} vblock_ud;

static void vblock_fwd(idoc_ctx *c, void *ud_, idoc_tensor *const *in, int n_in, idoc_tensor **out,
                       int n_out) {
  vblock_ud *u = ud_;
  idoc_qwen_vblock *B = u->B;
  const idoc_qwen_config *cfg = &u->m->cfg;
  int64_t V = cfg->v_hidden;
  idoc_tensor *x = in[0];
  idoc_tensor *h = idoc_rmsnorm(c, x, B->norm1, 1e-6f);
  idoc_tensor *qkv = idoc_linear(c, h, B->qkv_w, B->qkv_b);
  idoc_tensor *q = idoc_rotary(c, idoc_slice(c, qkv, 1, 0, V), u->cos, u->sin, cfg->v_heads);
  idoc_tensor *k = idoc_rotary(c, idoc_slice(c, qkv, 1, V, V), u->cos, u->sin, cfg->v_heads);
  idoc_tensor *v = idoc_slice(c, qkv, 1, 2 * V, V);
  float scale = 1.0f / sqrtf((float)idoc_qwen_v_head_dim(cfg));
  idoc_tensor *a =
      idoc_attention(c, q, k, v, &u->seg, &u->seg, cfg->v_heads, cfg->v_heads, false, scale);
  x = idoc_add(c, x, idoc_linear(c, a, B->proj_w, B->proj_b));
  h = idoc_rmsnorm(c, x, B->norm2, 1e-6f);
  idoc_tensor *f =
      idoc_swiglu(c, idoc_linear(c, h, B->gate_w, B->gate_b), idoc_linear(c, h, B->up_w, B->up_b));
  out[0] = idoc_add(c, x, idoc_linear(c, f, B->down_w, B->down_b));
}

static void run_block(idoc_ctx *c, bool ckpt, idoc_block_fn fn, void *ud, size_t ud_size,
                      idoc_tensor **x) {
  idoc_tensor *out[1];
  if (ckpt) {
    void *keep = idoc_save_bytes(c, ud, ud_size); // read again in backward
    idoc_checkpoint(c, fn, keep, x, 1, out, 1);
  } else {
    fn(c, ud, x, 1, out, 1);
  }
  *x = out[0];
}

idoc_tensor *idoc_qwen_vision(idoc_ctx *c, idoc_qwen *m, idoc_tensor *pix, const int32_t *grid,
                              int n_images) {
  const idoc_qwen_config *cfg = &m->cfg;
  int ms = cfg->spatial_merge_size, mu = ms * ms, hd = idoc_qwen_v_head_dim(cfg);
  int wsz = cfg->window_size / ms / cfg->patch_size; // merged tokens per window side
  int64_t P = 0;
  for (int i = 0; i < n_images; i++) {
    IDOC_CHECK(grid[3 * i] > 0 && grid[3 * i + 1] % ms == 0 && grid[3 * i + 2] % ms == 0,
               "vision: image %d grid (%d,%d,%d) is not a multiple of the merge size", i,
               grid[3 * i], grid[3 * i + 1], grid[3 * i + 2]);
    P += (int64_t)grid[3 * i] * grid[3 * i + 1] * grid[3 * i + 2];
  }
  IDOC_CHECK(pix->ndim == 2 && pix->shape[0] == P && pix->shape[1] == idoc_qwen_patch_dim(cfg),
             "vision: pixel_values has %lld rows, the grids need %lld", (long long)pix->shape[0],
             (long long)P);
  // pixel_values given on the host are uploaded once, in the model's dtype.
  pix = idoc_ctx_on_device_as(c, pix, m->embed->dtype);
  int64_t Pm = P / mu;

  // 2-D rotary angles per patch (pixel_values order), window order, segment offsets.
  int nf = hd / 4; // frequencies per axis
  float *inv = idoc_xmalloc((size_t)nf * sizeof *inv);
  for (int j = 0; j < nf; j++)
    inv[j] = 1.0f / powf((float)cfg->v_rope_theta, (float)(2 * j) / (float)(hd / 2));
  float *cosv = idoc_xmalloc((size_t)P * (hd / 2) * sizeof *cosv);
  float *sinv = idoc_xmalloc((size_t)P * (hd / 2) * sizeof *sinv);
  int32_t *widx = idoc_xmalloc((size_t)Pm * sizeof *widx), *rev = idoc_xmalloc((size_t)Pm * 4);
  int32_t *cu_win = idoc_xmalloc((size_t)(P + 2) * sizeof *cu_win);
  int32_t *cu_full = idoc_xmalloc((size_t)(P + 2) * sizeof *cu_full);
  int n_win = 0, n_full = 0;
  cu_win[0] = cu_full[0] = 0;
  int64_t row = 0, moff = 0, nw = 0;
  for (int i = 0; i < n_images; i++) {
    int gt = grid[3 * i], gh = grid[3 * i + 1], gw = grid[3 * i + 2], Hm = gh / ms, Wm = gw / ms;
    for (int t = 0; t < gt; t++)
      for (int i2 = 0; i2 < Hm; i2++)
        for (int j2 = 0; j2 < Wm; j2++)
          for (int dy = 0; dy < ms; dy++)
            for (int dx = 0; dx < ms; dx++, row++) {
              float hp = (float)(ms * i2 + dy), wp = (float)(ms * j2 + dx);
              for (int j = 0; j < hd / 2; j++) {
                float ang = j < nf ? hp * inv[j] : wp * inv[j - nf];
                cosv[row * (hd / 2) + j] = cosf(ang);
                sinv[row * (hd / 2) + j] = sinf(ang);
              }
            }
    int pad_h = wsz - Hm % wsz, pad_w = wsz - Wm % wsz; // a full extra window when divisible
    int nwh = (Hm + pad_h) / wsz, nww = (Wm + pad_w) / wsz;
    for (int t = 0; t < gt; t++) {
      for (int a = 0; a < nwh; a++)
        for (int b = 0; b < nww; b++) {
          int cnt = 0;
          for (int r = a * wsz; r < (a + 1) * wsz && r < Hm; r++)
            for (int q = b * wsz; q < (b + 1) * wsz && q < Wm; q++, cnt++)
              widx[nw++] = (int32_t)(moff + (int64_t)t * Hm * Wm + (int64_t)r * Wm + q);
          int32_t next = cu_win[n_win] + cnt * mu;
          if (next != cu_win[n_win]) cu_win[++n_win] = next; // empty windows are dropped
        }
      cu_full[n_full + 1] = cu_full[n_full] + gh * gw;
      n_full++;
    }
    moff += (int64_t)gt * Hm * Wm;
  }
  for (int64_t k = 0; k < Pm; k++)
    rev[widx[k]] = (int32_t)k;
  free(inv);
  // Segment offsets go to the device once; every block reuses them.
  idoc_segments seg_win = idoc_segments_new(c, cu_win, n_win);
  idoc_segments seg_full = idoc_segments_new(c, cu_full, n_full);
  free(cu_win);
  free(cu_full);

  idoc_dtype dt = m->embed->dtype;
  idoc_tensor *wi = idoc_ctx_upload_i32(c, widx, Pm), *ri = idoc_ctx_upload_i32(c, rev, Pm);
  idoc_tensor *cosT = table_tensor(c, cosv, P, hd / 2, dt);
  idoc_tensor *sinT = table_tensor(c, sinv, P, hd / 2, dt);
  free(cosv);
  free(sinv);
  free(widx);
  free(rev);
  // Reorder patches (in groups of merge^2) and their angles into window order.
  int64_t V = cfg->v_hidden;
  cosT = idoc_tensor_view(
      c->act,
      idoc_gather_rows(c, idoc_tensor_view(c->act, cosT, 2, (int64_t[]){Pm, mu * hd / 2}), wi), 2,
      (int64_t[]){P, hd / 2});
  sinT = idoc_tensor_view(
      c->act,
      idoc_gather_rows(c, idoc_tensor_view(c->act, sinT, 2, (int64_t[]){Pm, mu * hd / 2}), wi), 2,
      (int64_t[]){P, hd / 2});
  idoc_tensor *pe = param_view(c, m->patch_embed, 2, (int64_t[]){V, idoc_qwen_patch_dim(cfg)});
  idoc_tensor *x = idoc_linear(c, pix, pe, NULL);
  x = idoc_reshape(c, x, 2, (int64_t[]){Pm, mu * V});
  x = idoc_reshape(c, idoc_gather_rows(c, x, wi), 2, (int64_t[]){P, V});

  for (int b = 0; b < cfg->v_depth; b++) {
    bool full = false;
    for (int k = 0; k < cfg->n_fullatt; k++)
      full |= cfg->fullatt[k] == b;
    vblock_ud ud = {m, &m->vblocks[b], cosT, sinT, full ? seg_full : seg_win};
    run_block(c, m->checkpoint_layers, vblock_fwd, &ud, sizeof ud, &x);
  }
  x = idoc_rmsnorm(c, x, m->ln_q, 1e-6f);
  x = idoc_reshape(c, x, 2, (int64_t[]){Pm, mu * V});
  x = idoc_gelu(c, idoc_linear(c, x, m->mlp0_w, m->mlp0_b));
  x = idoc_linear(c, x, m->mlp2_w, m->mlp2_b);
  return idoc_gather_rows(c, x, ri); // back to raster order
}

// ---- positions
// -----------------------------------------------------------------------------------
int idoc_qwen_rope_index(const idoc_qwen_config *cfg, const int32_t *ids, int n,
                         const int32_t *grid, int n_images, int32_t *pos, int *n_used,
                         int *rope_delta) {
  int ms = cfg->spatial_merge_size, img = 0;
  int32_t next = 0, maxp = -1;
  for (int i = 0; i < n;) {
    if (ids[i] != cfg->image_token_id) {
      pos[i] = pos[n + i] = pos[2 * n + i] = next;
      maxp = next++;
      i++;
      continue;
    }
    int run = 0;
    while (i + run < n && ids[i + run] == cfg->image_token_id)
      run++;
    if (img >= n_images)
      return idoc_set_error("image placeholder run at token %d but only %d image(s) given", i,
                            n_images);
    int gt = grid[3 * img], Hm = grid[3 * img + 1] / ms, Wm = grid[3 * img + 2] / ms;
    if (run != gt * Hm * Wm)
      return idoc_set_error("image %d: %d placeholder tokens at token %d, its grid (%d,%d,%d) "
                            "needs %d",
                            img, run, i, gt, grid[3 * img + 1], grid[3 * img + 2], gt * Hm * Wm);
    int k = 0;
    for (int t = 0; t < gt; t++) // still images: the temporal id does not advance
      for (int r = 0; r < Hm; r++)
        for (int q = 0; q < Wm; q++, k++) {
          pos[i + k] = next;
          pos[n + i + k] = next + r;
          pos[2 * n + i + k] = next + q;
        }
    int32_t top = next + (Hm > Wm ? Hm : Wm) - 1;
    if (top > maxp) maxp = top;
    next = top + 1;
    i += run;
    img++;
  }
  if (n_used) *n_used = img;
  if (rope_delta) *rope_delta = maxp + 1 - n;
  return IDOC_OK;
}

void idoc_qwen_shift_labels(const int32_t *labels, const int32_t *cu, int n_seq, int32_t *tgt,
                            int ignore_index) {
  for (int s = 0; s < n_seq; s++)
    for (int32_t t = cu[s]; t < cu[s + 1]; t++)
      tgt[t] = t + 1 < cu[s + 1] ? labels[t + 1] : ignore_index;
}

// M-RoPE tables: frequency j rotates with the t, h or w position by mrope_section.
void idoc_qwen_mrope_tables(const idoc_qwen_config *cfg, const int32_t *pos, int64_t stride,
                            int64_t T, float *cosv, float *sinv) {
  int hd = idoc_qwen_head_dim(cfg), half = hd / 2;
  int s0 = cfg->mrope_section[0], s1 = s0 + cfg->mrope_section[1];
  for (int j = 0; j < half; j++) {
    float inv = 1.0f / powf((float)cfg->rope_theta, (float)(2 * j) / (float)hd);
    int axis = j < s0 ? 0 : j < s1 ? 1 : 2;
    for (int64_t t = 0; t < T; t++) {
      float ang = (float)pos[axis * stride + t] * inv;
      cosv[t * half + j] = cosf(ang);
      sinv[t * half + j] = sinf(ang);
    }
  }
}

// ---- decoder -----------------------------------------------------------------------------------
typedef struct {
  idoc_qwen *m;
  idoc_qwen_layer *L;
  idoc_tensor *cos, *sin;
  idoc_segments seg; // by value: read again by checkpoint backward
} layer_ud;

static void layer_fwd(idoc_ctx *c, void *ud_, idoc_tensor *const *in, int n_in, idoc_tensor **out,
                      int n_out) {
  layer_ud *u = ud_;
  idoc_qwen_layer *L = u->L;
  const idoc_qwen_config *cfg = &u->m->cfg;
  idoc_tensor *h = in[0];
  idoc_tensor *n = idoc_rmsnorm(c, h, L->in_norm, cfg->rms_norm_eps);
  idoc_tensor *q =
      idoc_rotary(c, idoc_linear(c, n, L->q_w, L->q_b), u->cos, u->sin, cfg->num_attention_heads);
  idoc_tensor *k =
      idoc_rotary(c, idoc_linear(c, n, L->k_w, L->k_b), u->cos, u->sin, cfg->num_key_value_heads);
  idoc_tensor *v = idoc_linear(c, n, L->v_w, L->v_b);
  float scale = 1.0f / sqrtf((float)idoc_qwen_head_dim(cfg));
  idoc_tensor *a = idoc_attention(c, q, k, v, &u->seg, &u->seg, cfg->num_attention_heads,
                                  cfg->num_key_value_heads, true, scale);
  h = idoc_add(c, h, idoc_linear(c, a, L->o_w, NULL));
  idoc_tensor *mm = idoc_rmsnorm(c, h, L->post_norm, cfg->rms_norm_eps);
  idoc_tensor *f =
      idoc_swiglu(c, idoc_linear(c, mm, L->gate_w, NULL), idoc_linear(c, mm, L->up_w, NULL));
  out[0] = idoc_add(c, h, idoc_linear(c, f, L->down_w, NULL));
}

idoc_tensor *idoc_qwen_forward_hidden(idoc_ctx *c, idoc_qwen *m, const idoc_qwen_batch *b,
                                      idoc_tensor **image_feats) {
  const idoc_qwen_config *cfg = &m->cfg;
  int64_t T = idoc_numel(b->ids);
  IDOC_CHECK(b->n_seq >= 1 && b->cu_seq[0] == 0 && b->cu_seq[b->n_seq] == T,
             "qwen forward: cu_seq does not cover the %lld tokens", (long long)T);
  // Positions and image rows are built from the ids on the host: ids given on the host are
  // used in place and uploaded once for the embedding; ids on the device are read back once.
  const int32_t *ids = idoc_ctx_host_view(c, b->ids);
  idoc_tensor *h = idoc_embedding(c, m->embed, idoc_ctx_on_device(c, b->ids));

  // Image features replace the <|image_pad|> rows, in order.
  if (b->n_images > 0) {
    idoc_tensor *feats = idoc_qwen_vision(c, m, b->pixel_values, b->grid_thw, b->n_images);
    if (image_feats) *image_feats = feats;
    int64_t n_img = 0;
    int32_t *rows = idoc_xmalloc((size_t)T * sizeof *rows);
    for (int64_t t = 0; t < T; t++)
      if (ids[t] == cfg->image_token_id) rows[n_img++] = (int32_t)t;
    IDOC_CHECK(n_img == feats->shape[0],
               "qwen forward: %lld image tokens in the text but %lld image features",
               (long long)n_img, (long long)feats->shape[0]);
    h = idoc_scatter_rows(c, h, feats, idoc_ctx_upload_i32(c, rows, n_img));
    free(rows);
  }

  // M-RoPE tables: frequency j rotates with the t, h or w position by mrope_section.
  int hd = idoc_qwen_head_dim(cfg), half = hd / 2;
  int32_t *pos = idoc_xmalloc((size_t)3 * T * sizeof *pos);
  int32_t *sp = idoc_xmalloc((size_t)3 * T * sizeof *sp);
  int img_off = 0;
  for (int s = 0; s < b->n_seq; s++) {
    int32_t s0 = b->cu_seq[s], n = b->cu_seq[s + 1] - s0;
    int used = 0;
    int rc = idoc_qwen_rope_index(cfg, ids + s0, n, b->grid_thw ? b->grid_thw + 3 * img_off : NULL,
                                  b->n_images - img_off, sp, &used, NULL);
    IDOC_CHECK(rc == IDOC_OK, "qwen forward: sequence %d: %s", s, idoc_last_error());
    for (int a = 0; a < 3; a++)
      memcpy(pos + a * T + s0, sp + a * n, (size_t)n * sizeof *pos);
    img_off += used;
  }
  free(sp);
  float *cosv = idoc_xmalloc((size_t)T * half * sizeof *cosv);
  float *sinv = idoc_xmalloc((size_t)T * half * sizeof *sinv);
  idoc_qwen_mrope_tables(cfg, pos, T, T, cosv, sinv);
  idoc_dtype dt = m->embed->dtype;
  idoc_tensor *cosT = table_tensor(c, cosv, T, half, dt),
              *sinT = table_tensor(c, sinv, T, half, dt);
  free(cosv);
  free(sinv);
  free(pos);

  idoc_segments seg = idoc_segments_new(c, b->cu_seq, b->n_seq); // one upload for all layers
  for (int l = 0; l < cfg->num_hidden_layers; l++) {
    layer_ud ud = {m, &m->layers[l], cosT, sinT, seg};
    run_block(c, m->checkpoint_layers, layer_fwd, &ud, sizeof ud, &h);
  }
  return idoc_rmsnorm(c, h, m->final_norm, cfg->rms_norm_eps);
}

idoc_tensor *idoc_qwen_forward(idoc_ctx *c, idoc_qwen *m, const idoc_qwen_batch *b,
                               idoc_tensor **hidden, idoc_tensor **image_feats) {
  idoc_tensor *h = idoc_qwen_forward_hidden(c, m, b, image_feats);
  if (hidden) *hidden = h;
  return idoc_linear(c, h, m->lm_head, NULL);
}
