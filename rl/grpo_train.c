// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
//
// One GRPO step (the reference's VLM-R1 loop, spec imagedoctor.md section 5):
//   1. P prompts from the loader (GRPO question = reasoning-format sentence + stage-2 prompt).
//   2. G completions each from the current policy (nn/generate.h: prompt prefilled once per
//      group, temperature / top-k / top-p, stops <|im_end|> <|endoftext|>). Rollout seeds are a
//      function of (seed, step, sample index), so a resumed run samples what the killed one
//      would have.
//   3. The decoder on the hidden state before the first <|mis|> / <|art|> of each completion
//      (not trained: its parameters are frozen), then the rewards of rl/rewards.h.
//   4. Group advantages, then num_iterations optimizer updates on these rollouts: per-token
//      log-probs from a full forward with gradient, the k3 KL against the frozen reference model
//      (when beta > 0), and the clipped loss of rl/grpo_loss.h.
// A training step is one rollout batch; with num_iterations > 1 it holds that many optimizer
// updates, the first one's log-probs being the "old" ones.
#include "rl/grpo_train.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/imagedoctor_text.h"
#include "nn/comm.h"
#include "nn/generate.h"
#include "nn/json.h"
#include "nn/ops.h"
#include "nn/util.h"
#include "rl/grpo_loss.h"
#include "rl/rewards.h"
#include "stage/dump.h"
#include "stage/evaluate.h"
#include "stage/optim.h"

int idoc_grpo_reward_config(const idoc_train_config *cfg, idoc_reward_config *out) {
  idoc_reward_config_default(out);
  for (int i = 0; i < cfg->n_reward_settings; i++)
    if (idoc_reward_config_set(out, cfg->reward_keys[i], cfg->reward_values[i]))
      return idoc_wrap_error("%s: reward.%s",
                             cfg->reward_where[i] ? cfg->reward_where[i] : "config",
                             cfg->reward_keys[i]);
  return IDOC_OK;
}

typedef struct {
  int n_seq;
  int32_t *cu, *grid, *ids, *tgt; // packed prompt + completion rows; tgt -1 = not scored
  int64_t T, P;
  float *pixels;
  uint8_t *mask;
  int64_t *off;
  int64_t *prow; // [n_seq + 1] first pixel row of each row's image
} rollout_batch;

static void rollout_batch_free(rollout_batch *r) {
  free(r->prow);
  free(r->cu);
  free(r->grid);
  free(r->ids);
  free(r->tgt);
  free(r->pixels);
  free(r->mask);
  free(r->off);
  memset(r, 0, sizeof *r);
}

// Per-token log-probs (and entropies) of the scored rows under model m; with grad when the
// context records. logp/entropy tensors are returned (entropy only when want_entropy).
static idoc_tensor *token_logprobs(idoc_ctx *c, idoc_qwen *m, const rollout_batch *rb,
                                   idoc_arena *A, bool want_entropy, idoc_tensor **entropy) {
  idoc_tensor *ids = idoc_tensor_1d(A, IDOC_I32, rb->T);
  idoc_tensor_from_host(ids, rb->ids);
  idoc_tensor *pix = idoc_tensor_2d(A, IDOC_F32, rb->P, 1176);
  idoc_tensor_from_host(pix, rb->pixels);
  idoc_tensor *tgt = idoc_tensor_1d(A, IDOC_I32, rb->T);
  idoc_tensor_from_host(tgt, rb->tgt);
  idoc_qwen_batch qb = {ids, rb->cu, rb->n_seq, pix, rb->grid, rb->n_seq};
  idoc_tensor *h = idoc_qwen_forward_hidden(c, m, &qb, NULL);
  return idoc_head_token_logprobs(c, h, m->lm_head, tgt, want_entropy ? entropy : NULL,
                                  m->head_chunk);
}

typedef struct {
  double reward_sum[IDOC_N_REWARDS], reward_sq[IDOC_N_REWARDS], total, total_sq;
  double len_sum, truncated, n; // summed over ranks
  double len_max;               // the max over ranks
} reward_window;
#define RW_SUMS (2 * IDOC_N_REWARDS + 5)
_Static_assert(offsetof(reward_window, len_max) == RW_SUMS * sizeof(double), "reward_window");

// The rows of one prompt group (its G completions) as a batch of their own (pointers into the
// step's batch; cu/off rebased). The updates run group by group, each group a micro-batch
// whose gradient goes into the step's fp64 sum (stage/dist.h): the step's gradient then does
// not depend on how its groups are spread over ranks.
typedef struct {
  rollout_batch b;
  int64_t tok0; // first token of the group in the step's batch
  int first;    // first row
} group_view;

