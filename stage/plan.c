// idoc-requires: yaml pcre2 utf8proc cjson
#include "stage/plan.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "kernels/ops.h"
#include "nn/comm.h"
#include "nn/imagedoctor.h"
#include "nn/param.h"
#include "nn/util.h"
#include "stage/model_setup.h"

// ---- arenas as nn/param.c grows them
// ------------------------------------------------------------- A growing arena's bytes in use
// after a sequence of allocations: 256-byte rounding, blocks from 1 MiB doubling to 256 MiB, and
// the tail of a block that a request did not fit counted as used (kernels/tensor.c), so the plan
// equals idoc_arena_used of the parameter stores.
typedef struct {
  double blocks, cur_size, off; // sum of the blocks before the current one, its size, offset
  bool any;
} sim_arena;

static double align256(double b) { return b <= 0 ? 256 : ceil(b / 256) * 256; }

static void sim_alloc(sim_arena *a, double bytes) {
  bytes = align256(bytes);
  if (a->any && a->off + bytes <= a->cur_size) {
    a->off += bytes;
    return;
  }
  double have = a->any ? a->blocks + a->cur_size : 0, first = 1 << 20, most = 256 << 20;
  double next = have > first ? have : first;
  if (next > most) next = most;
  if (a->any) a->blocks += a->cur_size;
  a->cur_size = bytes > next ? bytes : next;
  a->off = bytes;
  a->any = true;
}

static double sim_used(const sim_arena *a) { return a->any ? a->blocks + a->off : 0; }

// ---- the parameter list ------------------------------------------------------------------------
typedef enum { G_VISION, G_MERGER, G_LLM, G_DECODER } group;
typedef struct {
  int64_t numel;
  group g;
} ptensor;
typedef struct {
  ptensor *t;
  int n, cap;
} plist;

static void add(plist *l, int64_t numel, group g) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 256;
    l->t = idoc_xrealloc(l->t, (size_t)l->cap * sizeof *l->t);
  }
  l->t[l->n++] = (ptensor){numel, g};
}

// The tensors idoc_qwen_new creates, in its order.
static void qwen_tensors(const idoc_qwen_config *c, plist *l) {
  int64_t V = c->v_hidden, VI = c->v_intermediate,
          M = V * c->spatial_merge_size * c->spatial_merge_size;
  add(l, V * idoc_qwen_patch_dim(c), G_VISION);
  for (int b = 0; b < c->v_depth; b++) {
    int64_t s[12] = {V, V, 3 * V * V, 3 * V, V * V, V, VI * V, VI, VI * V, VI, V * VI, V};
    for (int i = 0; i < 12; i++)
      add(l, s[i], G_VISION);
  }
  int64_t m[5] = {V, M * M, M, (int64_t)c->v_out_hidden * M, c->v_out_hidden};
  for (int i = 0; i < 5; i++)
    add(l, m[i], G_MERGER);
  int64_t H = c->hidden_size, I = c->intermediate_size,
          KV = (int64_t)c->num_key_value_heads * idoc_qwen_head_dim(c);
  add(l, (int64_t)c->vocab_size * H, G_LLM);
  for (int k = 0; k < c->num_hidden_layers; k++) {
    int64_t s[12] = {H, H * H, H, KV * H, KV, KV * H, KV, H * H, H, I * H, I * H, H * I};
    for (int i = 0; i < 12; i++)
      add(l, s[i], G_LLM);
  }
  add(l, H, G_LLM);
  if (!c->tie_word_embeddings) add(l, (int64_t)c->vocab_size * H, G_LLM);
}

