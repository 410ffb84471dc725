// Next-token choice on the host (kernels/sample.h): the warpers, the draw and the sample_tokens
// kernel, one row per thread.
#include "kernels/sample.h"

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

static int drop_below(float *x, int V, float thr) {
  int kept = 0;
  for (int i = 0; i < V; i++) {
    if (x[i] < thr) x[i] = -INFINITY;
    kept += x[i] > -INFINITY;
  }
  return kept;
}

static int finite_cands(const float *x, int V, idoc_sample_cand *c) {
  int n = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) c[n++] = (idoc_sample_cand){x[i], 0, i};
  return n;
}

// Quickselect: afterwards a[0..k) hold the k first candidates in `before` order (unsorted).
static void select_top(idoc_sample_cand *a, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi && k > lo && k <= hi) {
    int st = idoc_sample_partition(a, lo, hi);
    if (st == k || st == k - 1) return; // a[0..k) is settled either way
    if (st < k)
      lo = st + 1;
    else
      hi = st - 1;
  }
}

int idoc_sample_warp(float *x, int V, float temperature, int top_k, float top_p,
                     idoc_sample_cand *scratch) {
  int kept = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) {
      x[i] /= temperature;
      kept++;
    }
  if (top_k > 0 && top_k < kept) {
    int n = finite_cands(x, V, scratch);
    select_top(scratch, n, top_k);
    float kth = scratch[0].v; // the k-th largest value
    for (int i = 1; i < top_k; i++)
      kth = scratch[i].v < kth ? scratch[i].v : kth;
    kept = drop_below(x, V, kth);
  }
  if (top_p < 1.0f && kept > 1) {
    float thr = idoc_sample_top_p(scratch, finite_cands(x, V, scratch), (double)top_p);
    if (thr > -INFINITY) kept = drop_below(x, V, thr);
  }
  return kept;
}

int idoc_sample_draw(const float *x, int V, double u) {
  return idoc_sample_draw_strided(x, V, 1, u);
}

// log_softmax(row)[tok] and log_softmax(row / t)[tok] (float division, as the reference divides
// its logits) in one pass.
static void log_probs(const float *row, int V, int32_t tok, float t, float *lp, float *lps) {
  float mx = -INFINITY;
  for (int i = 0; i < V; i++)
    mx = row[i] > mx ? row[i] : mx; // (not fmaxf: a plain compare vectorizes)
  bool scaled = t > 0 && t != 1.0f;
  float mxs = scaled ? mx / t : mx; // row / t is monotone in row
  double sum = 0, sums = 0;
  for (int i = 0; i < V; i++) {
    sum += expf(row[i] - mx);
    if (scaled) sums += expf(row[i] / t - mxs);
  }
  *lp = (float)((double)row[tok] - mx - log(sum));
  *lps = scaled ? (float)((double)(row[tok] / t) - mxs - log(sums)) : *lp;
}

void cpu_sample_tokens(idoc_tensor *tok, idoc_tensor *logp, idoc_tensor *logp_scaled,
                       idoc_tensor *seen, idoc_tensor *work, const idoc_tensor *logits,
                       const idoc_tensor *rows, const idoc_tensor *slots, const idoc_tensor *forced,
                       const idoc_tensor *suppressed, const idoc_tensor *u,
                       const idoc_sample_opts *o) {
  CPU_F32("sample_tokens", logp, logp_scaled, work, logits);
  CPU_I32("sample_tokens", tok, rows, slots, forced);
  idoc_cpu_require("sample_tokens", IDOC_U8, IDOC_CPU_TENSORS(seen, suppressed));
  idoc_cpu_require("sample_tokens", IDOC_F64, IDOC_CPU_TENSORS(u));
  int64_t n = idoc_numel(tok), V = logits->shape[1];
  IDOC_CHECK(V <= INT32_MAX && (forced || (work && idoc_numel(work) >= n * 7 * V)),
             "cpu sample_tokens: work holds %lld floats, %lld rows of %lld tokens need 7 x that",
             work ? (long long)idoc_numel(work) : 0LL, (long long)n, (long long)V);
  IDOC_CHECK(!seen || slots, "cpu sample_tokens: seen without slots");
  IDOC_CHECK(forced || !o->do_sample || u, "cpu sample_tokens: sampling without uniform draws");
  const float *L = IDOC_F(logits);
  const int32_t *R = IDOC_I(rows), *F = forced ? IDOC_I(forced) : NULL;
  const int32_t *S = slots ? IDOC_I(slots) : NULL;
  const uint8_t *sup = suppressed ? suppressed->data : NULL;
  uint8_t *sn = seen ? seen->data : NULL;
  int32_t *TK = IDOC_I(tok);
  float pen = o->penalty;
#pragma omp parallel for schedule(dynamic)
  for (int64_t i = 0; i < n; i++) {
    const float *row = L + (int64_t)R[i] * V;
    int32_t t = F ? F[i] : -1;
    IDOC_CHECK(!F || (t >= 0 && t < V), "cpu sample_tokens: forced token %d outside [0, %lld)", t,
               (long long)V);
    if (!F) {
      float *x = IDOC_F(work) + i * 7 * V;
      const uint8_t *si = sn ? sn + (int64_t)S[i] * V : NULL;
      for (int64_t j = 0; j < V; j++) {
        float v = row[j];
        if (si && si[j]) v = v < 0 ? v * pen : v / pen;
        x[j] = sup && sup[j] ? -INFINITY : v;
      }
      if (o->do_sample) {
        idoc_sample_cand *sc = (idoc_sample_cand *)(x + V);
        t = idoc_sample_warp(x, (int)V, o->temperature, o->top_k, o->top_p, sc) > 0
                ? idoc_sample_draw(x, (int)V, ((const double *)u->data)[i])
                : 0; // every token suppressed
      } else {
        t = 0; // greedy: the first maximum, as torch.argmax
        for (int64_t j = 1; j < V; j++)
          if (x[j] > x[t]) t = (int32_t)j;
      }
    }
    TK[i] = t;
    log_probs(row, (int)V, t, o->temperature, IDOC_F(logp) + i, IDOC_F(logp_scaled) + i);
  }
  for (int64_t i = 0; i < n && sn; i++) // after the choices, which read the marks
    sn[(int64_t)S[i] * V + TK[i]] = 1;
}
