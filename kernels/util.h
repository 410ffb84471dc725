// Base helpers every layer uses: error reporting, checked allocation, RNG, clock, bf16/f16
// conversions.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Functions that can fail on user input return IDOC_OK or IDOC_ERR and leave a message (naming
// the file, key or field) for idoc_last_error(). Broken invariants in our own code abort.
// Also read by the CUDA sources (C++): keep this header valid C and C++.
#define IDOC_NORETURN __attribute__((noreturn))

#define IDOC_OK 0
#define IDOC_ERR (-1)

int idoc_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefix the current error message ("context: previous message"); returns IDOC_ERR.
int idoc_wrap_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *idoc_last_error(void);
void idoc_clear_error(void);

IDOC_NORETURN void idoc_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define idoc_die(...) idoc_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define IDOC_CHECK(cond, ...)                                                                      \
  do {                                                                                             \
    if (!(cond)) idoc_die_at(__FILE__, __LINE__, __VA_ARGS__);                                     \
  } while (0)

// snprintf that aborts on truncation (for building names that must be complete).
void idoc_sfmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void *idoc_xmalloc(size_t n);
void *idoc_xcalloc(size_t n, size_t size);
void *idoc_xrealloc(void *p, size_t n);
char *idoc_xstrdup(const char *s);

// xoshiro256** seeded through splitmix64: fast, reproducible across platforms.
typedef struct {
  uint64_t s[4];
} idoc_rng;
void idoc_rng_seed(idoc_rng *r, uint64_t seed);
uint64_t idoc_rng_u64(idoc_rng *r);
double idoc_rng_uniform(idoc_rng *r);             // [0, 1)
double idoc_rng_normal(idoc_rng *r);              // N(0, 1), Box-Muller
uint64_t idoc_rng_below(idoc_rng *r, uint64_t n); // uniform in [0, n)

double idoc_now(void); // monotonic seconds

// A process-wide progress counter: bumped by tensor allocations and file-system mutations (and
// anything else that wants to show it is not stuck). The distributed watchdog (nn/comm.h) reads
// it to tell a hung rank from a busy one. Thread-safe, a relaxed atomic increment.
void idoc_progress_tick(void);
uint64_t idoc_progress_ticks(void);

// A YAML-style boolean (true/True/TRUE/yes/on/1, false/False/FALSE/no/off/0) into *out;
// false when v is none of them.
bool idoc_parse_bool(const char *v, bool *out);

// bf16 <-> f32 (round to nearest even; NaN stays NaN).
static inline uint16_t idoc_f32_to_bf16(float f) {
  union {
    float f;
    uint32_t u;
  } v = {f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); // quiet NaN
  uint32_t lsb = (v.u >> 16) & 1u;
  v.u += 0x7fffu + lsb;
  return (uint16_t)(v.u >> 16);
}
static inline float idoc_bf16_to_f32(uint16_t h) {
  union {
    uint32_t u;
    float f;
  } v = {(uint32_t)h << 16};
  return v.f;
}
float idoc_f16_to_f32(uint16_t h);
uint16_t idoc_f32_to_f16(float f);
