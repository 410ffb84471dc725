// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "stage/stage.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/comm.h"
#include "nn/util.h"
#include "stage/evaluate.h"
#include "stage/sealed_dir.h"

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
  pb->b =
      (idoc_id_batch){{ids, pb->cu, n, pix, pb->grid, n}, pb->labels, pb->gt_mis, pb->gt_art, NULL};
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

idoc_jnum_text idoc_jnum(double v, int digits) {
  idoc_jnum_text t;
  if (isfinite(v))
    snprintf(t.s, sizeof t.s, "%.*g", digits, v);
  else
    snprintf(t.s, sizeof t.s, "null");
  return t;
}

static void fmt_hms(double s, char *out, size_t n) {
  long t = s < 0 ? 0 : (long)(s + 0.5);
  snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void idoc_progress(int64_t step, int64_t total, double elapsed, const char *extra) {
  if (!isatty(2) || !idoc_comm_is_main()) return;
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
// after its last checkpoint), without the final eval's line and without a last line that a
// kill cut short.
void idoc_truncate_log(const char *path, int64_t step) {
  char *data;
  size_t n;
  if (idoc_read_file(path, &data, &n)) return;
  size_t keep = 0;
  for (size_t i = 0; i < n;) {
    char *nl = memchr(data + i, '\n', n - i);
    if (!nl) break;
    size_t e = (size_t)(nl - data) + 1;
    *nl = 0;
    const char *k = strstr(data + i, "\"current_steps\": ");
    bool after = (k && strtoll(k + 17, NULL, 10) > step) || strstr(data + i, "\"eval\": \"final\"");
    *nl = '\n';
    if (after) break;
    keep = e;
    i = e;
  }
  if (keep != n) idoc_write_file_atomic(path, data, keep);
  free(data);
}

static int resolve_resume(const idoc_train_config *cfg, char *resume, size_t n) {
  resume[0] = 0;
  const char *r = cfg->resume_from_checkpoint, *out = cfg->output_dir;
  if (r[0] && strcmp(r, "false")) {
    if (!strcmp(r, "true") || !strcmp(r, "latest")) {
      // Finish what a killed save, replacement or rotation left, then the newest complete one.
      if (idoc_sealed_recover(out)) return idoc_wrap_error("output_dir %s", out);
      if (idoc_checkpoint_latest(out, resume, n, true) == IDOC_OK) {
        printf("resuming from %s\n", resume);
        return IDOC_OK;
      }
      // Killed before its first checkpoint was complete: there is nothing to continue, so the
      // run starts over (a restart loop with resume_from_checkpoint=true always works).
      fprintf(stderr, "resume: %s; starting from step 0\n", idoc_last_error());
      resume[0] = 0;
      idoc_clear_error();
      return IDOC_OK;
    }
    char why[512];
    struct stat st;
    if (idoc_sealed_recover(out)) return idoc_wrap_error("output_dir %s", out);
    if (stat(r, &st)) return idoc_set_error("resume_from_checkpoint: '%s': %s", r, strerror(errno));
    if (!idoc_sealed_complete(r, NULL, NULL, why, sizeof why))
      return idoc_set_error("resume_from_checkpoint: '%s' is not a complete checkpoint: %s", r,
                            why);
    snprintf(resume, n, "%s", r);
    return IDOC_OK;
  }
  char latest[4096];
  if (!cfg->overwrite_output_dir &&
      idoc_checkpoint_latest(out, latest, sizeof latest, false) == IDOC_OK)
    return idoc_set_error("output_dir %s already has %s: set resume_from_checkpoint=true to "
                          "continue or overwrite_output_dir=true to start over",
                          out, latest);
  idoc_clear_error();
  return idoc_sealed_recover(out) ? idoc_wrap_error("output_dir %s", out) : IDOC_OK;
}

// Rank 0 resolves (recovery changes output_dir) and tells the others.
int idoc_resolve_resume(const idoc_train_config *cfg, char *resume, size_t n) {
  int rc = IDOC_OK;
  resume[0] = 0;
  if (idoc_comm_is_main()) rc = resolve_resume(cfg, resume, n);
  if (idoc_comm_any_failed(rc)) return IDOC_ERR;
  idoc_comm_broadcast_bytes(resume, n, 0);
  return IDOC_OK;
}

static bool stage_complete(const idoc_train_config *cfg, const char *resume, int64_t resume_step,
                           int64_t total, bool grpo, idoc_stage_result *res) {
  if (!resume[0] || resume_step != total) return false;
  char why[512], *fin = res->final_dir;
  int64_t step = 0, tot = 0;
  snprintf(fin, sizeof res->final_dir, "%s/final", cfg->output_dir);
  if (!idoc_sealed_complete(fin, &step, &tot, why, sizeof why) || step != total || tot != total)
    return false;
  printf("%s: the run is complete (%lld of %lld steps; final model in %s): nothing to do\n",
         cfg->output_dir, (long long)step, (long long)total, fin);
  fflush(stdout);
  res->steps = step;
  res->grpo = grpo;
  res->already_complete = true;
  return true;
}

bool idoc_stage_complete(const idoc_train_config *cfg, const char *resume, int64_t resume_step,
                         int64_t total, bool grpo, idoc_stage_result *res) {
  int32_t done = 0;
  if (idoc_comm_is_main()) done = stage_complete(cfg, resume, resume_step, total, grpo, res);
  idoc_comm_broadcast_bytes(&done, sizeof done, 0);
  idoc_comm_broadcast_bytes(res, sizeof *res, 0);
  return done;
}

int idoc_stage_finish(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot, int64_t step,
                      int64_t total, FILE *logf, idoc_stage_result *res) {
  char tmp[4300];
  bool main = idoc_comm_is_main();
  snprintf(res->final_dir, sizeof res->final_dir, "%s/final", cfg->output_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", res->final_dir);
  idoc_comm_set_phase("final save");
  // final.tmp gets its manifest only after the eval, so a kill before that leaves no final/
  // and the resumed run redoes both. Rank 0 writes; every rank evaluates its shard.
  int rc = IDOC_OK;
  if (main) {
    rc = idoc_bundle_check_finite(mb, res->final_dir);
    if (rc == IDOC_OK)
      rc = idoc_rm_rf(tmp) ? idoc_set_error("%s: cannot remove: %s", tmp, strerror(errno))
                           : idoc_model_bundle_save(mb, tmp);
    if (rc) idoc_wrap_error("saving the final model");
  }
  if (idoc_comm_any_failed(rc)) return IDOC_ERR;
  if (main) {
    printf("saved %s (%lld steps, %.1f s)\n", res->final_dir, (long long)step, res->seconds);
    if (cfg->plot_loss && idoc_plot_training(cfg->output_dir, res->grpo))
      fprintf(stderr, "warning: plot_loss: %s\n", idoc_last_error());
  }
  if (cfg->eval_dataset[0] &&
      idoc_evaluate_model(cfg, mb, cot, cfg->output_dir, "final", logf, NULL))
    return IDOC_ERR;
  if (main && (idoc_sealed_seal(tmp, step, total) || idoc_sealed_replace(tmp, res->final_dir)))
    rc = idoc_wrap_error("saving the final model");
  return idoc_comm_any_failed(rc) ? IDOC_ERR : IDOC_OK;
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
  idoc_loader *L =
      idoc_example_loader_open(cfg->dataset, ectx, data_seed, true, (uint64_t)cfg->max_samples,
                               idoc_comm_rank(), idoc_comm_world());
  if (L) *epoch_len = idoc_loader_epoch_len(L);
  return L;
}

int idoc_stage_optimizer(const idoc_train_config *cfg, idoc_model_bundle *mb, const char *resume,
                         idoc_loader *L, idoc_adamw *opt, idoc_trainer_state *st, int micro_batches,
                         idoc_dp **dp) {
  *dp = idoc_dp_new(cfg, mb->ps, opt, micro_batches);
  memset(st, 0, sizeof *st);
  if (!resume[0]) return IDOC_OK;
  // Every rank reads the checkpoint (output_dir is on a shared file system): the trainer
  // state, its own moments (its shard with ZeRO-1), and the data cursor for its rank.
  idoc_loader_cursor c;
  int rc = idoc_checkpoint_load_trainer_state(resume, st);
  if (rc == IDOC_OK) rc = idoc_dp_load_moments(*dp, resume);
  if (rc == IDOC_OK) rc = idoc_dp_cursor(*dp, &st->cursor, &c);
  if (rc == IDOC_OK) rc = idoc_loader_set_cursor(L, &c);
  if (rc) idoc_wrap_error("resume from %s", resume);
  opt->step = st->adam_step;
  return idoc_comm_any_failed(rc) ? IDOC_ERR : IDOC_OK;
}

static int stage_outputs(const idoc_train_config *cfg, const char *resume, int64_t step,
                         FILE **logf) {
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", cfg->output_dir);
  if (resume[0])
    idoc_truncate_log(p, step);
  else
    remove(p);
  if (!(*logf = fopen(p, "a")))
    return idoc_set_error("%s: cannot open for writing: %s", p, strerror(errno));
  snprintf(p, sizeof p, "%s/training_args.yaml", cfg->output_dir);
  return idoc_config_save(cfg, p);
}

int idoc_stage_outputs(const idoc_train_config *cfg, const char *resume, int64_t step,
                       FILE **logf) {
  *logf = NULL;
  int rc = IDOC_OK;
  if (idoc_comm_is_main()) rc = stage_outputs(cfg, resume, step, logf);
  return idoc_comm_any_failed(rc) ? IDOC_ERR : IDOC_OK;
}

int idoc_stage_after_step(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                          int64_t step, int64_t total, double epoch, int adam_step,
                          const idoc_loader *L, double elapsed, FILE *logf, idoc_trainer_state *st,
                          idoc_dp *dp, bool stop) {
  bool last = step == total;
  const char *out = cfg->output_dir;
  if ((cfg->save_steps > 0 && step % cfg->save_steps == 0) || last || stop) {
    st->global_step = step;
    st->epoch = epoch;
    st->adam_step = adam_step;
    st->cursor = idoc_loader_get_cursor(L); // rank 0's: idoc_dp_cursor maps it to each rank
    st->elapsed = elapsed;
    idoc_comm_set_phase("checkpoint");
    idoc_tensor **moms = idoc_dp_gather_moments(dp);
    int rc = IDOC_OK;
    if (idoc_comm_is_main())
      rc = idoc_checkpoint_save(out, cfg, mb, st, moms, idoc_dp_masters(dp)) ||
                   idoc_checkpoint_rotate(out, cfg->save_total_limit)
               ? IDOC_ERR
               : IDOC_OK;
    if (idoc_comm_any_failed(rc)) return IDOC_ERR;
  }
  if (cfg->eval_steps > 0 && step % cfg->eval_steps == 0 && !last && !stop &&
      cfg->eval_dataset[0]) {
    char tag[64];
    snprintf(tag, sizeof tag, "step-%lld", (long long)step);
    return idoc_evaluate_model(cfg, mb, cot, out, tag, logf, NULL);
  }
  return IDOC_OK;
}
