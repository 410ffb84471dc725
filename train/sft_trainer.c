// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "train/sft_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "nn/comm.h"
#include "nn/ops.h"
#include "nn/util.h"
#include "stage/dump.h"
#include "stage/evaluate.h"
#include "stage/optim.h"

// The running sums of one logging window (and of the current step), plus what the stage
// summary needs; saved in trainer_state.json so a resumed run logs what the uninterrupted one
// does whatever save_steps and logging_steps are.
typedef struct {
  double loss, ce, mse_mis, mse_art, gn, tokens;
  double n, n_mis, n_art, n_skipped;        // counts (doubles: saved with the sums)
  double first_loss, have_first, last_loss; // the stage summary (last 3 fields)
} window;
#define WINDOW_LEN ((int)(sizeof(window) / sizeof(double)))
_Static_assert(WINDOW_LEN <= IDOC_STATE_WINDOW, "window does not fit the trainer state");

static void window_to_state(const window *w, idoc_trainer_state *st) {
  memcpy(st->window, w, sizeof *w);
  st->n_window = WINDOW_LEN;
}

// One optimizer step's examples: per_device_train_batch_size x gradient_accumulation_steps of
// this rank, loaded before the first forward so the step's global counts are known.
static int load_step(idoc_loader *L, idoc_loader_item *items, int n) {
  for (int i = 0; i < n; i++)
    if (idoc_loader_next(L, &items[i])) {
      for (int j = 0; j < i; j++)
        idoc_loader_item_free(&items[j]);
      return IDOC_ERR;
    }
  return IDOC_OK;
}

// The model before its first step into dump_batches/init (a resumed run has none to write).
static int step0_dump_init(const idoc_train_config *cfg, const idoc_model_bundle *mb,
                           int64_t step) {
  if (step > 0) return IDOC_OK;
  return idoc_dump_init(cfg->dump_batches, &mb->m);
}

