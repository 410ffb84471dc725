// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "train/sft_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/ops.h"
#include "nn/util.h"
#include "stage/evaluate.h"
#include "stage/optim.h"

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