// The decoder's tensors, read off a scratch copy of it (its layout lives in one place,
// nn/heatmap_decoder.c); kept for the next plan of the same layout, as the search for the
// keys that make a run fit re-plans it many times.
static void decoder_tensors(const idoc_decoder_config *dc, plist *l) {
  static idoc_decoder_config cached;
  static int64_t *numel;
  static int n;
  if (!numel || memcmp(&cached, dc, sizeof cached)) {
    idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
    idoc_decoder *d = idoc_decoder_new(dc, ps);
    free(numel);
    numel = idoc_xmalloc((size_t)ps->n * sizeof *numel);
    n = ps->n;
    for (int i = 0; i < n; i++)
      numel[i] = idoc_numel(ps->p[i].w);
    idoc_decoder_free(d);
    idoc_params_free(ps);
    cached = *dc;
  }
  for (int i = 0; i < n; i++)
    add(l, numel[i], G_DECODER);
}

static bool frozen(const idoc_train_config *cfg, const ptensor *t) {
  switch (t->g) {
  case G_VISION: return cfg->freeze_vision_tower;
  case G_MERGER: return cfg->freeze_multi_modal_projector;
  case G_LLM: return cfg->freeze_language_model;
  // idoc_model_apply_freezing sets every decoder tensor by freeze_decoder, SAM's unused
  // prompt pieces included (they get zero gradients and AdamW state like the rest).
  default: return cfg->freeze_decoder;
  }
}

// ---- activations
// --------------------------------------------------------------------------------- Sums what the
// activation arena gets: each tensor rounded to 256 bytes, its gradient (same size) when backward
// reaches it.
typedef struct {
  double fwd, bwd;
} tally;

static void T(tally *t, double elems, double esize, bool grad) {
  double b = align256(elems * esize);
  t->fwd += b;
  if (grad) t->bwd += b;
}

// One LLM decoder layer (layer_fwd in nn/qwen_model.c) on n tokens.
static tally llm_layer(const idoc_qwen_config *c, double n, double e, bool grad) {
  double H = c->hidden_size, I = c->intermediate_size,
         KV = (double)c->num_key_value_heads * idoc_qwen_head_dim(c);
  tally t = {0};
  T(&t, n * H, e, grad); // input norm
  T(&t, n, 4, false);    // its rstd
  T(&t, n * H, e, grad); // q
  T(&t, n * H, e, grad); // rotated q
  T(&t, n * KV, e, grad);
  T(&t, n * KV, e, grad);
  T(&t, n * KV, e, grad);                      // k, rotated k, v
  T(&t, n * H, e, grad);                       // attention
  T(&t, n * c->num_attention_heads, 4, false); // its log-sum-exp
  T(&t, n * H, e, grad);                       // o
  T(&t, n * H, e, grad);                       // residual
  T(&t, n * H, e, grad);                       // post-attention norm
  T(&t, n, 4, false);
  T(&t, n * I, e, grad);
  T(&t, n * I, e, grad);
  T(&t, n * I, e, grad); // gate, up, swiglu
  T(&t, n * H, e, grad); // down
  T(&t, n * H, e, grad); // residual (the block's output)
  return t;
}

// One vision block (vblock_fwd) on P patches.
static tally vision_block(const idoc_qwen_config *c, double P, double e, bool grad) {
  double V = c->v_hidden, VI = c->v_intermediate;
  tally t = {0};
  T(&t, P * V, e, grad);
  T(&t, P, 4, false);
  T(&t, P * 3 * V, e, grad); // qkv
  for (int i = 0; i < 5; i++)
    T(&t, P * V, e, grad); // q slice, rotated, k slice, rotated, v slice
  T(&t, P * V, e, grad);   // attention
  T(&t, P * c->v_heads, 4, false);
  T(&t, P * V, e, grad);
  T(&t, P * V, e, grad); // proj, residual
  T(&t, P * V, e, grad);
  T(&t, P, 4, false);
  for (int i = 0; i < 3; i++)
    T(&t, P * VI, e, grad);
  T(&t, P * V, e, grad);
  T(&t, P * V, e, grad);
  return t;
}

// Blocks of a stack with or without checkpointing: without, everything stays; with, the blocks
// keep their outputs (and their gradients), and one block's intermediates and gradients exist
// at a time during its recomputation in backward.
static double stack(tally blk, int n_blocks, double out_bytes, bool ckpt, bool grad) {
  if (!ckpt) return n_blocks * (blk.fwd + blk.bwd);
  return n_blocks * out_bytes * (grad ? 2 : 1) + (grad ? blk.fwd + blk.bwd : 0);
}

