// Shared by test_plan (CPU) and test_cuda_plan (the simulated GPU): real SFT runs of the tiny
// model on a small synthetic split, the plan (stage/plan.h) of the micro-batch that set each
// run's activation peak, and the comparison with what the arenas held: the parameter stores to
// the byte, the whole peak (parameter stores + the activation arena's high-water mark) within
// `tol` (the issue asks 10%).
#pragma once
#include <stdlib.h>
#include <string.h>

#include "stage/model_setup.h"
#include "stage/plan.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

static void plan_set(idoc_train_config *c, const char *kv) {
  if (idoc_config_set(c, kv)) idoc_die("%s", idoc_last_error());
}

// Runs stage `name` (dir/name) on `device` with the extra keys, plans the micro-batch that set
// the activation peak, compares; returns the measured activation peak.
static double plan_check(const char *dir, const char *device, double tol, int steps,
                         const char *name, const char *const *extra, int n_extra, bool decoder) {
  idoc_train_config c;
  idoc_config_defaults(&c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "freeze_vision_tower=false",
                      "freeze_multi_modal_projector=false",
                      "image_size=112",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "per_device_train_batch_size=2",
                      "gradient_accumulation_steps=1",
                      "logging_steps=1",
                      "save_steps=100",
                      "plot_loss=false",
                      "seed=3"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    plan_set(&c, kv[i]);
  for (int i = 0; i < n_extra; i++)
    plan_set(&c, extra[i]);
  char s[600];
  snprintf(s, sizeof s, "max_steps=%d", steps);
  plan_set(&c, s);
  snprintf(s, sizeof s, "dataset=%s/data/train.h5", dir);
  plan_set(&c, s);
  snprintf(s, sizeof s, "output_dir=%s/%s", dir, name);
  plan_set(&c, s);
  snprintf(s, sizeof s, "device=%s", device);
  plan_set(&c, s);
  idoc_stage_result r;
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "%s: %s", name, idoc_last_error());
  idoc_qwen_config qc;
  idoc_qwen_preset("tiny", &qc);
  idoc_decoder_config dc = idoc_pick_decoder("tiny", qc.hidden_size, true);
  idoc_plan_shape sh = {r.peak_tokens, r.peak_seqs, r.peak_grid_h, r.peak_grid_w,
                        r.peak_seqs ? r.peak_maps / r.peak_seqs : 0};
  idoc_plan_opts opt = {false, 1};
  idoc_plan p;
  idoc_plan_model(&qc, decoder ? &dc : NULL, &c, &opt, &sh, &p);
  double measured = (double)r.mem_weights + r.mem_grads + r.mem_state + r.mem_act_peak;
  double planned = p.weights + p.grads + p.adam + p.act;
  printf("%s %-22s micro-batch %lld tokens, %d seqs, grid %dx%d, %d maps/seq\n", device, name,
         (long long)sh.tokens, sh.n_seq, sh.grid_h, sh.grid_w, sh.maps_per_seq);
  printf("  weights %zu / %.0f  grads %zu / %.0f  adam %zu / %.0f  activations %zu / %.0f  "
         "peak %.0f / %.0f (measured / planned, bytes; %+.1f%%)\n",
         r.mem_weights, p.weights, r.mem_grads, p.grads, r.mem_state, p.adam, r.mem_act_peak, p.act,
         measured, planned, 100 * (planned - measured) / measured);
  T_CHECK(p.weights == (double)r.mem_weights, "%s: weights %.0f planned, %zu measured", name,
          p.weights, r.mem_weights);
  T_CHECK(p.adam == (double)r.mem_state, "%s: AdamW %.0f planned, %zu measured", name, p.adam,
          r.mem_state);
  // Gradients exist for trainable parameters only, in both the plan and the store.
  T_CHECK(p.grads == (double)r.mem_grads, "%s: gradients %.0f planned, %zu measured", name, p.grads,
          r.mem_grads);
  T_CHECK(fabs(planned - measured) <= tol * measured, "%s: peak %.0f planned, %.0f measured", name,
          planned, measured);
  idoc_config_free(&c);
  return (double)r.mem_act_peak;
}

// Stage 1 (answer), stage 2 (CoT + decoder), stage 2 with gradient checkpointing and stage 2
// with the head in chunks of 64 tokens (each of which must hold less than stage 2) on `device`,
// `steps` optimizer steps each (the peak micro-batch is the largest of the split's), in dir (made
// afresh, removed when everything passed).
static void plan_checks(const char *dir, const char *device, double tol, int steps) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0 || idoc_mkdir_p(dir) || make_small_split(dir)) {
    T_CHECK(false, "%s: cannot make the data", dir);
    return;
  }
  const char *s1[] = {"target=answer", "decoder=none", "task_tokens=false"};
  plan_check(dir, device, tol, steps, "stage1", s1, 3, false);
  const char *s2[] = {"target=cot", "decoder=tiny", "task_tokens=true"};
  double plain = plan_check(dir, device, tol, steps, "stage2", s2, 3, true);
  const char *s2c[] = {"target=cot", "decoder=tiny", "task_tokens=true",
                       "gradient_checkpointing=true"};
  double ckpt = plan_check(dir, device, tol, steps, "stage2_checkpointing", s2c, 4, true);
  T_CHECK(ckpt < plain, "checkpointing holds %.0f bytes of activations, without %.0f", ckpt, plain);
  const char *s2h[] = {"target=cot", "decoder=tiny", "task_tokens=true", "head_chunk_tokens=64"};
  double chunked = plan_check(dir, device, tol, steps, "stage2_head_chunk", s2h, 4, true);
  T_CHECK(chunked < plain, "the chunked head holds %.0f bytes of activations, the whole %.0f",
          chunked, plain);
  if (!t_fail && system(cmd) != 0) T_CHECK(false, "cannot remove %s", dir);
}
