#include "nn/heatmap_decoder.h"

#include <math.h>

#include "nn/ops.h"

idoc_decoder_config idoc_decoder_config_release(void) {
  return (idoc_decoder_config){.llm_hidden = 2048,
                               .dim = 768,
                               .heads = 8,
                               .depth = 2,
                               .mlp_dim = 2048,
                               .downsample = 2,
                               .c1 = 768,
                               .c2 = 384,
                               .c3 = 192};
}

idoc_decoder_config idoc_decoder_config_tiny(int llm_hidden) {
  return (idoc_decoder_config){.llm_hidden = llm_hidden,
                               .dim = 32,
                               .heads = 4,
                               .depth = 2,
                               .mlp_dim = 64,
                               .downsample = 2,
                               .c1 = 16,
                               .c2 = 16,
                               .c3 = 8};
}

// ---- parameters -------------------------------------------------------------------------------
static idoc_tensor *Pn(idoc_params *ps, const char *name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3) {
  return idoc_param_new(ps, name, IDOC_F32, ndim, (int64_t[]){d0, d1, d2, d3});
}

static void linear_params(idoc_params *ps, const char *prefix, int64_t out, int64_t in,
                          idoc_tensor **w, idoc_tensor **b) {
  char n[256];
  idoc_sfmt(n, sizeof n, "%s.weight", prefix);
  *w = Pn(ps, n, 2, out, in, 0, 0);
  idoc_sfmt(n, sizeof n, "%s.bias", prefix);
  *b = Pn(ps, n, 1, out, 0, 0, 0);
}

static void ln_params(idoc_params *ps, const char *prefix, int64_t D, idoc_tensor **w,
                      idoc_tensor **b) {
  char n[256];
  idoc_sfmt(n, sizeof n, "%s.weight", prefix);
  *w = Pn(ps, n, 1, D, 0, 0, 0);
  idoc_sfmt(n, sizeof n, "%s.bias", prefix);
  *b = Pn(ps, n, 1, D, 0, 0, 0);
}

static void attn_params(idoc_params *ps, const char *prefix, int D, int internal,
                        idoc_sam_attn *a) {
  char n[256];
  a->internal = internal;
  idoc_sfmt(n, sizeof n, "%s.q_proj", prefix);
  linear_params(ps, n, internal, D, &a->q_w, &a->q_b);
  idoc_sfmt(n, sizeof n, "%s.k_proj", prefix);
  linear_params(ps, n, internal, D, &a->k_w, &a->k_b);
  idoc_sfmt(n, sizeof n, "%s.v_proj", prefix);
  linear_params(ps, n, internal, D, &a->v_w, &a->v_b);
  idoc_sfmt(n, sizeof n, "%s.out_proj", prefix);
  linear_params(ps, n, D, internal, &a->o_w, &a->o_b);
}

// Conv (or transposed conv) weights + bias and the channel norm's scale [C, 1, 1].
static void conv_norm_params(idoc_params *ps, const char *conv, const char *norm, int64_t cin,
                             int64_t cout, bool transposed, idoc_conv_norm *cn) {
  char n[256];
  idoc_sfmt(n, sizeof n, "%s.weight", conv);
  cn->conv_w = transposed ? Pn(ps, n, 4, cin, cout, 3, 3) : Pn(ps, n, 4, cout, cin, 3, 3);
  idoc_sfmt(n, sizeof n, "%s.bias", conv);
  cn->conv_b = Pn(ps, n, 1, cout, 0, 0, 0);
  cn->scale = NULL;
  if (norm) {
    idoc_sfmt(n, sizeof n, "%s.scale", norm);
    cn->scale = Pn(ps, n, 3, cout, 1, 1, 0);
  }
}