// The device the run will use, as idoc_stage_device picks it.
static bool plan_on_cuda(const idoc_train_config *cfg) {
  idoc_device d;
  return idoc_stage_device_pick(cfg, &d) == IDOC_OK && d.kind == IDOC_CUDA;
}

// The decoder on one sequence's nq maps over an Hm x Wm grid (idoc_decoder_forward).
static tally decoder_seq(const idoc_decoder_config *d, double nq, double Hm, double Wm, double e,
                         bool grad) {
  double D = d->dim, ci = (double)d->dim / d->downsample, HW = Hm * Wm, R = nq * HW;
  double L = d->llm_hidden;
  tally t = {0};
  T(&t, R * L, e, grad); // the image features per query
  T(&t, nq * L, e, grad);
  T(&t, R * L, e, grad);
  T(&t, R * L, e, grad);
  T(&t, R * D, e, grad);
  T(&t, R * D, e, grad);   // image fc0, relu, fc2, + no-mask
  T(&t, HW * D, 4, false); // dense positional encoding
  for (int l = 0; l <= d->depth; l++) {
    // keys side per block: k + pos, K, V (token-to-image); k + pos, Q, attention, o, residual,
    // layer norm (image-to-token); the final attention has the first three only.
    T(&t, R * D, e, grad);
    T(&t, R * ci, e, grad);
    T(&t, R * ci, e, grad);
    if (l == d->depth) break;
    T(&t, R * D, e, grad);
    T(&t, R * ci, e, grad);
    T(&t, R * ci, e, grad);
    T(&t, R * D, e, grad);
    T(&t, R * D, e, grad);
    T(&t, R * D, e, grad);
    T(&t, 2 * R, 4, false);
  }
  T(&t, R * D, e, grad); // transpose to [B, D, H, W]
  double ch[2] = {d->c1, d->c2};
  for (int i = 0; i < 2; i++) { // head convs at H x W: conv, relu, norm
    for (int k = 0; k < 3; k++)
      T(&t, R * ch[i], e, grad);
    T(&t, R, 4, false);
  }
  double outs[4] = {d->c1, d->c2, d->c2, d->c3}, px = R;
  for (int i = 0; i < 4; i++) {
    px *= 4; // each transposed conv doubles both sides
    // deconv, norm, relu; conv, norm, relu; conv, norm; residual, relu
    for (int k = 0; k < 10; k++)
      T(&t, px * outs[i], e, grad);
    for (int k = 0; k < 3; k++)
      T(&t, px, 4, false); // the three channel norms' rstd
  }
  T(&t, px * d->c3, e, grad);
  T(&t, px * d->c3, e, grad); // last conv, relu
  T(&t, px, e, grad);
  T(&t, px, e, grad);  // hypernetwork logits, sigmoid
  T(&t, px, 4, false); // ground-truth maps
  return t;
}

