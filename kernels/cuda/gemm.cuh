// Row-major GEMMs on cuBLAS (kernels/cuda/gemm.cu), shared by linear.cu and matmul: fp32
// compute (CUBLAS_COMPUTE_32F: no TF32, so f32 matches the CPU reference; bf16 operands use the
// tensor cores with fp32 accumulation). All operands share one storage dtype (f32 or bf16).
#pragma once
#include "kernels/cuda/common.cuh"

// Row-major C[M,N] = op(A)[M,K] op(B)[K,N] + beta C (op = transpose when t*), as idoc_sgemm;
// `kname` names the calling kernel in error messages. K = 0 gives C = beta C.
void cu_gemm_rm(const char *kname, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
                int64_t lda, const void *B, int64_t ldb, float beta, void *C, int64_t ldc,
                idoc_dtype dt);
// The same for `batch` problems whose operands lie sa / sb / sc elements apart.
void cu_gemm_rm_batched(const char *kname, bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                        const void *A, int64_t lda, int64_t sa, const void *B, int64_t ldb,
                        int64_t sb, float beta, void *C, int64_t ldc, int64_t sc, int64_t batch,
                        idoc_dtype dt);
