// The memory plan (stage/plan.h) against the arenas of real SFT runs of the tiny model on the
// CPU: the parameter stores to the byte, the whole peak (parameter stores + the activation
// arena's high-water mark) within 5% (the issue asks 10%), for stage 1 (answer), stage 2 (CoT +
// decoder) and stage 2 with gradient checkpointing, which must hold less than without.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdlib.h>
#include <string.h>

#include "stage/model_setup.h"
#include "stage/plan.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define DIR "test_plan.tmp"

static void config(idoc_train_config *c, const char *out, const char *const *extra, int n_extra) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "freeze_vision_tower=false",
                      "freeze_multi_modal_projector=false",
                      "dataset=" DIR "/data/train.h5",
                      "image_size=112",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "max_steps=3",
                      "per_device_train_batch_size=2",
                      "gradient_accumulation_steps=1",
                      "logging_steps=1",
                      "save_steps=100",
                      "plot_loss=false",
                      "seed=3"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  for (int i = 0; i < n_extra; i++)
    if (idoc_config_set(c, extra[i])) idoc_die("%s", idoc_last_error());
  char o[300];
  snprintf(o, sizeof o, "output_dir=%s", out);
  idoc_config_set(c, o);
}

// Runs the config, plans the micro-batch that set the activation peak, compares; returns the
// measured peak.
static double check(const char *name, const char *const *extra, int n_extra, bool decoder) {
  idoc_train_config c;
  char out[256];
  snprintf(out, sizeof out, DIR "/%s", name);
  config(&c, out, extra, n_extra);
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
  printf("%-22s micro-batch %lld tokens, %d seqs, grid %dx%d, %d maps/seq\n", name,
         (long long)sh.tokens, sh.n_seq, sh.grid_h, sh.grid_w, sh.maps_per_seq);
  printf("  weights %zu / %.0f  grads %zu / %.0f  adam %zu / %.0f  activations %zu / %.0f  "
         "peak %.0f / %.0f (measured / planned, bytes; %+.1f%%)\n",
         r.mem_weights, p.weights, r.mem_grads, p.grads, r.mem_state, p.adam, r.mem_act_peak, p.act,
         measured, planned, 100 * (planned - measured) / measured);
  T_CHECK(p.weights == (double)r.mem_weights, "%s: weights %.0f planned, %zu measured", name,
          p.weights, r.mem_weights);
  T_CHECK(p.adam == (double)r.mem_state, "%s: AdamW %.0f planned, %zu measured", name, p.adam,
          r.mem_state);
  T_CHECK(p.grads == (double)r.mem_grads, "%s: gradients %.0f planned, %zu measured", name, p.grads,
          r.mem_grads);
  // The issue asks for 10%; the plan is within 3.1% here, and 5% catches, e.g., a plan that
  // forgets the logits' gradient (-8%).
  T_CHECK(fabs(planned - measured) <= 0.05 * measured, "%s: peak %.0f planned, %.0f measured", name,
          planned, measured);
  idoc_config_free(&c);
  return (double)r.mem_act_peak;
}

int main(void) {
  if (system("rm -rf " DIR) != 0) return 1;
  idoc_mkdir_p(DIR);
  if (make_small_split(DIR)) return 1;
  const char *s1[] = {"target=answer", "decoder=none", "task_tokens=false"};
  check("stage1", s1, 3, false);
  const char *s2[] = {"target=cot", "decoder=tiny", "task_tokens=true"};
  double plain = check("stage2", s2, 3, true);
  const char *s2c[] = {"target=cot", "decoder=tiny", "task_tokens=true",
                       "gradient_checkpointing=true"};
  double ckpt = check("stage2_checkpointing", s2c, 4, true);
  T_CHECK(ckpt < plain, "checkpointing holds %.0f bytes of activations, without %.0f", ckpt, plain);
  if (!t_fail && system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_plan");
}
