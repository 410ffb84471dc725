#include "train/bench_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "nn/generate.h"
#include "nn/ops.h"
#include "nn/qwen_model.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "stage/optim.h"

void idoc_bench_shape_default(idoc_bench_shape *s) {
  *s = (idoc_bench_shape){.hidden = 256,
                          .layers = 4,
                          .heads = 4,
                          .kv_heads = 2,
                          .intermediate = 1024,
                          .vocab = 8192,
                          .v_depth = 4,
                          .v_hidden = 128,
                          .v_heads = 2,
                          .v_intermediate = 512,
                          .image = 224,
                          .n_seq = 4,
                          .seq_len = 512,
                          .gen_seqs = 8,
                          .gen_prompt = 128,
                          .gen_new = 256,
                          .warmup = 1,
                          .iters = 5,
                          .lr = 1e-4f,
                          .init_std = 0.1f,
                          .seed = 1234,
                          .image_h = 1080,
                          .image_w = 1920};
}

// Merged image tokens of one square image of the shape.
static int image_tokens(const idoc_bench_shape *s) {
  int g = s->image / IDOC_QWEN_PATCH;
  return g * g / (IDOC_QWEN_MERGE * IDOC_QWEN_MERGE);
}

int idoc_bench_config(const idoc_bench_shape *s, idoc_qwen_config *cfg) {
  idoc_qwen_preset("tiny", cfg);
  if (s->vocab < 1024)
    return idoc_set_error("bench: vocab %d is below 1024 (the tiny tokenizer's special ids)",
                          s->vocab);
  if (s->image < IDOC_QWEN_FACTOR || s->image % IDOC_QWEN_FACTOR)
    return idoc_set_error("bench: image side %d is not a positive multiple of %d", s->image,
                          IDOC_QWEN_FACTOR);
  if (s->heads <= 0 || s->hidden % s->heads || (s->hidden / s->heads) % 4)
    return idoc_set_error("bench: hidden %d must split into %d heads of a multiple of 4", s->hidden,
                          s->heads);
  if (s->v_heads <= 0 || s->v_hidden % s->v_heads || (s->v_hidden / s->v_heads) % 4)
    return idoc_set_error("bench: vision width %d must split into %d heads of a multiple of 4",
                          s->v_hidden, s->v_heads);
  if (s->layers < 1 || s->v_depth < 1 || s->intermediate < 1 || s->v_intermediate < 1)
    return idoc_set_error("bench: layers, vision depth and MLP widths must be positive");
  int need = image_tokens(s) + 8;
  if (s->n_seq < 1 || s->seq_len < need)
    return idoc_set_error("bench: %d sequences of %d tokens: each needs at least %d (its image "
                          "has %d tokens)",
                          s->n_seq, s->seq_len, need, image_tokens(s));
  if (s->gen_seqs < 1 || s->gen_prompt < need || s->gen_new < 1)
    return idoc_set_error("bench: generation needs prompts of at least %d tokens and >= 1 new "
                          "token (got %d prompts of %d, %d new)",
                          need, s->gen_seqs, s->gen_prompt, s->gen_new);
  if (s->warmup < 0 || s->iters < 1) return idoc_set_error("bench: --iters must be >= 1");
  cfg->vocab_size = s->vocab;
  cfg->hidden_size = s->hidden;
  cfg->intermediate_size = s->intermediate;
  cfg->num_hidden_layers = s->layers;
  cfg->num_attention_heads = s->heads;
  cfg->num_key_value_heads = s->kv_heads;
  int half = s->hidden / s->heads / 2; // rotary frequencies: Qwen's 16/24/24 split of 64, scaled
  cfg->mrope_section[0] = half / 4;
  cfg->mrope_section[1] = cfg->mrope_section[2] = (half - half / 4) / 2;
  cfg->mrope_section[0] += half - cfg->mrope_section[0] - 2 * cfg->mrope_section[1];
  cfg->v_depth = s->v_depth;
  cfg->v_hidden = s->v_hidden;
  cfg->v_heads = s->v_heads;
  cfg->v_intermediate = s->v_intermediate;
  cfg->v_out_hidden = s->hidden;
  cfg->n_fullatt = 1;
  cfg->fullatt[0] = s->v_depth - 1;
  return idoc_qwen_config_validate(cfg, "bench model");
}