void idoc_plan_model(const idoc_qwen_config *qc, const idoc_decoder_config *dc,
                     const idoc_train_config *cfg, const idoc_plan_opts *opt,
                     const idoc_plan_shape *shape, idoc_plan *p) {
  bool bf16 = opt->bf16;
  memset(p, 0, sizeof *p);
  p->shape = *shape;
  p->bf16 = bf16;
  p->checkpointing = cfg->gradient_checkpointing;
  p->grpo = cfg->stage == IDOC_STAGE_GRPO;
  p->world = opt->world > 0 ? opt->world : 1;
  p->zero_stage = cfg->zero_stage;
  double e = bf16 ? 2 : 4;

  plist l = {0};
  qwen_tensors(qc, &l);
  if (dc) decoder_tensors(dc, &l);
  sim_arena w = {0}, st = {0};
  bool train_group[4] = {false, false, false, false};
  for (int i = 0; i < l.n; i++) {
    const ptensor *t = &l.t[i];
    sim_alloc(&w, (double)t->numel * e);
    p->params += t->numel;
    if (frozen(cfg, t)) continue;
    train_group[t->g] = true;
    p->trainable += t->numel;
    // Gradients of trainable parameters only, in one block of exactly their aligned sizes
    // (idoc_params_alloc_grads; a frozen parameter owns no gradient buffer).
    p->grads += align256((double)t->numel * e);
  }
  // AdamW moments m then v per trainable parameter (idoc_params_init_adam), or the ZeRO-1
  // shard of them (stage/dist.c).
  if (cfg->zero_stage && p->world > 1) {
    double shard = ceil((double)p->trainable / p->world);
    p->adam = 2 * align256(shard * 4);
  } else {
    for (int i = 0; i < l.n; i++)
      if (!frozen(cfg, &l.t[i])) {
        sim_alloc(&st, (double)l.t[i].numel * 4);
        sim_alloc(&st, (double)l.t[i].numel * 4);
      }
    p->adam = sim_used(&st);
  }
  free(l.t);
  p->weights = sim_used(&w);
  // fp32 masters of the trainable parameters (stage/dist.c), this rank's shard with ZeRO-1.
  p->masters = !bf16 ? 0
               : cfg->zero_stage && p->world > 1
                   ? align256(ceil((double)p->trainable / p->world) * 4)
                   : 4.0 * (double)p->trainable;
  // The fp64 step sum (stage/dist.c): grad_sum_dtype fp64, or auto on the host.
  // (A bf16 plan is a GPU's: bf16 storage exists there only.)
  bool fp64 = idoc_config_grad_sum_fp64(cfg, bf16 || plan_on_cuda(cfg));
  // bf16 weights: the step's fp32 gradient (the optimizer's input), and the fp64 sum always.
  if (fp64 && (bf16 || p->world > 1 || cfg->gradient_accumulation_steps > 1))
    p->grad_sum = 8.0 * (double)p->trainable;
  if (bf16) p->grad_sum += 4.0 * (double)p->trainable;

  // Activations of one micro-batch.
  double n = (double)shape->tokens, S = shape->n_seq;
  bool ckpt = cfg->gradient_checkpointing;
  bool g_vis = train_group[G_VISION], g_mer = g_vis || train_group[G_MERGER];
  bool g_llm = g_mer || train_group[G_LLM] || train_group[G_DECODER];
  int ms = qc->spatial_merge_size, mu = ms * ms;
  double P = S * shape->grid_h * shape->grid_w, Pm = P / mu;
  if (P > 0) {
    tally v = {0};
    double hd2 = idoc_qwen_v_head_dim(qc) / 2.0;
    T(&v, P * idoc_qwen_patch_dim(qc), e, false); // pixel_values in the model's dtype
    for (int k = 0; k < 4; k++)
      T(&v, P * hd2, e, false); // rotary tables, then in window order
    T(&v, Pm, 4, false);
    T(&v, Pm, 4, false);               // window order and its inverse
    T(&v, P * qc->v_hidden, e, g_vis); // patch embedding
    T(&v, P * qc->v_hidden, e, g_vis); // in window order
    tally blk = vision_block(qc, P, e, g_vis);
    double out = align256(P * qc->v_hidden * e);
    p->act_vision = v.fwd + v.bwd + stack(blk, qc->v_depth, out, ckpt, g_vis);
    tally m = {0};
    T(&m, P * qc->v_hidden, e, g_mer);
    T(&m, P, 4, false);
    T(&m, Pm * mu * qc->v_hidden, e, g_mer);
    T(&m, Pm * mu * qc->v_hidden, e, g_mer);
    T(&m, Pm * qc->v_out_hidden, e, g_mer);
    T(&m, Pm * qc->v_out_hidden, e, g_mer); // back in raster order
    p->act_vision += m.fwd + m.bwd;
  }
  {
    double H = qc->hidden_size, hd2 = idoc_qwen_head_dim(qc) / 2.0;
    tally o = {0};
    T(&o, n * H, e, train_group[G_LLM]); // embedding
    if (P > 0) {
      T(&o, Pm, 4, false);
      T(&o, n * H, e, g_llm); // image rows scattered in
    }
    T(&o, n * hd2, e, false);
    T(&o, n * hd2, e, false); // M-RoPE tables
    T(&o, n * H, e, g_llm);   // final norm
    T(&o, n, 4, false);
    tally blk = llm_layer(qc, n, e, g_llm);
    p->act_per_token_layer = n > 0 ? (blk.fwd + blk.bwd) / n : 0;
    p->act_llm =
        o.fwd + o.bwd + stack(blk, qc->num_hidden_layers, align256(n * H * e), ckpt, g_llm);
    tally lg = {0};
    // Logits and their gradient; with head_chunk_tokens one chunk's (nn/ops_head.c: freed
    // after each chunk, so this overcounts when later backward work reuses the space).
    p->head_chunk = cfg->head_chunk_tokens > 0 && cfg->head_chunk_tokens < shape->tokens
                        ? cfg->head_chunk_tokens
                        : shape->tokens;
    T(&lg, (double)p->head_chunk * qc->vocab_size, e, g_llm);
    T(&lg, n, 4, false);
    T(&lg, n, 4, false); // per-token losses, log-sum-exp
    p->logits = lg.fwd + lg.bwd;
  }
  if (dc && shape->maps_per_seq > 0 && P > 0) {
    tally d = decoder_seq(dc, shape->maps_per_seq, shape->grid_h / ms, shape->grid_w / ms, e,
                          train_group[G_DECODER] || g_llm);
    p->act_decoder = S * (d.fwd + d.bwd);
  }
  // Not counted: segment offsets, index uploads and scalars (a few 256-byte pieces per op).
  p->act = p->act_vision + p->act_llm + p->act_decoder + p->logits;

  // Generation: GRPO rollouts (prompts x generations slots), else the eval's one sequence.
  double KV = (double)qc->num_key_value_heads * idoc_qwen_head_dim(qc);
  double slots = p->grpo ? (double)cfg->per_device_train_batch_size * cfg->num_generations : 1;
  double len = p->grpo ? cfg->cutoff_len + cfg->max_completion_length
                       : cfg->cutoff_len + cfg->max_new_tokens + 64;
  p->kv_cache = 2.0 * qc->num_hidden_layers * slots * len * KV * e;
  if (p->grpo && cfg->beta > 0) p->reference = p->weights;
  // Generation runs between optimizer steps, with the training arenas' blocks still held, so
  // the cache adds to the peak.
  p->peak = p->weights + p->masters + p->grads + p->adam + p->grad_sum + p->act + p->reference +
            (p->grpo || cfg->eval_dataset[0] ? p->kv_cache : 0);
}

