// The SFT trainer end to end on a small synthetic split: config parsing errors and round trip,
// a stage-2 run (CoT + decoder) whose checkpoints honour save_total_limit, and the kill-and-
// resume property: a run SIGKILLed after its step-3 checkpoint and resumed logs bitwise the same
// losses for steps 4..6 as an uninterrupted run.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/image.h"
#include "nn/util.h"
#include "rl/grpo_train.h"
#include "stage/config.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define DIR "test_sft_trainer.tmp"

static void base_config(idoc_train_config *c, const char *out) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "target=cot",
                      "decoder=tiny",
                      "freeze_vision_tower=false",
                      "freeze_multi_modal_projector=false",
                      "dataset=" DIR "/data/train.h5",
                      "image_size=56",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "lr_scheduler_type=cosine",
                      "warmup_steps=1",
                      "max_steps=6",
                      "per_device_train_batch_size=2",
                      "gradient_accumulation_steps=2",
                      "logging_steps=1",
                      "save_steps=3",
                      "plot_loss=false",
                      "seed=7"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  char o[256];
  snprintf(o, sizeof o, "output_dir=%s", out);
  idoc_config_set(c, o);
}

// The "loss" values of the log lines with current_steps in [from, to], as text.
static void test_config(void) {
  idoc_train_config c;
  idoc_config_defaults(&c);
  T_CHECK(idoc_config_set(&c, "lerning_rate=1") == IDOC_ERR &&
              strstr(idoc_last_error(), "lerning_rate"),
          "unknown key named: %s", idoc_last_error());
  T_CHECK(idoc_config_set(&c, "max_steps=abc") == IDOC_ERR &&
              strstr(idoc_last_error(), "max_steps"),
          "bad int named: %s", idoc_last_error());
  T_CHECK(idoc_config_set(&c, "lr_scheduler_type=wavy") == IDOC_OK &&
              idoc_config_validate(&c) == IDOC_ERR &&
              strstr(idoc_last_error(), "lr_scheduler_type"),
          "bad enum named: %s", idoc_last_error());
  idoc_config_set(&c, "lr_scheduler_type=cosine");
  idoc_config_set(&c, "reward.format=0.5");
  { // reward keys are checked against the reward table, naming where they were set
    idoc_train_config r;
    idoc_reward_config rw;
    idoc_config_defaults(&r);
    T_CHECK(idoc_config_set(&r, "reward.formatt=1") == IDOC_OK &&
                idoc_grpo_reward_config(&r, &rw) == IDOC_ERR &&
                strstr(idoc_last_error(), "command line: reward.formatt"),
            "unknown reward named: %s", idoc_last_error());
    idoc_config_free(&r);
  }
  idoc_config_set(&c, "output_dir=we \"quote\" it");
  const char *bad = DIR "/bad.yaml";
  idoc_write_file_atomic(bad, "learning_rate: 1e-5\nwarmup_ratioo: 0.1\n", 38);
  idoc_train_config d;
  idoc_config_defaults(&d);
  T_CHECK(idoc_config_load(bad, &d) == IDOC_ERR && strstr(idoc_last_error(), bad) &&
              strstr(idoc_last_error(), "warmup_ratioo") && strstr(idoc_last_error(), "line 2"),
          "file, line and key named: %s", idoc_last_error());
  idoc_config_free(&d);
  // Round trip: the saved YAML loads to the same YAML.
  const char *y = DIR "/rt.yaml";
  T_CHECK(idoc_config_save(&c, y) == IDOC_OK, "%s", idoc_last_error());
  idoc_config_defaults(&d);
  T_CHECK(idoc_config_load(y, &d) == IDOC_OK, "%s", idoc_last_error());
  char *a = idoc_config_to_yaml(&c), *b = idoc_config_to_yaml(&d);
  char *a1 = strchr(a, '\n'), *b1 = strchr(b, '\n'); // skip the "from FILE" comment line
  T_CHECK(a1 && b1 && !strcmp(a1, b1), "config round trip");
  T_CHECK(d.n_reward_settings == 1 && !strcmp(d.reward_values[0], "0.5"), "reward setting kept");
  free(a);
  free(b);
  idoc_config_free(&d);
  idoc_config_free(&c);
  // Pipelines resolve stage files next to the pipeline file.
  idoc_pipeline p;
  T_CHECK(idoc_pipeline_load("configs/tiny/pipeline.yaml", &p) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(p.n == 3 && !strcmp(p.files[0], "configs/tiny/stage1.yaml"), "pipeline files");
  for (int i = 0; i < p.n; i++) {
    idoc_config_defaults(&d);
    T_CHECK(idoc_config_load(p.files[i], &d) == IDOC_OK, "%s", idoc_last_error());
    idoc_config_free(&d);
  }
  idoc_pipeline_free(&p);
  // Every shipped config loads and validates (the paper's runs and the ablations).
  const char *shipped[] = {"configs/qwen2.5-vl-3b/pipeline.yaml",
                           "configs/ablations/stage1.yaml",
                           "configs/ablations/stage1_heatmap.yaml",
                           "configs/ablations/stage1_heatmap_no_task_token.yaml",
                           "configs/ablations/stage2.yaml",
                           "configs/ablations/stage2_no_look.yaml",
                           "configs/ablations/stage2_no_think.yaml",
                           "configs/ablations/rft.yaml",
                           "configs/ablations/rft_no_grounding.yaml"};
  for (size_t k = 0; k < sizeof shipped / sizeof shipped[0]; k++) {
    T_CHECK(idoc_pipeline_load(shipped[k], &p) == IDOC_OK, "%s", idoc_last_error());
    for (int i = 0; i < p.n; i++) {
      idoc_config_defaults(&d);
      T_CHECK(idoc_config_load(p.files[i], &d) == IDOC_OK, "%s", idoc_last_error());
      if (strstr(p.files[i], "no_grounding"))
        T_CHECK(d.n_reward_settings == 6, "six rewards switched off");
      idoc_config_free(&d);
    }
    idoc_pipeline_free(&p);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--child")) { // the run that gets killed
    idoc_train_config k;
    idoc_stage_result r;
    base_config(&k, DIR "/b");
    return idoc_train_sft(&k, &r) ? 3 : 0;
  }
  if (system("rm -rf " DIR) != 0) return 1;
  idoc_mkdir_p(DIR);
  if (make_small_split(DIR)) return 1;
  test_config();

  // Uninterrupted run, with a short eval at the end and save_total_limit 1.
  idoc_train_config c;
  base_config(&c, DIR "/a");
  idoc_config_set(&c, "eval_dataset=" DIR "/data/test.h5");
  idoc_config_set(&c, "max_new_tokens=12");
  idoc_config_set(&c, "save_total_limit=1");
  idoc_stage_result r;
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "run a: %s", idoc_last_error());
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
  // `idoc predict` on the trained model: scores printed, both maps and the overlay written.
  uint8_t px[60 * 80 * 3];
  for (int i = 0; i < 60 * 80 * 3; i++)
    px[i] = (uint8_t)(i * 7);
  T_CHECK(idoc_image_write_png(DIR "/img.png", px, 60, 80, 3) == IDOC_OK, "%s", idoc_last_error());
  char *pargs[] = {"predict",  "--checkpoint", DIR "/a/final", "--image",   DIR "/img.png",
                   "--prompt", "a red circle", "--out",        DIR "/pred", "max_new_tokens=40"};
  T_CHECK(idoc_cmd_predict(10, pargs) == 0, "predict");
  idoc_image im;
  T_CHECK(idoc_image_load(DIR "/pred/overlay.png", &im) == IDOC_OK && im.h == 60 && im.w == 80,
          "overlay at the image size");
  idoc_image_free(&im);
  // `idoc eval --fast`: the answer prefilled after an empty think block.
  char *eargs[] = {"eval",
                   "--checkpoint",
                   DIR "/a/final",
                   "--data",
                   DIR "/data/test.h5",
                   "--out",
                   DIR "/evalfast",
                   "--fast",
                   "max_new_tokens=20",
                   "image_size=56"};
  T_CHECK(idoc_cmd_eval(10, eargs) == 0, "eval --fast");
  T_CHECK(idoc_file_exists(DIR "/evalfast/eval_results.json"), "eval results written");

  char la[8][32], lb[8][32];
  T_CHECK(read_field(DIR "/a", "\"loss\": ", 1, 6, la) == 6, "six logged losses");

  // Same run in a fresh process (OpenMP does not survive a bare fork), killed once its step-3
  // checkpoint exists, then resumed here.
  int status = run_and_kill(argv[0], DIR "/b/checkpoint-3");
  T_CHECK(WIFSIGNALED(status), "the first run was killed (not finished)");
  T_CHECK(!idoc_file_exists(DIR "/b/checkpoint-6") && !idoc_file_exists(DIR "/b/final"),
          "killed before the end");
  base_config(&c, DIR "/b");
  idoc_config_set(&c, "resume_from_checkpoint=true");
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "resume: %s", idoc_last_error());
  idoc_config_free(&c);
  T_CHECK(read_field(DIR "/b", "\"loss\": ", 1, 6, lb) == 6, "six logged losses after resume");
  for (int i = 0; i < 6; i++)
    T_CHECK(!strcmp(la[i], lb[i]), "step %d loss %s vs resumed %s", i + 1, la[i], lb[i]);

  // "+ heatmap w/o task token": answer-only targets, a decoder with learned queries, and the
  // heatmap loss still trains (both MSE terms are logged non-zero).
  base_config(&c, DIR "/c");
  const char *lq[] = {"target=answer", "task_tokens=false", "max_steps=2", "save_steps=0"};
  for (int i = 0; i < 4; i++)
    idoc_config_set(&c, lq[i]);
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "learned queries: %s", idoc_last_error());
  idoc_config_free(&c);
  char ma[8][32], mm[8][32];
  T_CHECK(read_field(DIR "/c", "\"mse_art\": ", 1, 2, ma) == 2 &&
              read_field(DIR "/c", "\"mse_mis\": ", 1, 2, mm) == 2 && atof(ma[0]) > 0 &&
              atof(mm[0]) > 0,
          "heatmap loss without task tokens");

  // A fresh run refuses to overwrite an output_dir with checkpoints.
  base_config(&c, DIR "/b");
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_ERR && strstr(idoc_last_error(), "resume_from_checkpoint"),
          "existing output_dir: %s", idoc_last_error());
  idoc_config_free(&c);
  if (system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_sft_trainer");
}
