// idoc-requires: blas
// cuBLAS for the host SIMT simulator: GEMMs run as CBLAS column-major sgemm with exactly the
// arguments cuBLAS was given. Parameters are validated as the cuBLAS documentation states
// (CUBLAS_STATUS_INVALID_VALUE for bad sizes or leading dimensions, NOT_SUPPORTED for type
// combinations cublasGemmEx does not offer), every matrix must lie inside device memory, and
// beta == 0 means C is not read. bf16/f16 operands are widened to f32 and the result rounded to
// nearest even on store, as fp32-accumulating tensor-core GEMMs do; the TF32/BF16/F16 "fast"
// compute types and CUBLAS_TF32_TENSOR_OP_MATH round the inputs to that precision first, so a
// GEMM that asks for reduced precision is as inaccurate here as on the GPU.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cublas_v2.h"
#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "kernels/cuda/sim/sim.h"

struct cublasContext {
  cudaStream_t stream;
  cublasMath_t math;
  cublasPointerMode_t pointer_mode;
};

namespace idoc_sim {

enum input_rounding { R_NONE, R_TF32, R_BF16, R_F16 };

static float round_input(float v, input_rounding r) {
  switch (r) {
  case R_NONE: return v;
  case R_TF32: { // cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero
    uint32_t u = f32_bits(v);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return bits_f32(u);
  }
  case R_BF16: return __bfloat162float(__float2bfloat16_rn(v));
  case R_F16: return __half2float(__float2half_rn(v));
  }
  return v;
}

static float load(const void *p, cudaDataType t, size_t i) {
  switch (t) {
  case CUDA_R_32F: return ((const float *)p)[i];
  case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
  default: abort();
  }
}
static void store(void *p, cudaDataType t, size_t i, float v) {
  switch (t) {
  case CUDA_R_32F: ((float *)p)[i] = v; break;
  case CUDA_R_16BF: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
  case CUDA_R_16F: ((__half *)p)[i] = __float2half_rn(v); break;
  default: abort();
  }
}
static size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// The column-major rows x cols matrix at p (leading dimension ld) must be device memory.
static void require_matrix(const char *api, const char *name, const void *p, cudaDataType t,
                           int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return;
  size_t n = ((size_t)ld * (size_t)(cols - 1) + (size_t)rows) * type_size(t);
  if (!heap_contains(p, n))
    fail("%s: %s (%d x %d, leading dimension %d: %zu bytes at %p) is not inside one device "
         "allocation",
         api, name, rows, cols, ld, n, p);
}

// A copy of the matrix as f32 with the same leading dimension (entries outside rows x cols are
// zero), rounded as the compute type says.
static void widen(std::vector<float> &out, const void *p, cudaDataType t, int rows, int cols,
                  int ld, input_rounding r) {
  out.assign((size_t)ld * (size_t)cols, 0.0f);
  for (int c = 0; c < cols; c++)
    for (int i = 0; i < rows; i++) {
      size_t k = (size_t)c * ld + i;
      out[k] = round_input(load(p, t, k), r);
    }
}

static bool good_op(cublasOperation_t o) {
  return o == CUBLAS_OP_N || o == CUBLAS_OP_T || o == CUBLAS_OP_C;
}
static CBLAS_TRANSPOSE cblas_op(cublasOperation_t o) {
  return o == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; // OP_C is OP_T for real types
}

static cublasStatus_t gemm(const char *api, cublasHandle_t h, cublasOperation_t ta,
                           cublasOperation_t tb, int m, int n, int k, const void *alpha,
                           const void *A, cudaDataType at, int lda, long long sa, const void *B,
                           cudaDataType bt, int ldb, long long sb, const void *beta, void *C,
                           cudaDataType ct, int ldc, long long sc, int batch,
                           cublasComputeType_t compute) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!good_op(ta) || !good_op(tb) || m < 0 || n < 0 || k < 0 || batch < 0 || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
  int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
  if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  input_rounding r = R_NONE;
  bool f32 = at == CUDA_R_32F && bt == CUDA_R_32F && ct == CUDA_R_32F;
  bool lowp = at == bt && (at == CUDA_R_16BF || at == CUDA_R_16F) && (ct == at || ct == CUDA_R_32F);
  switch (compute) {
  case CUBLAS_COMPUTE_32F:
  case CUBLAS_COMPUTE_32F_PEDANTIC:
    if (!f32 && !lowp) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (f32 && compute == CUBLAS_COMPUTE_32F && h->math == CUBLAS_TF32_TENSOR_OP_MATH) r = R_TF32;
    break;
  case CUBLAS_COMPUTE_32F_FAST_TF32:
  case CUBLAS_COMPUTE_32F_FAST_16BF:
  case CUBLAS_COMPUTE_32F_FAST_16F:
    if (!f32) return CUBLAS_STATUS_NOT_SUPPORTED;
    r = compute == CUBLAS_COMPUTE_32F_FAST_TF32   ? R_TF32
        : compute == CUBLAS_COMPUTE_32F_FAST_16BF ? R_BF16
                                                  : R_F16;
    break;
  default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  device_scope scope;
  float al, be;
  if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE && !heap_contains(alpha, 4))
    fail("%s: alpha is not device memory in CUBLAS_POINTER_MODE_DEVICE", api);
  memcpy(&al, alpha, 4);
  memcpy(&be, beta, 4);
  std::vector<float> fa, fb, fc;
  for (int i = 0; i < batch; i++) {
    const char *a = (const char *)A + (size_t)(sa * i) * type_size(at);
    const char *b = (const char *)B + (size_t)(sb * i) * type_size(bt);
    char *c = (char *)C + (size_t)(sc * i) * type_size(ct);
    if (k > 0) {
      require_matrix(api, "A", a, at, ra, ca, lda);
      require_matrix(api, "B", b, bt, rb, cb, ldb);
    }
    require_matrix(api, "C", c, ct, m, n, ldc);
    if (f32 && r == R_NONE) {
      if (be == 0.0f) // C is not an input when beta is 0 (it may hold NaN)
        for (int j = 0; j < n; j++)
          memset(c + (size_t)j * ldc * 4, 0, (size_t)m * 4);
      cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, al, (const float *)a, lda,
                  (const float *)b, ldb, be, (float *)c, ldc);
      continue;
    }
    if (k > 0) {
      widen(fa, a, at, ra, ca, lda, r);
      widen(fb, b, bt, rb, cb, ldb, r);
    } else { // never read: any valid array
      fa.assign(1, 0.0f);
      fb.assign(1, 0.0f);
    }
    fc.assign((size_t)ldc * n, 0.0f);
    if (be != 0.0f)
      for (int j = 0; j < n; j++)
        for (int q = 0; q < m; q++)
          fc[(size_t)j * ldc + q] = load(c, ct, (size_t)j * ldc + q);
    cblas_sgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, al, fa.data(), lda, fb.data(),
                ldb, be, fc.data(), ldc);
    for (int j = 0; j < n; j++)
      for (int q = 0; q < m; q++)
        store(c, ct, (size_t)j * ldc + q, fc[(size_t)j * ldc + q]);
  }
  return CUBLAS_STATUS_SUCCESS;
}

} // namespace idoc_sim

using namespace idoc_sim;

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext{NULL, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream_valid(stream)) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes && !heap_contains(workspace, bytes)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS; // the CBLAS path needs no workspace
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "success";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
  case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
  case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
  case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
  }
  return "unknown error";
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
  return gemm("cublasSgemm", h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb,
              0, beta, C, CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F);
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
  (void)algo;
  return gemm("cublasGemmEx", h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct,
              ldc, 0, 1, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType at,
                                          int lda, long long sa, const void *B, cudaDataType bt,
                                          int ldb, long long sb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  (void)algo;
  return gemm("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb,
              sb, beta, C, ct, ldc, sc, batch, compute);
}

} // extern "C"
