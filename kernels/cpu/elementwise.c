// Elementwise arithmetic: add/mul with broadcast of b over a's leading dims, scale, axpy.
#include "kernels/cpu/check.h"
#include "kernels/ops.h"

void cpu_add_fwd(idoc_tensor *y, const idoc_tensor *a, const idoc_tensor *b) {
  CPU_F32("add_fwd", y, a, b);
  int64_t n = idoc_numel(a), nb = idoc_numel(b);
  const float *A = IDOC_F(a), *B = IDOC_F(b);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    Y[i] = A[i] + B[i % nb];
}

void cpu_add_bwd(idoc_tensor *da, idoc_tensor *db, const idoc_tensor *dy) {
  CPU_F32("add_bwd", da, db, dy);
  int64_t n = idoc_numel(dy);
  const float *D = IDOC_F(dy);
  if (da) {
    float *A = IDOC_F(da);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
      A[i] += D[i];
  }
  if (db) {
    int64_t nb = idoc_numel(db), rep = n / nb;
    float *B = IDOC_F(db);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < nb; j++) {
      double s = 0;
      for (int64_t r = 0; r < rep; r++)
        s += D[r * nb + j];
      B[j] += (float)s;
    }
  }
}

void cpu_mul_fwd(idoc_tensor *y, const idoc_tensor *a, const idoc_tensor *b) {
  CPU_F32("mul_fwd", y, a, b);
  int64_t n = idoc_numel(a), nb = idoc_numel(b);
  const float *A = IDOC_F(a), *B = IDOC_F(b);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    Y[i] = A[i] * B[i % nb];
}

void cpu_mul_bwd(idoc_tensor *da, idoc_tensor *db, const idoc_tensor *dy, const idoc_tensor *a,
                 const idoc_tensor *b) {
  CPU_F32("mul_bwd", da, db, dy, a, b);
  int64_t n = idoc_numel(dy), nb = idoc_numel(b);
  const float *D = IDOC_F(dy), *A = IDOC_F(a), *B = IDOC_F(b);
  if (da) {
    float *GA = IDOC_F(da);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
      GA[i] += D[i] * B[i % nb];
  }
  if (db) {
    int64_t rep = n / nb;
    float *GB = IDOC_F(db);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < nb; j++) {
      double s = 0;
      for (int64_t r = 0; r < rep; r++)
        s += (double)D[r * nb + j] * A[r * nb + j];
      GB[j] += (float)s;
    }
  }
}

void cpu_scale_fwd(idoc_tensor *y, const idoc_tensor *x, float s) {
  CPU_F32("scale_fwd", y, x);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    Y[i] = s * X[i];
}

void cpu_axpy(idoc_tensor *y, const idoc_tensor *x, float s) {
  CPU_F32("axpy", y, x);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    Y[i] += s * X[i];
}
