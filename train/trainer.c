// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/image.h"
#include "nn/json.h"
#include "nn/ops.h"
#include "nn/util.h"
#include "train/evaluate.h"
#include "train/optim.h"

idoc_sft_opts idoc_sft_opts_from_config(const idoc_train_config *cfg, bool cot, bool with_answer) {
  idoc_sft_opts o = {0};
  o.cot = cot;
  o.task_tokens = cfg->task_tokens && strcmp(cfg->decoder, "none");
  o.look = cfg->response_look;
  o.think = cfg->response_think;
  o.cutoff_len = cfg->cutoff_len;
  o.image_size = cfg->image_size;
  o.min_pixels = cfg->image_min_pixels;
  o.max_pixels = cfg->image_max_pixels;
  o.with_maps = true;
  o.with_answer = with_answer;
  return o;
}

static void free_example(void *p) {
  idoc_sft_example_free(p);
  free(p);
}

static int prepare_example(void *ctx, idoc_loader_item *it) {
  idoc_example_ctx *ec = ctx;
  char name[4200];
  snprintf(name, sizeof name, "%s: sample %zu", ec->path, it->index);
  idoc_sft_example *ex = idoc_xcalloc(1, sizeof *ex);
  if (idoc_sft_example_make(ec->tok, &it->s, &ec->opts, name, ex)) {
    free_example(ex);
    return IDOC_ERR;
  }
  it->extra = ex;
  // The pixels and maps now live in the example; drop the decoded copies early.
  free(it->s.image);
  it->s.image = NULL;
  return IDOC_OK;
}

idoc_loader *idoc_example_loader_open(const char *path, idoc_example_ctx *ctx, uint64_t seed,
                                      bool shuffle, uint64_t max_items, int rank, int world) {
  ctx->path = path;
  idoc_loader_opts lo = {.seed = seed,
                         .rank = rank,
                         .world = world,
                         .no_shuffle = !shuffle,
                         .max_items = max_items,
                         .prefetch = 4,
                         .prepare = prepare_example,
                         .prepare_ctx = ctx,
                         .free_extra = free_example};
  return idoc_loader_open(path, &lo);
}

void idoc_pack_examples(idoc_arena *A, idoc_sft_example *const *ex, int n, idoc_packed_batch *pb) {
  memset(pb, 0, sizeof *pb);
  pb->cu = idoc_xmalloc((size_t)(n + 1) * sizeof(int32_t));
  pb->grid = idoc_xmalloc((size_t)n * 3 * sizeof(int32_t));
  pb->gt_mis = idoc_xcalloc((size_t)n, sizeof(float *));
  pb->gt_art = idoc_xcalloc((size_t)n, sizeof(float *));
  int64_t T = 0, P = 0;
  for (int i = 0; i < n; i++) {
    pb->cu[i] = (int32_t)T;
    T += ex[i]->n;
    P += ex[i]->n_patches;
  }
  pb->cu[n] = (int32_t)T;
  pb->tokens = T;
  pb->labels = idoc_xmalloc((size_t)T * sizeof(int32_t));
  idoc_tensor *ids = idoc_tensor_1d(A, IDOC_I32, T);
  idoc_tensor *pix = idoc_tensor_2d(A, IDOC_F32, P, 1176);
  int32_t *hid = idoc_xmalloc((size_t)T * sizeof(int32_t));
  float *hpix = idoc_xmalloc((size_t)P * 1176 * sizeof(float));
  int64_t prow = 0;
  for (int i = 0; i < n; i++) {
    memcpy(hid + pb->cu[i], ex[i]->ids, (size_t)ex[i]->n * sizeof(int32_t));
    memcpy(pb->labels + pb->cu[i], ex[i]->labels, (size_t)ex[i]->n * sizeof(int32_t));
    memcpy(hpix + prow * 1176, ex[i]->pixels, (size_t)ex[i]->n_patches * 1176 * sizeof(float));
    prow += ex[i]->n_patches;
    memcpy(pb->grid + 3 * i, ex[i]->grid, 3 * sizeof(int32_t));
    pb->gt_mis[i] = ex[i]->gt_mis;
    pb->gt_art[i] = ex[i]->gt_art;
  }
  idoc_tensor_from_host(ids, hid);
  idoc_tensor_from_host(pix, hpix);
  free(hid);
  free(hpix);
  pb->b = (idoc_id_batch){{ids, pb->cu, n, pix, pb->grid, n}, pb->labels, pb->gt_mis, pb->gt_art};
}

