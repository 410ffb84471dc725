// Minimal test harness: CHECK-style assertions that count failures, and a summary line that
// the CI reader understands ("N passed, N failed"). A test binary exits non-zero on any failure.
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
