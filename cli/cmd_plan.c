// `idoc plan CONFIG.yaml [key=value ...]`: the memory a run will take and whether it fits.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "nn/comm.h"
#include "nn/util.h"
#include "stage/plan.h"

static void usage(void) {
  printf("usage: idoc plan CONFIG.yaml [key=value ...] [--gpu-mem SIZE] [--ranks N]\n\n"
         "Prints the memory each stage of the config (or pipeline) takes on its device: weights,\n"
         "fp32 masters, gradients (trainable parameters), AdamW state, activations of the\n"
         "largest micro-batch (per_device_train_batch_size x cutoff_len tokens, images at\n"
         "image_size or image_max_pixels; LLM, vision tower, decoder, logits), the KV cache of\n"
         "generation and the peak, then whether it fits, and when it does not, the keys that\n"
         "would make it fit (each re-planned alone). `idoc train` runs the same plan before it\n"
         "allocates the model and refuses a run that does not fit.\n\n"
         "  --gpu-mem SIZE  the memory to fit (80GiB, 24GB, 512MiB); default: the device's with\n"
         "                  device cuda, else the host's MemAvailable\n"
         "  --ranks N       data-parallel ranks (what zero_stage: 1 shards over); default 1\n"
         "  bf16=true       plan bf16 storage with fp32 masters (the `bf16` key)\n\n"
         "Exit status: 0 when every stage fits, 1 when one does not or on an error.\n");
}

static int plan_stage(const char *file, int n_over, char **over, const idoc_plan_opts *opt,
                      double mem) {
  idoc_train_config cfg;
  idoc_config_defaults(&cfg);
  int rc = idoc_config_load(file, &cfg);
  for (int i = 0; i < n_over && rc == IDOC_OK; i++)
    rc = idoc_config_set(&cfg, over[i]);
  if (rc == IDOC_OK) rc = idoc_config_validate(&cfg);
  idoc_plan p;
  idoc_plan_opts o = *opt;
  o.bf16 |= cfg.bf16; // the config's own key, or bf16=true here
  opt = &o;
  if (rc == IDOC_OK) rc = idoc_plan_config(&cfg, opt, &p);
  if (rc == IDOC_OK) {
    double avail = mem > 0 ? mem : idoc_plan_available(&cfg);
    printf("== %s (%s, %s, device %s)\n", file, cfg.model_name_or_path,
           cfg.stage == IDOC_STAGE_GRPO ? "grpo" : "sft", cfg.device);
    idoc_plan_print(stdout, &p, avail);
    if (avail > 0 && p.peak > avail) {
      idoc_plan_print_fixes(stdout, &cfg, opt, avail);
      rc = 1;
    } else if (avail <= 0) {
      printf("no memory to compare with (no CUDA device visible: give --gpu-mem)\n");
    }
  }
  idoc_config_free(&cfg);
  return rc;
}

int idoc_cmd_plan(int argc, char **argv) {
  const char *cfgpath = NULL;
  idoc_plan_opts opt = {false, 1};
  double mem = 0;
  int n_over = 0;
  char **over = idoc_xcalloc((size_t)argc + 1, sizeof(char *));
  int rc = 0;
  for (int i = 1; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      free(over);
      return 0;
    } else if (!strcmp(a, "--gpu-mem") && i + 1 < argc) {
      if ((mem = idoc_plan_parse_size(argv[++i])) <= 0) {
        fprintf(stderr, "idoc plan: --gpu-mem: '%s' is not a size (80GiB, 24GB, 512MiB)\n",
                argv[i]);
        rc = 2;
      }
    } else if (!strcmp(a, "--ranks") && i + 1 < argc) {
      opt.world = atoi(argv[++i]);
      if (opt.world < 1) {
        fprintf(stderr, "idoc plan: --ranks: '%s' is not a positive count\n", argv[i]);
        rc = 2;
      }
    } else if (!strncmp(a, "bf16=", 5)) {
      opt.bf16 = !strcmp(a + 5, "true") || !strcmp(a + 5, "1");
      if (!opt.bf16 && strcmp(a + 5, "false") && strcmp(a + 5, "0")) {
        fprintf(stderr, "idoc plan: bf16: '%s' is not true or false\n", a + 5);
        rc = 2;
      }
    } else if (strchr(a, '=')) {
      over[n_over++] = argv[i];
    } else if (!cfgpath && a[0] != '-') {
      cfgpath = a;
    } else {
      fprintf(stderr, "idoc plan: unexpected argument '%s' (idoc plan --help)\n", a);
      rc = 2;
    }
  }
  if (rc == 0 && !cfgpath) {
    fprintf(stderr, "idoc plan: give a config file (idoc plan --help)\n");
    rc = 2;
  }
  idoc_pipeline p = {0};
  if (rc == 0 && idoc_pipeline_load(cfgpath, &p)) {
    fprintf(stderr, "idoc plan: %s\n", idoc_last_error());
    rc = 1;
  }
  for (int i = 0; i < p.n && rc != IDOC_ERR; i++) {
    int r = plan_stage(p.files[i], n_over, over, &opt, mem);
    if (r == IDOC_ERR) fprintf(stderr, "idoc plan: %s\n", idoc_last_error());
    if (r) rc = 1;
  }
  idoc_pipeline_free(&p);
  free(over);
  return rc;
}
