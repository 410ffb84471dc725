// The `idoc` subcommands. Each is `int idoc_cmd_NAME(int argc, char **argv)` (argv[0] is the
// subcommand name), returns a process exit code, and prints errors naming the file/key/field.
#pragma once

// The trainer needs every optional library of the data and training path.
#define IDOC_TRAINER                                                                               \
  (IDOC_HAVE_YAML && IDOC_HAVE_HDF5 && IDOC_HAVE_PCRE2 && IDOC_HAVE_UTF8PROC && IDOC_HAVE_CJSON && \
   IDOC_HAVE_PNG)

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} idoc_command;

int idoc_cmd_smoke(int argc, char **argv);
int idoc_cmd_convert(int argc, char **argv);
int idoc_cmd_attach_decoder(int argc, char **argv);
int idoc_cmd_tokenize(int argc, char **argv);
int idoc_cmd_bench(int argc, char **argv);
int idoc_cmd_data(int argc, char **argv);
int idoc_cmd_train(int argc, char **argv);
int idoc_cmd_plan(int argc, char **argv);
int idoc_cmd_eval(int argc, char **argv);
int idoc_cmd_predict(int argc, char **argv);

// The command table (name, entry point, one-line summary) and the dispatch `main` runs:
// `idoc COMMAND ARGS...`, with --help anywhere answered by the command's usage.
const idoc_command *idoc_cli_commands(int *n);
int idoc_cli_main(int argc, char **argv);
// The process's exit status for a command's result: leaves the distributed job (cleanly when
// the command succeeded or a stage stopped for a signal, which gives status 143; otherwise
// the job is ended with this rank's error, nn/comm.h).
int idoc_cli_exit(int rc);