void idoc_bench_picture(int h, int w, uint64_t seed, idoc_image *out) {
  idoc_rng r;
  idoc_rng_seed(&r, seed);
  out->h = h, out->w = w;
  out->rgb = idoc_xmalloc((size_t)h * (size_t)w * 3);
  double f[3], ph[3];
  for (int c = 0; c < 3; c++)
    f[c] = 0.01 + 0.2 * idoc_rng_uniform(&r), ph[c] = 6.28 * idoc_rng_uniform(&r);
  int rects[4][4];
  for (int k = 0; k < 4; k++) {
    rects[k][0] = (int)idoc_rng_below(&r, (uint64_t)h),
    rects[k][1] = (int)idoc_rng_below(&r, (uint64_t)w);
    rects[k][2] = rects[k][0] + 1 + (int)idoc_rng_below(&r, (uint64_t)(h / 3 + 1));
    rects[k][3] = rects[k][1] + 1 + (int)idoc_rng_below(&r, (uint64_t)(w / 3 + 1));
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int inside = -1;
      for (int k = 0; k < 4; k++)
        if (y >= rects[k][0] && y < rects[k][2] && x >= rects[k][1] && x < rects[k][3]) inside = k;
      for (int c = 0; c < 3; c++) {
        double v = inside >= 0 ? 40.0 + 60.0 * ((inside + c) % 4)
                               : 128 + 60 * sin(f[c] * y + 0.7 * f[c] * x + ph[c]) +
                                     50.0 * ((double)x / w - 0.5) * (c % 2 ? 1 : -1);
        v += (double)idoc_rng_below(&r, 9) - 4.0;
        out->rgb[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] =
            (uint8_t)(v < 0     ? 0
                      : v > 255 ? 255
                                : lround(v));
      }
    }
}

double idoc_bench_peak_rss_mib(void) {
  // VmHWM is the peak of this address space alone. getrusage's ru_maxrss is kept across exec,
  // and a child started with vfork (Python's subprocess, posix_spawn) inherits its parent's
  // peak that way; it is the fallback where /proc is absent.
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    if (kb >= 0) return (double)kb / 1024.0;
  }
  struct rusage u;
  if (getrusage(RUSAGE_SELF, &u)) return -1;
  return (double)u.ru_maxrss / 1024.0; // Linux: kilobytes
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void summarize(idoc_bench_result *r) {
  double *sorted = idoc_xmalloc((size_t)r->n * sizeof *sorted), sum = 0;
  memcpy(sorted, r->ms, (size_t)r->n * sizeof *sorted);
  qsort(sorted, (size_t)r->n, sizeof *sorted, cmp_double);
  for (int i = 0; i < r->n; i++)
    sum += r->ms[i];
  r->median_ms = r->n % 2 ? sorted[r->n / 2] : 0.5 * (sorted[r->n / 2 - 1] + sorted[r->n / 2]);
  r->mean_ms = sum / r->n;
  free(sorted);
}

