// Minimal test harness: CHECK-style assertions that count failures, and a summary line that
// the CI reader understands ("N passed, N failed"). A test binary exits non-zero on any failure.
#pragma once
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int t_pass, t_fail, t_skip;

#define T_CHECK(cond, ...)                                                                         \
  do {                                                                                             \
    if (cond) {                                                                                    \
      t_pass++;                                                                                    \
    } else {                                                                                       \
      t_fail++;                                                                                    \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                              \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
    }                                                                                              \
  } while (0)

// |got - want| <= atol + rtol * |want|
#define T_CLOSE(got, want, atol, rtol)                                                             \
  do {                                                                                             \
    double g_ = (double)(got), w_ = (double)(want);                                                \
    T_CHECK(fabs(g_ - w_) <= (atol) + (rtol)*fabs(w_), "%s = %.9g, want %.9g", #got, g_, w_);      \
  } while (0)

#define T_SKIP(...)                                                                                \
  do {                                                                                             \
    t_skip++;                                                                                      \
    printf("SKIP: ");                                                                              \
    printf(__VA_ARGS__);                                                                           \
    printf("\n");                                                                                  \
  } while (0)

static inline int t_summary(const char *name) {
  printf("%s: %d passed, %d failed, %d skipped\n", name, t_pass, t_fail, t_skip);
  return t_fail ? 1 : 0;
}

// Runs fn(arg) in a child process with its stderr captured; true when the child ends with a
// non-zero status or a signal and its stderr contains `want` (the stderr text goes to err).
static inline bool t_dies_with(void (*fn)(void *), void *arg, const char *want, char *err,
                               size_t n) {
  int fd[2];
  if (pipe(fd) != 0) return false;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    fn(arg);
    _exit(0);
  }
  close(fd[1]);
  size_t k = 0;
  ssize_t r;
  while (k + 1 < n && (r = read(fd[0], err + k, n - 1 - k)) > 0)
    k += (size_t)r;
  err[k] = 0;
  char sink[256];
  while (read(fd[0], sink, sizeof sink) > 0) {
  }
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  bool died = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
  return died && strstr(err, want) != NULL;
}
