#include "train/smoke.h"

#include <math.h>
#include <omp.h>

#include "nn/ops.h"
#include "nn/param.h"
#include "stage/optim.h"

idoc_smoke_cfg idoc_smoke_default(void) {
  return (idoc_smoke_cfg){.vocab = 18,
                          .dim = 64,
                          .n_heads = 4,
                          .n_kv_heads = 2,
                          .hidden = 128,
                          .n_layers = 2,
                          .prefix_len = 8,
                          .batch = 16,
                          .steps = 300,
                          .warmup = 20,
                          .lr = 3e-3f,
                          .seed = 1,
                          .checkpointing = false,
                          .dev = IDOC_DEV_CPU};
}

typedef struct {
  idoc_tensor *ln1, *q, *qb, *k, *kb, *v, *vb, *o, *ln2, *gate, *up, *down;
} layer_w;

typedef struct {
  const idoc_smoke_cfg *cfg;
  layer_w *L;
  idoc_tensor *cos, *sin;
  idoc_segments seg;
} block_ud;

static idoc_tensor *param(idoc_params *ps, idoc_rng *r, const char *fmt, int layer, int ndim,
                          int64_t d0, int64_t d1, float init) {
  char name[128];
  snprintf(name, sizeof name, fmt, layer);
  idoc_tensor *t = idoc_param_new(ps, name, IDOC_F32, ndim, (int64_t[]){d0, d1});
  if (init < 0)
    idoc_tensor_fill(t, -init); // norms: constant
  else if (init == 0)
    idoc_tensor_zero(t);
  else
    idoc_tensor_normal(t, r, 0, init);
  return t;
}

// One pre-norm decoder layer, as in Qwen2: attention and SwiGLU MLP with residuals.
static void layer_fwd(idoc_ctx *c, void *ud_, idoc_tensor *const *in, int n_in, idoc_tensor **out,
                      int n_out) {
  block_ud *ud = ud_;
  layer_w *w = ud->L;
  const idoc_smoke_cfg *cfg = ud->cfg;
  idoc_tensor *h = in[0];
  idoc_tensor *n = idoc_rmsnorm(c, h, w->ln1, 1e-6f);
  idoc_tensor *q = idoc_rotary(c, idoc_linear(c, n, w->q, w->qb), ud->cos, ud->sin, cfg->n_heads);
  idoc_tensor *k =
      idoc_rotary(c, idoc_linear(c, n, w->k, w->kb), ud->cos, ud->sin, cfg->n_kv_heads);
  idoc_tensor *v = idoc_linear(c, n, w->v, w->vb);
  int hd = cfg->dim / cfg->n_heads;
  idoc_tensor *a = idoc_attention(c, q, k, v, &ud->seg, &ud->seg, cfg->n_heads, cfg->n_kv_heads,
                                  true, 1.0f / sqrtf((float)hd));
  h = idoc_add(c, h, idoc_linear(c, a, w->o, NULL));
  idoc_tensor *m = idoc_rmsnorm(c, h, w->ln2, 1e-6f);
  idoc_tensor *f = idoc_swiglu(c, idoc_linear(c, m, w->gate, NULL), idoc_linear(c, m, w->up, NULL));
  out[0] = idoc_add(c, h, idoc_linear(c, f, w->down, NULL));
}