void idoc_packed_batch_free(idoc_packed_batch *pb) {
  free(pb->cu);
  free(pb->grid);
  free(pb->labels);
  free(pb->gt_mis);
  free(pb->gt_art);
  memset(pb, 0, sizeof *pb);
}

int64_t idoc_total_steps(const idoc_train_config *cfg, uint64_t items_per_epoch, int per_step) {
  if (cfg->max_steps > 0) return cfg->max_steps;
  double per_epoch = floor((double)items_per_epoch / per_step);
  if (per_epoch < 1) per_epoch = 1;
  return (int64_t)ceil(cfg->num_train_epochs * per_epoch);
}

int idoc_warmup_steps(const idoc_train_config *cfg, int64_t total) {
  if (cfg->warmup_steps > 0) return cfg->warmup_steps;
  return (int)ceil(cfg->warmup_ratio * (double)total);
}

static void fmt_hms(double s, char *out, size_t n) {
  long t = s < 0 ? 0 : (long)(s + 0.5);
  snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void idoc_progress(int64_t step, int64_t total, double elapsed, const char *extra) {
  if (!isatty(2)) return;
  int w = 30, fill = total > 0 ? (int)(w * step / total) : w;
  char bar[64], el[32], rem[32];
  for (int i = 0; i < w; i++)
    bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[w] = 0;
  fmt_hms(elapsed, el, sizeof el);
  fmt_hms(step > 0 ? elapsed / step * (total - step) : 0, rem, sizeof rem);
  fprintf(stderr, "\r[%s] %lld/%lld %s<%s %s\x1b[K", bar, (long long)step, (long long)total, el,
          rem, extra ? extra : "");
  if (step == total) fprintf(stderr, "\n");
}

// Keeps the log lines of steps <= step (a resumed run rewrites what the killed one logged
// after its last checkpoint).
void idoc_truncate_log(const char *path, int64_t step) {
  char *data;
  size_t n;
  if (idoc_read_file(path, &data, &n)) return;
  size_t keep = 0;
  for (size_t i = 0; i < n;) {
    char *nl = memchr(data + i, '\n', n - i);
    size_t e = nl ? (size_t)(nl - data) + 1 : n;
    const char *k = strstr(data + i, "\"current_steps\": ");
    if (k && k < data + e && strtoll(k + 17, NULL, 10) > step) break;
    keep = e;
    i = e;
  }
  idoc_write_file_atomic(path, data, keep);
  free(data);
}

int idoc_resolve_resume(const idoc_train_config *cfg, char *resume, size_t n) {
  resume[0] = 0;
  const char *r = cfg->resume_from_checkpoint;
  if (r[0] && strcmp(r, "false")) {
    if (!strcmp(r, "true") || !strcmp(r, "latest"))
      return idoc_checkpoint_latest(cfg->output_dir, resume, n);
    snprintf(resume, n, "%s", r);
    return IDOC_OK;
  }
  char latest[4096];
  if (!cfg->overwrite_output_dir &&
      idoc_checkpoint_latest(cfg->output_dir, latest, sizeof latest) == IDOC_OK)
    return idoc_set_error("output_dir %s already has %s: set resume_from_checkpoint=true to "
                          "continue or overwrite_output_dir=true to start over",
                          cfg->output_dir, latest);
  idoc_clear_error();
  return IDOC_OK;
}

int idoc_stage_model(const idoc_train_config *cfg, const char *resume, bool want_decoder,
                     idoc_model_bundle *mb) {
  idoc_train_config mc;
  idoc_config_copy(&mc, cfg);
  if (resume[0]) {
    free(mc.model_name_or_path);
    mc.model_name_or_path = idoc_xstrdup(resume);
    free(mc.tokenizer);
    mc.tokenizer = idoc_xstrdup("");
  }
  int rc = idoc_model_setup(&mc, want_decoder, mb);
  idoc_config_free(&mc);
  return rc;
}

idoc_loader *idoc_stage_loader(const idoc_train_config *cfg, idoc_example_ctx *ectx,
                               uint64_t *epoch_len) {
  uint64_t data_seed = (uint64_t)(cfg->data_seed >= 0 ? cfg->data_seed : cfg->seed);
  idoc_loader *L = idoc_example_loader_open(cfg->dataset, ectx, data_seed, true,
                                            (uint64_t)cfg->max_samples, 0, 1);
  if (L) *epoch_len = idoc_loader_epoch_len(L);
  return L;
}

int idoc_stage_optimizer(const idoc_train_config *cfg, idoc_model_bundle *mb, const char *resume,
                         idoc_loader *L, idoc_adamw *opt, idoc_trainer_state *st) {
  idoc_adamw_cfg ac = {cfg->adam_beta1, cfg->adam_beta2, cfg->adam_epsilon, cfg->weight_decay,
                       cfg->max_grad_norm};
  idoc_adamw_init(opt, ac, mb->ps);
  memset(st, 0, sizeof *st);
  if (!resume[0]) return IDOC_OK;
  if (idoc_checkpoint_load_state(resume, mb, st)) return IDOC_ERR;
  opt->step = st->adam_step;
  return idoc_loader_set_cursor(L, &st->cursor);
}

int idoc_stage_outputs(const idoc_train_config *cfg, const char *resume, int64_t step,
                       FILE **logf) {
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", cfg->output_dir);
  if (resume[0])
    idoc_truncate_log(p, step);
  else
    remove(p);
  if (!(*logf = fopen(p, "a"))) return idoc_set_error("%s: cannot open for writing", p);
  snprintf(p, sizeof p, "%s/training_args.yaml", cfg->output_dir);
  return idoc_config_save(cfg, p);
}

int idoc_stage_after_step(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                          int64_t step, int64_t total, double epoch, int adam_step,
                          const idoc_loader *L, double elapsed, FILE *logf,
                          idoc_trainer_state *st) {
  bool last = step == total;
  const char *out = cfg->output_dir;
  if ((cfg->save_steps > 0 && step % cfg->save_steps == 0) || last) {
    st->global_step = step;
    st->epoch = epoch;
    st->adam_step = adam_step;
    st->cursor = idoc_loader_get_cursor(L);
    st->elapsed = elapsed;
    if (idoc_checkpoint_save(out, cfg, mb, st) ||
        idoc_checkpoint_rotate(out, cfg->save_total_limit))
      return IDOC_ERR;
  }
  if (cfg->eval_steps > 0 && step % cfg->eval_steps == 0 && !last && cfg->eval_dataset[0]) {
    char tag[64];
    snprintf(tag, sizeof tag, "step-%lld", (long long)step);
    return idoc_evaluate_model(cfg, mb, cot, out, tag, logf, NULL);
  }
  return IDOC_OK;
}

typedef struct {
  double loss, ce, mse_mis, mse_art, gn, tokens;
  int n, n_mis, n_art;
} window;

int idoc_train_sft(const idoc_train_config *cfg0, idoc_stage_result *res) {
  memset(res, 0, sizeof *res);
  idoc_train_config cfg;
  idoc_config_copy(&cfg, cfg0);
  int rc = IDOC_ERR;
  idoc_model_bundle mb = {0};
  idoc_loader *L = NULL;
  FILE *logf = NULL;
  idoc_ctx *c = NULL;
  idoc_arena *A = NULL;
  idoc_adamw opt = {0};
  bool opt_ready = false;
  const char *out = cfg.output_dir;
  bool cot = cfg.target == IDOC_TARGET_COT;

  if (!out[0]) {
    idoc_set_error("output_dir: must be set");
    goto done;
  }
  if (!cfg.dataset[0]) {
    idoc_set_error("dataset: must name a training split (.h5)");
    goto done;
  }
  // Resume: the weights come from the checkpoint folder, everything else from the config.
  char resume[4096];
  if (idoc_resolve_resume(&cfg, resume, sizeof resume)) goto done;
  // "auto" attaches the decoder when the target needs it; naming a layout always does.
  bool want =
      cot || cfg.task_tokens || !strcmp(cfg.decoder, "tiny") || !strcmp(cfg.decoder, "release");
  if (idoc_stage_model(&cfg, resume, want, &mb)) goto done;
  if (cot && !mb.m.dec) {
    idoc_set_error("target cot needs the heatmap decoder (decoder is 'none')");
    goto done;
  }
  if (!cfg.task_tokens && mb.m.dec && !mb.m.dec->cfg.learned_query) {
    idoc_set_error("task_tokens is false but the checkpoint's decoder reads task tokens "
                   "(a decoder without them needs learned queries: attach a fresh one)");
    goto done;
  }
  mb.m.qwen->checkpoint_layers = cfg.gradient_checkpointing;
  int64_t n_train = idoc_model_apply_freezing(&cfg, &mb);
  if (idoc_mkdir_p(out)) goto done;

  idoc_example_ctx ectx = {mb.tok, idoc_sft_opts_from_config(&cfg, cot, true), NULL};
  uint64_t epoch_len;
  if (!(L = idoc_stage_loader(&cfg, &ectx, &epoch_len))) goto done;
  int per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
  int64_t total = idoc_total_steps(&cfg, epoch_len, per_step);
  int warmup = idoc_warmup_steps(&cfg, total);
  idoc_lr_kind lk;
  idoc_lr_kind_parse(cfg.lr_scheduler_type, &lk);

  idoc_trainer_state st;
  int r = idoc_stage_optimizer(&cfg, &mb, resume, L, &opt, &st);
  opt_ready = true;
  if (r || idoc_stage_outputs(&cfg, resume, st.global_step, &logf)) goto done;
  printf("sft %s: %s, %lld trainable parameters, %llu samples/epoch, %lld steps (warmup %d), "
         "batch %d x %d%s\n",
         cot ? "stage 2 (cot + heatmaps)" : "stage 1 (answer)", cfg.model_name_or_path,
         (long long)n_train, (unsigned long long)epoch_len, (long long)total, warmup,
         cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps,
         resume[0] ? ", resumed" : "");
  fflush(stdout);

  c = idoc_ctx_new(IDOC_DEV_CPU, (size_t)64 << 20);
  A = idoc_arena_new("batch", IDOC_DEV_CPU, (size_t)16 << 20);
  double t0 = idoc_now() - st.elapsed;
  window w = {0};
  bool first_window = true;
  int bs = cfg.per_device_train_batch_size;
  idoc_loader_item *items = idoc_xcalloc((size_t)bs, sizeof *items);
  idoc_sft_example **exs = idoc_xcalloc((size_t)bs, sizeof *exs);
  int64_t step = st.global_step;
  rc = IDOC_OK;
  while (step < total && rc == IDOC_OK) {
    for (int a = 0; a < cfg.gradient_accumulation_steps && rc == IDOC_OK; a++) {
      for (int i = 0; i < bs; i++) {
        if (idoc_loader_next(L, &items[i])) {
          for (int j = 0; j < i; j++)
            idoc_loader_item_free(&items[j]);
          rc = IDOC_ERR;
          break;
        }
        exs[i] = items[i].extra;
      }
      if (rc) break;
      idoc_arena_reset(A);
      idoc_ctx_reset(c);
      idoc_packed_batch pb;
      idoc_pack_examples(A, exs, bs, &pb);
      idoc_id_loss lo = idoc_imagedoctor_loss(c, &mb.m, &pb.b);
      idoc_tensor *loss = lo.loss;
      if (cfg.gradient_accumulation_steps > 1)
        loss = idoc_scale(c, loss, 1.0f / cfg.gradient_accumulation_steps);
      idoc_backward(c, loss);
      w.loss += idoc_tensor_get(lo.loss, 0) / cfg.gradient_accumulation_steps;
      w.ce += lo.ce / cfg.gradient_accumulation_steps;
      if (lo.n_mis) w.mse_mis += lo.mse_mis, w.n_mis++;
      if (lo.n_art) w.mse_art += lo.mse_art, w.n_art++;
      w.tokens += (double)pb.tokens;
      idoc_packed_batch_free(&pb);
      for (int i = 0; i < bs; i++)
        idoc_loader_item_free(&items[i]);
    }
    if (rc) break;
    float lr = idoc_lr_at(lk, cfg.learning_rate, (int)step, warmup, (int)total);
    float gn = idoc_adamw_step(&opt, mb.ps, lr);
    idoc_params_zero_grad(mb.ps);
    step++;
    w.gn += gn;
    w.n++;
    double el = idoc_now() - t0;
    if (!isfinite(w.loss)) {
      rc = idoc_set_error("step %lld: the loss is not finite (%g); lower learning_rate?",
                          (long long)step, w.loss);
      break;
    }
    if (step % cfg.logging_steps == 0 || step == total) {
      double ep = (double)step * per_step / (double)epoch_len;
      double loss = w.loss / w.n;
      fprintf(logf,
              "{\"current_steps\": %lld, \"total_steps\": %lld, \"loss\": %.9g, \"ce\": %.9g, "
              "\"mse_art\": %.9g, \"mse_mis\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
              "\"epoch\": %.4f, \"percentage\": %.2f, \"tokens_per_s\": %.1f, \"elapsed\": %.2f, "
              "\"remaining\": %.2f}\n",
              (long long)step, (long long)total, loss, w.ce / w.n,
              w.n_art ? w.mse_art / w.n_art : 0.0, w.n_mis ? w.mse_mis / w.n_mis : 0.0, lr,
              w.gn / w.n, ep, 100.0 * step / total, w.tokens / (el - st.elapsed + 1e-9), el,
              el / step * (total - step));
      fflush(logf);
      if (first_window) res->first_loss = loss, first_window = false;
      res->last_loss = loss;
      char extra[160];
      snprintf(extra, sizeof extra, "loss %.4f lr %.2e", loss, lr);
      if (isatty(2))
        idoc_progress(step, total, el, extra);
      else
        printf("step %lld/%lld  loss %.4f  ce %.4f  mse_art %.4f  mse_mis %.4f  lr %.2e  "
               "grad_norm %.3f  %.1fs\n",
               (long long)step, (long long)total, loss, w.ce / w.n,
               w.n_art ? w.mse_art / w.n_art : 0.0, w.n_mis ? w.mse_mis / w.n_mis : 0.0, lr,
               w.gn / w.n, el);
      fflush(stdout);
      memset(&w, 0, sizeof w);
    }
    rc = idoc_stage_after_step(&cfg, &mb, cot, step, total,
                               (double)step * per_step / (double)epoch_len, opt.step, L,
                               idoc_now() - t0, logf, &st);
  }
  free(items);
  free(exs);
  if (rc) goto done;
  res->steps = step;
  res->seconds = idoc_now() - t0;
  snprintf(res->final_dir, sizeof res->final_dir, "%s/final", out);
  if (idoc_model_bundle_save(&mb, res->final_dir)) {
    rc = IDOC_ERR;
    goto done;
  }
  printf("saved %s (%lld steps, %.1f s)\n", res->final_dir, (long long)step, res->seconds);
  if (cfg.plot_loss && idoc_plot_loss(out)) fprintf(stderr, "plot_loss: %s\n", idoc_last_error());
  if (cfg.eval_dataset[0] && idoc_evaluate_model(&cfg, &mb, cot, out, "final", logf, NULL))
    rc = IDOC_ERR;

done:
  if (logf) fclose(logf);
  if (L) idoc_loader_close(L);
  if (c) idoc_ctx_free(c);
  if (A) idoc_arena_free(A);
  if (opt_ready) idoc_adamw_free(&opt);
  idoc_model_bundle_free(&mb);
  idoc_config_free(&cfg);
  return rc;
}

// ---- plot_loss --------------------------------------------------------------------------------
static void put_px(uint8_t *img, int W, int H, int x, int y, const uint8_t col[3]) {
  if (x < 0 || y < 0 || x >= W || y >= H) return;
  memcpy(img + ((size_t)y * W + x) * 3, col, 3);
}

static void line(uint8_t *img, int W, int H, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
  int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put_px(img, W, H, x0, y0, c);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

int idoc_plot_loss(const char *output_dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", output_dir);
  char *data;
  size_t n;
  if (idoc_read_file(p, &data, &n)) return IDOC_ERR;
  int cap = 1024, k = 0;
  double *xs = idoc_xmalloc((size_t)cap * sizeof(double)),
         *ys = idoc_xmalloc((size_t)cap * sizeof(double));
  for (char *s = data; s && s < data + n;) {
    char *nl = memchr(s, '\n', (size_t)(data + n - s));
    if (nl) *nl = 0;
    char *a = strstr(s, "\"current_steps\": "), *b = strstr(s, "\"loss\": ");
    if (a && b) {
      if (k == cap) {
        cap *= 2;
        xs = idoc_xrealloc(xs, (size_t)cap * sizeof(double));
        ys = idoc_xrealloc(ys, (size_t)cap * sizeof(double));
      }
      xs[k] = strtod(a + 17, NULL);
      ys[k] = strtod(b + 8, NULL);
      if (isfinite(ys[k])) k++;
    }
    s = nl ? nl + 1 : NULL;
  }
  free(data);
  int rc = IDOC_OK;
  if (k >= 2) {
    enum { W = 640, H = 400, M = 40 };
    uint8_t *img = idoc_xmalloc((size_t)W * H * 3);
    memset(img, 255, (size_t)W * H * 3);
    double x0 = xs[0], x1 = xs[k - 1], y0 = ys[0], y1 = ys[0];
    for (int i = 0; i < k; i++)
      y0 = fmin(y0, ys[i]), y1 = fmax(y1, ys[i]);
    if (y1 - y0 < 1e-12) y1 = y0 + 1;
    if (x1 - x0 < 1e-12) x1 = x0 + 1;
    static const uint8_t axis[3] = {0, 0, 0}, raw[3] = {150, 180, 230}, sm[3] = {20, 60, 200};
    line(img, W, H, M, H - M, W - M, H - M, axis);
    line(img, W, H, M, M, M, H - M, axis);
#define PX(x) (M + (int)((x - x0) / (x1 - x0) * (W - 2 * M)))
#define PY(y) (H - M - (int)((y - y0) / (y1 - y0) * (H - 2 * M)))
    double ema = ys[0];
    int ppx = PX(xs[0]), ppy = PY(ys[0]), spy = ppy;
    for (int i = 1; i < k; i++) {
      int px = PX(xs[i]), py = PY(ys[i]);
      line(img, W, H, ppx, ppy, px, py, raw);
      ema = 0.9 * ema + 0.1 * ys[i]; // the smoothing LLaMA-Factory's plot uses
      int sy = PY(ema);
      line(img, W, H, ppx, spy, px, sy, sm);
      ppx = px, ppy = py, spy = sy;
    }
#undef PX
#undef PY
    snprintf(p, sizeof p, "%s/training_loss.png", output_dir);
    rc = idoc_image_write_png(p, img, H, W, 3);
    free(img);
  }
  free(xs);
  free(ys);
  return rc;
}