static double median_of(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void idoc_bench_result_free(idoc_bench_result *r) {
  free(r->ms);
  free(r->losses);
  free(r->generated);
  memset(r, 0, sizeof *r);
}

// A text token outside the special ids (the tiny tokenizer's 1000..1023).
static int32_t text_token(idoc_rng *r, int vocab) {
  return vocab > 2048 ? 1024 + (int32_t)idoc_rng_below(r, (uint64_t)(vocab - 1024))
                      : (int32_t)idoc_rng_below(r, 1000);
}

// One sequence of n tokens: <|im_start|> word <|vision_start|> <|image_pad|> x k <|vision_end|>
// then text; labels (when not NULL) are -100 up to 16 tokens after the image, the ids after.
static void make_sequence(const idoc_qwen_config *cfg, idoc_rng *r, int n, int k, int32_t *ids,
                          int32_t *labels) {
  int t = 0;
  ids[t++] = 1001; // <|im_start|>
  ids[t++] = text_token(r, cfg->vocab_size);
  ids[t++] = cfg->vision_start_token_id;
  for (int i = 0; i < k; i++)
    ids[t++] = cfg->image_token_id;
  ids[t++] = cfg->vision_end_token_id;
  while (t < n)
    ids[t++] = text_token(r, cfg->vocab_size);
  if (labels)
    for (int i = 0; i < n; i++)
      labels[i] = i < k + 4 + 16 ? -100 : ids[i];
}

// The images' pixel values [n * P, 1176] (host, malloc'd) through the Qwen processor.
static float *make_pixels(const idoc_bench_shape *s, int n, uint64_t seed, int32_t *grid,
                          int64_t *rows) {
  float *all = NULL;
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    idoc_image im;
    idoc_bench_picture(s->image, s->image, seed + (uint64_t)i, &im);
    idoc_qwen_image_opts o;
    idoc_qwen_image_opts_default(&o);
    float *pv;
    int64_t np, g[3];
    IDOC_CHECK(idoc_qwen_preprocess(&im, &o, "bench image", &pv, &np, g) == IDOC_OK, "%s",
               idoc_last_error());
    idoc_image_free(&im);
    all = idoc_xrealloc(all, (size_t)(total + np) * IDOC_QWEN_PATCH_DIM * sizeof *all);
    memcpy(all + total * IDOC_QWEN_PATCH_DIM, pv, (size_t)np * IDOC_QWEN_PATCH_DIM * sizeof *pv);
    free(pv);
    total += np;
    for (int a = 0; a < 3; a++)
      grid[3 * i + a] = (int32_t)g[a];
  }
  *rows = total;
  return all;
}

typedef struct {
  idoc_qwen_config cfg;
  idoc_params *ps;
  idoc_qwen *m;
} bench_model;

static int model_new(const idoc_bench_shape *s, bench_model *bm) {
  if (idoc_bench_config(s, &bm->cfg)) return IDOC_ERR;
  bm->ps = idoc_params_new(s->dev);
  bm->m = idoc_qwen_new(&bm->cfg, bm->ps, IDOC_F32);
  idoc_qwen_init_random(bm->m, s->seed, s->init_std);
  return IDOC_OK;
}

static void model_free(bench_model *bm) {
  idoc_qwen_free(bm->m);
  idoc_params_free(bm->ps);
}

// Writes the model (HF layout) into dir, then the named tensors as dir/file.
static int dump(const bench_model *bm, const char *dir, const char *file, const idoc_st_item *items,
                int n) {
  if (idoc_qwen_save(bm->m, dir, IDOC_F32)) return IDOC_ERR;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return idoc_st_write_file(path, items, n, NULL);
}

static int write_text(const char *dir, const char *file, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return idoc_write_file_atomic(path, text, strlen(text));
}