double idoc_smoke_train(const idoc_smoke_cfg *cfg, float *losses, idoc_smoke_stats *stats,
                        bool verbose) {
  if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
  idoc_rng rng;
  idoc_rng_seed(&rng, cfg->seed);
  int d = cfg->dim, hd = d / cfg->n_heads, kvd = hd * cfg->n_kv_heads, V = cfg->vocab;
  idoc_params *ps = idoc_params_new(cfg->dev);
  idoc_tensor *emb = param(ps, &rng, "model.embed_tokens.weight", 0, 2, V, d, 0.02f);
  layer_w *L = idoc_xcalloc((size_t)cfg->n_layers, sizeof *L);
  for (int l = 0; l < cfg->n_layers; l++) {
    L[l].ln1 = param(ps, &rng, "model.layers.%d.input_layernorm.weight", l, 1, d, 0, -1);
    L[l].q = param(ps, &rng, "model.layers.%d.self_attn.q_proj.weight", l, 2, d, d, 0.02f);
    L[l].qb = param(ps, &rng, "model.layers.%d.self_attn.q_proj.bias", l, 1, d, 0, 0);
    L[l].k = param(ps, &rng, "model.layers.%d.self_attn.k_proj.weight", l, 2, kvd, d, 0.02f);
    L[l].kb = param(ps, &rng, "model.layers.%d.self_attn.k_proj.bias", l, 1, kvd, 0, 0);
    L[l].v = param(ps, &rng, "model.layers.%d.self_attn.v_proj.weight", l, 2, kvd, d, 0.02f);
    L[l].vb = param(ps, &rng, "model.layers.%d.self_attn.v_proj.bias", l, 1, kvd, 0, 0);
    L[l].o = param(ps, &rng, "model.layers.%d.self_attn.o_proj.weight", l, 2, d, d, 0.02f);
    L[l].ln2 = param(ps, &rng, "model.layers.%d.post_attention_layernorm.weight", l, 1, d, 0, -1);
    L[l].gate =
        param(ps, &rng, "model.layers.%d.mlp.gate_proj.weight", l, 2, cfg->hidden, d, 0.02f);
    L[l].up = param(ps, &rng, "model.layers.%d.mlp.up_proj.weight", l, 2, cfg->hidden, d, 0.02f);
    L[l].down =
        param(ps, &rng, "model.layers.%d.mlp.down_proj.weight", l, 2, d, cfg->hidden, 0.02f);
  }
  idoc_tensor *fnorm = param(ps, &rng, "model.norm.weight", 0, 1, d, 0, -1);

  // Packed batch layout: B segments of 2P tokens; positions restart in each segment.
  int P = cfg->prefix_len, S = 2 * P, B = cfg->batch, T = S * B;
  int32_t *cu = idoc_xmalloc((size_t)(B + 1) * sizeof *cu);
  for (int b = 0; b <= B; b++)
    cu[b] = b * S;
  idoc_arena *data = idoc_arena_new("smoke data", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *ids = idoc_tensor_1d(data, IDOC_I32, T), *tgt = idoc_tensor_1d(data, IDOC_I32, T);
  idoc_tensor *cosT = idoc_tensor_2d(data, IDOC_F32, T, hd / 2);
  idoc_tensor *sinT = idoc_tensor_2d(data, IDOC_F32, T, hd / 2);
  for (int t = 0; t < T; t++)
    for (int j = 0; j < hd / 2; j++) {
      double ang = (t % S) * pow(10000.0, -2.0 * j / hd);
      IDOC_F(cosT)[t * (hd / 2) + j] = (float)cos(ang);
      IDOC_F(sinT)[t * (hd / 2) + j] = (float)sin(ang);
    }
  // On a device: its copies of the batch (ids and targets uploaded each step) and the tables.
  bool on_dev = cfg->dev.kind != IDOC_CPU;
  idoc_arena *dd = on_dev ? idoc_arena_new("smoke device data", cfg->dev, 1 << 20) : NULL;
  idoc_tensor *ids_d = ids, *tgt_d = tgt, *cos_d = cosT, *sin_d = sinT;
  if (on_dev) {
    ids_d = idoc_tensor_1d(dd, IDOC_I32, T);
    tgt_d = idoc_tensor_1d(dd, IDOC_I32, T);
    cos_d = idoc_tensor_2d(dd, IDOC_F32, T, hd / 2);
    sin_d = idoc_tensor_2d(dd, IDOC_F32, T, hd / 2);
    idoc_tensor_copy(cos_d, cosT);
    idoc_tensor_copy(sin_d, sinT);
  }

  idoc_adamw opt;
  idoc_adamw_cfg ocfg = IDOC_ADAMW_DEFAULT;
  ocfg.weight_decay = 0.01f;
  idoc_adamw_init(&opt, ocfg, ps);
  idoc_ctx *c = idoc_ctx_new(cfg->dev, (size_t)32 << 20);
  double tail = 0, t0 = idoc_now();
  int tail_n = 0;
  for (int step = 0; step < cfg->steps; step++) {
    // sequence: x_1..x_P SEP x_1..x_P; inputs are its first 2P tokens, the loss covers the copy.
    for (int b = 0; b < B; b++) {
      int32_t *in = IDOC_I(ids) + b * S, *tg = IDOC_I(tgt) + b * S, seq[2 * 64 + 1];
      for (int i = 0; i < P; i++)
        seq[i] = seq[P + 1 + i] = (int32_t)idoc_rng_below(&rng, V - 1);
      seq[P] = V - 1;
      for (int i = 0; i < S; i++) {
        in[i] = seq[i];
        tg[i] = i >= P ? seq[i + 1] : -100;
      }
    }
    if (on_dev) {
      idoc_tensor_copy(ids_d, ids);
      idoc_tensor_copy(tgt_d, tgt);
    }
    idoc_ctx_reset(c);
    idoc_tensor *h = idoc_embedding(c, emb, ids_d);
    idoc_segments seg = idoc_segments_new(c, cu, B); // once per step, shared by the layers
    for (int l = 0; l < cfg->n_layers; l++) {
      block_ud ud = {cfg, &L[l], cos_d, sin_d, seg};
      idoc_tensor *out[1];
      if (cfg->checkpointing) {
        block_ud *keep = idoc_save_bytes(c, &ud, sizeof ud); // must outlive this loop
        idoc_checkpoint(c, layer_fwd, keep, &h, 1, out, 1);
      } else {
        layer_fwd(c, &ud, &h, 1, out, 1);
      }
      h = out[0];
    }
    idoc_tensor *logits = idoc_linear(c, idoc_rmsnorm(c, h, fnorm, 1e-6f), emb, NULL);
    idoc_tensor *loss = idoc_cross_entropy(c, logits, tgt_d, -100);
    idoc_backward(c, loss);
    float lr = idoc_lr_at(IDOC_LR_COSINE, cfg->lr, step, cfg->warmup, cfg->steps);
    float gnorm = idoc_adamw_step(&opt, ps, lr);
    idoc_params_zero_grad(ps);
    float lv = idoc_tensor_get(loss, 0);
    if (losses) losses[step] = lv;
    if (stats && step == 0) stats->act_blocks_after_first_step = idoc_arena_system_allocs(c->act);
    if (step >= cfg->steps - 10) {
      tail += lv;
      tail_n++;
    }
    if (verbose && (step % 25 == 0 || step == cfg->steps - 1))
      printf("step %4d  loss %.4f  grad_norm %.3f  lr %.2e  %.1fs\n", step, lv, gnorm, lr,
             idoc_now() - t0);
  }
  if (stats) {
    stats->act_blocks_at_end = idoc_arena_system_allocs(c->act);
    stats->act_peak_bytes = idoc_arena_peak(c->act);
    stats->seconds = idoc_now() - t0;
  }
  if (verbose)
    printf("parameters %lld, activation arena peak %.1f MB, %zu arena blocks allocated\n",
           (long long)idoc_params_count(ps, false), idoc_arena_peak(c->act) / 1048576.0,
           idoc_arena_system_allocs(c->act));
  idoc_ctx_free(c);
  idoc_adamw_free(&opt);
  idoc_arena_free(data);
  if (dd) idoc_arena_free(dd);
  free(cu);
  free(L);
  idoc_params_free(ps);
  return tail_n ? tail / tail_n : -1;
}
