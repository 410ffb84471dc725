#include "kernels/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char g_err[2048];

int idoc_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return IDOC_ERR;
}

int idoc_wrap_error(const char *fmt, ...) {
  char prefix[1024], prev[sizeof g_err];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(prev, g_err, sizeof prev);
  // Truncation of very long messages is fine; the front (the context) matters most.
  size_t k = strlen(prefix);
  if (k > sizeof g_err - 3) k = sizeof g_err - 3;
  memcpy(g_err, prefix, k);
  memcpy(g_err + k, ": ", 2);
  size_t room = sizeof g_err - k - 3, pl = strlen(prev);
  if (pl > room) pl = room;
  memcpy(g_err + k + 2, prev, pl);
  g_err[k + 2 + pl] = 0;
  return IDOC_ERR;
}

const char *idoc_last_error(void) { return g_err[0] ? g_err : "no error"; }
void idoc_clear_error(void) { g_err[0] = 0; }

IDOC_NORETURN void idoc_die_at(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "idoc: fatal: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (%s:%d)\n", file, line);
  abort();
}

void idoc_sfmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  IDOC_CHECK(k >= 0 && (size_t)k < n, "name too long (%d bytes) for a %zu-byte buffer", k, n);
}

void *idoc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  IDOC_CHECK(p, "out of memory allocating %zu bytes", n);
  return p;
}
void *idoc_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  IDOC_CHECK(p, "out of memory allocating %zu x %zu bytes", n, size);
  return p;
}
void *idoc_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  IDOC_CHECK(q, "out of memory reallocating %zu bytes", n);
  return q;
}
char *idoc_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = idoc_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

// ---- RNG --------------------------------------------------------------------------------------
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
void idoc_rng_seed(idoc_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t idoc_rng_u64(idoc_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}
double idoc_rng_uniform(idoc_rng *r) { return (double)(idoc_rng_u64(r) >> 11) * 0x1.0p-53; }
double idoc_rng_normal(idoc_rng *r) {
  double u1 = idoc_rng_uniform(r), u2 = idoc_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
uint64_t idoc_rng_below(idoc_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, x; // rejection keeps it unbiased
  do
    x = idoc_rng_u64(r);
  while (x >= lim);
  return x % n;
}

static uint64_t g_ticks;
void idoc_progress_tick(void) { __atomic_fetch_add(&g_ticks, 1, __ATOMIC_RELAXED); }
uint64_t idoc_progress_ticks(void) { return __atomic_load_n(&g_ticks, __ATOMIC_RELAXED); }

double idoc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- files ------------------------------------------------------------------------------------
float idoc_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else { // subnormal: renormalize
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      man &= 0x3ff;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  union {
    uint32_t u;
    float f;
  } v = {u};
  return v.f;
}

uint16_t idoc_f32_to_f16(float f) {
  union {
    float f;
    uint32_t u;
  } v = {f};
  uint32_t u = v.u, sign = (u >> 16) & 0x8000;
  int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
  uint32_t man = u & 0x7fffff;
  if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
  if (exp >= 31) return (uint16_t)(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    man |= 0x800000;
    int shift = 14 - exp;
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)half;
}

bool idoc_parse_bool(const char *v, bool *out) {
  static const char *t[] = {"true", "True", "TRUE", "yes", "on", "1"};
  static const char *f[] = {"false", "False", "FALSE", "no", "off", "0"};
  for (int i = 0; i < 6; i++) {
    if (!strcmp(v, t[i])) return *out = true, true;
    if (!strcmp(v, f[i])) return *out = false, true;
  }
  return false;
}