int idoc_bench_train(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r) {
  memset(r, 0, sizeof *r);
  bench_model bm;
  if (model_new(s, &bm)) return IDOC_ERR;
  const idoc_qwen_config *cfg = &bm.cfg;
  int T = s->n_seq * s->seq_len, k = image_tokens(s);
  idoc_rng rng;
  idoc_rng_seed(&rng, s->seed + 1);
  idoc_arena *A = idoc_arena_new("bench batch", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *ids = idoc_tensor_1d(A, IDOC_I32, T), *labels = idoc_tensor_1d(A, IDOC_I32, T);
  idoc_tensor *tgt = idoc_tensor_1d(A, IDOC_I32, T);
  int32_t *cu = idoc_xmalloc((size_t)(s->n_seq + 1) * sizeof *cu);
  int32_t *grid = idoc_xmalloc((size_t)s->n_seq * 3 * sizeof *grid);
  for (int q = 0; q <= s->n_seq; q++)
    cu[q] = q * s->seq_len;
  for (int q = 0; q < s->n_seq; q++)
    make_sequence(cfg, &rng, s->seq_len, k, IDOC_I(ids) + cu[q], IDOC_I(labels) + cu[q]);
  idoc_qwen_shift_labels(IDOC_I(labels), cu, s->n_seq, IDOC_I(tgt), -100);
  int64_t rows;
  float *pix = make_pixels(s, s->n_seq, s->seed + 100, grid, &rows);
  idoc_tensor *pv = idoc_tensor_2d(A, IDOC_F32, rows, IDOC_QWEN_PATCH_DIM);
  idoc_tensor_from_host(pv, pix);
  free(pix);
  idoc_qwen_batch b = {ids, cu, s->n_seq, pv, grid, s->n_seq};

  idoc_adamw opt;
  idoc_adamw_cfg ocfg = IDOC_ADAMW_DEFAULT; // betas 0.9/0.999, eps 1e-8, no decay, clip 1.0
  idoc_adamw_init(&opt, ocfg, bm.ps);
  idoc_ctx *c = idoc_ctx_new(s->dev, (size_t)64 << 20);
  r->n = s->iters;
  r->ms = idoc_xmalloc((size_t)r->n * sizeof *r->ms);
  r->n_losses = s->warmup + s->iters;
  r->losses = idoc_xmalloc((size_t)r->n_losses * sizeof *r->losses);
  r->tokens = T;
  r->params = idoc_params_count(bm.ps, false);
  int rc = IDOC_OK;
  if (dump_dir) { // the weights before the first step, and the batch
    idoc_tensor *ids2 = idoc_tensor_view(A, ids, 2, (int64_t[]){s->n_seq, s->seq_len});
    idoc_tensor *lab2 = idoc_tensor_view(A, labels, 2, (int64_t[]){s->n_seq, s->seq_len});
    idoc_tensor *g2 = idoc_tensor_2d(A, IDOC_I32, s->n_seq, 3);
    idoc_tensor_from_host(g2, grid);
    idoc_st_item items[] = {
        {"input_ids", ids2}, {"labels", lab2}, {"pixel_values", pv}, {"image_grid_thw", g2}};
    rc = dump(&bm, dump_dir, "train_batch.safetensors", items, 4);
  }
  for (int it = 0; it < r->n_losses && rc == IDOC_OK; it++) {
    double t0 = idoc_now();
    idoc_ctx_reset(c);
    idoc_tensor *logits = idoc_qwen_forward(c, bm.m, &b, NULL, NULL);
    idoc_tensor *loss = idoc_cross_entropy(c, logits, tgt, -100);
    idoc_backward(c, loss);
    idoc_adamw_step(&opt, bm.ps, s->lr);
    idoc_params_zero_grad(bm.ps);
    double ms = (idoc_now() - t0) * 1e3;
    r->losses[it] = idoc_tensor_get(loss, 0);
    if (it >= s->warmup) r->ms[it - s->warmup] = ms;
  }
  if (rc == IDOC_OK) summarize(r);
  if (rc == IDOC_OK && dump_dir) {
    size_t cap = 512 + (size_t)r->n_losses * 24;
    char *js = idoc_xmalloc(cap);
    size_t o = (size_t)snprintf(js, cap,
                                "{\n  \"lr\": %.9g, \"betas\": [%.9g, %.9g], \"eps\": %.9g, "
                                "\"weight_decay\": %.9g, \"max_grad_norm\": %.9g,\n  \"losses\": [",
                                s->lr, ocfg.beta1, ocfg.beta2, ocfg.eps, ocfg.weight_decay,
                                ocfg.max_grad_norm);
    for (int i = 0; i < r->n_losses; i++)
      o += (size_t)snprintf(js + o, cap - o, "%s%.9g", i ? ", " : "", r->losses[i]);
    snprintf(js + o, cap - o, "]\n}\n");
    rc = write_text(dump_dir, "train.json", js);
    free(js);
  }
  idoc_ctx_free(c);
  idoc_adamw_free(&opt);
  idoc_arena_free(A);
  free(cu);
  free(grid);
  model_free(&bm);
  if (rc) idoc_bench_result_free(r);
  return rc;
}

int idoc_bench_generate(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r) {
  memset(r, 0, sizeof *r);
  bench_model bm;
  if (model_new(s, &bm)) return IDOC_ERR;
  const idoc_qwen_config *cfg = &bm.cfg;
  int P = s->gen_seqs, n = s->gen_prompt, k = image_tokens(s);
  idoc_rng rng;
  idoc_rng_seed(&rng, s->seed + 2);
  int32_t *ids = idoc_xmalloc((size_t)P * (size_t)n * sizeof *ids);
  int32_t *grid = idoc_xmalloc((size_t)P * 3 * sizeof *grid);
  for (int q = 0; q < P; q++)
    make_sequence(cfg, &rng, n, k, ids + (size_t)q * n, NULL);
  int64_t rows;
  float *pix = make_pixels(s, P, s->seed + 200, grid, &rows);
  idoc_arena *A = idoc_arena_new("bench prompts", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *pv = idoc_tensor_2d(A, IDOC_F32, rows, IDOC_QWEN_PATCH_DIM);
  idoc_tensor_from_host(pv, pix);
  free(pix);
  int64_t per = rows / P;
  idoc_gen_prompt *gp = idoc_xcalloc((size_t)P, sizeof *gp);
  for (int q = 0; q < P; q++)
    gp[q] = (idoc_gen_prompt){.ids = ids + (size_t)q * n,
                              .n_ids = n,
                              .pixel_values = idoc_tensor_rows(A, pv, q * per, per),
                              .grid_thw = grid + 3 * q,
                              .n_images = 1,
                              .id = (uint64_t)q};
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.max_new_tokens = s->gen_new;
  o.cache = idoc_qwen_cache_new(bm.m, P, n + s->gen_new);
  idoc_ctx *c = idoc_ctx_new(s->dev, (size_t)16 << 20);
  r->n = s->iters;
  r->ms = idoc_xmalloc((size_t)r->n * sizeof *r->ms);
  r->tokens = (double)P * s->gen_new;
  r->params = idoc_params_count(bm.ps, false);
  r->generated = idoc_xcalloc((size_t)P * (size_t)s->gen_new, sizeof *r->generated);
  double *pre = idoc_xmalloc((size_t)r->n * sizeof *pre),
         *dec = idoc_xmalloc((size_t)r->n * sizeof *dec);
  int rc = o.cache ? IDOC_OK : IDOC_ERR;
  for (int it = 0; it < s->warmup + s->iters && rc == IDOC_OK; it++) {
    idoc_gen_result g;
    double t0 = idoc_now();
    rc = idoc_generate(c, bm.m, gp, P, &o, &g);
    double ms = (idoc_now() - t0) * 1e3;
    if (rc) break;
    if (it == 0)
      for (int q = 0; q < P; q++)
        for (int j = 0; j < g.c[q].n_tokens && j < s->gen_new; j++)
          r->generated[(size_t)q * s->gen_new + (size_t)j] = g.c[q].tokens[j];
    if (it >= s->warmup) {
      r->ms[it - s->warmup] = ms;
      pre[it - s->warmup] = g.prefill_s * 1e3;
      dec[it - s->warmup] = g.decode_s * 1e3;
    }
    idoc_gen_result_free(&g);
  }
  if (rc == IDOC_OK) {
    summarize(r);
    r->prefill_ms = median_of(pre, r->n);
    r->decode_ms = median_of(dec, r->n);
  }
  if (rc == IDOC_OK && dump_dir) {
    idoc_tensor *t_ids = idoc_tensor_2d(A, IDOC_I32, P, n);
    idoc_tensor_from_host(t_ids, ids);
    idoc_tensor *t_grid = idoc_tensor_2d(A, IDOC_I32, P, 3);
    idoc_tensor_from_host(t_grid, grid);
    idoc_tensor *t_gen = idoc_tensor_2d(A, IDOC_I32, P, s->gen_new);
    idoc_tensor_from_host(t_gen, r->generated);
    idoc_st_item items[] = {{"input_ids", t_ids},
                            {"pixel_values", pv},
                            {"image_grid_thw", t_grid},
                            {"generated", t_gen}};
    rc = dump(&bm, dump_dir, "generate_batch.safetensors", items, 4);
  }
  free(pre);
  free(dec);
  idoc_ctx_free(c);
  idoc_qwen_cache_free(o.cache);
  idoc_arena_free(A);
  free(gp);
  free(ids);
  free(grid);
  model_free(&bm);
  if (rc) idoc_bench_result_free(r);
  return rc;
}

int idoc_bench_image(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r) {
  memset(r, 0, sizeof *r);
  if (s->image_h < 1 || s->image_w < 1 || s->iters < 1 || s->warmup < 0)
    return idoc_set_error("bench image: size %dx%d and --iters %d must be positive", s->image_h,
                          s->image_w, s->iters);
  idoc_image im;
  idoc_bench_picture(s->image_h, s->image_w, s->seed + 300, &im);
  idoc_qwen_image_opts o;
  idoc_qwen_image_opts_default(&o);
  r->n = s->iters;
  r->ms = idoc_xmalloc((size_t)r->n * sizeof *r->ms);
  int rc = IDOC_OK;
  float *keep = NULL;
  int64_t keep_np = 0, keep_g[3] = {0, 0, 0};
  for (int it = 0; it < s->warmup + s->iters && rc == IDOC_OK; it++) {
    float *pv = NULL;
    int64_t np, g[3];
    double t0 = idoc_now();
    rc = idoc_qwen_preprocess(&im, &o, "bench image", &pv, &np, g);
    double ms = (idoc_now() - t0) * 1e3;
    if (rc) break;
    if (it >= s->warmup) r->ms[it - s->warmup] = ms;
    r->tokens = (double)np;
    if (!keep) {
      keep = pv, keep_np = np;
      memcpy(keep_g, g, sizeof keep_g);
    } else {
      free(pv);
    }
  }
  if (rc == IDOC_OK) summarize(r);
  if (rc == IDOC_OK && dump_dir) {
    idoc_arena *A = idoc_arena_new("bench image", IDOC_DEV_CPU, 1 << 20);
    idoc_tensor *t_img = idoc_tensor_new(A, IDOC_U8, 3, (int64_t[]){im.h, im.w, 3});
    idoc_tensor_from_host(t_img, im.rgb);
    idoc_tensor *t_pv = idoc_tensor_2d(A, IDOC_F32, keep_np, IDOC_QWEN_PATCH_DIM);
    idoc_tensor_from_host(t_pv, keep);
    idoc_tensor *t_g = idoc_tensor_1d(A, IDOC_I32, 3);
    int32_t g32[3] = {(int32_t)keep_g[0], (int32_t)keep_g[1], (int32_t)keep_g[2]};
    idoc_tensor_from_host(t_g, g32);
    idoc_st_item items[] = {{"image", t_img}, {"pixel_values", t_pv}, {"image_grid_thw", t_g}};
    char path[4096];
    snprintf(path, sizeof path, "%s/image.safetensors", dump_dir);
    rc = idoc_mkdir_p(dump_dir);
    if (rc == IDOC_OK) rc = idoc_st_write_file(path, items, 3, NULL);
    idoc_arena_free(A);
  }
  free(keep);
  idoc_image_free(&im);
  if (rc) idoc_bench_result_free(r);
  return rc;
}
