// Row-major GEMMs on cuBLAS (declared in gemm.cuh) and the batched matmul kernel.
//
// cuBLAS is column-major, where a row-major matrix is its transpose, so the row-major product
// C = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T: swap the operands, keep the
// flags (and the leading dimensions, which are the row lengths of the row-major storage).
#include <limits.h>

#include "kernels/cuda/gemm.cuh"

static cudaDataType cu_type(const char *kname, idoc_dtype dt) {
  switch (dt) {
  case IDOC_F32: return CUDA_R_32F;
  case IDOC_BF16: return CUDA_R_16BF;
  default: idoc_die("cuda %s: dtype %s is not supported (f32, bf16)", kname, idoc_dtype_name(dt));
  }
}

// Shared checks and the K = 0 case; false when there is nothing left for cuBLAS to do.
static bool gemm_prepare(const char *kname, int64_t M, int64_t N, int64_t K, int64_t lda,
                         int64_t ldb, float beta, void *C, int64_t ldc, int64_t sc, int64_t batch,
                         idoc_dtype dt) {
  if (M == 0 || N == 0 || batch == 0) return false;
  IDOC_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                 ldc <= INT_MAX && batch <= INT_MAX,
             "cuda %s: GEMM dimensions exceed int range (%lld x %lld x %lld, batch %lld)", kname,
             (long long)M, (long long)N, (long long)K, (long long)batch);
  if (K > 0) return true;
  if (beta == 0.0f) { // empty sum: C = 0 (C = beta C is C itself for beta = 1)
    size_t es = idoc_dtype_size(dt), rows = (size_t)(M * ldc);
    if (sc == M * ldc)
      CUDA_CHECK(cudaMemsetAsync(C, 0, rows * (size_t)batch * es, idoc_cu_stream()));
    else
      for (int64_t i = 0; i < batch; i++)
        CUDA_CHECK(
            cudaMemsetAsync((char *)C + (size_t)(i * sc) * es, 0, rows * es, idoc_cu_stream()));
  } else {
    IDOC_CHECK(beta == 1.0f, "cuda %s: K = 0 GEMM with beta %g", kname, (double)beta);
  }
  return false;
}

void cu_gemm_rm(const char *kname, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
                int64_t lda, const void *B, int64_t ldb, float beta, void *C, int64_t ldc,
                idoc_dtype dt) {
  if (!gemm_prepare(kname, M, N, K, lda, ldb, beta, C, ldc, M * ldc, 1, dt)) return;
  const float alpha = 1.0f;
  cudaDataType t = cu_type(kname, dt);
  CUBLAS_CHECK(cublasGemmEx(idoc_cu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B, t,
                            (int)ldb, A, t, (int)lda, &beta, C, t, (int)ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void cu_gemm_rm_batched(const char *kname, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        const void *A, int64_t lda, int64_t sa, const void *B, int64_t ldb,
                        int64_t sb, float beta, void *C, int64_t ldc, int64_t sc, int64_t batch,
                        idoc_dtype dt) {
  if (!gemm_prepare(kname, M, N, K, lda, ldb, beta, C, ldc, sc, batch, dt)) return;
  const float alpha = 1.0f;
  cudaDataType t = cu_type(kname, dt);
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      idoc_cu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N,
      (int)M, (int)K, &alpha, B, t, (int)ldb, (long long)sb, A, t, (int)lda, (long long)sa, &beta,
      C, t, (int)ldc, (long long)sc, (int)batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out[B, M, N] (+)= op(a) op(b) with a [B, ar, ac] and b [B, br, bc] (2-D: B = 1), as cpu_matmul.
extern "C" void cuda_matmul(idoc_tensor *out, const idoc_tensor *a, const idoc_tensor *b,
                            bool trans_a, bool trans_b, bool accumulate) {
  const char *k = "matmul";
  cu_on_gpu(k, out), cu_on_gpu(k, a), cu_on_gpu(k, b);
  cu_same_dtype(k, out, a), cu_same_dtype(k, a, b);
  IDOC_CHECK(a->ndim >= 2 && b->ndim >= 2 && out->ndim >= 2, "cuda matmul: operands must be 2-D+");
  int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
  int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
  int64_t m = trans_a ? ac : ar, kk = trans_a ? ar : ac, n = trans_b ? br : bc;
  IDOC_CHECK((trans_b ? bc : br) == kk && out->shape[out->ndim - 2] == m &&
                 out->shape[out->ndim - 1] == n,
             "cuda matmul: shapes do not match");
  int64_t batch = m * n > 0 ? idoc_numel(out) / (m * n) : 0;
  IDOC_CHECK(batch == 0 || (idoc_numel(a) == batch * ar * ac && idoc_numel(b) == batch * br * bc),
             "cuda matmul: operands do not have the output's %lld batches", (long long)batch);
  cu_gemm_rm_batched(k, trans_a, trans_b, m, n, kk, a->data, ac, ar * ac, b->data, bc, br * bc,
                     accumulate ? 1.0f : 0.0f, out->data, n, m * n, batch, out->dtype);
}