// ---- from a config
// -------------------------------------------------------------------------------
int idoc_plan_config(const idoc_train_config *cfg, const idoc_plan_opts *opt, idoc_plan *p) {
  const char *src = cfg->model_name_or_path;
  bool grpo = cfg->stage == IDOC_STAGE_GRPO, cot = cfg->target == IDOC_TARGET_COT;
  // The decoder as the trainers attach it (sft_trainer.c, grpo_train.c, idoc_model_setup).
  bool want = grpo || cot || cfg->task_tokens || !strcmp(cfg->decoder, "tiny") ||
              !strcmp(cfg->decoder, "release");
  if (!strcmp(cfg->decoder, "none")) want = false;
  idoc_qwen_config qc;
  idoc_decoder_config dc;
  bool has_dec = false;
  char cj[4096];
  snprintf(cj, sizeof cj, "%s/config.json", src);
  if (idoc_file_exists(cj)) {
    if (idoc_imagedoctor_layout(src, &qc, &dc, &has_dec))
      return idoc_wrap_error("model_name_or_path");
    if (!has_dec) dc = idoc_pick_decoder(cfg->decoder, qc.hidden_size, cfg->task_tokens);
    has_dec = has_dec || want;
  } else {
    if (idoc_model_config_from_name(src, &qc)) return IDOC_ERR;
    dc = idoc_pick_decoder(cfg->decoder, qc.hidden_size, cfg->task_tokens);
    has_dec = want;
  }
  idoc_train_config c2;
  idoc_config_copy(&c2, cfg);
  if (grpo) c2.freeze_decoder = true; // GRPO never trains the decoder
  // The largest micro-batch: sequences of cutoff_len tokens (GRPO: one prompt's generations of
  // prompt plus completion), each with one image at the largest size the keys allow.
  idoc_plan_shape sh = {0};
  int64_t seq = cfg->cutoff_len + (grpo ? cfg->max_completion_length : 0);
  sh.n_seq = grpo ? cfg->num_generations : cfg->per_device_train_batch_size;
  sh.tokens = seq * sh.n_seq;
  int f = qc.patch_size * qc.spatial_merge_size, side = cfg->image_size, h = 0, w = 0;
  if (side <= 0) side = (int)floor(sqrt((double)cfg->image_max_pixels));
  if (idoc_smart_resize(side, side, f, cfg->image_min_pixels, cfg->image_max_pixels, &h, &w) ==
      IDOC_OK) {
    sh.grid_h = h / qc.patch_size;
    sh.grid_w = w / qc.patch_size;
  }
  sh.maps_per_seq = has_dec && cot && !grpo ? 2 : 0;
  idoc_plan_model(&qc, has_dec ? &dc : NULL, &c2, opt, &sh, p);
  idoc_config_free(&c2);
  return IDOC_OK;
}