int idoc_train_sft(const idoc_train_config *cfg0, idoc_stage_result *res) {
  memset(res, 0, sizeof *res);
  idoc_train_config cfg;
  idoc_config_copy(&cfg, cfg0);
  int rc = IDOC_ERR;
  idoc_dp *dp = NULL;
  idoc_model_bundle mb = {0};
  idoc_loader *L = NULL;
  FILE *logf = NULL;
  idoc_ctx *c = NULL;
  idoc_arena *A = NULL, *S = NULL;
  float *hv = NULL;
  int *hn = NULL;
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
  if (idoc_dp_join(&cfg)) goto done;
  const bool main = idoc_comm_is_main();
  const int world = idoc_comm_world();
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
  int64_t n_train = idoc_model_apply_freezing(&cfg, &mb);
  if (idoc_comm_any_failed(main ? idoc_mkdir_p(out) : IDOC_OK)) goto done;

  idoc_example_ctx ectx = {mb.tok, idoc_sft_opts_from_config(&cfg, cot, true), NULL};
  uint64_t epoch_len;
  if (!(L = idoc_stage_loader(&cfg, &ectx, &epoch_len))) goto done;
  int per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
  int64_t total = idoc_total_steps(&cfg, epoch_len, per_step);
  int warmup = idoc_warmup_steps(&cfg, total);
  idoc_lr_kind lk;
  idoc_lr_kind_parse(cfg.lr_scheduler_type, &lk);

  idoc_trainer_state st;
  int r =
      idoc_stage_optimizer(&cfg, &mb, resume, L, &opt, &st, cfg.gradient_accumulation_steps, &dp);
  opt_ready = true;
  if (r) goto done;
  if (idoc_stage_complete(&cfg, resume, st.global_step, total, false, res)) {
    rc = IDOC_OK;
    goto done;
  }
  if (idoc_stage_outputs(&cfg, resume, st.global_step, &logf)) goto done;
  if (main) {
    printf("sft %s: %s, %lld trainable parameters, %llu samples/epoch, %lld steps (warmup %d), "
           "batch %d x %d",
           cot ? "stage 2 (cot + heatmaps)" : "stage 1 (answer)", cfg.model_name_or_path,
           (long long)n_train, (unsigned long long)epoch_len * (uint64_t)world, (long long)total,
           warmup, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps);
    if (world > 1)
      printf(" x %d ranks (global batch %d%s)", world, per_step * world,
             idoc_dp_zero_stage(dp) ? ", ZeRO-1" : "");
    printf("%s\n", resume[0] ? ", resumed" : "");
    idoc_stage_print_device(mb.dev);
  }
  if (cfg.dump_batches[0]) {
    if (world > 1) {
      rc = idoc_set_error("dump_batches: only for single-process runs (this job has %d ranks)",
                          world);
      goto done;
    }
    if (step0_dump_init(&cfg, &mb, st.global_step)) goto done;
  }
  idoc_dp_signals_install();

  // Activations on the model's device; the packed batches stay on the host (the forward uploads
  // ids, pixels, targets and maps once per micro-batch).
  c = idoc_ctx_new(mb.dev, (size_t)64 << 20);
  A = idoc_arena_new("batch", IDOC_DEV_CPU, (size_t)16 << 20);
  // Each micro-batch's loss and components stay on the device until the step's one read.
  int n_vals = 4 * cfg.gradient_accumulation_steps;
  S = idoc_arena_new("step scalars", mb.dev, (size_t)n_vals * sizeof(float) + 4096);
  idoc_tensor *vals = idoc_tensor_1d(S, IDOC_F32, n_vals);
  hv = idoc_xmalloc((size_t)n_vals * sizeof *hv);
  hn = idoc_xmalloc((size_t)n_vals * sizeof *hn);
  double t0 = idoc_now() - st.elapsed;
  window w = {0};
  if (st.n_window == WINDOW_LEN) memcpy(&w, st.window, sizeof w);
  int in_a_row = st.nonfinite_in_a_row;
  int bs = cfg.per_device_train_batch_size, accum = cfg.gradient_accumulation_steps;
  idoc_loader_item *items = idoc_xcalloc((size_t)per_step, sizeof *items);
  idoc_sft_example **exs = idoc_xcalloc((size_t)per_step, sizeof *exs);
  int64_t step = st.global_step;
  rc = IDOC_OK;
  bool stop = false;
  while (step < total && rc == IDOC_OK && !stop) {
    idoc_comm_set_phase("data");
    idoc_comm_set_step(step + 1);
    window sw = {0}; // this step's sums, added to w only when the step is applied
    if (idoc_comm_any_failed(load_step(L, items, per_step))) {
      rc = IDOC_ERR;
      break;
    }
    // The step's denominators over every micro-batch of every rank: the loss is the global
    // token mean of the CE plus the global map means of the MSEs, whatever the split.
    idoc_id_norm norm = {0};
    for (int i = 0; i < per_step; i++)
      exs[i] = items[i].extra;
    if (cfg.dump_batches[0] &&
        idoc_dump_sft_step(cfg.dump_batches, step + 1, exs, per_step, accum)) {
      for (int i = 0; i < per_step; i++)
        idoc_loader_item_free(&items[i]);
      rc = IDOC_ERR;
      break;
    }
    for (int i = 0; i < per_step; i++) {
      idoc_imagedoctor_count(&mb.m, exs[i]->ids, exs[i]->labels, exs[i]->n, exs[i]->gt_mis,
                             exs[i]->gt_art, &norm);
    }
    double counts[3] = {norm.tokens, norm.n_mis, norm.n_art};
    idoc_comm_all_reduce_f64(counts, 3, IDOC_RED_SUM);
    norm = (idoc_id_norm){counts[0], counts[1], counts[2]};
    // Sums of this rank's contributions: loss, ce, mse_mis, mse_art (each already divided by
    // the global count) and tokens.
    double part[5] = {0};
    idoc_comm_set_phase("forward/backward");
    for (int a = 0; a < accum; a++) {
      idoc_arena_reset(A);
      idoc_ctx_reset(c);
      idoc_packed_batch pb;
      idoc_pack_examples(A, exs + (size_t)a * bs, bs, &pb);
      pb.b.norm = &norm;
      idoc_id_loss lo = idoc_imagedoctor_loss_dev(c, &mb.m, &pb.b);
      idoc_backward(c, lo.loss);
      if (idoc_arena_peak(c->act) > res->mem_act_peak) {
        res->mem_act_peak = idoc_arena_peak(c->act);
        res->peak_tokens = pb.tokens;
        res->peak_seqs = pb.b.qb.n_seq;
        res->peak_grid_h = pb.b.qb.n_images ? pb.b.qb.grid_thw[1] : 0;
        res->peak_grid_w = pb.b.qb.n_images ? pb.b.qb.grid_thw[2] : 0;
        res->peak_maps = lo.n_mis + lo.n_art;
      }
      idoc_dp_accumulate(dp); // into the step's fp64 gradient sum
      idoc_tensor *v4[4] = {lo.loss, lo.ce_t, lo.mse_mis_t, lo.mse_art_t};
      int n4[4] = {1, (int)lo.n_tokens, lo.mse_mis_t ? lo.n_mis : 0, lo.mse_art_t ? lo.n_art : 0};
      for (int k = 0; k < 4; k++) {
        hn[4 * a + k] = n4[k];
        if (v4[k]) idoc_tensor_copy(idoc_tensor_rows(c->act, vals, 4 * a + k, 1), v4[k]);
      }
      part[4] += (double)pb.tokens;
      idoc_packed_batch_free(&pb);
    }
    idoc_tensor_to_host(vals, hv); // the step's one read of losses
    for (int a = 0; a < accum; a++) {
      const float *v = hv + 4 * a;
      const int *nk = hn + 4 * a;
      part[0] += v[0];
      if (norm.tokens > 0) part[1] += (double)v[1] * (double)nk[1] / norm.tokens;
      if (nk[2]) part[2] += (double)v[2] * nk[2] / norm.n_mis;
      if (nk[3]) part[3] += (double)v[3] * nk[3] / norm.n_art;
    }
    for (int i = 0; i < per_step; i++)
      idoc_loader_item_free(&items[i]);
    idoc_dp_test_hooks(dp, step + 1);
    idoc_comm_all_reduce_f64(part, 5, IDOC_RED_SUM);
    sw.loss = part[0];
    sw.ce = part[1];
    if (norm.n_mis > 0) sw.mse_mis = part[2], sw.n_mis = 1;
    if (norm.n_art > 0) sw.mse_art = part[3], sw.n_art = 1;
    sw.tokens = part[4];
    float lr = idoc_lr_at(lk, cfg.learning_rate, (int)step, warmup, (int)total);
    // The NaN guard: a non-finite loss or gradient norm skips the update (nothing changes),
    // with a warning; max_nonfinite_steps of them in a row stop the run. Loss and norm are
    // global, so every rank decides the same.
    float gn = isfinite(sw.loss) ? idoc_dp_step(dp, &opt, lr) : NAN;
    idoc_params_zero_grad(mb.ps);
    step++;
    if (isfinite(sw.loss) && isfinite(gn)) {
      in_a_row = 0;
      sw.gn = gn;
      sw.n = 1;
      for (int k = 0; k < WINDOW_LEN - 3; k++) // every sum and count but the summary fields
        ((double *)&w)[k] += ((double *)&sw)[k];
    } else {
      in_a_row++;
      w.n_skipped++;
      if (main)
        fprintf(stderr,
                "warning: step %lld: loss %g, gradient norm %g: update skipped (%d in a row)\n",
                (long long)step, sw.loss, (double)gn, in_a_row);
      if (in_a_row >= cfg.max_nonfinite_steps) {
        rc = idoc_set_error("step %lld: %d steps in a row had a non-finite loss or gradient norm "
                            "(max_nonfinite_steps %d): stopping; lower learning_rate or "
                            "heatmap_weight?",
                            (long long)step, in_a_row, cfg.max_nonfinite_steps);
        break;
      }
    }
    double el = idoc_now() - t0;
    if (step % cfg.logging_steps == 0 || step == total) {
      double ep = (double)step * per_step / (double)epoch_len;
      double n = w.n > 0 ? w.n : NAN, loss = w.loss / n;
      if (logf)
        fprintf(logf,
                "{\"current_steps\": %lld, \"total_steps\": %lld, \"loss\": %s, \"ce\": %s, "
                "\"mse_art\": %s, \"mse_mis\": %s, \"lr\": %s, \"grad_norm\": %s, "
                "\"skipped_steps\": %d, \"epoch\": %.4f, \"percentage\": %.2f, "
                "\"tokens_per_s\": %s, \"elapsed\": %.2f, \"remaining\": %.2f}\n",
                (long long)step, (long long)total, idoc_jnum(loss, 9).s, idoc_jnum(w.ce / n, 9).s,
                idoc_jnum(w.n_art ? w.mse_art / w.n_art : 0.0, 9).s,
                idoc_jnum(w.n_mis ? w.mse_mis / w.n_mis : 0.0, 9).s, idoc_jnum(lr, 9).s,
                idoc_jnum(w.gn / n, 9).s, (int)w.n_skipped, ep, 100.0 * step / total,
                idoc_jnum(w.tokens / (el - st.elapsed + 1e-9), 6).s, el,
                el / step * (total - step));
      if (logf) fflush(logf);
      if (isfinite(loss)) {
        if (!w.have_first) w.first_loss = loss, w.have_first = 1;
        w.last_loss = loss;
      }
      char extra[160];
      snprintf(extra, sizeof extra, "loss %.4f lr %.2e", loss, lr);
      if (isatty(2))
        idoc_progress(step, total, el, extra);
      else if (main)
        printf("step %lld/%lld  loss %.4f  ce %.4f  mse_art %.4f  mse_mis %.4f  lr %.2e  "
               "grad_norm %.3f  %.1fs\n",
               (long long)step, (long long)total, loss, w.ce / n,
               w.n_art ? w.mse_art / w.n_art : 0.0, w.n_mis ? w.mse_mis / w.n_mis : 0.0, lr,
               w.gn / n, el);
      fflush(stdout);
      window keep = {
          .first_loss = w.first_loss, .have_first = w.have_first, .last_loss = w.last_loss};
      w = keep;
    }
    window_to_state(&w, &st);
    st.nonfinite_in_a_row = in_a_row;
    // Preemption (SIGTERM / SIGUSR1 on any rank): every rank stops after this step, with a
    // checkpoint of it.
    stop = idoc_dp_stop_agreed(dp) && step < total;
    rc = idoc_stage_after_step(&cfg, &mb, cot, step, total,
                               (double)step * per_step / (double)epoch_len, opt.step, L,
                               idoc_now() - t0, logf, &st, dp, stop);
  }
  free(items);
  free(exs);
  if (rc == IDOC_OK && stop) {
    idoc_dp_mark_stopped();
    rc = idoc_set_error("stopped by a signal after step %lld of %lld: %s/checkpoint-%lld holds "
                        "it (resume_from_checkpoint=true continues)",
                        (long long)step, (long long)total, out, (long long)step);
  }
  if (rc) goto done;
  res->steps = step;
  res->seconds = idoc_now() - t0;
  res->mem_weights = idoc_arena_used(mb.ps->weights);
  res->mem_grads = idoc_arena_used(mb.ps->grads);
  res->mem_state = idoc_arena_used(mb.ps->state);
  res->first_loss = w.first_loss;
  res->last_loss = w.last_loss;
  rc = idoc_stage_finish(&cfg, &mb, cot, step, total, logf, res);

done:
  idoc_dp_signals_restore();
  if (logf) fclose(logf);
  if (L) idoc_loader_close(L);
  if (c) idoc_ctx_free(c);
  if (A) idoc_arena_free(A);
  if (S) idoc_arena_free(S);
  free(hv);
  free(hn);
  if (opt_ready) idoc_adamw_free(&opt);
  idoc_dp_free(dp);
  idoc_model_bundle_free(&mb);
  idoc_config_free(&cfg);
  return rc;
}
