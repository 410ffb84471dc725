// Next-token choice: transformers' logits processors and warpers with min_tokens_to_keep = 1,
// as the sample_tokens kernel (kernels/ops.h) applies them on the CPU and on CUDA. The sequential
// pieces (top-p's weighted quickselect, the inverse-CDF draw) are written once here and run on
// the host and on a CUDA thread alike (IDOC_HD), so both devices pick the same token from the
// same values and the same uniform draw.
#pragma once
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define IDOC_HD __host__ __device__
#else
#define IDOC_HD
#endif

typedef struct {
  float v, p; // value; probability (top-p's scratch)
  int32_t i;  // token id
} idoc_sample_cand;

typedef struct {
  bool do_sample;           // false: greedy (the first maximum, as torch.argmax)
  float temperature, top_p; // sampling; top_p in (0, 1], 1: off
  int top_k;                // <= 0: off
  float penalty;            // repetition penalty on the tokens marked seen (1: off)
} idoc_sample_opts;

// ---- the sequential pieces
// ----------------------------------------------------------------------
static inline IDOC_HD bool idoc_sample_before(idoc_sample_cand a, idoc_sample_cand b) {
  return a.v > b.v || (a.v == b.v && a.i < b.i); // descending value, then ascending index
}

static inline IDOC_HD void idoc_sample_swap(idoc_sample_cand *a, idoc_sample_cand *b) {
  idoc_sample_cand t = *a;
  *a = *b;
  *b = t;
}

// Partitions a[lo..hi] (inclusive) around a median-of-three pivot in `before` order; returns
// the pivot's final index (everything left of it comes before it).
static inline IDOC_HD int idoc_sample_partition(idoc_sample_cand *a, int lo, int hi) {
  int mid = lo + (hi - lo) / 2;
  if (idoc_sample_before(a[mid], a[lo])) idoc_sample_swap(&a[mid], &a[lo]);
  if (idoc_sample_before(a[hi], a[lo])) idoc_sample_swap(&a[hi], &a[lo]);
  if (idoc_sample_before(a[mid], a[hi])) idoc_sample_swap(&a[mid], &a[hi]);
  idoc_sample_cand pv = a[hi];
  int st = lo;
  for (int i = lo; i < hi; i++)
    if (idoc_sample_before(a[i], pv)) idoc_sample_swap(&a[i], &a[st++]);
  idoc_sample_swap(&a[st], &a[hi]);
  return st;
}

// Top-p's threshold over the n candidates a[] (in index order, all finite): their
// probabilities softmax(v) (exp in float, the sum in double in index order), then the number
// kept: walking down from the most likely, token i is kept while the mass above it is < top_p
// (the dropped tokens are the least likely ones whose cumulative mass stays <= 1 - top_p); the
// first is always kept. A quickselect weighted by probability finds that prefix in expected
// O(n) without sorting. Returns the smallest kept value (ties with it stay), or -INFINITY when
// everything stays.
static inline IDOC_HD float idoc_sample_top_p(idoc_sample_cand *a, int n, double top_p) {
  float mx = -INFINITY;
  for (int i = 0; i < n; i++)
    mx = a[i].v > mx ? a[i].v : mx;
  double total = 0;
  for (int i = 0; i < n; i++)
    total += a[i].p = expf(a[i].v - mx);
  for (int i = 0; i < n; i++)
    a[i].p = (float)(a[i].p / total);
  int lo = 0, hi = n; // unresolved range; a[0..lo) are kept, `above` is their mass
  double above = 0;
  while (lo < hi) {
    int st = idoc_sample_partition(a, lo, hi - 1);
    double mass = 0; // candidates in [lo, st) come before the pivot
    for (int i = lo; i < st; i++)
      mass += a[i].p;
    if (above + mass >= top_p && (lo > 0 || st > lo)) {
      hi = st; // the pivot and everything after it go; the boundary lies in [lo, st)
    } else {
      above += mass + a[st].p; // [lo, st] all kept
      lo = st + 1;
    }
  }
  int keep = lo > 0 ? lo : 1;
  if (keep >= n) return -INFINITY;
  float thr = a[0].v;
  for (int i = 1; i < keep; i++)
    thr = a[i].v < thr ? a[i].v : thr;
  return thr;
}

// The softmax draw over n values x[] in index order (-INFINITY entries have probability 0) for
// a uniform u in [0, 1): the position where the cumulative probability first exceeds u
// (expf in float, sums in double). -1 when every entry is -INFINITY. `stride` steps between
// consecutive values (x may be the v field of idoc_sample_cand records).
static inline IDOC_HD int idoc_sample_draw_strided(const float *x, int n, int stride, double u) {
  float mx = -INFINITY;
  int last = -1;
  for (int i = 0; i < n; i++) {
    float v = x[(int64_t)i * stride];
    if (v > -INFINITY) {
      mx = v > mx ? v : mx;
      last = i;
    }
  }
  if (last < 0) return -1;
  double total = 0;
  for (int i = 0; i < n; i++) {
    float v = x[(int64_t)i * stride];
    if (v > -INFINITY) total += expf(v - mx);
  }
  double target = u * total, acc = 0;
  for (int i = 0; i < n; i++) {
    float v = x[(int64_t)i * stride];
    if (v > -INFINITY) {
      acc += expf(v - mx);
      if (acc > target) return i;
    }
  }
  return last; // u * total rounded up to the full sum
}

// ---- host entry points (kernels/cpu/sample.c)
// -----------------------------------------------------------------
#ifdef __cplusplus
extern "C" {
#endif
// The warpers in generate()'s order: TemperatureLogitsWarper, TopKLogitsWarper (ties with the
// k-th value stay), TopPLogitsWarper. In place on x[V]: kept entries become x / temperature,
// the others -INFINITY (-INFINITY and NaN entries stay out). scratch holds V candidates.
// Returns the number kept (0 only when no entry was finite).
int idoc_sample_warp(float *x, int V, float temperature, int top_k, float top_p,
                     idoc_sample_cand *scratch);
// Index of the softmax draw from x[V] for a uniform u in [0, 1): the first index where the
// cumulative probability in index order exceeds u; -1 when every entry is -INFINITY.
int idoc_sample_draw(const float *x, int V, double u);
#ifdef __cplusplus
}
#endif
