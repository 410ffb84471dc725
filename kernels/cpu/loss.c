// Losses and reductions: fused softmax cross-entropy, sums, squared differences.
#include <math.h>

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

void cpu_cross_entropy_fwd(idoc_tensor *losses, idoc_tensor *lse, const idoc_tensor *logits,
                           const idoc_tensor *targets, int ignore_index) {
  CPU_F32("cross_entropy_fwd", losses, lse, logits);
  CPU_I32("cross_entropy_fwd", targets);
  int64_t n = logits->shape[0], v = logits->shape[1];
  const float *L = IDOC_F(logits);
  const int32_t *T = IDOC_I(targets);
  float *LS = IDOC_F(losses), *LSE = IDOC_F(lse);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *row = L + i * v;
    float mx = -INFINITY;
    for (int64_t j = 0; j < v; j++)
      mx = row[j] > mx ? row[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < v; j++)
      s += exp((double)row[j] - mx);
    double l = mx + log(s);
    LSE[i] = (float)l;
    if (T[i] == ignore_index) {
      LS[i] = 0.0f;
      continue;
    }
    IDOC_CHECK(T[i] >= 0 && T[i] < v, "cross_entropy: target %d outside [0, %lld)", T[i],
               (long long)v);
    LS[i] = (float)(l - row[T[i]]);
  }
}

void cpu_cross_entropy_bwd(idoc_tensor *dlogits, const idoc_tensor *logits, const idoc_tensor *lse,
                           const idoc_tensor *targets, int ignore_index, float dscale) {
  CPU_F32("cross_entropy_bwd", dlogits, logits, lse);
  CPU_I32("cross_entropy_bwd", targets);
  int64_t n = logits->shape[0], v = logits->shape[1];
  const float *L = IDOC_F(logits), *LSE = IDOC_F(lse);
  const int32_t *T = IDOC_I(targets);
  float *D = IDOC_F(dlogits);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    if (T[i] == ignore_index) continue;
    const float *row = L + i * v;
    float *drow = D + i * v;
    for (int64_t j = 0; j < v; j++)
      drow[j] += dscale * expf(row[j] - LSE[i]);
    drow[T[i]] -= dscale;
  }
}

// The upstream gradient of a mean over n items, read where it lives (host memory here).
static float mean_dscale(const char *kernel, const idoc_tensor *dout, float n) {
  CPU_F32(kernel, dout);
  IDOC_CHECK(idoc_numel(dout) >= 1, "cpu %s: dout is empty", kernel);
  return n > 0 ? IDOC_F(dout)[0] / n : 0.0f;
}

void cpu_cross_entropy_mean_bwd(idoc_tensor *dlogits, const idoc_tensor *logits,
                                const idoc_tensor *lse, const idoc_tensor *targets,
                                int ignore_index, const idoc_tensor *dout, float n) {
  if (!dlogits) return;
  cpu_cross_entropy_bwd(dlogits, logits, lse, targets, ignore_index,
                        mean_dscale("cross_entropy_mean_bwd", dout, n));
}

void cpu_sum(idoc_tensor *out, const idoc_tensor *x) {
  CPU_F32("sum", out, x);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x);
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++)
    s += X[i];
  IDOC_F(out)[0] = (float)s;
}

void cpu_sq_diff_sum(idoc_tensor *out, const idoc_tensor *p, const idoc_tensor *t) {
  CPU_F32("sq_diff_sum", out, p, t);
  int64_t n = idoc_numel(p);
  const float *P = IDOC_F(p), *T = IDOC_F(t);
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double d = (double)P[i] - T[i];
    s += d * d;
  }
  IDOC_F(out)[0] = (float)s;
}

void cpu_sq_diff_bwd(idoc_tensor *dp, const idoc_tensor *p, const idoc_tensor *t, float dscale) {
  CPU_F32("sq_diff_bwd", dp, p, t);
  int64_t n = idoc_numel(p);
  const float *P = IDOC_F(p), *T = IDOC_F(t);
  float *D = IDOC_F(dp);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    D[i] += dscale * 2.0f * (P[i] - T[i]);
}

void cpu_sq_diff_mean_bwd(idoc_tensor *dp, const idoc_tensor *p, const idoc_tensor *t,
                          const idoc_tensor *dout, float n) {
  if (!dp) return;
  cpu_sq_diff_bwd(dp, p, t, mean_dscale("sq_diff_mean_bwd", dout, n));
}

void cpu_fill_grad(idoc_tensor *dx, const idoc_tensor *dout, float s) {
  CPU_F32("fill_grad", dx, dout);
  int64_t n = idoc_numel(dx);
  float g = s * IDOC_F(dout)[0];
  float *D = IDOC_F(dx);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    D[i] += g;
}
