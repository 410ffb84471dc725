// The `idoc` command table and dispatch (what cli/main.c runs; tests call it too).
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "nn/comm.h"
#if IDOC_TRAINER
#include "stage/dist.h"
#endif

static const idoc_command commands[] = {
    {"smoke", idoc_cmd_smoke, "train a tiny two-layer transformer on a synthetic task (seconds)"},
    {"convert", idoc_cmd_convert, "re-save a Qwen2.5-VL / ImageDoctor checkpoint in HF layout"},
    {"attach-decoder", idoc_cmd_attach_decoder,
     "add a freshly initialized heatmap decoder to a stage-1 checkpoint"},
    {"bench", idoc_cmd_bench,
     "time kernels, training steps, generation, image preprocessing: `bench kernels|train|...`"},
#if IDOC_HAVE_PCRE2 && IDOC_HAVE_UTF8PROC && IDOC_HAVE_CJSON
    {"tokenize", idoc_cmd_tokenize, "tokenize text with a tokenizer.json (ids out, and back)"},
#endif
#if IDOC_HAVE_HDF5 && IDOC_HAVE_PNG
    {"data", idoc_cmd_data, "make, convert and inspect HDF5 datasets (synth, convert-richhf, ...)"},
#endif
#if IDOC_TRAINER
    {"train", idoc_cmd_train,
     "train a stage or a pipeline from a YAML config (none: tiny pipeline)"},
    {"plan", idoc_cmd_plan,
     "the memory a run takes (weights, optimizer, activations, peak); fits?"},
    {"eval", idoc_cmd_eval, "evaluate a checkpoint on a split: PLCC/SRCC and heatmap metrics"},
    {"predict", idoc_cmd_predict, "judge one image: reasoning, scores, heatmaps as PNG"},
#endif
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f) {
  fprintf(f, "usage: idoc COMMAND [ARGS...]\n\n"
             "ImageDoctor.c: train and evaluate ImageDoctor (Qwen2.5-VL + heatmap decoder).\n\n"
             "commands:\n");
  for (int i = 0; i < n_commands; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`idoc COMMAND --help` describes a command.\n");
}

const idoc_command *idoc_cli_commands(int *n) {
  *n = n_commands;
  return commands;
}

static bool is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

int idoc_cli_main(int argc, char **argv) {
  if (argc < 2) {
    usage(stdout);
#if IDOC_TRAINER
    printf("\nno command given: running the tiny pipeline (`idoc train`)\n\n");
    char *args[] = {"train", NULL};
    return idoc_cmd_train(1, args);
#else
    printf("\nno command given; this build lacks the trainer's libraries (libyaml, HDF5, PCRE2,\n"
           "utf8proc, cJSON, libpng): running the tiny smoke training instead\n\n");
    char *args[] = {"smoke", NULL};
    return idoc_cmd_smoke(1, args);
#endif
  }
  if (is_help(argv[1]) || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  for (int i = 0; i < n_commands; i++) {
    if (strcmp(argv[1], commands[i].name)) continue;
    // --help anywhere (`idoc data show --help`) asks the command for its usage, whatever the
    // other arguments are.
    for (int k = 2; k < argc; k++)
      if (is_help(argv[k])) {
        char *help[3] = {argv[1], "--help", NULL};
        return commands[i].run(2, help);
      }
    return commands[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr, "idoc: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

int idoc_cli_exit(int rc) {
  bool stopped = false;
#if IDOC_TRAINER
  stopped = idoc_dp_stopped_by_signal();
#endif
  fflush(stdout);
  idoc_comm_shutdown(rc == 0 || stopped);
  return stopped ? 143 : rc;
}
