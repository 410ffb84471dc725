// Linear layer on cuBLAS: GEMMs with fp32 compute (CUBLAS_COMPUTE_32F: no TF32, so f32 matches
// the CPU reference; bf16 operands use the tensor cores with fp32 accumulation), the bias as a
// prefill of y that the GEMM accumulates onto, and db as a deterministic column reduction.
#include <limits.h>

#include "kernels/cuda/common.cuh"

static cudaDataType cu_type(idoc_dtype dt) {
  switch (dt) {
  case IDOC_F32: return CUDA_R_32F;
  case IDOC_BF16: return CUDA_R_16BF;
  default: idoc_die("cuda linear: dtype %s is not supported (f32, bf16)", idoc_dtype_name(dt));
  }
}

// Row-major C[M,N] = op(A)[M,K] op(B)[K,N] + beta C (op = transpose when t*), as idoc_sgemm.
// cuBLAS is column-major, where a row-major matrix is its transpose, so this is the
// column-major product C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
static void gemm_rm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                    const void *B, int64_t ldb, float beta, void *C, int64_t ldc, idoc_dtype dt) {
  if (M == 0 || N == 0) return;
  IDOC_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                 ldc <= INT_MAX,
             "cuda linear: GEMM dimensions exceed int range (%lld x %lld x %lld)", (long long)M,
             (long long)N, (long long)K);
  if (K == 0) { // empty sum: C = beta C
    if (beta == 0.0f)
      CUDA_CHECK(cudaMemsetAsync(C, 0, (size_t)(M * ldc) * idoc_dtype_size(dt), idoc_cu_stream()));
    return;
  }
  const float alpha = 1.0f;
  cudaDataType t = cu_type(dt);
  CUBLAS_CHECK(cublasGemmEx(idoc_cu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha, B, t,
                            (int)ldb, A, t, (int)lda, &beta, C, t, (int)ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

template <typename TY, typename TB>
__global__ void bias_fill_kernel(TY *y, const TB *b, int64_t n, int64_t out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * out;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = from_f<TY>(to_f(b[i % out]));
}

template <typename T> struct load2d {
  const T *p;
  int64_t ld;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(p[r * ld + c]);
  }
};

extern "C" void cuda_linear_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                                const idoc_tensor *b) {
  const char *k = "linear_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_on_gpu(k, w), cu_on_gpu(k, b);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, w);
  int64_t out = w->shape[0], in = w->shape[1], n = in ? idoc_numel(x) / in : 0;
  if (b && n * out > 0) {
    IDOC_CU_DISPATCH(y->dtype, k, TY, IDOC_CU_DISPATCH(b->dtype, k, TB, {
                       IDOC_LAUNCH((bias_fill_kernel<TY, TB>), cu_blocks(n * out), 256, 0,
                                   idoc_cu_stream())
                       ((TY *)y->data, (const TB *)b->data, n, out);
                     }));
    CUDA_LAUNCH_CHECK();
  }
  gemm_rm(false, true, n, out, in, x->data, in, w->data, in, b ? 1.0f : 0.0f, y->data, out,
          x->dtype);
}

extern "C" void cuda_linear_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                                const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *w) {
  const char *k = "linear_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, db), cu_on_gpu(k, dy), cu_on_gpu(k, x),
      cu_on_gpu(k, w);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, x, w), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, w);
  int64_t out = w->shape[0], in = w->shape[1], n = in ? idoc_numel(x) / in : 0;
  // dx[N,I] += dy[N,O] w[O,I];  dw[O,I] += dy[N,O]^T x[N,I]
  if (dx)
    gemm_rm(false, false, n, in, out, dy->data, out, w->data, in, 1.0f, dx->data, in, x->dtype);
  if (dw)
    gemm_rm(true, false, out, in, n, dy->data, out, x->data, in, 1.0f, dw->data, in, x->dtype);
  if (db) {
    IDOC_CU_DISPATCH(
        db->dtype, k, TB, IDOC_CU_DISPATCH(dy->dtype, k, TD, {
          colsum_accumulate((TB *)db->data, load2d<TD>{(const TD *)dy->data, out}, n, out);
        }));
  }
}
