// `idoc smoke`: the seconds-long smoke training of train/smoke.h.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "nn/util.h"
#include "stage/config.h"
#include "stage/model_setup.h"
#include "train/smoke.h"

// The --device value checked as the trainers' `device` key is (auto, cpu, cuda, cuda:N).
static int smoke_device(const char *name, idoc_device *dev) {
  idoc_train_config c;
  idoc_config_defaults(&c);
  char kv[80];
  snprintf(kv, sizeof kv, "device=%s", name);
  int rc = idoc_config_set(&c, kv) || idoc_config_validate(&c) || idoc_stage_device(&c, dev);
  idoc_config_free(&c);
  return rc ? IDOC_ERR : IDOC_OK;
}

int idoc_cmd_smoke(int argc, char **argv) {
  idoc_smoke_cfg cfg = idoc_smoke_default();
  const char *device = "auto";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help")) {
      printf("usage: idoc smoke [--steps N] [--seed S] [--checkpointing] [--device D]\n"
             "Trains a tiny two-layer transformer to copy sequences; prints the loss curve.\n"
             "D: auto (default: cuda when a GPU is present, else cpu), cpu, cuda, cuda:N.\n");
      return 0;
    } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
      cfg.steps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
      cfg.seed = strtoull(argv[++i], NULL, 10);
    } else if (!strcmp(argv[i], "--checkpointing")) {
      cfg.checkpointing = true;
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      device = argv[++i];
    } else {
      fprintf(stderr, "idoc smoke: unknown argument '%s' (see --help)\n", argv[i]);
      return 2;
    }
  }
  if (cfg.steps < 1) {
    fprintf(stderr, "idoc smoke: --steps must be >= 1\n");
    return 2;
  }
  if (smoke_device(device, &cfg.dev)) {
    fprintf(stderr, "idoc smoke: %s\n", idoc_last_error());
    return 2;
  }
  idoc_stage_print_device(cfg.dev);
  printf(
      "smoke training: %d layers, dim %d, %d heads (%d kv), copy task with prefix %d, %d steps\n",
      cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.prefix_len, cfg.steps);
  double tail = idoc_smoke_train(&cfg, NULL, NULL, true);
  printf("final loss (mean of last 10 steps): %.4f  (chance level %.4f)\n", tail,
         log((double)cfg.vocab - 1));
  return 0;
}
