// `idoc train CONFIG.yaml [key=value ...]`: one stage or a pipeline of stages; with no
// arguments, the tiny pipeline on synthetic data (made on first use).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "nn/util.h"
#include "rl/grpo_train.h"
#include "stage/config.h"
#include "stage/plan.h"
#include "train/sft_trainer.h"

#define TINY_PIPELINE "configs/tiny/pipeline.yaml"
#define TINY_DATA "runs/tiny/data"

static void usage(void) {
  printf("usage: idoc train [CONFIG.yaml] [key=value ...]\n\n"
         "Runs the stage the config describes (stage: sft with target answer|cot, or grpo), or\n"
         "every stage of a pipeline file (`pipeline: [a.yaml, b.yaml]`); key=value overrides\n"
         "apply to every stage. With no config it runs the tiny pipeline (%s) on synthetic\n"
         "data, generated into %s when absent. Under mpirun, srun or torchrun-style variables\n"
         "(RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) every rank runs it, data parallel\n"
         "(zero_stage, ddp_timeout: docs/distributed.md).\n\n"
         "  --help-keys   list every config key with its type and default\n",
         TINY_PIPELINE, TINY_DATA);
}

// The tiny pipeline's data: made once, 2000/200/200 samples at 224 px.
static int ensure_tiny_data(void) {
  if (idoc_file_exists(TINY_DATA "/train.h5") && idoc_file_exists(TINY_DATA "/val.h5") &&
      idoc_file_exists(TINY_DATA "/test.h5"))
    return IDOC_OK;
  printf("making the synthetic data set in %s\n", TINY_DATA);
  fflush(stdout);
  char *argv[] = {"data", "synth",  "--out", TINY_DATA, "--train", "2000",   "--val",
                  "200",  "--test", "200",   "--size",  "224",     "--seed", "1"};
  return idoc_cmd_data((int)(sizeof argv / sizeof argv[0]), argv) ? IDOC_ERR : IDOC_OK;
}

// A stage's config: the file, then the overrides, validated (reward keys included).
static int load_stage(const char *file, int n_over, char **over, idoc_train_config *cfg) {
  idoc_config_defaults(cfg);
  int rc = idoc_config_load(file, cfg);
  for (int i = 0; i < n_over && rc == IDOC_OK; i++)
    rc = idoc_config_set(cfg, over[i]);
  if (rc == IDOC_OK && n_over) rc = idoc_config_validate(cfg);
  idoc_reward_config rw;
  if (rc == IDOC_OK) rc = idoc_grpo_reward_config(cfg, &rw);
  return rc;
}

static int run_stage(const char *file, int n_over, char **over, idoc_stage_result *res) {
  idoc_train_config cfg;
  int rc = load_stage(file, n_over, over, &cfg);
  if (rc == IDOC_OK) {
    printf("== stage %s (%s)\n", file,
           cfg.stage == IDOC_STAGE_GRPO    ? "grpo"
           : cfg.target == IDOC_TARGET_COT ? "sft, cot"
                                           : "sft, answer");
    fflush(stdout);
    rc = idoc_plan_guard(&cfg);
    if (rc == IDOC_OK)
      rc = cfg.stage == IDOC_STAGE_GRPO ? idoc_train_grpo(&cfg, res) : idoc_train_sft(&cfg, res);
  }
  idoc_config_free(&cfg);
  return rc;
}

int idoc_cmd_train(int argc, char **argv) {
  const char *cfgpath = NULL;
  int n_over = 0;
  char **over = idoc_xcalloc((size_t)argc + 1, sizeof(char *));
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage();
      free(over);
      return 0;
    }
    if (!strcmp(argv[i], "--help-keys")) {
      idoc_config_print_keys();
      printf("  rewards:");
      for (int r = 0; r < IDOC_N_REWARDS; r++)
        printf("%s%s", r % 4 ? " " : "\n    ", idoc_reward_names[r]);
      printf("\n");
      free(over);
      return 0;
    }
    if (strchr(argv[i], '='))
      over[n_over++] = argv[i];
    else if (!cfgpath)
      cfgpath = argv[i];
    else {
      fprintf(stderr, "idoc train: unexpected argument '%s' (one config file, then key=value)\n",
              argv[i]);
      free(over);
      return 2;
    }
  }
  bool tiny = !cfgpath;
  if (tiny) {
    cfgpath = TINY_PIPELINE;
    if (ensure_tiny_data()) {
      fprintf(stderr, "idoc train: %s\n", idoc_last_error());
      free(over);
      return 1;
    }
  }
  idoc_pipeline p;
  if (idoc_pipeline_load(cfgpath, &p)) {
    fprintf(stderr, "idoc train: %s\n", idoc_last_error());
    free(over);
    return 1;
  }
  double t0 = idoc_now();
  int rc = IDOC_OK;
  idoc_stage_result *res = idoc_xcalloc((size_t)p.n, sizeof *res);
  for (int i = 0; i < p.n && rc == IDOC_OK; i++) { // every stage's config before any training
    idoc_train_config cfg;
    rc = load_stage(p.files[i], n_over, over, &cfg);
    idoc_config_free(&cfg);
  }
  for (int i = 0; i < p.n && rc == IDOC_OK; i++)
    rc = run_stage(p.files[i], n_over, over, &res[i]);
  if (rc) {
    fprintf(stderr, "idoc train: %s\n", idoc_last_error());
  } else {
    printf("\n== done in %.1f s\n", idoc_now() - t0);
    for (int i = 0; i < p.n; i++)
      if (res[i].already_complete)
        printf("  %-30s %5lld steps  complete before this run (untouched)  model: %s\n", p.files[i],
               (long long)res[i].steps, res[i].final_dir);
      else
        printf("  %-30s %5lld steps  %s %.4f -> %.4f  %7.1f s  model: %s\n", p.files[i],
               (long long)res[i].steps, res[i].grpo ? "reward" : "loss", res[i].first_loss,
               res[i].last_loss, res[i].seconds, res[i].final_dir);
    printf("logs: trainer_log.jsonl, training_loss.png (GRPO: training_rewards.png) and "
           "eval_results.json in each stage's "
           "output_dir\n");
  }
  free(res);
  idoc_pipeline_free(&p);
  free(over);
  return rc ? 1 : 0;
}