double idoc_plan_available(const idoc_train_config *cfg) {
  if (plan_on_cuda(cfg))
    return idoc_cuda_device_count() > 0 ? (double)idoc_cuda_device_memory() : 0;
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

double idoc_plan_parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v) || v <= 0) return -1;
  while (*end == ' ')
    end++;
  const char *units = "KMGT";
  const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
  if (*end && !u) return -1;
  if (u) {
    v *= pow(1024, (double)(u - units + 1));
    end++;
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'B' || *end == 'b') end++;
  } else if (*end == 'B' || *end == 'b') {
    end++;
  }
  return *end ? -1 : v;
}

// ---- output
// --------------------------------------------------------------------------------------
static void row(FILE *f, const char *what, double b, const char *note) {
  if (b >= (double)(1 << 30))
    fprintf(f, "  %-26s %10.2f GiB  %s\n", what, b / (1 << 30), note);
  else
    fprintf(f, "  %-26s %10.1f MiB  %s\n", what, b / (1 << 20), note);
}

static const char *fmt_bytes(char *buf, size_t n, double b) {
  snprintf(buf, n, b >= (double)(1 << 30) ? "%.2f GiB" : "%.1f MiB",
           b / (b >= (double)(1 << 30) ? (1 << 30) : (1 << 20)));
  return buf;
}