idoc_decoder *idoc_decoder_new(const idoc_decoder_config *cfg, idoc_params *ps) {
  idoc_decoder *d = idoc_xcalloc(1, sizeof *d);
  d->cfg = *cfg;
  d->ps = ps;
  int D = cfg->dim, L = cfg->llm_hidden;
  linear_params(ps, "text_hidden_fcs.0.0", L, L, &d->text_fc0_w, &d->text_fc0_b);
  linear_params(ps, "text_hidden_fcs.0.2", D, L, &d->text_fc2_w, &d->text_fc2_b);
  linear_params(ps, "image_hidden_fcs.0.0", L, L, &d->img_fc0_w, &d->img_fc0_b);
  linear_params(ps, "image_hidden_fcs.0.2", D, L, &d->img_fc2_w, &d->img_fc2_b);

  // Prompt encoder: only the Gaussian PE matrix and no_mask_embed are used; the point and
  // mask-downscaling pieces exist in released checkpoints and are kept, frozen.
  d->pe_gauss =
      Pn(ps, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", 2, 2, D / 2, 0, 0);
  d->no_mask_embed = Pn(ps, "prompt_encoder.no_mask_embed.weight", 2, 1, D, 0, 0);
  char n[256];
  for (int i = 0; i < 4; i++) {
    idoc_sfmt(n, sizeof n, "prompt_encoder.point_embeddings.%d.weight", i);
    Pn(ps, n, 2, 1, D, 0, 0);
  }
  Pn(ps, "prompt_encoder.not_a_point_embed.weight", 2, 1, D, 0, 0);
  int64_t mc = 16; // mask_in_chans
  struct {
    const char *name;
    int nd;
    int64_t s[4];
  } md[] = {{"prompt_encoder.mask_downscaling.0.weight", 4, {mc / 4, 1, 2, 2}},
            {"prompt_encoder.mask_downscaling.0.bias", 1, {mc / 4}},
            {"prompt_encoder.mask_downscaling.1.weight", 1, {mc / 4}},
            {"prompt_encoder.mask_downscaling.1.bias", 1, {mc / 4}},
            {"prompt_encoder.mask_downscaling.3.weight", 4, {mc, mc / 4, 2, 2}},
            {"prompt_encoder.mask_downscaling.3.bias", 1, {mc}},
            {"prompt_encoder.mask_downscaling.4.weight", 1, {mc}},
            {"prompt_encoder.mask_downscaling.4.bias", 1, {mc}},
            {"prompt_encoder.mask_downscaling.6.weight", 4, {D, mc, 1, 1}},
            {"prompt_encoder.mask_downscaling.6.bias", 1, {D}}};
  for (size_t i = 0; i < sizeof md / sizeof md[0]; i++)
    Pn(ps, md[i].name, md[i].nd, md[i].s[0], md[i].s[1], md[i].s[2], md[i].s[3]);
  idoc_params_set_trainable(ps, "prompt_encoder.point_embeddings.", false);
  idoc_params_set_trainable(ps, "prompt_encoder.not_a_point_embed.", false);
  idoc_params_set_trainable(ps, "prompt_encoder.mask_downscaling.", false);
  idoc_params_set_trainable(ps, "prompt_encoder.pe_layer.", false); // a buffer, never trained

  d->mask_token = Pn(ps, "heatmap.mask_tokens.weight", 2, 1, D, 0, 0);
  if (cfg->learned_query) d->learned_query = Pn(ps, "heatmap.task_queries.weight", 2, 2, D, 0, 0);
  d->blocks = idoc_xcalloc((size_t)cfg->depth, sizeof *d->blocks);
  int ci = D / cfg->downsample;
  for (int l = 0; l < cfg->depth; l++) {
    idoc_twoway_block *b = &d->blocks[l];
    char p[200];
    idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.self_attn", l);
    attn_params(ps, p, D, D, &b->self_attn);
    idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.cross_attn_token_to_image", l);
    attn_params(ps, p, D, ci, &b->t2i);
    idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.cross_attn_image_to_token", l);
    attn_params(ps, p, D, ci, &b->i2t);
    for (int k = 0; k < 4; k++) {
      idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.norm%d", l, k + 1);
      ln_params(ps, p, D, &b->norm_w[k], &b->norm_b[k]);
    }
    idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.mlp.lin1", l);
    linear_params(ps, p, cfg->mlp_dim, D, &b->lin1_w, &b->lin1_b);
    idoc_sfmt(p, sizeof p, "heatmap.transformer.layers.%d.mlp.lin2", l);
    linear_params(ps, p, D, cfg->mlp_dim, &b->lin2_w, &b->lin2_b);
  }
  attn_params(ps, "heatmap.transformer.final_attn_token_to_image", D, ci, &d->final_attn);
  ln_params(ps, "heatmap.transformer.norm_final_attn", D, &d->final_norm_w, &d->final_norm_b);

  const char *U = "heatmap.output_upscaling";
  char cv[200], nm[200];
  idoc_sfmt(cv, sizeof cv, "%s.conv_layers.0", U);
  idoc_sfmt(nm, sizeof nm, "%s.conv_layers.2", U);
  conv_norm_params(ps, cv, nm, D, cfg->c1, false, &d->head[0]);
  idoc_sfmt(cv, sizeof cv, "%s.conv_layers.3", U);
  idoc_sfmt(nm, sizeof nm, "%s.conv_layers.5", U);
  conv_norm_params(ps, cv, nm, cfg->c1, cfg->c2, false, &d->head[1]);
  int outs[4] = {cfg->c1, cfg->c2, cfg->c2, cfg->c3}, cin = cfg->c2;
  for (int i = 0; i < 4; i++) {
    idoc_sfmt(cv, sizeof cv, "%s.deconv_layers.%d.0", U, i);
    idoc_sfmt(nm, sizeof nm, "%s.deconv_layers.%d.1", U, i);
    conv_norm_params(ps, cv, nm, cin, outs[i], true, &d->deconv[i]);
    idoc_sfmt(cv, sizeof cv, "%s.conv_layers2.%d.0", U, i);
    idoc_sfmt(nm, sizeof nm, "%s.conv_layers2.%d.1", U, i);
    conv_norm_params(ps, cv, nm, outs[i], outs[i], false, &d->conv2a[i]);
    idoc_sfmt(cv, sizeof cv, "%s.conv_layers2.%d.3", U, i);
    idoc_sfmt(nm, sizeof nm, "%s.conv_layers2.%d.4", U, i);
    conv_norm_params(ps, cv, nm, outs[i], outs[i], false, &d->conv2b[i]);
    cin = outs[i];
  }
  idoc_conv_norm last;
  idoc_sfmt(cv, sizeof cv, "%s.last_conv1", U);
  conv_norm_params(ps, cv, NULL, cin, cfg->c3, false, &last);
  d->last_w = last.conv_w;
  d->last_b = last.conv_b;
  int hin[3] = {D, D, D}, hout[3] = {D, D, cfg->c3};
  for (int i = 0; i < 3; i++) {
    idoc_sfmt(n, sizeof n, "heatmap.output_hypernetworks_mlps.0.layers.%d", i);
    linear_params(ps, n, hout[i], hin[i], &d->hyper_w[i], &d->hyper_b[i]);
  }
  return d;
}

void idoc_decoder_free(idoc_decoder *d) {
  if (!d) return;
  free(d->blocks);
  free(d);
}

bool idoc_decoder_unused(const char *n) {
  const char *pre[] = {"prompt_encoder.point_embeddings.", "prompt_encoder.not_a_point_embed.",
                       "prompt_encoder.mask_downscaling."};
  for (int i = 0; i < 3; i++)
    if (!strncmp(n, pre[i], strlen(pre[i]))) return true;
  return false;
}

bool idoc_decoder_owns(const char *name) {
  return !strncmp(name, "text_hidden_fcs.", 16) || !strncmp(name, "image_hidden_fcs.", 17) ||
         !strncmp(name, "prompt_encoder.", 15) || !strncmp(name, "heatmap.", 8);
}

int64_t idoc_decoder_param_count(const idoc_decoder *d) {
  int64_t n = 0;
  for (int i = 0; i < d->ps->n; i++)
    if (idoc_decoder_owns(d->ps->p[i].w->name)) n += idoc_numel(d->ps->p[i].w);
  return n;
}

static bool ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

void idoc_decoder_init(idoc_decoder *d, uint64_t seed) {
  idoc_rng r;
  idoc_rng_seed(&r, seed);
  for (int i = 0; i < d->ps->n; i++) {
    idoc_tensor *w = d->ps->p[i].w;
    const char *nm = w->name;
    if (!idoc_decoder_owns(nm)) continue;
    if (strstr(nm, "positional_encoding_gaussian_matrix")) {
      idoc_tensor_normal(w, &r, 0, 1);
    } else if (ends_with(nm, ".scale") || strstr(nm, ".norm") || strstr(nm, "mask_downscaling.1") ||
               strstr(nm, "mask_downscaling.4")) {
      // channel-norm scales and LayerNorm weights 1, LayerNorm biases 0
      if (ends_with(nm, ".bias"))
        idoc_tensor_zero(w);
      else
        idoc_tensor_fill(w, 1.0f);
    } else if (w->ndim == 4) {
      // Conv2d / ConvTranspose2d defaults: kaiming_uniform(a=sqrt(5)) gives U(+-1/sqrt(fan_in)),
      // fan_in = size(1) * k * k (for ConvTranspose2d size(1) is the output channels).
      double fan_in = (double)w->shape[1] * w->shape[2] * w->shape[3], bound = 1.0 / sqrt(fan_in);
      idoc_tensor_uniform(w, &r, (float)-bound, (float)bound);
      idoc_param *bp = NULL;
      char bn[256];
      idoc_sfmt(bn, sizeof bn, "%.*s.bias", (int)(strlen(nm) - 7), nm);
      if ((bp = idoc_params_find(d->ps, bn)))
        idoc_tensor_uniform(bp->w, &r, (float)-bound, (float)bound);
    } else if (ends_with(nm, ".bias")) {
      if (strstr(nm, "conv") || strstr(nm, "mask_downscaling")) continue; // set with its weight
      idoc_tensor_zero(w);
    } else {
      idoc_tensor_normal(w, &r, 0, 0.02f); // nn.Linear / nn.Embedding under HF _init_weights
    }
  }
}

// ---- forward -----------------------------------------------------------------------------------
// SAM attention: project, attend per segment (no mask), project back.
static idoc_tensor *sam_attn(idoc_ctx *c, idoc_sam_attn *a, int heads, idoc_tensor *q,
                             idoc_tensor *k, idoc_tensor *v, const idoc_segments *sq,
                             const idoc_segments *sk) {
  idoc_tensor *Q = idoc_linear(c, q, a->q_w, a->q_b), *K = idoc_linear(c, k, a->k_w, a->k_b);
  idoc_tensor *V = idoc_linear(c, v, a->v_w, a->v_b);
  float scale = 1.0f / sqrtf((float)(a->internal / heads));
  idoc_tensor *o = idoc_attention(c, Q, K, V, sq, sk, heads, heads, false, scale);
  return idoc_linear(c, o, a->o_w, a->o_b);
}

// Conv (3x3 same or transposed k3 s2 p1 op1), then channel RMS norm (eps 1e-8) when present.
static idoc_tensor *conv_norm(idoc_ctx *c, idoc_conv_norm *cn, idoc_tensor *x, bool transposed) {
  idoc_tensor *y = transposed ? idoc_conv_transpose2d(c, x, cn->conv_w, cn->conv_b, 2, 1, 1)
                              : idoc_conv2d(c, x, cn->conv_w, cn->conv_b, 1);
  if (!cn->scale) return y;
  idoc_tensor *s = idoc_reshape(c, cn->scale, 1, (int64_t[]){cn->scale->shape[0]});
  return idoc_rmsnorm_channels(c, y, s, 1e-8f);
}

static idoc_tensor *upsample(idoc_ctx *c, idoc_decoder *d, idoc_tensor *x) {
  x = idoc_rmsnorm_channels(
      c, idoc_relu(c, idoc_conv2d(c, x, d->head[0].conv_w, d->head[0].conv_b, 1)),
      idoc_reshape(c, d->head[0].scale, 1, (int64_t[]){d->head[0].scale->shape[0]}), 1e-8f);
  x = idoc_rmsnorm_channels(
      c, idoc_relu(c, idoc_conv2d(c, x, d->head[1].conv_w, d->head[1].conv_b, 1)),
      idoc_reshape(c, d->head[1].scale, 1, (int64_t[]){d->head[1].scale->shape[0]}), 1e-8f);
  for (int i = 0; i < 4; i++) {
    x = idoc_relu(c, conv_norm(c, &d->deconv[i], x, true));
    idoc_tensor *id = x;
    x = conv_norm(c, &d->conv2b[i], idoc_relu(c, conv_norm(c, &d->conv2a[i], x, false)), false);
    x = idoc_relu(c, idoc_add(c, x, id));
  }
  return idoc_relu(c, idoc_conv2d(c, x, d->last_w, d->last_b, 1));
}

static idoc_tensor *layernorm(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b) {
  return idoc_layernorm(c, x, w, b, 1e-5f);
}

// Dense positional encoding of the H x W grid: [sin(2 pi (2p - 1) G), cos(...)] [HW, D] with G
// the Gaussian matrix [2, D/2]. On the CPU it is computed from G in place; on a device from G
// there (the cell coordinates [HW, 2] times G, then sin and cos), so G is never read back.
// No gradient reaches G either way (it is a buffer).
static idoc_tensor *dense_pe(idoc_ctx *c, idoc_decoder *d, int H, int W) {
  int D = d->cfg.dim, HW = H * W;
  const float two_pi = (float)(2 * 3.14159265358979323846);
  if (d->pe_gauss->dev.kind != IDOC_CPU) {
    float *xy = idoc_arena_alloc_host(c->act, (size_t)HW * 2 * sizeof *xy);
    for (int r = 0; r < H; r++)
      for (int q = 0; q < W; q++) {
        float x = ((float)q + 0.5f) / (float)W, y = ((float)r + 0.5f) / (float)H;
        xy[2 * (r * W + q)] = 2 * x - 1;
        xy[2 * (r * W + q) + 1] = 2 * y - 1;
      }
    bool prev = idoc_no_grad_begin(c);
    idoc_tensor *coords = idoc_ctx_upload(c, xy, IDOC_F32, 2, (int64_t[]){HW, 2});
    idoc_tensor *ang = idoc_scale(c, idoc_matmul(c, coords, d->pe_gauss, false, false), two_pi);
    idoc_tensor *sc[2] = {idoc_sin(c, ang), idoc_cos(c, ang)};
    idoc_tensor *pe = idoc_concat(c, sc, 2, 1);
    idoc_grad_restore(c, prev);
    return pe;
  }
  float *pe = idoc_xmalloc((size_t)HW * D * sizeof *pe), *G = idoc_xmalloc((size_t)D * sizeof *G);
  idoc_tensor_to_host(d->pe_gauss, G);
  for (int r = 0; r < H; r++)
    for (int q = 0; q < W; q++) {
      float x = ((float)q + 0.5f) / (float)W, y = ((float)r + 0.5f) / (float)H;
      x = 2 * x - 1;
      y = 2 * y - 1;
      for (int j = 0; j < D / 2; j++) {
        float v = two_pi * (x * G[j] + y * G[D / 2 + j]);
        pe[((int64_t)r * W + q) * D + j] = sinf(v);
        pe[((int64_t)r * W + q) * D + D / 2 + j] = cosf(v);
      }
    }
  idoc_tensor *pos1 = idoc_ctx_upload(c, pe, IDOC_F32, 2, (int64_t[]){HW, D});
  free(pe);
  free(G);
  return pos1;
}

idoc_tensor *idoc_decoder_forward(idoc_ctx *c, idoc_decoder *d, idoc_tensor *image_feats,
                                  idoc_tensor *tokens, const int *kinds, int B, int H, int W) {
  const idoc_decoder_config *cfg = &d->cfg;
  int D = cfg->dim, HW = H * W, heads = cfg->heads;
  IDOC_CHECK(image_feats->shape[0] == (int64_t)B * HW && image_feats->shape[1] == cfg->llm_hidden,
             "decoder: image features [%lld, %lld] for %d queries of %dx%d",
             (long long)image_feats->shape[0], (long long)image_feats->shape[1], B, H, W);

  // Image features -> D, plus the dense "no mask" embedding at every cell.
  idoc_tensor *src =
      idoc_linear(c, idoc_relu(c, idoc_linear(c, image_feats, d->img_fc0_w, d->img_fc0_b)),
                  d->img_fc2_w, d->img_fc2_b);
  src = idoc_add(c, src, d->no_mask_embed);

  // Task tokens (from the LLM, or learned queries for the ablation).
  idoc_tensor *task;
  if (cfg->learned_query) {
    int32_t *ki = idoc_arena_alloc_host(c->act, (size_t)B * sizeof *ki);
    for (int b = 0; b < B; b++)
      ki[b] = kinds[b];
    task = idoc_gather_rows(c, d->learned_query, idoc_ctx_upload_i32(c, ki, B));
  } else {
    IDOC_CHECK(tokens && tokens->shape[0] == B && tokens->shape[1] == cfg->llm_hidden,
               "decoder: task tokens must be [%d, %d]", B, cfg->llm_hidden);
    task = idoc_linear(c, idoc_relu(c, idoc_linear(c, tokens, d->text_fc0_w, d->text_fc0_b)),
                       d->text_fc2_w, d->text_fc2_b);
  }

  idoc_tensor *pos1 = dense_pe(c, d, H, W);

  // Token sequences of 2 per query: the mask token, then the task token.
  idoc_tensor *ones = idoc_tensor_2d(c->act, IDOC_F32, B, 1);
  idoc_tensor_fill(ones, 1.0f);
  idoc_tensor *mt =
      idoc_matmul(c, ones, d->mask_token, false, false); // mask token repeated per query
  idoc_tensor *pair[2] = {idoc_reshape(c, mt, 3, (int64_t[]){B, 1, D}),
                          idoc_reshape(c, task, 3, (int64_t[]){B, 1, D})};
  idoc_tensor *tok = idoc_reshape(c, idoc_concat(c, pair, 2, 1), 2, (int64_t[]){2 * B, D});
  idoc_tensor *qpe = tok; // query PE = the original tokens, reused in every block

  // Segments: the 2 tokens and the HW image rows of each query, uploaded once for all blocks.
  int32_t *cu = idoc_xmalloc((size_t)(B + 1) * sizeof *cu);
  for (int b = 0; b <= B; b++)
    cu[b] = 2 * b;
  idoc_segments st = idoc_segments_new(c, cu, B);
  for (int b = 0; b <= B; b++)
    cu[b] = b * HW;
  idoc_segments si = idoc_segments_new(c, cu, B);
  free(cu);
  idoc_tensor *keys = src, *queries = tok;
  for (int l = 0; l < cfg->depth; l++) {
    idoc_twoway_block *bl = &d->blocks[l];
    if (l == 0) { // skip_first_layer_pe: replaces the queries, no residual
      queries = sam_attn(c, &bl->self_attn, heads, queries, queries, queries, &st, &st);
    } else {
      idoc_tensor *q = idoc_add(c, queries, qpe);
      queries = idoc_add(c, queries, sam_attn(c, &bl->self_attn, heads, q, q, queries, &st, &st));
    }
    queries = layernorm(c, queries, bl->norm_w[0], bl->norm_b[0]);
    idoc_tensor *q = idoc_add(c, queries, qpe), *k = idoc_add(c, keys, pos1);
    queries = idoc_add(c, queries, sam_attn(c, &bl->t2i, heads, q, k, keys, &st, &si));
    queries = layernorm(c, queries, bl->norm_w[1], bl->norm_b[1]);
    idoc_tensor *m = idoc_linear(c, idoc_relu(c, idoc_linear(c, queries, bl->lin1_w, bl->lin1_b)),
                                 bl->lin2_w, bl->lin2_b);
    queries = layernorm(c, idoc_add(c, queries, m), bl->norm_w[2], bl->norm_b[2]);
    q = idoc_add(c, queries, qpe);
    k = idoc_add(c, keys, pos1);
    keys = idoc_add(c, keys, sam_attn(c, &bl->i2t, heads, k, q, queries, &si, &st));
    keys = layernorm(c, keys, bl->norm_w[3], bl->norm_b[3]);
  }
  {
    idoc_tensor *q = idoc_add(c, queries, qpe), *k = idoc_add(c, keys, pos1);
    queries = idoc_add(c, queries, sam_attn(c, &d->final_attn, heads, q, k, keys, &st, &si));
    queries = layernorm(c, queries, d->final_norm_w, d->final_norm_b);
  }

  // Hypernetwork on the mask token's output.
  int32_t *rows = idoc_arena_alloc_host(c->act, (size_t)B * sizeof *rows);
  for (int b = 0; b < B; b++)
    rows[b] = 2 * b;
  idoc_tensor *h = idoc_gather_rows(c, queries, idoc_ctx_upload_i32(c, rows, B));
  for (int i = 0; i < 3; i++) {
    h = idoc_linear(c, h, d->hyper_w[i], d->hyper_b[i]);
    if (i < 2) h = idoc_relu(c, h);
  }

  // Upsample the image-side output: [B*HW, D] -> [B, D, H, W] -> [B, c3, 16H, 16W].
  idoc_tensor *img = idoc_transpose(c, idoc_reshape(c, keys, 3, (int64_t[]){B, HW, D}));
  img = idoc_reshape(c, img, 4, (int64_t[]){B, D, H, W});
  idoc_tensor *F = upsample(c, d, img);
  int64_t oh = F->shape[2], ow = F->shape[3], c3 = F->shape[1];
  idoc_tensor *logits =
      idoc_matmul(c, idoc_reshape(c, h, 3, (int64_t[]){B, 1, c3}),
                  idoc_reshape(c, F, 3, (int64_t[]){B, c3, oh * ow}), false, false);
  return idoc_sigmoid(c, idoc_reshape(c, logits, 3, (int64_t[]){B, oh, ow}));
}
