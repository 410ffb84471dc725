// The `idoc` subcommands. Each is `int idoc_cmd_NAME(int argc, char **argv)` (argv[0] is the
// subcommand name), returns a process exit code, and prints errors naming the file/key/field.
#pragma once

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