void idoc_plan_print(FILE *f, const idoc_plan *p, double avail) {
  char n1[96];
  fprintf(f,
          "%lld parameters (%lld trainable), %s storage, micro-batch %lld tokens in %d sequences",
          (long long)p->params, (long long)p->trainable, p->bf16 ? "bf16" : "f32",
          (long long)p->shape.tokens, p->shape.n_seq);
  if (p->shape.grid_h) fprintf(f, ", images %dx%d patches", p->shape.grid_h, p->shape.grid_w);
  fprintf(f, ", gradient checkpointing %s\n", p->checkpointing ? "on" : "off");
  row(f, "weights", p->weights, p->bf16 ? "bf16" : "f32");
  if (p->bf16) row(f, "fp32 masters", p->masters, "trainable parameters");
  row(f, "gradients", p->grads, "trainable parameters only");
  snprintf(n1, sizeof n1, "m and v, f32%s", p->zero_stage && p->world > 1 ? ", ZeRO-1 shard" : "");
  row(f, "AdamW state", p->adam, n1);
  if (p->grad_sum > 0)
    row(f, p->bf16 ? "gradient sum (fp32)" : "gradient sum (fp64)", p->grad_sum,
        p->bf16 ? "trainable parameters, the optimizer's input" : "accumulation or ranks");
  if (p->reference > 0) row(f, "reference model", p->reference, "GRPO, beta > 0");
  snprintf(n1, sizeof n1, "%.1f KiB per token per layer (with gradients)",
           p->act_per_token_layer / 1024);
  row(f, "activations: LLM", p->act_llm, n1);
  row(f, "activations: vision", p->act_vision, "the images of one micro-batch");
  if (p->act_decoder > 0) row(f, "activations: decoder", p->act_decoder, "heatmaps");
  snprintf(n1, sizeof n1, "%lld of the %lld tokens at a time", (long long)p->head_chunk,
           (long long)p->shape.tokens);
  row(f, "logits (+ gradient)", p->logits, p->head_chunk < p->shape.tokens ? n1 : "");
  row(f, "activations in all", p->act, "the step arena's peak");
  row(f, "KV cache", p->kv_cache, p->grpo ? "rollouts" : "eval generation");
  row(f, "peak", p->peak, "");
  if (avail > 0) {
    char a[32];
    fprintf(f, "%s %s (%.0f%% of it)\n", p->peak <= avail ? "fits" : "does not fit",
            fmt_bytes(a, sizeof a, avail), 100 * p->peak / avail);
  }
}

static bool replan_fits(const idoc_train_config *cfg, const idoc_plan_opts *opt, const char *assign,
                        double avail, double *peak) {
  idoc_train_config c;
  idoc_config_copy(&c, cfg);
  idoc_plan p;
  *peak = 0;
  bool ok = (!assign || idoc_config_set(&c, assign) == IDOC_OK) &&
            idoc_plan_config(&c, opt, &p) == IDOC_OK;
  idoc_config_free(&c);
  if (!ok) return false;
  *peak = p.peak;
  return p.peak <= avail;
}