static void group_view_make(const rollout_batch *rb, int g, int G, group_view *v) {
  int k0 = g * G;
  v->first = k0;
  v->tok0 = rb->off[k0];
  int32_t *cu = idoc_xmalloc((size_t)(G + 1) * sizeof(int32_t));
  int64_t *off = idoc_xmalloc((size_t)(G + 1) * sizeof(int64_t));
  for (int j = 0; j <= G; j++) {
    off[j] = rb->off[k0 + j] - v->tok0;
    cu[j] = (int32_t)off[j];
  }
  v->b = (rollout_batch){G,
                         cu,
                         rb->grid + 3 * k0,
                         rb->ids + v->tok0,
                         rb->tgt + v->tok0,
                         off[G],
                         rb->prow[k0 + G] - rb->prow[k0],
                         rb->pixels + rb->prow[k0] * 1176,
                         rb->mask + v->tok0,
                         off,
                         NULL};
}
static void group_view_free(group_view *v) {
  free(v->b.cu);
  free(v->b.off);
}

// The entropy gating threshold of the current policy over every group of every rank (valid
// tokens of kept rows): the quantile rank 0 takes of them all, as one rank would of the whole
// batch. A no-grad pass; entropies are bitwise those of the updates' forwards.
static double entropy_threshold(idoc_ctx *c, idoc_qwen *m, const group_view *gv, int n_groups,
                                const uint8_t *keep, double rho) {
  double *v = NULL;
  size_t k = 0, cap = 0;
  for (int g = 0; g < n_groups; g++) {
    const rollout_batch *b = &gv[g].b;
    idoc_ctx_reset(c);
    bool pg = idoc_no_grad_begin(c);
    idoc_tensor *ent = NULL;
    token_logprobs(c, m, b, c->act, true, &ent);
    float *h = idoc_xmalloc((size_t)b->T * sizeof(float) + 1);
    idoc_tensor_to_host(ent, h);
    idoc_grad_restore(c, pg);
    if (k + (size_t)b->T > cap)
      v = idoc_xrealloc(v, (cap = 2 * (k + (size_t)b->T)) * sizeof(double));
    for (int i = 0; i < b->n_seq; i++)
      for (int64_t t = b->off[i]; (!keep || keep[gv[g].first + i]) && t < b->off[i + 1]; t++)
        if (b->mask[t]) v[k++] = h[t];
    free(h);
  }
  size_t *sizes = NULL;
  double *all = idoc_comm_gather_bytes(v, k * sizeof(double), 0, &sizes), thr = 0;
  if (idoc_comm_is_main()) {
    size_t n = 0;
    for (int r = 0; r < idoc_comm_world(); r++)
      n += sizes[r] / sizeof(double);
    if (n) thr = idoc_quantile_linear(all, (int64_t)n, 1.0 - rho);
  }
  idoc_comm_broadcast_bytes(&thr, sizeof thr, 0);
  free(all);
  free(sizes);
  free(v);
  return thr;
}

// The step's rollouts, group by group, into dump_batches (stage/dump.h).
static int dump_rollouts(const char *dir, int64_t step, const group_view *gv, int P, int G,
                         const double *adv, double denom) {
  idoc_dump_file f;
  idoc_dump_begin(&f);
  float *a = idoc_xmalloc((size_t)G * sizeof *a);
  for (int g = 0; g < P; g++) {
    const rollout_batch *b = &gv[g].b;
    int64_t T = b->T, cu = G + 1, pix[2] = {b->P, 1176}, grid[2] = {G, 3}, ng = G;
    for (int j = 0; j < G; j++)
      a[j] = (float)adv[gv[g].first + j];
    idoc_dump_add(&f, IDOC_I32, b->ids, 1, &T, "g%d.ids", g);
    idoc_dump_add(&f, IDOC_I32, b->cu, 1, &cu, "g%d.cu", g);
    idoc_dump_add(&f, IDOC_U8, b->mask, 1, &T, "g%d.mask", g);
    idoc_dump_add(&f, IDOC_F32, b->pixels, 2, pix, "g%d.pixels", g);
    idoc_dump_add(&f, IDOC_I32, b->grid, 2, grid, "g%d.grid", g);
    idoc_dump_add(&f, IDOC_F32, a, 1, &ng, "g%d.adv", g);
  }
  free(a);
  char ng[24], dn[40];
  snprintf(ng, sizeof ng, "%d", P);
  snprintf(dn, sizeof dn, "%.17g", denom);
  const char *meta[] = {"groups", ng, "denom", dn, NULL};
  return idoc_dump_end(&f, dir, step, meta);
}

