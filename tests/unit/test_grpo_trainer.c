// The GRPO trainer end to end on a small synthetic split from a random tiny model with a
// decoder: rollouts, rewards, the KL-regularized loss against the frozen reference, logs and
// sampled completions, and the kill-and-resume property: a run SIGKILLed after its step-3
// checkpoint and resumed logs bitwise the same losses and rewards for steps 4..6 (same rollout
// seeds, optimizer state, data cursor and reference model) as an uninterrupted run.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "nn/util.h"
#include "rl/grpo_train.h"
#include "stage/config.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define DIR "test_grpo_trainer.tmp"

static void base_config(idoc_train_config *c, const char *out) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "stage=grpo",
                      "decoder=tiny",
                      "freeze_vision_tower=false",
                      "dataset=" DIR "/data/train.h5",
                      "image_size=56",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "max_steps=6",
                      "per_device_train_batch_size=2",
                      "num_generations=3",
                      "max_completion_length=24",
                      "beta=0.04",
                      "logging_steps=1",
                      "save_steps=3",
                      "completions_log_steps=2",
                      "reward.format=1",
                      "seed=7"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  char o[256];
  snprintf(o, sizeof o, "output_dir=%s", out);
  idoc_config_set(c, o);
}

// The "loss" values of the log lines with current_steps in [from, to], as text.
int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--child")) { // the run that gets killed
    idoc_train_config k;
    idoc_stage_result r;
    base_config(&k, DIR "/b");
    return idoc_train_grpo(&k, &r) ? 3 : 0;
  }
  if (system("rm -rf " DIR) != 0) return 1;
  idoc_mkdir_p(DIR);
  if (make_small_split(DIR)) return 1;

  // Uninterrupted run, with a short eval at the end and save_total_limit 1.
  idoc_train_config c;
  base_config(&c, DIR "/a");
  idoc_config_set(&c, "eval_dataset=" DIR "/data/test.h5");
  idoc_config_set(&c, "max_new_tokens=12");
  idoc_config_set(&c, "save_total_limit=1");
  idoc_stage_result r;
  T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "run a: %s", idoc_last_error());
  idoc_config_free(&c);
  T_CHECK(r.steps == 6 && isfinite(r.last_loss), "steps %lld", (long long)r.steps);
  T_CHECK(idoc_file_exists(DIR "/a/checkpoint-6/optimizer.safetensors") &&
              idoc_file_exists(DIR "/a/checkpoint-6/training_args.yaml") &&
              idoc_file_exists(DIR "/a/checkpoint-6/trainer_state.json") &&
              !idoc_file_exists(DIR "/a/checkpoint-3"),
          "checkpoint contents and save_total_limit");
  T_CHECK(idoc_file_exists(DIR "/a/final/model.safetensors") &&
              idoc_file_exists(DIR "/a/final/tokenizer.json") &&
              idoc_file_exists(DIR "/a/eval_results.json"),
          "final model and eval results");
  char la[8][32], lb[8][32], ra[8][32], rb[8][32], ea[1][32];
  T_CHECK(read_field(DIR "/a", "\"loss\": ", 1, 6, la) == 6, "six logged losses");
  T_CHECK(read_field(DIR "/a", "\"entropy\": ", 1, 1, ea) == 1, "a logged entropy");
  T_CHECK(read_field(DIR "/a", "\"reward\": ", 1, 6, ra) == 6, "six logged rewards");
  T_CHECK(idoc_file_exists(DIR "/a/completions.jsonl"), "sampled completions logged");

  // Same run in a fresh process (OpenMP does not survive a bare fork), killed once its step-3
  // checkpoint exists, then resumed here.
  int status = run_and_kill(argv[0], DIR "/b/checkpoint-3");
  T_CHECK(WIFSIGNALED(status), "the first run was killed (not finished)");
  T_CHECK(!idoc_file_exists(DIR "/b/checkpoint-6") && !idoc_file_exists(DIR "/b/final"),
          "killed before the end");
  base_config(&c, DIR "/b");
  idoc_config_set(&c, "resume_from_checkpoint=true");
  T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "resume: %s", idoc_last_error());
  idoc_config_free(&c);
  T_CHECK(read_field(DIR "/b", "\"loss\": ", 1, 6, lb) == 6, "six logged losses after resume");
  T_CHECK(read_field(DIR "/b", "\"reward\": ", 1, 6, rb) == 6, "six logged rewards after resume");
  for (int i = 0; i < 6; i++) {
    T_CHECK(!strcmp(la[i], lb[i]), "step %d loss %s vs resumed %s", i + 1, la[i], lb[i]);
    T_CHECK(!strcmp(ra[i], rb[i]), "step %d reward %s vs resumed %s", i + 1, ra[i], rb[i]);
  }

  // The memory keys change rounding only: with the head applied 16 tokens at a time and the
  // blocks recomputed, step 1 (the same weights, so the same rollouts) logs the same reward, and
  // the policy's entropy (through the chunked log-probs) within 2e-5 (6 digits are logged).
  // (This split's groups get equal rewards, so the gradient is 0 here; test_cuda_grpo compares
  // a policy gradient.)
  base_config(&c, DIR "/c");
  idoc_config_set(&c, "max_steps=1");
  idoc_config_set(&c, "head_chunk_tokens=16");
  idoc_config_set(&c, "gradient_checkpointing=true");
  T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "run c: %s", idoc_last_error());
  idoc_config_free(&c);
  char rc[1][32], ec[1][32];
  T_CHECK(read_field(DIR "/c", "\"reward\": ", 1, 1, rc) == 1 &&
              read_field(DIR "/c", "\"entropy\": ", 1, 1, ec) == 1,
          "run c logged step 1");
  printf("step 1 entropy %s, with head_chunk_tokens 16 and recompute %s\n", ea[0], ec[0]);
  T_CHECK(!strcmp(ra[0], rc[0]), "step 1 reward %s vs %s chunked", ra[0], rc[0]);
  T_CHECK(atof(ea[0]) > 0, "an entropy at step 1");
  T_CLOSE(atof(ec[0]), atof(ea[0]), 0, 2e-5);

  // A fresh run refuses to overwrite an output_dir with checkpoints.
  base_config(&c, DIR "/b");
  T_CHECK(idoc_train_grpo(&c, &r) == IDOC_ERR &&
              strstr(idoc_last_error(), "resume_from_checkpoint"),
          "existing output_dir: %s", idoc_last_error());
  idoc_config_free(&c);
  if (system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_grpo_trainer");
}
