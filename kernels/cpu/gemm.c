#include "kernels/cpu/gemm.h"

#include <string.h>

#if IDOC_HAVE_BLAS
#include <cblas.h>

void idoc_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
              (int)ldb, beta, c, (int)ldc);
}

int idoc_sgemm_serial_begin(void) {
  int n = openblas_get_num_threads();
  openblas_set_num_threads(1);
  return n;
}
void idoc_sgemm_serial_end(int prev) { openblas_set_num_threads(prev); }

#else
// Fallback for machines without a BLAS: the core must build with only a C compiler. Blocks of
// C rows are spread over threads; the inner loop runs over contiguous rows of B (or B^T packed).
#include <stdlib.h>

void idoc_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc) {
  if (m == 0 || n == 0) return;
  // Pack B as [k, n] row-major so the innermost loop is contiguous.
  float *bp = NULL;
  const float *bk = b;
  int64_t ldbk = ldb;
  if (trans_b) {
    bp = malloc((size_t)(k * n > 0 ? k * n : 1) * sizeof(float));
    for (int64_t p = 0; p < k; p++)
      for (int64_t j = 0; j < n; j++)
        bp[p * n + j] = b[j * ldb + p];
    bk = bp;
    ldbk = n;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; i++) {
    float *ci = c + i * ldc;
    if (beta == 0.0f)
      memset(ci, 0, (size_t)n * sizeof(float));
    else if (beta != 1.0f)
      for (int64_t j = 0; j < n; j++)
        ci[j] *= beta;
    for (int64_t p = 0; p < k; p++) {
      float av = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
      const float *bpk = bk + p * ldbk;
      for (int64_t j = 0; j < n; j++)
        ci[j] += av * bpk[j];
    }
  }
  free(bp);
}
// The fallback's own parallel loop is inactive when nested in another parallel region.
int idoc_sgemm_serial_begin(void) { return 0; }
void idoc_sgemm_serial_end(int prev) { (void)prev; }
#endif
