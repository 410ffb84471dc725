// AdamW (decoupled weight decay, bias-corrected moments) and the squared-norm reduction used
// for global gradient clipping.
#include <math.h>

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

void cpu_adamw_step(idoc_tensor *w, const idoc_tensor *g, idoc_tensor *m, idoc_tensor *v, float lr,
                    float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                    int step) {
  CPU_F32("adamw_step", w, g, m, v);
  int64_t n = idoc_numel(w);
  float *W = IDOC_F(w), *M = IDOC_F(m), *V = IDOC_F(v);
  const float *G = IDOC_F(g);
  // The arithmetic of torch.optim.AdamW (single-tensor path): scalars in double, then rounded
  // to f32; m via lerp; denom = sqrt(v) / sqrt(bc2) + eps.
  double bc1 = 1.0 - pow((double)beta1, step), bc2 = 1.0 - pow((double)beta2, step);
  float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  float decay = (float)(1.0 - (double)lr * weight_decay), w1 = (float)(1.0 - (double)beta1);
  float w2 = (float)(1.0 - (double)beta2);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float gi = grad_scale == 1.0f ? G[i] : G[i] * grad_scale;
    if (weight_decay != 0.0f) W[i] *= decay;
    M[i] += w1 * (gi - M[i]);
    V[i] = V[i] * beta2 + w2 * gi * gi;
    float denom = sqrtf(V[i]) / bc2_sqrt + eps;
    W[i] += -step_size * (M[i] / denom);
  }
}

void cpu_sumsq(idoc_tensor *out, const idoc_tensor *x) {
  CPU_F32("sumsq", out, x);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x);
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (int64_t i = 0; i < n; i++)
    s += (double)X[i] * X[i];
  IDOC_F(out)[0] += (float)s;
}

void cpu_grad_accumulate(idoc_tensor *acc, idoc_tensor *g) {
  IDOC_CHECK((acc->dtype == IDOC_F64 || acc->dtype == IDOC_F32) && g->dtype == IDOC_F32 &&
                 idoc_numel(acc) == idoc_numel(g),
             "grad_accumulate: acc f64/f32 and g f32 of one size needed");
  int64_t n = idoc_numel(g);
  float *G = IDOC_F(g);
  if (acc->dtype == IDOC_F64) {
    double *A = acc->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
      A[i] += G[i];
  } else {
    float *A = IDOC_F(acc);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
      A[i] += G[i];
  }
  if (n) memset(G, 0, (size_t)n * sizeof(float));
}

void cpu_grad_round_f64(idoc_tensor *g, const idoc_tensor *acc) {
  IDOC_CHECK(acc->dtype == IDOC_F64 && g->dtype == IDOC_F32 && idoc_numel(acc) == idoc_numel(g),
             "grad_round_f64: acc f64 and g f32 of one size needed");
  int64_t n = idoc_numel(g);
  const double *A = acc->data;
  float *G = IDOC_F(g);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    G[i] = (float)A[i];
}
