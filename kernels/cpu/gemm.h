// Row-major single-precision GEMM used by the CPU kernels:
// C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T, with leading dimensions.
// OpenBLAS (CBLAS) when the build has it, else a blocked OpenMP loop nest.
#pragma once
#include <stdbool.h>
#include <stdint.h>

void idoc_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc);

// For an OpenMP loop whose iterations each call idoc_sgemm: makes the GEMMs single-threaded
// while it runs (OpenBLAS threads nested in OpenMP oversubscribe the cores; measured 3-10x
// slower for attention tiles) and restores the previous setting. Kernels run one at a time on
// the host, so no other GEMM sees the temporary setting.
int idoc_sgemm_serial_begin(void);
void idoc_sgemm_serial_end(int prev);
