// Shared by the trainer tests: a small synthetic split, reading fields of trainer_log.jsonl, and
// a training run in a separate process that is SIGKILLed once a checkpoint appears.
#pragma once
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "nn/util.h"

// dir/data/{train,test}.h5: 16 and 2 synthetic samples at 112 px.
static inline int make_small_split(const char *dir) {
  char out[512];
  snprintf(out, sizeof out, "%s/data", dir);
  char *synth[] = {"data", "synth",  "--out", out,      "--train", "16",     "--val",
                   "0",    "--test", "2",     "--size", "112",     "--seed", "5"};
  return idoc_cmd_data(14, synth);
}

// The values of `field` (e.g. "\"loss\": ") in the log lines whose current_steps lie in
// [from, to], as text (so bitwise equality is a string comparison). Returns how many.
static inline int read_field(const char *out, const char *field, int from, int to,
                             char values[][32]) {
  char p[512], *data;
  size_t n;
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", out);
  if (idoc_read_file(p, &data, &n)) return -1;
  int k = 0;
  size_t fl = strlen(field);
  for (char *s = data; s && *s;) {
    char *nl = strchr(s, '\n');
    if (nl) *nl = 0;
    char *a = strstr(s, "\"current_steps\": "), *b = strstr(s, field);
    if (a && b) {
      int st = atoi(a + 17);
      if (st >= from && st <= to) {
        char *e = strchr(b + fl, ',');
        snprintf(values[k++], 32, "%.*s", (int)(e ? e - (b + fl) : 20), b + fl);
      }
    }
    s = nl ? nl + 1 : NULL;
  }
  free(data);
  return k;
}

// Runs this test binary again as `argv0 --child` (a fresh process: OpenMP does not survive a
// bare fork) and SIGKILLs it as soon as `ckpt` exists. Returns the wait status.
static inline int run_and_kill(const char *argv0, const char *ckpt) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/proc/self/exe", argv0, "--child", (char *)NULL);
    _exit(4);
  }
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < 600000 && !idoc_file_exists(ckpt); i++)
    nanosleep(&ms, NULL);
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  return status;
}