int idoc_train_grpo(const idoc_train_config *cfg0, idoc_stage_result *res) {
  memset(res, 0, sizeof *res);
  idoc_train_config cfg;
  idoc_config_copy(&cfg, cfg0);
  int rc = IDOC_ERR;
  idoc_dp *dp = NULL;
  idoc_model_bundle mb = {0}, ref = {0};
  idoc_loader *L = NULL;
  FILE *logf = NULL, *compf = NULL;
  idoc_ctx *c = NULL;
  idoc_arena *A = NULL;
  idoc_adamw opt = {0};
  bool opt_ready = false;
  idoc_reward_config rcfg;
  const char *out = cfg.output_dir;
  int P = cfg.per_device_train_batch_size, G = cfg.num_generations;
  idoc_loader_item *items = idoc_xcalloc((size_t)P, sizeof *items);
  idoc_reward_target *targets = idoc_xcalloc((size_t)P, sizeof *targets);
  char resume[4096];

  if (!out[0] || !cfg.dataset[0]) {
    idoc_set_error("output_dir and dataset must be set");
    goto done;
  }
  if (idoc_grpo_reward_config(&cfg, &rcfg)) goto done;
  idoc_grpo_loss_opts lo = idoc_grpo_loss_defaults();
  lo.eps_low = cfg.epsilon;
  lo.eps_high = cfg.epsilon_high >= 0 ? cfg.epsilon_high : cfg.epsilon;
  lo.beta = cfg.beta;
  lo.max_completion_length = cfg.max_completion_length;
  lo.entropy_coef = cfg.entropy_coef;
  lo.entropy_top_rho = cfg.entropy_top_rho;
  const char *agg = !strcmp(cfg.loss_type, "bnpo") ? "token_mean" : cfg.loss_type;
  if (idoc_grpo_agg_parse(agg, &lo.agg)) {
    idoc_wrap_error("loss_type");
    goto done;
  }
  idoc_grpo_adv_opts ao = idoc_grpo_adv_defaults();
  ao.group_size = G;
  ao.eps = cfg.advantage_epsilon;
  ao.scale = cfg.scale_rewards ? IDOC_ADV_SCALE_GROUP : IDOC_ADV_SCALE_NONE;
  ao.std_filter = cfg.std_filter_tau >= 0;
  ao.std_tau = cfg.std_filter_tau >= 0 ? cfg.std_filter_tau : 0;
  bool want_entropy = true; // logged every step; used by the loss for gating / bonus only

  if (idoc_dp_join(&cfg)) goto done;
  const bool main = idoc_comm_is_main();
  const int world = idoc_comm_world();
  if (idoc_resolve_resume(&cfg, resume, sizeof resume)) goto done;
  if (idoc_stage_model(&cfg, resume, true, &mb)) goto done;
  if (!mb.m.dec) {
    idoc_set_error("grpo needs a model with the heatmap decoder (a stage-2 checkpoint)");
    goto done;
  }
  // The reference model is always the stage's starting model (model_name_or_path), also when
  // resuming, so the KL target does not move.
  if (cfg.beta > 0) {
    if (idoc_model_setup(&cfg, true, &ref)) goto done;
    for (int i = 0; i < ref.ps->n; i++)
      ref.ps->p[i].trainable = ref.ps->p[i].w->requires_grad = false;
  }
  int64_t n_train = idoc_model_apply_freezing(&cfg, &mb);
  for (int i = 0; i < mb.ps->n; i++) // the decoder is not trained in GRPO (spec 5.4)
    if (idoc_decoder_owns(mb.ps->p[i].w->name) && mb.ps->p[i].trainable) {
      mb.ps->p[i].trainable = mb.ps->p[i].w->requires_grad = false;
      n_train -= idoc_numel(mb.ps->p[i].w);
    }
  if (idoc_comm_any_failed(main ? idoc_mkdir_p(out) : IDOC_OK)) goto done;

  idoc_example_ctx ectx = {mb.tok, idoc_sft_opts_from_config(&cfg, true, false), NULL};
  ectx.opts.grpo_prompt = true;
  ectx.opts.with_maps = false;
  uint64_t epoch_len;
  if (!(L = idoc_stage_loader(&cfg, &ectx, &epoch_len))) goto done;
  int64_t total = idoc_total_steps(&cfg, epoch_len, P);
  int64_t total_updates = total * cfg.num_iterations;
  int warmup = idoc_warmup_steps(&cfg, total_updates);
  idoc_lr_kind lk;
  idoc_lr_kind_parse(cfg.lr_scheduler_type, &lk);
  idoc_trainer_state st;
  int r = idoc_stage_optimizer(&cfg, &mb, resume, L, &opt, &st, P, &dp);
  opt_ready = true;
  if (r) goto done;
  if (idoc_stage_complete(&cfg, resume, st.global_step, total, true, res)) {
    rc = IDOC_OK;
    goto done;
  }
  if (idoc_stage_outputs(&cfg, resume, st.global_step, &logf)) goto done;
  // Sampled completions (rank 0's prompts): appended on resume (lines of steps after the
  // checkpoint may repeat).
  char comppath[4200];
  snprintf(comppath, sizeof comppath, "%s/completions.jsonl", out);
  r = IDOC_OK;
  if (main) {
    if (!resume[0]) remove(comppath);
    if (!(compf = fopen(comppath, "a")))
      r = idoc_set_error("%s: cannot open for writing", comppath);
  }
  if (idoc_comm_any_failed(r)) goto done;
  if (main) {
    printf("grpo: %s, %lld trainable parameters, %d prompts x %d completions per step%s, %lld "
           "steps, beta %g, loss %s%s\n",
           cfg.model_name_or_path, (long long)n_train, P * world, G,
           world > 1 ? " (over the ranks)" : "", (long long)total, cfg.beta, cfg.loss_type,
           resume[0] ? ", resumed" : "");
    idoc_stage_print_device(mb.dev);
  }
  if (cfg.dump_batches[0]) {
    if (world > 1) {
      idoc_set_error("dump_batches: only for single-process runs (this job has %d ranks)", world);
      goto done;
    }
    if (st.global_step == 0 && idoc_dump_init(cfg.dump_batches, &mb.m)) goto done;
  }
  idoc_dp_signals_install();

  // Activations, rollout pixels and the KV cache on the model's device; the packed rollout batch
  // stays on the host (each forward uploads it).
  c = idoc_ctx_new(mb.dev, (size_t)64 << 20);
  A = idoc_arena_new("grpo", mb.dev, (size_t)16 << 20);
  int32_t stops[2], suppress[2];
  idoc_gen_default_stops(&mb.m.qwen->cfg, stops);
  idoc_gen_vision_suppress(&mb.m.qwen->cfg, suppress);
  int NC = P * G;
  double *rewards = idoc_xmalloc((size_t)NC * IDOC_N_REWARDS * sizeof(double));
  double *totals = idoc_xmalloc((size_t)NC * sizeof(double)),
         *adv = idoc_xmalloc((size_t)NC * sizeof(double));
  uint8_t *keep = idoc_xmalloc((size_t)NC);
  double t0 = idoc_now() - st.elapsed, first_sum = 0, last_sum = 0, first_n = 0, last_n = 0;
  if (st.n_window == 4) // the summary sums of the steps before the checkpoint
    first_sum = st.window[0], first_n = st.window[1], last_sum = st.window[2],
    last_n = st.window[3];
  int in_a_row = st.nonfinite_in_a_row;
  int64_t step = st.global_step;
  rc = IDOC_OK;
  bool stop = false;
  while (step < total && rc == IDOC_OK && !stop) {
    idoc_comm_set_phase("data");
    idoc_comm_set_step(step + 1);
    // 1. prompts (this rank's P of the step's P x world)
    for (int i = 0; i < P && rc == IDOC_OK; i++)
      if (idoc_loader_next(L, &items[i])) {
        for (int j = 0; j < i; j++)
          idoc_loader_item_free(&items[j]);
        rc = IDOC_ERR;
      }
    if (idoc_comm_any_failed(rc)) {
      rc = IDOC_ERR;
      break;
    }
    idoc_arena_reset(A);
    idoc_gen_prompt *gp = idoc_xcalloc((size_t)P, sizeof *gp);
    for (int i = 0; i < P; i++) {
      idoc_sft_example *ex = items[i].extra;
      idoc_tensor *pix = idoc_tensor_2d(A, IDOC_F32, ex->n_patches, 1176);
      idoc_tensor_from_host(pix, ex->pixels);
      gp[i] = (idoc_gen_prompt){ex->ids, ex->n, pix, ex->grid, 1, NULL, 0, items[i].index};
    }
    // 2. rollouts
    idoc_gen_opts go;
    idoc_gen_opts_default(&go);
    go.group_size = G;
    go.max_new_tokens = cfg.max_completion_length;
    go.do_sample = true;
    go.temperature = cfg.temperature;
    go.top_k = cfg.top_k;
    go.top_p = cfg.top_p;
    go.seed = (uint64_t)cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)step;
    go.stop_ids = stops;
    go.n_stop = 2;
    go.suppress_ids = suppress;
    go.n_suppress = 2;
    go.keep_hidden = true;
    go.keep_image_feats = true;
    idoc_gen_result gr;
    double tg = idoc_now();
    idoc_ctx_reset(c);
    idoc_comm_set_phase("rollouts");
    int grc = idoc_generate(c, mb.m.qwen, gp, P, &go, &gr);
    if (idoc_comm_any_failed(grc)) {
      if (grc == IDOC_OK) idoc_gen_result_free(&gr);
      free(gp);
      for (int i = 0; i < P; i++)
        idoc_loader_item_free(&items[i]);
      rc = IDOC_ERR;
      break;
    }
    double gen_s = idoc_now() - tg;
    // 3. heatmaps and rewards
    idoc_comm_set_phase("rewards");
    reward_window rw = {0};
    for (int i = 0; i < P && rc == IDOC_OK; i++) {
      idoc_sft_example *ex = items[i].extra;
      idoc_sample *s = &items[i].s;
      int ms = mb.m.qwen->cfg.spatial_merge_size, Hm = ex->grid[1] / ms, Wm = ex->grid[2] / ms;
      idoc_reward_config rci = rcfg;
      rci.map_size = 16 * Hm; // the decoder's output grid (288 for 504 px images)
      idoc_reward_gt gt = {{s->scores[0], s->scores[1], s->scores[2], s->scores[3]},
                           s->map_h,
                           s->map_w,
                           s->misalignment_map,
                           s->artifact_map,
                           NULL,
                           NULL};
      if (Hm != Wm) rc = idoc_set_error("grpo: rewards need square images (set image_size)");
      if (rc == IDOC_OK) rc = idoc_reward_target_init(&targets[i], &rci, &gt);
      for (int g = 0; g < G && rc == IDOC_OK; g++) {
        idoc_gen_completion *co = &gr.c[i * G + g];
        int n_tok = co->n_tokens;
        bool stopped = co->finish == IDOC_FINISH_STOP;
        char *text = NULL;
        size_t len = 0;
        rc = idoc_detokenize(mb.tok, co->tokens, (size_t)(stopped ? n_tok - 1 : n_tok), true, &text,
                             &len);
        if (rc) break;
        float *maps[2];
        rc = idoc_imagedoctor_completion_maps(c, &mb.m, co->hidden, co->n_prompt, co->tokens, n_tok,
                                              gr.image_feats[i], Hm, Wm, maps);
        if (rc) {
          free(text);
          break;
        }
        idoc_reward_completion rcmp = {text, len, maps[0], maps[1], 16 * Hm, 16 * Wm};
        double *rr = rewards + (size_t)(i * G + g) * IDOC_N_REWARDS;
        rc = idoc_rewards_compute(&rci, &targets[i], &rcmp, rr, &totals[i * G + g]);
        if (rc == IDOC_OK) {
          for (int r = 0; r < IDOC_N_REWARDS; r++)
            rw.reward_sum[r] += rr[r], rw.reward_sq[r] += rr[r] * rr[r];
          rw.total += totals[i * G + g];
          rw.total_sq += totals[i * G + g] * totals[i * G + g];
          rw.len_sum += n_tok;
          rw.len_max = fmax(rw.len_max, n_tok);
          rw.truncated += !stopped;
          rw.n++;
          if (compf && cfg.completions_log_steps > 0 && step % cfg.completions_log_steps == 0 &&
              g < 2) {
            fprintf(compf,
                    "{\"step\": %lld, \"sample\": %zu, \"completion\": %d, \"reward\": %s, "
                    "\"rewards\": {",
                    (long long)step + 1, items[i].index, g, idoc_jnum(totals[i * G + g], 6).s);
            bool first = true;
            for (int r = 0; r < IDOC_N_REWARDS; r++)
              if (rci.enabled[r]) {
                fprintf(compf, "%s\"%s\": %s", first ? "" : ", ", idoc_reward_names[r],
                        idoc_jnum(rr[r], 6).s);
                first = false;
              }
            fprintf(compf, "}, \"text\": ");
            idoc_json_write_string(compf, text);
            fprintf(compf, "}\n");
          }
        }
        free(maps[0]);
        free(maps[1]);
        free(text);
      }
      idoc_reward_target_free(&targets[i]);
    }
    // Advantages are per group, and each group lives on one rank; the logged statistics are
    // over the whole step (every rank's totals).
    idoc_grpo_adv_stats as = {0};
    if (rc == IDOC_OK) rc = idoc_grpo_advantages(totals, NC, &ao, adv, keep, &as);
    if (idoc_comm_any_failed(rc)) rc = IDOC_ERR;
    if (rc == IDOC_OK && world > 1) {
      double *all = idoc_xmalloc((size_t)NC * world * sizeof(double)),
             *aa = idoc_xmalloc((size_t)NC * world * sizeof(double));
      uint8_t *kk = idoc_xmalloc((size_t)NC * world);
      idoc_comm_all_gather_bytes(totals, (size_t)NC * sizeof(double), all);
      rc = idoc_grpo_advantages(all, (int64_t)NC * world, &ao, aa, kk, &as);
      free(all);
      free(aa);
      free(kk);
      idoc_comm_all_reduce_f64((double *)&rw, RW_SUMS, IDOC_RED_SUM);
      idoc_comm_all_reduce_f64(&rw.len_max, 1, IDOC_RED_MAX);
    }
    // 4. the packed batch of prompt + completion rows (each completion with its image)
    rollout_batch rb = {0};
    if (rc == IDOC_OK) {
      rb.n_seq = NC;
      rb.cu = idoc_xmalloc((size_t)(NC + 1) * sizeof(int32_t));
      rb.grid = idoc_xmalloc((size_t)NC * 3 * sizeof(int32_t));
      rb.off = idoc_xmalloc((size_t)(NC + 1) * sizeof(int64_t));
      rb.prow = idoc_xmalloc((size_t)(NC + 1) * sizeof(int64_t));
      int64_t T = 0, Pp = 0;
      for (int k = 0; k < NC; k++) {
        rb.cu[k] = (int32_t)T;
        rb.off[k] = T;
        rb.prow[k] = Pp;
        T += gr.c[k].n_prompt + gr.c[k].n_tokens;
        Pp += ((idoc_sft_example *)items[k / G].extra)->n_patches;
      }
      rb.cu[NC] = (int32_t)T;
      rb.off[NC] = T;
      rb.prow[NC] = Pp;
      rb.T = T;
      rb.P = Pp;
      rb.ids = idoc_xmalloc((size_t)T * sizeof(int32_t));
      rb.tgt = idoc_xmalloc((size_t)T * sizeof(int32_t));
      rb.mask = idoc_xcalloc((size_t)T, 1);
      rb.pixels = idoc_xmalloc((size_t)Pp * 1176 * sizeof(float));
      int64_t prow = 0;
      for (int k = 0; k < NC; k++) {
        idoc_sft_example *ex = items[k / G].extra;
        idoc_gen_completion *co = &gr.c[k];
        int32_t *d = rb.ids + rb.cu[k];
        memcpy(d, ex->ids, (size_t)co->n_prompt * sizeof(int32_t));
        memcpy(d + co->n_prompt, co->tokens, (size_t)co->n_tokens * sizeof(int32_t));
        int n = co->n_prompt + co->n_tokens;
        for (int t = 0; t < n; t++) {
          bool scored = t + 1 < n && t + 1 >= co->n_prompt;
          rb.tgt[rb.cu[k] + t] = scored ? d[t + 1] : -1;
          rb.mask[rb.cu[k] + t] = scored;
        }
        memcpy(rb.grid + 3 * k, ex->grid, 3 * sizeof(int32_t));
        memcpy(rb.pixels + prow * 1176, ex->pixels, (size_t)ex->n_patches * 1176 * sizeof(float));
        prow += ex->n_patches;
      }
    }
    idoc_gen_result_free(&gr);
    free(gp);
    for (int i = 0; i < P; i++)
      idoc_loader_item_free(&items[i]);
    // 5. group by group: reference log-probs (no grad), then the updates (the first one's
    //    log-probs are the "old" ones when num_iterations > 1).
    float *ref_lp = NULL, *old_lp = NULL;
    group_view *gv = idoc_xcalloc((size_t)P, sizeof *gv);
    for (int g = 0; g < P && rc == IDOC_OK; g++)
      group_view_make(&rb, g, G, &gv[g]);
    if (rc == IDOC_OK && cfg.beta > 0) {
      ref_lp = idoc_xmalloc((size_t)rb.T * sizeof(float));
      for (int g = 0; g < P; g++) {
        idoc_ctx_reset(c);
        bool pg = idoc_no_grad_begin(c);
        idoc_tensor *lp = token_logprobs(c, ref.m.qwen, &gv[g].b, c->act, false, NULL);
        idoc_tensor_to_host(lp, ref_lp + gv[g].tok0);
        idoc_grad_restore(c, pg);
      }
    }
    // The loss is normalised by the step's global count (kept sequences, or their tokens for
    // the token mean), so the groups' and ranks' gradients add up to the one-rank gradient.
    if (rc == IDOC_OK) {
      double cnt[2] = {0, 0};
      for (int k = 0; k < NC; k++) {
        if (ao.std_filter && !keep[k]) continue;
        cnt[0]++;
        for (int64_t t = rb.off[k]; t < rb.off[k + 1]; t++)
          cnt[1] += rb.mask[t];
      }
      idoc_comm_all_reduce_f64(cnt, 2, IDOC_RED_SUM);
      lo.denom = lo.agg == IDOC_GRPO_AGG_TOKEN_MEAN ? cnt[1] : cnt[0];
      if (cfg.dump_batches[0])
        rc = dump_rollouts(cfg.dump_batches, step + 1, gv, P, G, adv, lo.denom);
    }
    idoc_grpo_loss_stats ls = {0};
    double gn_sum = 0, loss_sum = 0;
    int n_applied = 0;
    float lr = 0;
    idoc_comm_set_phase("forward/backward");
    for (int it = 0; it < cfg.num_iterations && rc == IDOC_OK; it++) {
      // Entropy gating: the threshold over the whole step's tokens (every group, every rank).
      lo.has_entropy_threshold = lo.entropy_top_rho < 1;
      if (lo.has_entropy_threshold)
        lo.entropy_threshold =
            entropy_threshold(c, mb.m.qwen, gv, P, ao.std_filter ? keep : NULL, lo.entropy_top_rho);
      if (cfg.num_iterations > 1 && it == 0) old_lp = idoc_xmalloc((size_t)rb.T * sizeof(float));
      // The step's statistics: the loss is the sum of the groups' (and ranks') parts, the token
      // means are weighted by their token counts.
      double sums[8] = {0};
      for (int g = 0; g < P && rc == IDOC_OK; g++) {
        const group_view *v = &gv[g];
        idoc_ctx_reset(c);
        idoc_tensor *ent = NULL;
        idoc_tensor *lp = token_logprobs(c, mb.m.qwen, &v->b, c->act, want_entropy, &ent);
        if (cfg.num_iterations > 1 && it == 0) idoc_tensor_to_host(lp, old_lp + v->tok0);
        idoc_grpo_batch gb = {G,
                              v->b.off,
                              NULL,
                              old_lp ? old_lp + v->tok0 : NULL,
                              ref_lp ? ref_lp + v->tok0 : NULL,
                              NULL,
                              v->b.mask,
                              adv + v->first,
                              ao.std_filter ? keep + v->first : NULL};
        idoc_grpo_loss_stats lg = {0};
        idoc_tensor *loss = idoc_grpo_loss_op(c, lp, ent, &gb, &lo, &lg);
        if (!loss) {
          rc = IDOC_ERR;
          break;
        }
        idoc_backward(c, loss);
        idoc_dp_accumulate(dp);
        double nt = (double)lg.n_tokens;
        double add[8] = {lg.loss,
                         lg.kl_mean * nt,
                         lg.clip_region * nt,
                         lg.clip_low * nt,
                         lg.clip_high * nt,
                         lg.entropy_mean * nt,
                         nt,
                         lg.gate_frac * nt};
        for (int k = 0; k < 8; k++)
          sums[k] += add[k];
      }
      if (idoc_comm_any_failed(rc)) {
        rc = IDOC_ERR;
        break;
      }
      if (it == 0) idoc_dp_test_hooks(dp, step + 1);
      idoc_comm_all_reduce_f64(sums, 8, IDOC_RED_SUM);
      double nt = sums[6] > 0 ? sums[6] : 1;
      ls.loss = sums[0];
      ls.kl_mean = sums[1] / nt;
      ls.clip_region = sums[2] / nt;
      ls.clip_low = sums[3] / nt;
      ls.clip_high = sums[4] / nt;
      ls.entropy_mean = sums[5] / nt;
      ls.n_tokens = (int64_t)sums[6];
      ls.gate_frac = sums[7] / nt;
      ls.entropy_threshold = lo.has_entropy_threshold ? lo.entropy_threshold : 0;
      int64_t upd = step * cfg.num_iterations + it;
      lr = idoc_lr_at(lk, cfg.learning_rate, (int)upd, warmup, (int)total_updates);
      // The NaN guard (as the SFT stage): a non-finite loss or gradient norm skips the update.
      float gn = isfinite(ls.loss) ? idoc_dp_step(dp, &opt, lr) : NAN;
      idoc_params_zero_grad(mb.ps);
      if (!isfinite(gn)) {
        if (main)
          fprintf(stderr, "warning: step %lld update %d: loss %g, gradient norm %g: skipped\n",
                  (long long)step + 1, it + 1, ls.loss, (double)gn);
        if (++in_a_row >= cfg.max_nonfinite_steps) {
          rc = idoc_set_error("step %lld: %d updates in a row had a non-finite loss or gradient "
                              "norm (max_nonfinite_steps %d): stopping; lower learning_rate?",
                              (long long)step + 1, in_a_row, cfg.max_nonfinite_steps);
          break;
        }
        continue;
      }
      in_a_row = 0;
      n_applied++;
      gn_sum += gn;
      loss_sum += ls.loss;
    }
    for (int g = 0; g < P; g++)
      if (gv[g].b.cu) group_view_free(&gv[g]);
    free(gv);
    free(ref_lp);
    free(old_lp);
    rollout_batch_free(&rb);
    if (rc) break;
    step++;
    double el = idoc_now() - t0, n = rw.n;
    double rmean = rw.total / n, rstd = sqrt(fmax(0, rw.total_sq / n - rmean * rmean));
#define J(v, d) idoc_jnum(v, d).s
    double na = n_applied ? n_applied : NAN;
    if (logf) {
      fprintf(logf,
              "{\"current_steps\": %lld, \"total_steps\": %lld, \"loss\": %s, \"reward\": %s, "
              "\"reward_std\": %s, \"group_reward_std\": %s, \"frac_reward_zero_std\": %s, "
              "\"dropped_frac\": %s, \"adv_mean\": %s, \"adv_std\": %s, \"adv_min\": %s, "
              "\"adv_max\": %s, \"kl\": %s, \"clip_ratio\": %s, \"clip_low\": %s, "
              "\"clip_high\": %s, \"entropy\": %s, \"completion_length\": %s, "
              "\"completion_length_max\": %s, \"truncated_frac\": %s, \"lr\": %s, "
              "\"grad_norm\": %s, \"skipped_updates\": %d, \"gen_s\": %.3f, \"elapsed\": %.2f, "
              "\"remaining\": %.2f",
              (long long)step, (long long)total, J(loss_sum / na, 9), J(rmean, 6), J(rstd, 6),
              J(as.reward_std, 6), J(as.frac_zero_std, 4), J(as.dropped_frac, 4), J(as.adv_mean, 4),
              J(as.adv_std, 4), J(as.adv_min, 4), J(as.adv_max, 4), J(ls.kl_mean, 6),
              J(ls.clip_region, 4), J(ls.clip_low, 4), J(ls.clip_high, 4), J(ls.entropy_mean, 6),
              J(rw.len_sum / n, 6), J(rw.len_max, 6), J(rw.truncated / n, 4), J(lr, 9),
              J(gn_sum / na, 6), cfg.num_iterations - n_applied, gen_s, el,
              el / step * (total - step));
      for (int r = 0; r < IDOC_N_REWARDS; r++)
        if (rcfg.enabled[r]) {
          double m = rw.reward_sum[r] / n;
          fprintf(logf, ", \"rewards/%s/mean\": %s, \"rewards/%s/std\": %s", idoc_reward_names[r],
                  J(m, 6), idoc_reward_names[r], J(sqrt(fmax(0, rw.reward_sq[r] / n - m * m)), 6));
        }
      fprintf(logf, "}\n");
      fflush(logf);
    }
#undef J
    if (compf) fflush(compf);
    // Reward means over the first and the last tenth of the run (single steps are noisy).
    int64_t tenth = total >= 10 ? total / 10 : 1;
    if (step <= tenth) first_sum += rmean, first_n++;
    if (step > total - tenth) last_sum += rmean, last_n++;
    res->first_loss = first_n ? first_sum / first_n : 0;
    res->last_loss = last_n ? last_sum / last_n : 0;
    res->steps = step;
    res->grpo = true;
    if ((step % cfg.logging_steps == 0 || step == total) && main) {
      if (isatty(2)) {
        char extra[160];
        snprintf(extra, sizeof extra, "reward %.3f kl %.4f len %.0f", rmean, ls.kl_mean,
                 rw.len_sum / n);
        idoc_progress(step, total, el, extra);
      } else {
        printf("step %lld/%lld  reward %.4f (std %.4f)  kl %.5f  clip %.3f  len %.1f  "
               "trunc %.2f  zero-std %.2f  lr %.2e  %.1fs\n",
               (long long)step, (long long)total, rmean, rstd, ls.kl_mean, ls.clip_region,
               rw.len_sum / n, rw.truncated / n, as.frac_zero_std, lr, el);
        fflush(stdout);
      }
    }
    st.window[0] = first_sum, st.window[1] = first_n, st.window[2] = last_sum,
    st.window[3] = last_n, st.n_window = 4;
    st.nonfinite_in_a_row = in_a_row;
    stop = idoc_dp_stop_agreed(dp) && step < total;
    rc = idoc_stage_after_step(&cfg, &mb, true, step, total, (double)step * P / (double)epoch_len,
                               opt.step, L, idoc_now() - t0, logf, &st, dp, stop);
  }
  if (rc == IDOC_OK && stop) {
    idoc_dp_mark_stopped();
    rc = idoc_set_error("stopped by a signal after step %lld of %lld: %s/checkpoint-%lld holds "
                        "it (resume_from_checkpoint=true continues)",
                        (long long)step, (long long)total, out, (long long)step);
  }
  free(rewards);
  free(totals);
  free(adv);
  free(keep);
  if (rc) goto done;
  res->seconds = idoc_now() - t0;
  res->grpo = true;
  res->steps = step;
  res->first_loss = first_n ? first_sum / first_n : 0;
  res->last_loss = last_n ? last_sum / last_n : 0;
  if (main)
    printf("mean reward first tenth %.4f, last tenth %.4f\n", res->first_loss, res->last_loss);
  rc = idoc_stage_finish(&cfg, &mb, true, step, total, logf, res);

done:
  idoc_dp_signals_restore();
  if (logf) fclose(logf);
  if (compf) fclose(compf);
  if (L) idoc_loader_close(L);
  if (c) idoc_ctx_free(c);
  if (A) idoc_arena_free(A);
  if (opt_ready) idoc_adamw_free(&opt);
  idoc_dp_free(dp);
  idoc_model_bundle_free(&ref);
  idoc_model_bundle_free(&mb);
  idoc_config_free(&cfg);
  free(items);
  free(targets);
  return rc;
}