int idoc_plan_print_fixes(FILE *f, const idoc_train_config *cfg, const idoc_plan_opts *opt,
                          double avail) {
  char a[160], b[32];
  double pk = 0;
  int alone = 0;
  fprintf(f, "keys that make it fit (each alone, re-planned):\n");
  enum { NF = 4 };
  const char *flags[NF] = {"gradient_checkpointing=true", "head_chunk_tokens=2048",
                           "freeze_vision_tower=true", "freeze_multi_modal_projector=true"};
  idoc_plan p0; // a chunk as long as the micro-batch would change nothing
  bool short_batch = idoc_plan_config(cfg, opt, &p0) == IDOC_OK && p0.shape.tokens <= 2048;
  bool have[NF] = {cfg->gradient_checkpointing, cfg->head_chunk_tokens > 0 || short_batch,
                   cfg->freeze_vision_tower, cfg->freeze_multi_modal_projector};
  char together[512] = "";
  for (int i = 0; i < NF; i++) {
    if (have[i]) continue;
    bool ok = replan_fits(cfg, opt, flags[i], avail, &pk);
    alone += ok;
    fprintf(f, "  %-36s peak %s: %s\n", flags[i], fmt_bytes(b, sizeof b, pk),
            ok ? "fits" : "not alone");
    snprintf(together + strlen(together), sizeof together - strlen(together), "%s ", flags[i]);
  }
  if (!opt->bf16) {
    idoc_plan_opts o = *opt;
    o.bf16 = true;
    bool ok = replan_fits(cfg, &o, NULL, avail, &pk);
    alone += ok;
    fprintf(f, "  %-36s peak %s: %s (on a GPU)\n", "bf16=true", fmt_bytes(b, sizeof b, pk),
            ok ? "fits" : "not alone");
  }
  // The largest batch and cutoff_len (a multiple of 256) that fit, everything else as it is;
  // the peak grows with both, so a bisection finds them.
  const char *keys[2] = {"per_device_train_batch_size", "cutoff_len"};
  int unit[2] = {1, 256},
      top[2] = {cfg->per_device_train_batch_size - 1, (cfg->cutoff_len - 1) / 256};
  if (cfg->stage != IDOC_STAGE_SFT) top[0] = 0; // GRPO's micro-batch is one prompt's group
  for (int k = 0; k < 2; k++) {
    int lo = 0, hi = top[k]; // lo fits (0: nothing known to), hi + 1 does not
    while (lo < hi) {
      int mid = (lo + hi + 1) / 2;
      snprintf(a, sizeof a, "%s=%d", keys[k], mid * unit[k]);
      if (replan_fits(cfg, opt, a, avail, &pk))
        lo = mid;
      else
        hi = mid - 1;
    }
    if (lo > 0) {
      snprintf(a, sizeof a, "%s=%d", keys[k], lo * unit[k]);
      replan_fits(cfg, opt, a, avail, &pk);
      fprintf(f, "  %-36s peak %s: fits%s\n", a, fmt_bytes(b, sizeof b, pk),
              k ? " (longer samples are cut)" : "");
      alone++;
    }
  }
  if (!cfg->zero_stage) {
    for (int r = 2; r <= 64; r *= 2) {
      idoc_plan_opts o = *opt;
      o.world = r;
      if (replan_fits(cfg, &o, "zero_stage=1", avail, &pk)) {
        fprintf(f, "  %-36s peak %s per rank: fits with %d ranks (AdamW state%s sharded)\n",
                "zero_stage=1", fmt_bytes(b, sizeof b, pk), r, opt->bf16 ? " and masters" : "");
        alone++;
        break;
      }
    }
  }
  if (together[0]) {
    idoc_train_config c;
    idoc_config_copy(&c, cfg);
    for (int i = 0; i < NF; i++)
      if (!have[i]) idoc_config_set(&c, flags[i]);
    bool ok = replan_fits(&c, opt, NULL, avail, &pk);
    fprintf(f, "  together: %s-> peak %s: %s\n", together, fmt_bytes(b, sizeof b, pk),
            ok ? "fits" : "does not fit");
    idoc_config_free(&c);
  }
  if (!alone) fprintf(f, "  no single key suffices\n");
  return alone;
}

int idoc_plan_guard(const idoc_train_config *cfg) {
  const char *env = getenv("IDOC_PLAN_MEM");
  if (env && !strcmp(env, "off")) return IDOC_OK;
  double avail = env ? idoc_plan_parse_size(env) : idoc_plan_available(cfg);
  if (env && avail <= 0)
    return idoc_set_error("IDOC_PLAN_MEM: '%s' is not a size (80GiB, 512MiB) or off", env);
  idoc_plan_opts opt = {cfg->bf16 && plan_on_cuda(cfg),
                        idoc_comm_world() > 1 ? idoc_comm_world() : 1};
  idoc_plan p;
  // A model the plan cannot read is the trainer's to report (with its own message).
  if (avail <= 0 || idoc_plan_config(cfg, &opt, &p)) return IDOC_OK;
  if (p.peak <= avail) return IDOC_OK;
  int fixes = 0;
  if (idoc_comm_is_main()) {
    fprintf(stderr, "memory plan of this run (idoc plan):\n");
    idoc_plan_print(stderr, &p, avail);
    fixes = idoc_plan_print_fixes(stderr, cfg, &opt, avail);
  }
  char a[32], b[32];
  return idoc_set_error("the run needs %s at its peak, %s %s available: refused before allocating "
                        "the model (%s; IDOC_PLAN_MEM=SIZE|off overrides the check)",
                        fmt_bytes(a, sizeof a, p.peak), fmt_bytes(b, sizeof b, avail),
                        fixes ? "each key marked fits above makes it fit"
                              : "no single key makes it fit: see the keys above",
                        env                  ? "by IDOC_PLAN_MEM"
                        : !plan_on_cuda(cfg) ? "of host memory"
                                             : "of device memory");
}
